"""CVVAEModel: CV-VAE's video VAE (NeurIPS 2024), built from its released ``config.json``.

An SD-VAE-shaped encoder/decoder inflated to 3D so that its 4-channel latent stays
compatible with SD's: every ResNet block has a 3x3x3 first convolution and a per-frame
3x3 second one (the config's ``half_3d``); the encoder is causal in time (frame 0 repeated
in front), the decoder is not (zero padding in time, and its upsamplers replicate the edge
frames on both sides). Time is halved at the encoder's even levels and doubled at the
decoder's odd ones, so ``T = 1 + 4k`` frames give ``1 + k`` latent frames (8x8x4). The
encoder's mid attention is per frame; the decoder's is per frame, then along time at every
pixel, with one residual around both. There is no ``quant_conv``: the encoder's
``2 * z_channels`` outputs are the posterior's moments.

Names and constructor arguments are the release's (``CVVAEModel``), so its config and
``diffusion_pytorch_model.safetensors`` load unchanged. Group norms span the whole clip
(32 groups, eps 1e-5): a later frame moves the statistics of earlier ones. The release
briefly casts bfloat16 activations to float16 around its padding and nearest upsampling;
that round trip is exact in float16's range and is not repeated here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from vae_bench.adapters.base import AdapterError
from vae_bench.adapters.wf_vae.layers import Conv2d, per_frame, swish

Conv3dFactory = Callable[..., nn.Module]

# Config keys whose released value is the only one this implementation builds.
RELEASED: dict[str, Any] = {
    "double_z": True,
    "in_channels": 3,
    "out_ch": 3,
    "use_3d_conv": True,
    "half_3d": True,
    "causal_encoder": True,
    "causal_decoder": False,
    "encoder_attn_type": "vanilla-xformers",
    "decoder_attn_type": "spatial-temporal-xformer",
    "attn_resolutions": [],
    "num_video_frames": None,
    "reshape_z_dim_to_4": False,
    "reshape_x_dim_to_4": False,
}


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-5, affine=True)


def _front_pad(x: torch.Tensor, frames: int) -> torch.Tensor:
    """``frames`` copies of frame 0 in front (causal padding in time)."""
    return F.pad(x, (0, 0, 0, 0, frames, 0), mode="replicate") if frames else x


class CausalConv3d(nn.Conv3d):
    """3D convolution padded by zeros in space and by ``2 * padding`` copies of frame 0 in
    front in time (keys ``weight``/``bias``, as the release subclasses ``Conv3d`` too)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0):
        super().__init__(in_channels, out_channels, kernel_size, padding=0)
        self.causal_padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.causal_padding
        return super().forward(_front_pad(F.pad(x, (p, p, p, p, 0, 0)), 2 * p))


