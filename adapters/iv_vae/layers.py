"""IV-VAE's building blocks: two-branch ("split") convolutions, group causal convolution,
norms, per-frame attention, resampling and residual blocks.

Every feature map carries two halves along the channel axis: the first follows the
keyframe (image) branch, the second the temporal branch. A split convolution reads all
channels and writes each half with its own kernel: a per-frame 2D convolution for the
keyframe half and a group causal 3D convolution for the temporal half.

Group causal convolution (GCConv): frames are cut into groups of ``group`` frames; inside
a group the temporal kernel sees its neighbours as an ordinary convolution would, the
frame after a group's end is zero, and the frame before a group's start is the last frame
of the previous group. A clip's first frame is a group of its own and sees itself as its
predecessor. So a group never depends on any later group.

Layout: inside the network a feature map is frames-major, ``[B, T, C, H, W]``, so per-frame
2D operations fold frames into the batch without copying. Module and attribute names are
the release's (``conv_2d``, ``conv_3d``, ``resample_2d.1``, ``PAC_conv``...) because they
are the state-dict keys of its checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def per_frame(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Run a 2D operation on every frame of a frames-major ``[B, T, C, H, W]`` map."""
    return fn(x.flatten(0, 1)).unflatten(0, x.shape[:2])


class TailCache:
    """The context one pass over a clip hands to the next.

    A clip runs as a first pass over its first frame (``first``), then passes over whole
    groups. Each group causal layer keeps the last frame of its input from the previous
    pass: the predecessor of the next pass's first group.
    """

    def __init__(self) -> None:
        self.first = True
        self._tails: dict[nn.Module, torch.Tensor] = {}

    def swap(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
        """The tail ``layer`` kept from the previous pass; keeps the tail of ``x``."""
        previous = self._tails.get(layer)
        self._tails[layer] = x[:, -1:].clone()  # a copy: the pass's activations can go
        return previous


class GroupCausalConv3d(nn.Conv3d):
    """Cubic 3D convolution (kernel 1 or 3), group causal in time, zero-padded in space."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, group: int) -> None:
        if kernel not in (1, 3):
            raise ValueError(f"group causal convolution takes kernel 1 or 3, got {kernel}")
        pad = kernel // 2
        super().__init__(in_channels, out_channels, kernel, padding=(0, pad, pad))
        self.group = group

    def forward(self, x: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``[B, T, C, H, W]``; ``previous``: the frame before ``x`` (``[B, 1, C, H,
        W]``), or ``None`` when ``x`` is a clip's first frame."""
        b, t, c, h, w = x.shape
        if self.kernel_size[0] == 1:  # no temporal extent: a per-frame 1x1 convolution
            return per_frame(lambda f: F.conv2d(f, self.weight[:, :, 0], self.bias), x)
        if previous is None:
            if t != 1:
                raise ValueError(f"a clip's first pass holds one frame, got {t}")
            padded = torch.cat([x, x, torch.zeros_like(x)], dim=1).transpose(1, 2)
            return super().forward(padded).transpose(1, 2)
        g = self.group
        if t % g:
            raise ValueError(f"{t} frames do not split into groups of {g}")
        n = t // g
        groups = x.view(b, n, g, c, h, w)
        padded = x.new_zeros(b, n, c, g + 2, h, w)  # [predecessor, group, zero]
        padded[:, :, :, 1 : g + 1] = groups.transpose(2, 3)
        padded[:, 0, :, 0] = previous[:, 0]
        padded[:, 1:, :, 0] = groups[:, :-1, -1]
        y = super().forward(padded.view(b * n, c, g + 2, h, w))
        return y.view(b, n, -1, g, h, w).transpose(2, 3).reshape(b, t, -1, h, w)


class SplitConv3d(nn.Module):
    """Keyframe half by a per-frame 2D convolution, temporal half by a group causal 3D
    convolution; both read every input channel. The release's ``Sep_Conv3d`` and
    ``First_Sep_Conv3d``."""

    def __init__(
        self, in_channels: int, out_2d: int, out_3d: int, kernel: int, group: int = 1
    ) -> None:
        super().__init__()
        self.conv_2d = nn.Conv2d(in_channels, out_2d, kernel, padding=kernel // 2)
        self.conv_3d = GroupCausalConv3d(in_channels, out_3d, kernel, group)

    def forward(self, x: torch.Tensor, cache: TailCache | None = None) -> torch.Tensor:
        previous = None
        if self.conv_3d.kernel_size[0] > 1:
            if cache is None:
                raise ValueError("a temporal convolution needs the pass's TailCache")
            previous = cache.swap(self, x)
        return torch.cat([per_frame(self.conv_2d, x), self.conv_3d(x, previous)], dim=2)


class SplitConv2d(nn.Module):
    """One 2D convolution over all channels, per frame (the release's ``Sep_Conv2d`` and
    its dilated variant)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel, padding=dilation * (kernel // 2), dilation=dilation
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return per_frame(self.conv, x)


class SplitRMSNorm(nn.Module):
    """RMS norm of each half separately (unit L2 norm times ``sqrt(dim)``), one gain per
    channel of both halves; no bias."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(2 * dim, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        halves = F.normalize(x.unflatten(2, (2, self.dim)), dim=3).flatten(2, 3)
        return halves * self.scale * self.gamma.view(-1, 1, 1)


class RMSNorm2d(nn.Module):
    """RMS norm over the channels of ``[N, C, H, W]`` images; no bias."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma


class FrameAttention(nn.Module):
    """Single-head self-attention over the pixels of each frame, with a residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMSNorm2d(dim)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        # [N, 1, HW, 3C], channels last in memory, as fused attention kernels want it
        qkv = self.to_qkv(self.norm(x)).flatten(2).transpose(1, 2).contiguous().unsqueeze(1)
        q, k, v = qkv.chunk(3, dim=-1)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.squeeze(1).transpose(1, 2).reshape(n, c, h, w)) + x


class SplitAttention(nn.Module):
    """One :class:`FrameAttention` per half."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.Attention_2d = FrameAttention(dim)
        self.Attention_3d = FrameAttention(dim)

    def forward(self, x: torch.Tensor, cache: TailCache | None = None) -> torch.Tensor:
        def attend(f: torch.Tensor) -> torch.Tensor:
            d = self.dim
            return torch.cat([self.Attention_2d(f[:, :d]), self.Attention_3d(f[:, d:])], dim=1)

        return per_frame(attend, x)


RESAMPLE_MODES = ("downsample2d", "downsample3d", "upsample2d", "upsample3d")


class Resample(nn.Module):
    """Space /2 or x2 for each half (its own 2D convolution); with ``3d``, time too, outside
    a clip's first pass.

    Time /2: the keyframe half keeps every other frame (the first of each pair), the
    temporal half mixes each pair with a stride-2 convolution. Time x2: the keyframe half
    repeats each frame, the temporal half makes two frames from each by a 1x1x1
    convolution with two output phases. Space x2 halves the channels of each half.
    """

    def __init__(self, dim: int, mode: str) -> None:
        if mode not in RESAMPLE_MODES:
            raise ValueError(f"resample mode {mode!r}; allowed: {', '.join(RESAMPLE_MODES)}")
        super().__init__()
        self.dim = dim
        self.mode = mode
        for name in ("resample_2d", "resample_3d"):
            if mode.startswith("up"):
                layers = [
                    nn.Upsample(scale_factor=(2.0, 2.0), mode="nearest-exact"),
                    nn.Conv2d(dim, dim // 2, 3, padding=1),
                ]
            else:  # pad right and bottom, then a strided 3x3: H/2 for even H
                layers = [nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2)]
            self.add_module(name, nn.Sequential(*layers))
        if mode == "upsample3d":
            self.time_conv = nn.Conv3d(dim, dim * 2, 1)
        elif mode == "downsample3d":
            self.time_conv = nn.Conv3d(dim, dim, (2, 1, 1), stride=(2, 1, 1))

    def forward(self, x: torch.Tensor, cache: TailCache) -> torch.Tensor:
        keyframe, temporal = x[:, :, : self.dim], x[:, :, self.dim :]
        in_time = self.mode.endswith("3d") and not cache.first
        if in_time and self.mode == "upsample3d":
            keyframe, temporal = self._double(keyframe, temporal)
        keyframe = per_frame(self.resample_2d, keyframe)
        temporal = per_frame(self.resample_3d, temporal)
        if in_time and self.mode == "downsample3d":
            keyframe, temporal = self._halve(keyframe, temporal)
        return torch.cat([keyframe, temporal], dim=2)

    def _double(
        self, keyframe: torch.Tensor, temporal: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, c, h, w = keyframe.shape
        keyframe = keyframe.unsqueeze(2).expand(b, t, 2, c, h, w).reshape(b, 2 * t, c, h, w)
        # output channels [phase 0 | phase 1] become frames 2t and 2t + 1
        weight = self.time_conv.weight[:, :, 0]
        phases = per_frame(lambda f: F.conv2d(f, weight, self.time_conv.bias), temporal)
        return keyframe, phases.reshape(b, 2 * t, c, h, w)

    def _halve(
        self, keyframe: torch.Tensor, temporal: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, c, h, w = temporal.shape
        if t % 2:
            raise ValueError(f"temporal downsampling needs an even frame count, got {t}")
        # a (2, 1, 1) kernel with stride 2 in time is a 1x1 convolution over frame pairs
        weight = self.time_conv.weight.transpose(1, 2).reshape(c, 2 * c, 1, 1)
        pairs = temporal.reshape(b, t // 2, 2 * c, h, w)
        mixed = per_frame(lambda f: F.conv2d(f, weight, self.time_conv.bias), pairs)
        return keyframe[:, ::2], mixed


class ResidualBlock3d(nn.Module):
    """Norm, SiLU, split 3x3x3 convolution, twice, plus a (1x1x1 split) shortcut."""

    def __init__(self, in_dim: int, out_dim: int, group: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            SplitRMSNorm(in_dim),
            nn.SiLU(),
            SplitConv3d(2 * in_dim, out_dim, out_dim, 3, group),
            SplitRMSNorm(out_dim),
            nn.SiLU(),
            nn.Dropout(dropout),
            SplitConv3d(2 * out_dim, out_dim, out_dim, 3, group),
        )
        self.shortcut: nn.Module = (
            SplitConv3d(2 * in_dim, out_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()
        )

    def forward(self, x: torch.Tensor, cache: TailCache) -> torch.Tensor:
        skip = self.shortcut(x)
        for layer in self.residual:
            x = layer(x, cache) if isinstance(layer, SplitConv3d) else layer(x)
        return x + skip


class ResidualBlock2d(nn.Module):
    """Norm, SiLU, 3x3 convolution over all channels, twice, plus a 1x1 shortcut; per
    frame."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            SplitRMSNorm(in_dim),
            nn.SiLU(),
            SplitConv2d(2 * in_dim, 2 * out_dim, 3),
            SplitRMSNorm(out_dim),
            nn.SiLU(),
            nn.Dropout(dropout),
            SplitConv2d(2 * out_dim, 2 * out_dim, 3),
        )
        self.shortcut: nn.Module = (
            SplitConv2d(2 * in_dim, 2 * out_dim, 1) if in_dim != out_dim else nn.Identity()
        )

    def forward(self, x: torch.Tensor, cache: TailCache | None = None) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


PYRAMID_DILATIONS = (0, 1, 3, 6, 9, 12)  # PAC_0 is a 1x1 convolution, the rest 3x3


class PyramidHead(nn.Module):
    """The encoder's output head (the release's ``PAC``): a 1x1 and five 3x3 convolutions
    (dilations 1 to 12) over all channels, their keyframe halves then their temporal halves
    concatenated, and a 1x1 convolution to ``out_dim`` channels per half."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.out_dim = out_dim
        for dilation in PYRAMID_DILATIONS:
            kernel = 1 if dilation == 0 else 3
            conv = SplitConv2d(2 * in_dim, 2 * out_dim, kernel, max(dilation, 1))
            self.add_module(f"PAC_{dilation}", conv)
        n = len(PYRAMID_DILATIONS)
        self.PAC_conv = SplitConv2d(2 * n * out_dim, 2 * out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [getattr(self, f"PAC_{d}")(x) for d in PYRAMID_DILATIONS]
        d = self.out_dim
        halves = [y[:, :, :d] for y in branches] + [y[:, :, d:] for y in branches]
        return self.PAC_conv(torch.cat(halves, dim=2))
