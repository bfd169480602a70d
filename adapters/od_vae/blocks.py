"""The CausalVideoVAE blocks that WF-VAE does not share: separate spatial and temporal
resampling (Open-Sora Plan v1.0/v1.1 layouts) and the older attention blocks.

The blocks WF-VAE uses too (causal 3D convolution, ResNet blocks, ``AttnBlock3DFix``,
``Downsample``, ``Spatial2xTime2x3D*``) come from :mod:`vae_bench.adapters.wf_vae.layers`: the maths
and the state-dict names are the same. Attribute names here are the release's, because
they are checkpoint keys (``conv.conv.weight``, ``mix_factor``...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vae_bench.adapters.wf_vae.layers import AttnBlock3DFix, CausalConv3d, normalization, per_frame


def _prepend_first(x: torch.Tensor, copies: int) -> torch.Tensor:
    """Causal padding in time: ``copies`` repeats of frame 0 in front."""
    return torch.cat([x[:, :, :1].repeat(1, 1, copies, 1, 1), x], dim=2)


def _upsample_time(x: torch.Tensor) -> torch.Tensor:
    """``T -> 1 + 2(T - 1)``: frame 0 kept, the others linearly interpolated x2 in time."""
    if x.shape[2] == 1:
        return x
    rest = F.interpolate(x[:, :, 1:], scale_factor=(2.0, 1.0, 1.0), mode="trilinear")
    return torch.cat([x[:, :, :1], rest], dim=2)


class SpatialDownsample2x(nn.Module):
    """Space /2 in every frame: zero pad right/bottom, causal (1, 3, 3) stride-(1, 2, 2) conv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(in_channels, out_channels, (1, 3, 3), stride=(1, 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1, 0, 0)))


class SpatialUpsample2x(nn.Module):
    """Space x2 in every frame: nearest neighbour, then a (1, 3, 3) convolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(in_channels, out_channels, (1, 3, 3), padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest"))


class TimeDownsample2x(nn.Module):
    """Time /2 without parameters: a causal 3-frame average with stride 2 (``T -> 1 + (T-1)/2``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _prepend_first(x, self.kernel_size - 1)
        return F.avg_pool3d(x, (self.kernel_size, 1, 1), stride=(2, 1, 1))


class TimeUpsample2x(nn.Module):
    """Time x2 without parameters (``T -> 1 + 2(T - 1)``), trilinear in time."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _upsample_time(x)


class TimeDownsampleRes2x(nn.Module):
    """Time /2 as ``a * average + (1 - a) * conv`` with ``a = sigmoid(mix_factor)``.

    The convolution is a plain ``Conv3d`` (stride 2 in time, padded in space only) on the
    same causally padded input, as released (keys ``conv.weight``, not ``conv.conv.weight``).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, mix_factor: float = 2.0
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv3d(
            in_channels, out_channels, kernel_size, stride=(2, 1, 1), padding=(0, 1, 1)
        )
        self.mix_factor = nn.Parameter(torch.tensor([mix_factor]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = torch.sigmoid(self.mix_factor)
        x = _prepend_first(x, self.kernel_size - 1)
        average = F.avg_pool3d(x, (self.kernel_size, 1, 1), stride=(2, 1, 1))
        return alpha * average + (1 - alpha) * self.conv(x)


class TimeUpsampleRes2x(nn.Module):
    """Time x2 as ``a * up + (1 - a) * conv(up)``: trilinear upsampling mixed with a causal conv."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, mix_factor: float = 2.0
    ) -> None:
        super().__init__()
        self.conv = CausalConv3d(in_channels, out_channels, kernel_size, padding=1)
        self.mix_factor = nn.Parameter(torch.tensor([mix_factor]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = torch.sigmoid(self.mix_factor)
        x = _upsample_time(x)
        return alpha * x + (1 - alpha) * self.conv(x)


class AttnBlock3D(AttnBlock3DFix):
    """The v1.0 attention, kept for its checkpoints: same weights as ``AttnBlock3DFix`` but
    the tokens are read by reshaping ``[B, C, T, H, W]`` straight to ``[B*T, C, H*W]``,
    which mixes channels and frames (the release calls it "compatible with old versions,
    there are issues"). Reproduced as is, so those weights give their trained output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        b, c, t, hh, ww = q.shape

        def tokens(y: torch.Tensor) -> torch.Tensor:
            return y.reshape(b * t, c, hh * ww).transpose(1, 2)

        out = F.scaled_dot_product_attention(tokens(q), tokens(k), tokens(v))
        return x + self.proj_out(out.transpose(1, 2).reshape(b, c, t, hh, ww))


class AttnBlock(nn.Module):
    """Single-head self-attention inside each frame with 2D 1x1 convolutions (keys
    ``q.weight``...), normalised frame by frame."""

    def __init__(self, in_channels: int, norm_type: str) -> None:
        super().__init__()
        self.norm = normalization(in_channels, norm_type)
        self.q = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.k = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.v = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.proj_out = nn.Conv2d(in_channels, in_channels, kernel_size=1)

    def _forward_2d(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        b, c, hh, ww = q.shape

        def tokens(y: torch.Tensor) -> torch.Tensor:
            return y.reshape(b, c, hh * ww).transpose(1, 2)

        out = F.scaled_dot_product_attention(tokens(q), tokens(k), tokens(v))
        return x + self.proj_out(out.transpose(1, 2).reshape(b, c, hh, ww))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return per_frame(self._forward_2d, x)
