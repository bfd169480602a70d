"""The IV-VAE network (Improved Video VAE, CVPR 2025): keyframe-based temporal compression
with group causal convolutions, laid out as the released ``VAutoencoder3d`` so that its
state dicts load unchanged (``encoder.*``, ``conv1.*``, ``conv2.*``, ``decoder.*``).

Keyframe-based temporal compression: the latent's first half of channels comes from the
keyframe branch, which at every temporal downsampling keeps the first frame of each pair
(so it sits at the first frame of each 4-frame group; its 2D convolutions still read the
temporal half), the second half from the temporal branch, which mixes the group's frames.
The decoder mirrors this: it outputs six channels, and frame 0 and the first frame of
every group come from its keyframe half (channels 0-2), the other frames from its
temporal half (channels 3-5).

A clip of ``1 + 4k`` frames runs as a first pass over frame 0 (no temporal resampling:
one latent frame), then passes over whole 4-frame groups carrying a :class:`TailCache`.
Groups never see later groups, so any split of the groups into passes gives the same
result; the release runs one group per pass (``chunk=4`` frames, one latent frame).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from vae_bench.adapters.base import AdapterError
from vae_bench.adapters.iv_vae.layers import (
    PyramidHead,
    Resample,
    ResidualBlock2d,
    ResidualBlock3d,
    SplitAttention,
    SplitConv2d,
    SplitConv3d,
    SplitRMSNorm,
    TailCache,
)

SPATIAL_FACTOR = 8
TEMPORAL_FACTOR = 4
LEVELS = 4
# Per level of the encoder (the decoder mirrors it): space /2 at levels 0-2, time /2 at
# levels 1-2, so groups of 4 frames shrink to 2 at level 2; level 3 is per frame.
TEMPORAL_DOWNSAMPLE = (False, True, True)
ENCODER_GROUPS = (4, 4, 2)
DECODER_GROUPS = (0, 2, 4, 4)  # level 0 is per frame
OUTPUT_CHANNELS = 3


@dataclass(frozen=True)
class IVVAEConfig:
    """The release's ``IV_VAE(z_dim, dim)`` hyper-parameters (``VAutoencoder3d``'s names).

    ``z_dim``: latent channels (half keyframe, half temporal); ``dim``: base width.
    ``scale_factor``/``shift_factor``: the release's latent normalisation,
    ``scale * (z - shift)``, for diffusion use; they do not change the network.
    """

    z_dim: int = 16
    dim: int = 96
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    dropout: float = 0.0
    scale_factor: float = 1.0
    shift_factor: float = 0.0

    def __post_init__(self) -> None:
        if not _positive_int(self.z_dim) or self.z_dim % 2:
            raise AdapterError(f"IV-VAE z_dim must be a positive even integer, got {self.z_dim}")
        if not _positive_int(self.dim) or self.dim % 2:
            raise AdapterError(f"IV-VAE dim must be a positive even integer, got {self.dim}")
        if len(self.dim_mult) != LEVELS or not all(map(_positive_int, self.dim_mult)):
            raise AdapterError(
                f"IV-VAE dim_mult must be {LEVELS} positive integers (the released temporal "
                f"layout), got {self.dim_mult}"
            )
        if not _positive_int(self.num_res_blocks):
            raise AdapterError(
                f"IV-VAE num_res_blocks must be a positive integer, got {self.num_res_blocks}"
            )

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any], source: str) -> IVVAEConfig:
        """Build from a preset's config; unknown keys are errors naming the allowed ones."""
        allowed = tuple(cls.__dataclass_fields__)
        unknown = sorted(set(config) - set(allowed))
        if unknown:
            raise AdapterError(
                f"{source}: unknown IV-VAE config keys {', '.join(unknown)}; allowed: "
                f"{', '.join(allowed)}"
            )
        values = dict(config)
        if "dim_mult" in values:
            values["dim_mult"] = tuple(values["dim_mult"])
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def release_name(self) -> str:
        """The release's name for these widths (its weights file is ``<name>.pth``)."""
        return f"ivvae_z{self.z_dim}_dim{self.dim}"


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