class ResnetBlock(nn.Module):
    """Pre-activation block: 3D ``conv1`` (causal or not), per-frame ``conv2``."""

    def __init__(self, in_channels: int, out_channels: int, conv3d: Conv3dFactory, dropout: float):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = group_norm(in_channels)
        self.conv1 = conv3d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = conv3d(in_channels, out_channels, kernel_size=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h


class Downsample(nn.Module):
    """Space /2 (zero pad right/bottom), and time /2 when ``time`` (``T -> 1 + (T-1)/2``):
    a 3x3x3 convolution after two copies of frame 0 in front."""

    def __init__(self, channels: int, time: bool) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, 3, stride=(2 if time else 1, 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(_front_pad(F.pad(x, (0, 1, 0, 1, 0, 0)), 2))


class Upsample(nn.Module):
    """Space x2 (nearest), and time x2 when ``time`` (``T -> 2T - 1``): a 3x3x3 convolution
    (edge frames replicated on both sides) gives two channel groups, interleaved in time
    as frames ``2t, 2t + 1``; the first frame is dropped."""

    def __init__(self, channels: int, time: bool) -> None:
        super().__init__()
        self.factor = 2 if time else 1
        self.conv = nn.Conv3d(channels, channels * self.factor, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        x = F.pad(F.pad(x, (1, 1, 1, 1, 0, 0)), (0, 0, 0, 0, 1, 1), mode="replicate")
        x = self.conv(x)
        if self.factor == 1:
            return x
        b, _, t, h, w = x.shape
        x = x.reshape(b, self.factor, -1, t, h, w).permute(0, 2, 3, 1, 4, 5)
        return x.reshape(b, -1, t * self.factor, h, w)[:, :, 1:]


class FrameAttention(nn.Module):
    """Single-head self-attention over the pixels of each frame (1x1 ``Conv2d`` q, k, v,
    ``proj_out``), normalised frame by frame."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.k = nn.Conv2d(channels, channels, kernel_size=1)
        self.v = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        b, c, hh, ww = h.shape

        def tokens(conv: nn.Module) -> torch.Tensor:
            return conv(h).reshape(b, c, hh * ww).transpose(1, 2)

        out = F.scaled_dot_product_attention(tokens(self.q), tokens(self.k), tokens(self.v))
        return self.proj_out(out.transpose(1, 2).reshape(b, c, hh, ww))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + per_frame(self._attend, x)


class SpaceTimeAttention(FrameAttention):
    """Frame attention, then single-head attention along time at every pixel (LayerNorm and
    ``Linear`` ``*_t`` layers), one residual around both (the decoder's mid block)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.q_t = nn.Linear(channels, channels)
        self.k_t = nn.Linear(channels, channels)
        self.v_t = nn.Linear(channels, channels)
        self.proj_out_t = nn.Linear(channels, channels)
        self.norm_t = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, hh, ww = x.shape
        spatial = per_frame(self._attend, x)
        h = self.norm_t(spatial.permute(0, 3, 4, 2, 1).reshape(b * hh * ww, t, c))
        out = F.scaled_dot_product_attention(self.q_t(h), self.k_t(h), self.v_t(h))
        out = self.proj_out_t(out).reshape(b, hh, ww, t, c).permute(0, 4, 3, 1, 2)
        return x + out


def _mid(channels: int, conv3d: Conv3dFactory, attention: type[nn.Module], dropout: float):
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels, conv3d, dropout)
    mid.attn_1 = attention(channels)
    mid.block_2 = ResnetBlock(channels, channels, conv3d, dropout)
    return mid


def _run_mid(mid: nn.Module, h: torch.Tensor) -> torch.Tensor:
    return mid.block_2(mid.attn_1(mid.block_1(h)))


class Encoder(nn.Module):
    """Causal: ``conv_in`` -> levels (ResNet blocks, then space /2 and, at even levels, time
    /2; none after the last) -> mid block (frame attention) -> norm, swish, ``conv_out``."""

    def __init__(
        self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, z_channels: int, dropout: float
    ) -> None:
        super().__init__()
        self.conv_in = CausalConv3d(3, ch, 3, padding=1)
        self.down = nn.ModuleList()
        block_in = ch
        for level, mult in enumerate(ch_mult):
            down = nn.Module()
            down.block = nn.ModuleList()
            for _ in range(num_res_blocks):
                down.block.append(ResnetBlock(block_in, ch * mult, CausalConv3d, dropout))
                block_in = ch * mult
            if level != len(ch_mult) - 1:
                down.downsample = Downsample(block_in, time=level % 2 == 0)
            self.down.append(down)
        self.mid = _mid(block_in, CausalConv3d, FrameAttention, dropout)
        self.norm_out = group_norm(block_in)
        self.conv_out = CausalConv3d(block_in, 2 * z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for down in self.down:
            for block in down.block:
                h = block(h)
            if hasattr(down, "downsample"):
                h = down.downsample(h)
        h = _run_mid(self.mid, h)
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    """Not causal: ``conv_in`` -> mid block (space-time attention) -> levels from the
    deepest (``num_res_blocks + 1`` ResNet blocks, then space x2 and, at odd levels, time
    x2) -> norm, swish, ``conv_out``."""

    def __init__(
        self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, z_channels: int, dropout: float
    ) -> None:
        super().__init__()
        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv3d(z_channels, block_in, 3, padding=1)
        self.mid = _mid(block_in, nn.Conv3d, SpaceTimeAttention, dropout)
        ups: list[nn.Module] = []
        for level in reversed(range(len(ch_mult))):
            up = nn.Module()
            up.block = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                up.block.append(ResnetBlock(block_in, ch * ch_mult[level], nn.Conv3d, dropout))
                block_in = ch * ch_mult[level]
            if level != 0:
                up.upsample = Upsample(block_in, time=level % 2 == 1)
            ups.insert(0, up)
        self.up = nn.ModuleList(ups)  # up[i] is level i, run from the deepest
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv3d(block_in, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = _run_mid(self.mid, self.conv_in(z))
        for up in reversed(self.up):
            for block in up.block:
                h = block(h)
            if hasattr(up, "upsample"):
                h = up.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


def factors(ch_mult: Sequence[int]) -> tuple[int, int]:
    """(spatial, temporal) compression: space /2 after every level but the last, time /2
    after the even ones among them."""
    resampled = range(len(ch_mult) - 1)
    return 2 ** len(resampled), 2 ** sum(1 for level in resampled if level % 2 == 0)


class CVVAEModel(ModelMixin, ConfigMixin):
    """The release's class (``_class_name: CVVAEModel``): its constructor arguments and
    defaults, state-dict names ``encoder.*``/``decoder.*``. The tiling arguments
    (``en_de_n_frames_a_time``, ``tile_spatial_size``, ``tile_overlap_ratio``) are the
    release's inference defaults; here they are inference modes of the adapter."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        double_z: bool = True,
        z_channels: int = 4,
        in_channels: int = 3,
        out_ch: int = 3,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 2, 4, 4),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (),
        dropout: float = 0.0,
        use_3d_conv: bool = True,
        half_3d: bool = True,
        causal_encoder: bool = True,
        causal_decoder: bool = False,
        encoder_attn_type: str = "vanilla-xformers",
        decoder_attn_type: str = "spatial-temporal-xformer",
        scaling_factor: float = 0.18215,
        force_upcast: bool = True,
        en_de_n_frames_a_time: int | None = 16,
        time_n_compress: int | None = 4,
        spatial_n_compress: int | None = 8,
        tile_spatial_size: int | None = 576,
        num_video_frames: int | None = None,
        tile_overlap_ratio: float | None = 0.2222,
        reshape_z_dim_to_4: bool = False,
        reshape_x_dim_to_4: bool = False,
    ) -> None:
        super().__init__()
        given = dict(locals())
        for key, released in RELEASED.items():
            value = list(given[key]) if isinstance(given[key], list | tuple) else given[key]
            if value != released:
                raise AdapterError(
                    f"CVVAEModel config: {key} = {given[key]!r} is not supported "
                    f"(only {released!r}, as released)"
                )
        self.spatial_factor, self.temporal_factor = factors(ch_mult)
        for key, value, built in (
            ("spatial_n_compress", spatial_n_compress, self.spatial_factor),
            ("time_n_compress", time_n_compress, self.temporal_factor),
        ):
            if value is not None and value != built:
                raise AdapterError(
                    f"CVVAEModel config: {key} = {value} but ch_mult {list(ch_mult)} "
                    f"compresses by {built}"
                )
        self.latent_channels = z_channels
        args = (ch, tuple(ch_mult), num_res_blocks, z_channels, dropout)
        self.encoder = Encoder(*args)
        self.decoder = Decoder(*args)

    def encode_moments(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior moments (mean, log-variance) ``[B, 2*z, 1 + (T-1)/4, H/8, W/8]``."""
        return self.encoder(x)

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Video ``[B, 3, 1 + 4(T'-1), 8H', 8W']`` from an (unscaled) latent."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction through the posterior mode."""
        return self.decode_latent(torch.chunk(self.encode_moments(x), 2, dim=1)[0])
