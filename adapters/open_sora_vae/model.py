"""Open-Sora v1.2's video VAE: a per-frame SD-style image VAE, then a temporal VAE.

Module and tensor names follow the release's ``VideoAutoencoderPipeline``, so its
``model.safetensors`` loads with a strict key match: ``spatial_vae.module.*`` (a diffusers
``AutoencoderKL``), ``temporal_vae.*`` (MAGVIT-v2-style causal 3D convolutions, time only:
space is left to the image VAE) and the per-channel latent normalisation buffers
``scale``/``shift``.

The temporal VAE compresses time 4x. It zero-pads a clip of ``T`` spatial latents *in
front* to a multiple of 4 before encoding, and its decoder drops as many leading frames,
which is why decoding must be told how many frames to give back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import nn

from vae_bench.adapters.base import AdapterError

TEMPORAL_FACTOR = 4
# The spatial stage multiplies its latents by SD's factor before the temporal VAE (and
# divides before decoding), whatever the image VAE's own config says.
SPATIAL_SCALE = 0.18215
ACTIVATIONS = {"swish": nn.SiLU, "relu": nn.ReLU}


@dataclass(frozen=True)
class TemporalConfig:
    """``VAE_Temporal``'s arguments; the defaults are the release's ``VAE_Temporal_SD``."""

    in_out_channels: int = 4
    latent_embed_dim: int = 4
    embed_dim: int = 4
    filters: int = 128
    num_res_blocks: int = 4
    channel_multipliers: tuple[int, ...] = (1, 2, 2, 4)
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    num_groups: int = 32
    activation_fn: str = "swish"

    def __post_init__(self) -> None:
        for key in ("channel_multipliers", "temporal_downsample"):
            object.__setattr__(self, key, tuple(getattr(self, key)))
        levels = len(self.channel_multipliers)
        if len(self.temporal_downsample) != levels - 1:
            raise AdapterError(
                f"temporal VAE: temporal_downsample has {len(self.temporal_downsample)} "
                f"entries for {levels} levels (one per level but the last)"
            )
        if self.activation_fn not in ACTIVATIONS:
            raise AdapterError(
                f"temporal VAE: activation_fn {self.activation_fn!r}; allowed: "
                f"{', '.join(ACTIVATIONS)}"
            )
        if self.time_factor != TEMPORAL_FACTOR:
            raise AdapterError(
                f"temporal VAE: {sum(self.temporal_downsample)} temporal downsamplings give "
                f"{self.time_factor}x; the released pipeline is {TEMPORAL_FACTOR}x"
            )

    @property
    def time_factor(self) -> int:
        return 2 ** sum(self.temporal_downsample)

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any], source: str) -> TemporalConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise AdapterError(
                f"{source}: unknown temporal VAE keys {', '.join(unknown)}; allowed: "
                f"{', '.join(sorted(known))}"
            )
        return cls(**config)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CausalConv3d(nn.Module):
    """A 3D convolution padded causally in time (zeros before the clip, none after) and
    symmetrically in space, as in MAGVIT-v2."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        time_stride: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        kt, kh, kw = (kernel_size,) * 3 if isinstance(kernel_size, int) else kernel_size
        self.padding = (kw // 2, kw // 2, kh // 2, kh // 2, kt - time_stride, 0)
        self.conv = nn.Conv3d(
            in_channels, out_channels, (kt, kh, kw), stride=(time_stride, 1, 1), bias=bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.padding))