Block = Callable[[torch.Tensor, TailCache], torch.Tensor]


class Encoder(nn.Module):
    """Video ``[B, T, 3, H, W]`` (frames-major) to ``2 * z_dim`` channels per latent frame:
    ``z_dim`` keyframe channels, then ``z_dim`` temporal ones."""

    def __init__(self, config: IVVAEConfig) -> None:
        super().__init__()
        dims = [config.dim * m for m in (1, *config.dim_mult)]
        self.conv1 = SplitConv3d(3, dims[0], dims[0], 3, ENCODER_GROUPS[0])
        blocks: list[nn.Module] = []
        for level in range(LEVELS):
            in_dim, out_dim = dims[level], dims[level + 1]
            for _ in range(config.num_res_blocks):
                if level < LEVELS - 1:
                    group = ENCODER_GROUPS[level]
                    blocks.append(ResidualBlock3d(in_dim, out_dim, group, config.dropout))
                else:
                    blocks.append(ResidualBlock2d(in_dim, out_dim, config.dropout))
                    blocks.append(SplitAttention(out_dim))
                in_dim = out_dim
            if level < LEVELS - 1:
                in_time = TEMPORAL_DOWNSAMPLE[level]
                blocks.append(Resample(out_dim, "downsample3d" if in_time else "downsample2d"))
            if level == LEVELS - 2:
                blocks.append(SplitAttention(out_dim))
        self.downsamples = nn.ModuleList(blocks)
        width = dims[-1]
        self.middle = nn.ModuleList(
            [
                ResidualBlock2d(width, width, config.dropout),
                SplitAttention(width),
                ResidualBlock2d(width, width, config.dropout),
            ]
        )
        self.head = nn.Sequential(SplitRMSNorm(width), nn.SiLU(), PyramidHead(width, config.z_dim))

    def forward(self, x: torch.Tensor, cache: TailCache) -> torch.Tensor:
        x = self.conv1(x, cache)
        for block in (*self.downsamples, *self.middle):
            x = block(x, cache)
        return self.head(x)


class Decoder(nn.Module):
    """``z_dim`` latent channels (after ``conv2``) to six output channels per frame:
    keyframe RGB, then temporal RGB."""

    def __init__(self, config: IVVAEConfig) -> None:
        super().__init__()
        mult = config.dim_mult
        dims = [config.dim * m for m in (mult[-1], *reversed(mult))]
        half_z = config.z_dim // 2
        self.conv1 = SplitConv2d(2 * half_z, 2 * dims[0], 3)
        self.middle = nn.ModuleList(
            [
                ResidualBlock2d(dims[0], dims[0], config.dropout),
                SplitAttention(dims[0]),
                ResidualBlock2d(dims[0], dims[0], config.dropout),
            ]
        )
        blocks: list[nn.Module] = []
        for level in range(LEVELS):
            in_dim, out_dim = dims[level], dims[level + 1]
            if level > 0:  # the previous level's upsampling halved each half's channels
                in_dim //= 2
            for _ in range(config.num_res_blocks + 1):
                if level == 0:
                    blocks.append(ResidualBlock2d(in_dim, out_dim, config.dropout))
                    blocks.append(SplitAttention(out_dim))
                else:
                    group = DECODER_GROUPS[level]
                    blocks.append(ResidualBlock3d(in_dim, out_dim, group, config.dropout))
                in_dim = out_dim
            if level < LEVELS - 1:
                in_time = TEMPORAL_DOWNSAMPLE[LEVELS - 2 - level]
                blocks.append(Resample(out_dim, "upsample3d" if in_time else "upsample2d"))
        self.upsamples = nn.ModuleList(blocks)
        width = dims[-1]
        self.head = nn.Sequential(
            SplitRMSNorm(width),
            nn.SiLU(),
            SplitConv3d(2 * width, OUTPUT_CHANNELS, OUTPUT_CHANNELS, 3, DECODER_GROUPS[-1]),
        )

    def forward(self, x: torch.Tensor, cache: TailCache) -> torch.Tensor:
        x = self.conv1(x)
        for block in (*self.middle, *self.upsamples):
            x = block(x, cache)
        norm, activation, conv = self.head
        return conv(activation(norm(x)), cache)


