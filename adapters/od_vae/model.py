"""CausalVAEModel: Open-Sora Plan's CausalVideoVAE (OD-VAE), built from its config.

An SD-style encoder/decoder (levels of ResNet blocks, a mid block with attention, 32-group
GroupNorm) whose modules are named in the config: per level, the ResNet block class (2D
per frame or causal 3D), a spatial and a temporal resampler (or none), and the
convolution/attention classes. The config keys, their defaults and the state-dict names
are the release's, so its ``config.json`` and weights load unchanged, and every variant the
release's code can express (which levels compress time, which blocks are 2D or 3D) is a
config. The latent is ``embed_dim`` channels of a diagonal Gaussian (``quant_conv`` maps
the encoder's ``2 * z_channels`` to ``2 * embed_dim``).

Time is causal in the convolutions (frame 0 is repeated in front, never later frames),
so ``T = 1 + 4k`` frames give ``1 + k`` latent frames. With ``groupnorm`` (the release)
the 3D blocks normalise over the whole clip, so a later frame still moves the statistics
of earlier ones; ``layernorm`` (a config option of the same code) is causal throughout.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from vae_bench.adapters.base import AdapterError
from vae_bench.adapters.od_vae.blocks import (
    AttnBlock,
    AttnBlock3D,
    SpatialDownsample2x,
    SpatialUpsample2x,
    TimeDownsample2x,
    TimeDownsampleRes2x,
    TimeUpsample2x,
    TimeUpsampleRes2x,
)
from vae_bench.adapters.wf_vae.layers import (
    NORM_TYPES,
    AttnBlock3DFix,
    CausalConv3d,
    Conv2d,
    Downsample,
    ResnetBlock2D,
    ResnetBlock3D,
    Spatial2xTime2x3DDownsample,
    Spatial2xTime2x3DUpsample,
    Upsample,
    normalization,
    swish,
)


@dataclass(frozen=True)
class Resampler:
    """A resampling block class and how much it scales time and space."""

    build: Callable[[int, int], nn.Module]
    time: int
    space: int


CONVS: dict[str, Callable[..., nn.Module]] = {"Conv2d": Conv2d, "CausalConv3d": CausalConv3d}
RESNET_BLOCKS: dict[str, Callable[..., nn.Module]] = {
    "ResnetBlock2D": ResnetBlock2D,
    "ResnetBlock3D": ResnetBlock3D,
}
ATTENTIONS: dict[str, Callable[..., nn.Module]] = {
    "AttnBlock3DFix": AttnBlock3DFix,
    "AttnBlock3D": AttnBlock3D,
    "AttnBlock": AttnBlock,
}
DOWNSAMPLERS = {
    "Downsample": Resampler(Downsample, 1, 2),
    "SpatialDownsample2x": Resampler(SpatialDownsample2x, 1, 2),
    "Spatial2xTime2x3DDownsample": Resampler(Spatial2xTime2x3DDownsample, 2, 2),
    "TimeDownsample2x": Resampler(TimeDownsample2x, 2, 1),
    "TimeDownsampleRes2x": Resampler(TimeDownsampleRes2x, 2, 1),
}
UPSAMPLERS = {
    "Upsample": Resampler(Upsample, 1, 2),
    "SpatialUpsample2x": Resampler(SpatialUpsample2x, 1, 2),
    # the release's CausalVAEModel builds it with its defaults: trilinear in time
    "Spatial2xTime2x3DUpsample": Resampler(
        partial(Spatial2xTime2x3DUpsample, t_interpolation="trilinear", depth=0), 2, 2
    ),
    "TimeUpsample2x": Resampler(TimeUpsample2x, 2, 1),
    "TimeUpsampleRes2x": Resampler(TimeUpsampleRes2x, 2, 1),
}


def _pick(table: Mapping[str, Callable[..., nn.Module]], key: str, name: str) -> Callable:
    if name not in table:
        raise AdapterError(f"CausalVAEModel config: {key} {name!r}; allowed: {', '.join(table)}")
    return table[name]


def _resamplers(
    table: Mapping[str, Resampler], key: str, names: Sequence[str], levels: int
) -> list[Resampler | None]:
    if len(names) != levels:
        raise AdapterError(
            f"CausalVAEModel config: {key} has {len(names)} entries for {levels} levels"
        )
    for name in names:
        if name and name not in table:
            raise AdapterError(
                f"CausalVAEModel config: {key} {name!r}; allowed: '', {', '.join(table)}"
            )
    return [table[name] if name else None for name in names]


def _factor(resamplers: Sequence[Resampler | None], axis: str) -> int:
    return math.prod(getattr(r, axis) for r in resamplers if r is not None)


@dataclass(frozen=True)
class Trunk:
    """The hyper-parameters encoder and decoder share."""

    z_channels: int
    hidden_size: int
    hidden_size_mult: tuple[int, ...]
    attn_resolutions: tuple[int, ...]
    dropout: float
    resolution: int
    num_res_blocks: int
    norm_type: str


@dataclass(frozen=True)
class Side:
    """The module names of one half: its ``encoder_*`` or ``decoder_*`` config keys."""

    prefix: str
    conv_in: str
    conv_out: str
    attention: str
    resnet_blocks: Sequence[str]
    spatial: Sequence[str]
    temporal: Sequence[str]
    mid_resnet: str


class _Half(nn.Module):
    """What encoder and decoder share: module lookup, levels, the mid block, the output.

    A level is a module with ``block`` and ``attn`` lists and optional resamplers (named as
    released: ``downsample``/``time_downsample`` or ``upsample``/``time_upsample``); it
    runs its blocks, each followed by its attention when the level has any, then the
    spatial and the temporal resampler.
    """

    resample_names: tuple[str, str]

    def __init__(self, trunk: Trunk, side: Side, table: Mapping[str, Resampler]) -> None:
        super().__init__()
        self.trunk, self.side = trunk, side
        levels = len(trunk.hidden_size_mult)
        if len(side.resnet_blocks) != levels:
            raise AdapterError(
                f"CausalVAEModel config: {side.prefix}_resnet_blocks has "
                f"{len(side.resnet_blocks)} entries for {levels} levels"
            )
        kind = self.resample_names[0]
        self.spatial = _resamplers(table, f"{side.prefix}_spatial_{kind}", side.spatial, levels)
        self.temporal = _resamplers(table, f"{side.prefix}_temporal_{kind}", side.temporal, levels)
        everything = self.spatial + self.temporal
        self.time_factor = _factor(everything, "time")
        self.space_factor = _factor(everything, "space")
        self.attn_cls = _pick(ATTENTIONS, f"{side.prefix}_attention", side.attention)

    def _conv(self, which: str, *args: int, **kwargs: int) -> nn.Module:
        name = getattr(self.side, which)
        return _pick(CONVS, f"{self.side.prefix}_{which}", name)(*args, **kwargs)

    def _level(self, level: int, block_in: int, count: int, resolution: int) -> nn.Module:
        trunk = self.trunk
        key = f"{self.side.prefix}_resnet_blocks"
        block_cls = _pick(RESNET_BLOCKS, key, self.side.resnet_blocks[level])
        block_out = trunk.hidden_size * trunk.hidden_size_mult[level]
        module = nn.Module()
        module.block = nn.ModuleList()
        module.attn = nn.ModuleList()
        for _ in range(count):
            module.block.append(block_cls(block_in, block_out, trunk.norm_type, trunk.dropout))
            block_in = block_out
            if resolution in trunk.attn_resolutions:
                module.attn.append(self.attn_cls(block_in, trunk.norm_type))
        spatial_name, temporal_name = self.resample_names
        if self.spatial[level] is not None:
            setattr(module, spatial_name, self.spatial[level].build(block_in, block_in))
        if self.temporal[level] is not None:
            setattr(module, temporal_name, self.temporal[level].build(block_in, block_in))
        return module

    def _mid(self, channels: int) -> nn.Module:
        trunk = self.trunk
        mid_cls = _pick(RESNET_BLOCKS, f"{self.side.prefix}_mid_resnet", self.side.mid_resnet)
        mid = nn.Module()
        mid.block_1 = mid_cls(channels, channels, trunk.norm_type, trunk.dropout)
        mid.attn_1 = self.attn_cls(channels, trunk.norm_type)
        mid.block_2 = mid_cls(channels, channels, trunk.norm_type, trunk.dropout)
        return mid

    def _run_level(self, level: nn.Module, h: torch.Tensor) -> torch.Tensor:
        for index, block in enumerate(level.block):
            h = block(h)
            if len(level.attn) > 0:
                h = level.attn[index](h)
        for name in self.resample_names:
            if hasattr(level, name):
                h = getattr(level, name)(h)
        return h

    def _run_mid(self, h: torch.Tensor) -> torch.Tensor:
        return self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))

    def _out(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv_out(swish(self.norm_out(h)))


class Encoder(_Half):
    """``conv_in`` -> levels (ResNet blocks, attention where the resolution is listed,
    then spatial and temporal downsampling) -> mid block -> norm, swish, ``conv_out``."""

    resample_names = ("downsample", "time_downsample")

    def __init__(self, trunk: Trunk, side: Side) -> None:
        super().__init__(trunk, side, DOWNSAMPLERS)
        self.conv_in = self._conv("conv_in", 3, trunk.hidden_size, kernel_size=3, padding=1)
        self.down = nn.ModuleList()
        block_in, resolution = trunk.hidden_size, trunk.resolution
        for level, mult in enumerate(trunk.hidden_size_mult):
            self.down.append(self._level(level, block_in, trunk.num_res_blocks, resolution))
            block_in = trunk.hidden_size * mult
            if self.spatial[level] is not None:
                resolution //= 2
        self.mid = self._mid(block_in)
        self.norm_out = normalization(block_in, trunk.norm_type)
        self.conv_out = self._conv("conv_out", block_in, 2 * trunk.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = self._run_level(level, h)
        return self._out(self._run_mid(h))


class Decoder(_Half):
    """``conv_in`` -> mid block -> levels from the deepest (``num_res_blocks + 1`` ResNet
    blocks, attention, spatial and temporal upsampling) -> norm, swish, ``conv_out``."""

    resample_names = ("upsample", "time_upsample")

    def __init__(self, trunk: Trunk, side: Side) -> None:
        super().__init__(trunk, side, UPSAMPLERS)
        levels = len(trunk.hidden_size_mult)
        block_in = trunk.hidden_size * trunk.hidden_size_mult[-1]
        resolution = trunk.resolution // 2 ** (levels - 1)
        self.conv_in = self._conv("conv_in", trunk.z_channels, block_in, 3, padding=1)
        self.mid = self._mid(block_in)
        ups: list[nn.Module] = []
        for level in reversed(range(levels)):
            ups.insert(0, self._level(level, block_in, trunk.num_res_blocks + 1, resolution))
            block_in = trunk.hidden_size * trunk.hidden_size_mult[level]
            if self.spatial[level] is not None:
                resolution *= 2
        self.up = nn.ModuleList(ups)  # up[i] is level i, run from the deepest
        self.norm_out = normalization(block_in, trunk.norm_type)
        self.conv_out = self._conv("conv_out", block_in, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self._run_mid(self.conv_in(z))
        for level in reversed(self.up):
            h = self._run_level(level, h)
        return self._out(h)


class CausalVAEModel(ModelMixin, ConfigMixin):
    """The release's class (``_class_name: CausalVAEModel``): its config keys and defaults
    (those of the WF-VAE repository's copy, which adds ``scale``, ``shift``, ``norm_type``
    to Open-Sora Plan v1.2's) and its state-dict names."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        hidden_size: int = 128,
        z_channels: int = 4,
        hidden_size_mult: Sequence[int] = (1, 2, 4, 4),
        attn_resolutions: Sequence[int] = (),
        dropout: float = 0.0,
        resolution: int = 256,
        double_z: bool = True,
        embed_dim: int = 4,
        num_res_blocks: int = 2,
        q_conv: str = "CausalConv3d",
        encoder_conv_in: str = "CausalConv3d",
        encoder_conv_out: str = "CausalConv3d",
        encoder_attention: str = "AttnBlock3D",
        encoder_resnet_blocks: Sequence[str] = ("ResnetBlock3D",) * 4,
        encoder_spatial_downsample: Sequence[str] = ("SpatialDownsample2x",) * 3 + ("",),
        encoder_temporal_downsample: Sequence[str] = (
            "",
            "TimeDownsample2x",
            "TimeDownsample2x",
            "",
        ),
        encoder_mid_resnet: str = "ResnetBlock3D",
        decoder_conv_in: str = "CausalConv3d",
        decoder_conv_out: str = "CausalConv3d",
        decoder_attention: str = "AttnBlock3D",
        decoder_resnet_blocks: Sequence[str] = ("ResnetBlock3D",) * 4,
        decoder_spatial_upsample: Sequence[str] = ("",) + ("SpatialUpsample2x",) * 3,
        decoder_temporal_upsample: Sequence[str] = ("", "", "TimeUpsample2x", "TimeUpsample2x"),
        decoder_mid_resnet: str = "ResnetBlock3D",
        scale: Sequence[float] = (0.18215,) * 4,
        shift: Sequence[float] = (0.0,) * 4,
        use_quant_layer: bool = True,
        norm_type: str = "groupnorm",
    ) -> None:
        super().__init__()
        if norm_type not in NORM_TYPES:
            raise AdapterError(
                f"CausalVAEModel config: norm_type {norm_type!r}; allowed: {', '.join(NORM_TYPES)}"
            )
        if not double_z:
            raise AdapterError(
                "CausalVAEModel config: double_z false is not supported (the posterior needs "
                "a mean and a log-variance; the release's quant_conv expects 2 * z_channels)"
            )
        trunk = Trunk(
            z_channels=z_channels,
            hidden_size=hidden_size,
            hidden_size_mult=tuple(hidden_size_mult),
            attn_resolutions=tuple(attn_resolutions),
            dropout=dropout,
            resolution=resolution,
            num_res_blocks=num_res_blocks,
            norm_type=norm_type,
        )
        self.encoder = Encoder(
            trunk,
            Side(
                "encoder",
                encoder_conv_in,
                encoder_conv_out,
                encoder_attention,
                encoder_resnet_blocks,
                encoder_spatial_downsample,
                encoder_temporal_downsample,
                encoder_mid_resnet,
            ),
        )
        self.decoder = Decoder(
            trunk,
            Side(
                "decoder",
                decoder_conv_in,
                decoder_conv_out,
                decoder_attention,
                decoder_resnet_blocks,
                decoder_spatial_upsample,
                decoder_temporal_upsample,
                decoder_mid_resnet,
            ),
        )
        encoder, decoder = self.encoder, self.decoder
        if (encoder.time_factor, encoder.space_factor) != (
            decoder.time_factor,
            decoder.space_factor,
        ):
            raise AdapterError(
                "CausalVAEModel config: the decoder does not undo the encoder's compression "
                f"(encoder {encoder.time_factor}x{encoder.space_factor}x{encoder.space_factor}, "
                f"decoder {decoder.time_factor}x{decoder.space_factor}x{decoder.space_factor})"
            )
        self.temporal_factor = encoder.time_factor
        self.spatial_factor = encoder.space_factor
        self.latent_channels = embed_dim if use_quant_layer else z_channels
        self.use_quant_layer = use_quant_layer
        if use_quant_layer:
            conv = _pick(CONVS, "q_conv", q_conv)
            self.quant_conv = conv(2 * z_channels, 2 * embed_dim, 1)
            self.post_quant_conv = conv(embed_dim, z_channels, 1)

    def encode_moments(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior moments (mean, log-variance) ``[B, 2*latent, 1 + (T-1)/4, H/8, W/8]``."""
        h = self.encoder(x)
        return self.quant_conv(h) if self.use_quant_layer else h

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Video ``[B, 3, 1 + 4(T'-1), 8H', 8W']`` from an (unscaled) latent."""
        if self.use_quant_layer:
            z = self.post_quant_conv(z)
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction through the posterior mode."""
        mean = torch.chunk(self.encode_moments(x), 2, dim=1)[0]
        return self.decode_latent(mean)