class ResBlock(nn.Module):
    """GroupNorm, activation and a bias-free 3x3x3 causal conv, twice, plus the input (a
    bias-free 1x1x1 conv where the width changes)."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, act: type) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3, bias=False)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3, bias=False)
        self.activate = act()
        self.conv3 = (
            CausalConv3d(in_channels, out_channels, 1, bias=False)
            if in_channels != out_channels
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.activate(self.norm1(x)))
        h = self.conv2(self.activate(self.norm2(h)))
        return h + (x if self.conv3 is None else self.conv3(x))


def _res_blocks(
    count: int, in_channels: int, out_channels: int, cfg: TemporalConfig
) -> nn.ModuleList:
    act = ACTIVATIONS[cfg.activation_fn]
    return nn.ModuleList(
        ResBlock(in_channels if i == 0 else out_channels, out_channels, cfg.num_groups, act)
        for i in range(count)
    )


class TemporalEncoder(nn.Module):
    """Levels of residual blocks, a strided causal conv (time /2) after each level marked
    in ``temporal_downsample`` (an identity elsewhere), residual blocks, then the moments."""

    def __init__(self, cfg: TemporalConfig) -> None:
        super().__init__()
        widths = [cfg.filters * m for m in cfg.channel_multipliers]
        self.conv_in = CausalConv3d(cfg.in_out_channels, cfg.filters, 3, bias=False)
        self.block_res_blocks = nn.ModuleList()
        self.conv_blocks = nn.ModuleList()
        previous = cfg.filters
        for level, width in enumerate(widths):
            self.block_res_blocks.append(_res_blocks(cfg.num_res_blocks, previous, width, cfg))
            previous = width
            if level < len(widths) - 1:
                self.conv_blocks.append(
                    CausalConv3d(width, width, 3, time_stride=2)
                    if cfg.temporal_downsample[level]
                    else nn.Identity()
                )
        self.res_blocks = _res_blocks(cfg.num_res_blocks, previous, previous, cfg)
        self.norm1 = nn.GroupNorm(cfg.num_groups, previous)
        self.activate = ACTIVATIONS[cfg.activation_fn]()
        self.conv2 = CausalConv3d(previous, 2 * cfg.latent_embed_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for level, blocks in enumerate(self.block_res_blocks):
            for block in blocks:
                x = block(x)
            if level < len(self.conv_blocks):
                x = self.conv_blocks[level](x)
        for block in self.res_blocks:
            x = block(x)
        return self.conv2(self.activate(self.norm1(x)))


def depth_to_time(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """``[B, C*f, T, H, W]`` to ``[B, C, T*f, H, W]``: channel ``f*c + i`` becomes frame
    ``f*t + i`` of channel ``c``."""
    b, c, t, h, w = x.shape
    x = x.reshape(b, c // factor, factor, t, h, w).transpose(2, 3)
    return x.reshape(b, c // factor, t * factor, h, w)


class TemporalDecoder(nn.Module):
    """The encoder mirrored; time x2 by a causal conv to twice the channels followed by
    :func:`depth_to_time`."""

    def __init__(self, cfg: TemporalConfig) -> None:
        super().__init__()
        widths = [cfg.filters * m for m in cfg.channel_multipliers]
        self.temporal_downsample = cfg.temporal_downsample
        self.conv1 = CausalConv3d(cfg.latent_embed_dim, widths[-1], 3)
        self.res_blocks = _res_blocks(cfg.num_res_blocks, widths[-1], widths[-1], cfg)
        blocks: list[nn.ModuleList] = []
        convs: list[nn.Module] = []
        previous = widths[-1]
        for level in reversed(range(len(widths))):
            blocks.insert(0, _res_blocks(cfg.num_res_blocks, previous, widths[level], cfg))
            previous = widths[level]
            if level > 0:
                convs.insert(
                    0,
                    CausalConv3d(previous, 2 * previous, 3)
                    if cfg.temporal_downsample[level - 1]
                    else nn.Identity(),
                )
        self.block_res_blocks = nn.ModuleList(blocks)
        self.conv_blocks = nn.ModuleList(convs)
        self.norm1 = nn.GroupNorm(cfg.num_groups, previous)
        self.activate = ACTIVATIONS[cfg.activation_fn]()
        self.conv_out = CausalConv3d(previous, cfg.in_out_channels, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.conv1(z)
        for block in self.res_blocks:
            x = block(x)
        for level in reversed(range(len(self.block_res_blocks))):
            for block in self.block_res_blocks[level]:
                x = block(x)
            if level > 0:
                x = self.conv_blocks[level - 1](x)
                if self.temporal_downsample[level - 1]:
                    x = depth_to_time(x)
        return self.conv_out(self.activate(self.norm1(x)))


class TemporalVAE(nn.Module):
    """``VAE_Temporal``: moments of ``2 * embed_dim`` channels per 4 frames of spatial latent."""

    def __init__(self, cfg: TemporalConfig) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = TemporalEncoder(cfg)
        self.quant_conv = CausalConv3d(2 * cfg.latent_embed_dim, 2 * cfg.embed_dim, 1)
        self.post_quant_conv = CausalConv3d(cfg.embed_dim, cfg.latent_embed_dim, 1)
        self.decoder = TemporalDecoder(cfg)

    def padding(self, frames: int) -> int:
        """Zero frames put in front of ``frames`` (and dropped after decoding)."""
        return -frames % self.config.time_factor

    def moments(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, 0, 0, self.padding(x.shape[2]), 0))
        return self.quant_conv(self.encoder(x)).to(x.dtype)

    def decode(self, z: torch.Tensor, frames: int) -> torch.Tensor:
        """The ``frames`` spatial latents of ``z`` (the leading padding dropped)."""
        x = self.decoder(self.post_quant_conv(z))
        return x[:, :, self.padding(frames) :]


class SpatialVAE(nn.Module):
    """Holds the image VAE as ``module``, the release's attribute name."""

    def __init__(self, vae: AutoencoderKL) -> None:
        super().__init__()
        self.module = vae


class VideoAutoencoderPipeline(nn.Module):
    """The two VAEs and the per-channel latent normalisation ``(z - shift) / scale``
    (persistent buffers of shape ``[1, C, 1, 1, 1]``, as the release saves them)."""

    def __init__(
        self,
        spatial: AutoencoderKL,
        temporal: TemporalConfig,
        scale: Sequence[float],
        shift: Sequence[float],
    ) -> None:
        super().__init__()
        if spatial.config.latent_channels != temporal.in_out_channels:
            raise AdapterError(
                f"the image VAE gives {spatial.config.latent_channels} channels, the temporal "
                f"VAE takes {temporal.in_out_channels}"
            )
        for name, values in (("scale", scale), ("shift", shift)):
            if len(values) != temporal.embed_dim:
                raise AdapterError(
                    f"{name} has {len(values)} values for {temporal.embed_dim} latent channels"
                )
        self.spatial_vae = SpatialVAE(spatial)
        self.temporal_vae = TemporalVAE(temporal)
        self.register_buffer("scale", _channel_buffer(scale))
        self.register_buffer("shift", _channel_buffer(shift))


def _channel_buffer(values: Sequence[float]) -> torch.Tensor:
    return torch.tensor([float(v) for v in values])[None, :, None, None, None]