class IVVAEModel(nn.Module):
    """Encoder, the latent projections ``conv1``/``conv2`` and the decoder.

    Public tensors are channels-first, ``[B, C, T, H, W]``: videos in [-1, 1], latents raw
    (before the release's ``scale * (z - shift)``).
    """

    def __init__(self, config: IVVAEConfig) -> None:
        super().__init__()
        self.config = config
        z = config.z_dim
        self.encoder = Encoder(config)
        self.conv1 = SplitConv3d(2 * z, z, z, 1)
        self.conv2 = SplitConv3d(z, z // 2, z // 2, 1)
        self.decoder = Decoder(config)

    # --- encoding -----------------------------------------------------------------------
    def encode_moments(self, video: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """Posterior mean then log-variance, ``[B, 2 * z_dim, 1 + k, H/8, W/8]``.

        ``chunk``: frames per pass after frame 0 (a multiple of 4); ``None``: one pass.
        """
        frames = video.shape[2]
        if (frames - 1) % TEMPORAL_FACTOR:
            raise AdapterError(f"IV-VAE takes 1 + {TEMPORAL_FACTOR}k frames, got {frames}")
        x = video.transpose(1, 2).contiguous()
        features = _passes(x, self.encoder, chunk, TEMPORAL_FACTOR)
        h = self.conv1(torch.cat(features, dim=1))
        # conv1 gives [keyframe mean, keyframe logvar, temporal mean, temporal logvar]
        k_mean, k_logvar, t_mean, t_logvar = h.chunk(4, dim=2)
        moments = torch.cat([k_mean, t_mean, k_logvar, t_logvar], dim=2)
        return moments.transpose(1, 2).contiguous()

    # --- decoding -----------------------------------------------------------------------
    def decode_latent(self, latent: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """Video ``[B, 3, 1 + 4(T' - 1), 8H', 8W']`` from a raw latent ``[B, z_dim, T', H',
        W']``. ``chunk``: latent frames per pass after the first; ``None``: one pass."""
        x = self.conv2(latent.transpose(1, 2).contiguous())
        video: torch.Tensor | None = None
        start = 0
        for out in _passes(x, self.decoder, chunk, 1):
            frames = _merge_branches(out, first=start == 0)
            if video is None:
                b, _, _, h, w = frames.shape
                total = 1 + TEMPORAL_FACTOR * (latent.shape[2] - 1)
                video = frames.new_empty(b, OUTPUT_CHANNELS, total, h, w)
            video[:, :, start : start + frames.shape[1]] = frames.transpose(1, 2)
            start += frames.shape[1]
        assert video is not None and start == video.shape[2]
        return video


def _passes(x: torch.Tensor, run: Block, chunk: int | None, multiple: int) -> list[torch.Tensor]:
    """``run`` over frame 0, then over the rest ``chunk`` frames at a time, one cache."""
    rest = x.shape[1] - 1
    if chunk is None:
        chunk = rest or multiple
    if chunk < 1 or chunk % multiple:
        raise AdapterError(
            f"IV-VAE chunks hold a positive multiple of {multiple} frames, got {chunk}"
        )
    cache = TailCache()
    outputs = [run(x[:, :1], cache)]
    cache.first = False
    for start in range(1, rest + 1, chunk):
        outputs.append(run(x[:, start : start + chunk], cache))
    return outputs


def _merge_branches(out: torch.Tensor, first: bool) -> torch.Tensor:
    """Output frames from the decoder's six channels: the keyframe half at frame 0 and at
    the first frame of every group, the temporal half elsewhere."""
    keyframe, temporal = out[:, :, :OUTPUT_CHANNELS], out[:, :, OUTPUT_CHANNELS:]
    if first:
        return keyframe
    frames = temporal.clone()
    frames[:, ::TEMPORAL_FACTOR] = keyframe[:, ::TEMPORAL_FACTOR]
    return frames
