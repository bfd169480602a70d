"""LiteVAE's network, with the module names of the released checkpoint.

The state-dict keys are those of open-litevae's ``LiteAutoencoderKL`` (``encoder.*``,
``decoder.*`` and, only when ``use_quant``, ``quantizer.quant_conv.*`` /
``quantizer.post_quant_conv.*``), so the released file loads without renaming.

Encoder: a ``levels``-level Haar DWT (:mod:`vae_bench.adapters.lite_vae.dwt`); one
:class:`FeatureUNet` per level on that level's four sub-bands (``4 * in_channels`` in and
out), each average-pooled to the latent resolution ``H / 2**levels``; the level features
concatenated and passed through an aggregator :class:`FeatureUNet` that gives the posterior
moments (mean and log variance). The UNets change width only (1x1 convolutions), never resolution.

Decoder: Stable Diffusion's decoder layout with every conv + group norm pair replaced by a
self-modulated convolution (:class:`SMC`), no attention, ``blocks + 1`` resnets in the middle
and at each level, nearest-neighbour upsampling followed by a 3x3 convolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from vae_bench.adapters.lite_vae.dwt import haar_dwt2_levels

NORM_GROUPS = 8  # the group count of the encoder's group norms in the release
SMC_EPS = 1e-8  # the demodulation epsilon of the release


@dataclass(frozen=True)
class LiteVAEConfig:
    """Architecture hyper-parameters (names follow the release's YAML where one exists:
    ``levels`` is its ``dct_levels``, ``latent_channels`` its ``embed_dim``)."""

    latent_channels: int = 12
    levels: int = 3
    in_channels: int = 3
    extractor_channels: int = 32
    extractor_mult: tuple[int, ...] = (1, 2, 3)
    extractor_blocks: int = 4
    aggregator_channels: int = 32
    aggregator_mult: tuple[int, ...] = (1, 2, 3)
    aggregator_blocks: int = 4
    decoder_channels: int = 128
    decoder_mult: tuple[int, ...] = (1, 2, 4, 4)
    decoder_blocks: int = 2
    out_channels: int = 3
    use_quant: bool = False

    def __post_init__(self) -> None:
        for name in ("extractor_mult", "aggregator_mult", "decoder_mult"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "use_quant":
                if not isinstance(value, bool):
                    raise ValueError(f"use_quant must be true or false, got {value!r}")
                continue
            values = value if isinstance(value, tuple) else (value,)
            if not values or any(
                not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values
            ):
                raise ValueError(f"{item.name} must be positive integers, got {value!r}")
        for prefix in ("extractor", "aggregator"):
            widths = [
                getattr(self, f"{prefix}_channels") * m for m in getattr(self, f"{prefix}_mult")
            ]
            if any(w % NORM_GROUPS for w in widths):
                raise ValueError(
                    f"{prefix} widths {widths} must be multiples of {NORM_GROUPS} (group norm)"
                )
        if len(self.decoder_mult) - 1 != self.levels:
            raise ValueError(
                f"the decoder upsamples {2 ** (len(self.decoder_mult) - 1)}x "
                f"(decoder_mult {self.decoder_mult}) but the encoder downsamples "
                f"{2**self.levels}x (levels {self.levels})"
            )

    @property
    def spatial_factor(self) -> int:
        return 2**self.levels

    @property
    def encoder_out_channels(self) -> int:
        """The encoder gives the moments itself unless a ``quant_conv`` follows it."""
        return self.latent_channels if self.use_quant else 2 * self.latent_channels


# --- encoder -------------------------------------------------------------------------
class ResidualBlock(nn.Module):
    """conv-norm-SiLU twice plus a (projected where the width changes) skip."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.residual_conv: nn.Module = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.norm1 = nn.GroupNorm(NORM_GROUPS, out_channels)
        self.norm2 = nn.GroupNorm(NORM_GROUPS, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.residual_conv(x)
        h = F.silu(self.norm1(self.conv1(x)))
        h = F.silu(self.norm2(self.conv2(h)))
        return h + skip


class FeatureUNet(nn.Module):
    """A UNet whose "down" and "up" steps change the width only (1x1 convolutions).

    Down level ``i`` runs ``blocks`` resblocks at width ``channels * mult[i]`` (each output
    kept as a skip) and widens to ``mult[i + 1]``; the middle runs ``blocks`` resblocks at the
    widest width; up level ``i`` narrows back to ``mult[i]`` and runs ``blocks`` resblocks on
    ``[x, skip]``, taking the skips in reverse order.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        mult: Sequence[int],
        blocks: int,
        out_channels: int | None = None,
    ) -> None:
        super().__init__()
        widths = [channels * m for m in mult]
        out_channels = in_channels if out_channels is None else out_channels
        self.init_conv = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(
            nn.ModuleList(
                [*(ResidualBlock(width, width) for _ in range(blocks)), nn.Conv2d(width, wider, 1)]
            )
            for width, wider in zip(widths[:-1], widths[1:], strict=True)
        )
        self.mid_block = nn.ModuleList(ResidualBlock(widths[-1], widths[-1]) for _ in range(blocks))
        self.up_blocks = nn.ModuleList(
            nn.ModuleList(
                [
                    nn.Conv2d(wider, width, 1),
                    *(ResidualBlock(2 * width, width) for _ in range(blocks)),
                ]
            )
            for width, wider in reversed(list(zip(widths[:-1], widths[1:], strict=True)))
        )
        self.conv_out = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.init_conv(x)
        skips = []
        for level in self.down_blocks:
            *resblocks, widen = level
            for block in resblocks:
                h = block(h)
                skips.append(h)
            h = widen(h)
        for block in self.mid_block:
            h = block(h)
        for level in self.up_blocks:
            narrow, *resblocks = level
            h = narrow(h)
            for block in resblocks:
                h = block(torch.cat([h, skips.pop()], dim=1))
        return self.conv_out(h)


class LiteEncoder(nn.Module):
    """Haar DWT -> per-level feature UNets -> pooled, concatenated -> aggregator UNet."""

    def __init__(self, config: LiteVAEConfig) -> None:
        super().__init__()
        self.levels = config.levels
        bands = 4 * config.in_channels
        self.extractors = nn.ModuleList(
            FeatureUNet(bands, config.extractor_channels, config.extractor_mult,
                        config.extractor_blocks)
            for _ in range(config.levels)
        )  # fmt: skip
        self.aggregator = FeatureUNet(
            bands * config.levels,
            config.aggregator_channels,
            config.aggregator_mult,
            config.aggregator_blocks,
            out_channels=config.encoder_out_channels,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coefficients = haar_dwt2_levels(x, self.levels)
        features = []
        for level, (extractor, coeffs) in enumerate(
            zip(self.extractors, coefficients, strict=True)
        ):
            pool = 2 ** (self.levels - 1 - level)  # to the coarsest level's resolution
            h = extractor(coeffs)
            features.append(F.avg_pool2d(h, pool) if pool > 1 else h)
        return self.aggregator(torch.cat(features, dim=1))


# --- decoder -------------------------------------------------------------------------
def smc_weight(
    weight: torch.Tensor, scales: torch.Tensor, gain: torch.Tensor, eps: float = SMC_EPS
) -> torch.Tensor:
    """The effective kernel of a self-modulated convolution.

    StyleGAN2's modulation and demodulation with a learned (input-independent) style: each
    input channel scaled by ``scales`` (RMS-normalised), each output filter normalised to
    unit L2 norm, times the scalar ``gain``. Normalising the filters replaces the
    activations' group norm.
    """
    weight = weight * weight.pow(2).mean(dim=(1, 2, 3), keepdim=True).rsqrt()
    style = scales * scales.pow(2).mean().rsqrt()
    weight = weight * style.view(1, -1, 1, 1)
    weight = weight * (weight.pow(2).sum(dim=(1, 2, 3), keepdim=True) + eps).rsqrt()
    return weight * gain


class SMC(nn.Module):
    """Self-modulated convolution (stride 1, "same" padding); keys ``conv.*``, ``gain``,
    ``scales`` as in the release."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.padding = kernel_size // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=self.padding)
        self.gain = nn.Parameter(torch.ones(1))
        self.scales = nn.Parameter(torch.ones(in_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = smc_weight(self.conv.weight, self.scales, self.gain)
        return F.conv2d(x, weight, self.conv.bias, padding=self.padding)


class ResnetBlock(nn.Module):
    """SMC-SiLU twice plus a skip (1x1 ``nin_shortcut`` where the width changes)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = SMC(in_channels, out_channels)
        self.conv2 = SMC(out_channels, out_channels)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.conv1(x))
        h = F.silu(self.conv2(h))
        shortcut = getattr(self, "nin_shortcut", None)
        return (x if shortcut is None else shortcut(x)) + h


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class LiteDecoder(nn.Module):
    """SD's decoder layout with SMC instead of conv + group norm and no attention."""

    def __init__(self, config: LiteVAEConfig) -> None:
        super().__init__()
        mult, blocks = config.decoder_mult, config.decoder_blocks + 1
        width = config.decoder_channels * mult[-1]
        self.conv_in = nn.Conv2d(config.latent_channels, width, 3, padding=1)
        self.mid = nn.ModuleList(ResnetBlock(width, width) for _ in range(blocks))
        levels: list[nn.Module] = []
        for index in reversed(range(len(mult))):  # coarsest first, as the data flows
            out = config.decoder_channels * mult[index]
            level = nn.Module()
            level.block = nn.ModuleList(
                ResnetBlock(width if i == 0 else out, out) for i in range(blocks)
            )
            if index != 0:
                level.upsample = Upsample(out)
            levels.append(level)
            width = out
        self.up = nn.ModuleList(reversed(levels))  # indexed by level, finest = 0
        self.conv_norm = SMC(width, width)
        self.conv_out = nn.Conv2d(width, config.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for block in self.mid:
            h = block(h)
        for level in reversed(self.up):
            for block in level.block:
                h = block(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.conv_norm(h)))


# --- the autoencoder -----------------------------------------------------------------
class LiteAutoencoder(nn.Module):
    """Encoder, optional 1x1 quant convs (under ``quantizer``), decoder."""

    def __init__(self, config: LiteVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = LiteEncoder(config)
        self.decoder = LiteDecoder(config)
        self.quantizer = nn.Module()
        latent = config.latent_channels
        if config.use_quant:
            self.quantizer.quant_conv = nn.Conv2d(latent, 2 * latent, 1)
            self.quantizer.post_quant_conv = nn.Conv2d(latent, latent, 1)
        else:
            self.quantizer.quant_conv = nn.Identity()
            self.quantizer.post_quant_conv = nn.Identity()

    def moments(self, image: torch.Tensor) -> torch.Tensor:
        """``[N, 2 * latent, H/f, W/f]``: posterior mean then log variance (unclamped)."""
        return self.quantizer.quant_conv(self.encoder(image))

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """The posterior mode (its mean)."""
        return self.moments(image)[:, : self.config.latent_channels]

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantizer.post_quant_conv(latent))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(image))

    def encoder_modules(self) -> tuple[nn.Module, ...]:
        return (self.encoder, self.quantizer.quant_conv)

    def decoder_modules(self) -> tuple[nn.Module, ...]:
        return (self.decoder, self.quantizer.post_quant_conv)
