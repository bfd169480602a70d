"""WF-VAE's building blocks: causal 3D convolution, norms, ResNet and attention blocks,
spatial and spatio-temporal resampling.

Module and attribute names follow the release exactly, because they are the state-dict
keys of its checkpoints (``conv1.conv.weight``, ``norm1.norm.weight``, ``nin_shortcut``...).

The release's block-wise inference ("Causal Cache") is a per-module state: every causal
module either pads its first frame (first block, or a whole clip) or prepends the tail
frames it kept from the previous block. :class:`CausalStreaming` holds that state; the
model switches it for a whole encoder or decoder at once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def _frames_to_images(x: torch.Tensor) -> torch.Tensor:
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


def _images_to_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    bt, c, h, w = x.shape
    return x.reshape(bt // frames, frames, c, h, w).transpose(1, 2)


def per_frame(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Run a 2D operation on every frame of ``[B, C, T, H, W]`` (4D input passes through)."""
    if x.ndim != 5:
        return fn(x)
    return _images_to_frames(fn(_frames_to_images(x)), x.shape[2])


class CausalStreaming:
    """State of the release's causal cache, mixed into every module that needs it.

    ``cached``: keep what the next block needs. ``first_chunk``: this is the clip's
    first block (or the whole clip), so causal padding repeats frame 0. ``cache_offset``:
    how many trailing frames of a block belong to the one-latent-frame look-ahead the
    decoder appends, and must not be kept.
    """

    def __init__(self) -> None:
        self.cached = False
        self.first_chunk = True
        self.cache_offset = 0
        self._tail: torch.Tensor | None = None

    def reset_stream(self, cached: bool = False) -> None:
        self.cached = cached
        self.first_chunk = True
        self._tail = None


def _kept_frames(kernel: int, stride: int) -> int:
    """Frames the next block needs in front: ``ceil((k - 1) / s)``, none when ``k - 1 < s``
    (the release's rule, e.g. 2 for k3 s1, 1 for k3 s2, 0 for the k2 s2 wavelet)."""
    if (kernel - 1) // stride == 0:
        return 0
    return -(-(kernel - 1) // stride)


class CausalConv3d(CausalStreaming, nn.Module):
    """3D convolution, causal in time: ``k_t - 1`` copies of frame 0 (or the cached tail
    of the previous block) in front, no temporal padding at the end."""

    def __init__(
        self,
        chan_in: int,
        chan_out: int,
        kernel_size: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
        padding: int = 0,
        bias: bool = True,
    ) -> None:
        nn.Module.__init__(self)
        CausalStreaming.__init__(self)
        kernel = (kernel_size,) * 3 if isinstance(kernel_size, int) else tuple(kernel_size)
        strides = (stride,) * 3 if isinstance(stride, int) else tuple(stride)
        self.time_kernel, self.time_stride = kernel[0], strides[0]
        self.conv = nn.Conv3d(
            chan_in, chan_out, kernel, stride=strides, padding=(0, padding, padding), bias=bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.first_chunk:
            pad = x[:, :, :1].repeat(1, 1, self.time_kernel - 1, 1, 1)
        elif self._tail is not None:
            pad = self._tail
        else:
            raise RuntimeError("causal stream: a later block came before the first one")
        x = torch.cat([pad, x], dim=2)
        if self.cached:
            keep = _kept_frames(self.time_kernel, self.time_stride)
            source = (
                x if (self.cache_offset == 0 or self.first_chunk) else x[:, :, : -self.cache_offset]
            )
            self._tail = source[:, :, source.shape[2] - keep :].clone()
        return self.conv(x)


class Conv2d(nn.Conv2d):
    """A 2D convolution applied frame by frame to videos."""

    def _forward_2d(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return per_frame(self._forward_2d, x)


class LayerNorm(nn.Module):
    """Layer norm over channels at every position (keys ``<name>.norm.*``)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps, elementwise_affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.movedim(1, -1)
        return self.norm(x).movedim(-1, 1)


NORM_TYPES = ("groupnorm", "layernorm")


def normalization(channels: int, norm_type: str) -> nn.Module:
    """The release's ``Normalize``: GroupNorm(32, eps 1e-6) or channel LayerNorm(eps 1e-6).

    A 3D GroupNorm normalises over time too, so only ``layernorm`` keeps the model causal.
    """
    if norm_type == "groupnorm":
        return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)
    if norm_type == "layernorm":
        return LayerNorm(channels, eps=1e-6)
    raise ValueError(f"unknown norm_type {norm_type!r}; allowed: {', '.join(NORM_TYPES)}")


class ResnetBlock2D(nn.Module):
    """Pre-activation ResNet block on single frames (the encoder's first level)."""

    def __init__(self, in_channels: int, out_channels: int, norm_type: str, dropout: float):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = normalization(in_channels, norm_type)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = normalization(out_channels, norm_type)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def _forward_2d(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return per_frame(self._forward_2d, x)


class ResnetBlock3D(nn.Module):
    """Pre-activation ResNet block with causal 3x3x3 convolutions."""

    def __init__(self, in_channels: int, out_channels: int, norm_type: str, dropout: float):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = normalization(in_channels, norm_type)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3, padding=1)
        self.norm2 = normalization(out_channels, norm_type)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = CausalConv3d(in_channels, out_channels, 1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock3DFix(nn.Module):
    """Single-head self-attention over the pixels of each frame (no mixing across time)."""

    def __init__(self, in_channels: int, norm_type: str) -> None:
        super().__init__()
        self.norm = normalization(in_channels, norm_type)
        self.q = CausalConv3d(in_channels, in_channels, 1)
        self.k = CausalConv3d(in_channels, in_channels, 1)
        self.v = CausalConv3d(in_channels, in_channels, 1)
        self.proj_out = CausalConv3d(in_channels, in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        b, c, t, hh, ww = q.shape

        def tokens(y: torch.Tensor) -> torch.Tensor:
            return y.permute(0, 2, 3, 4, 1).reshape(b * t, hh * ww, c).contiguous()

        out = F.scaled_dot_product_attention(tokens(q), tokens(k), tokens(v))
        out = out.reshape(b, t, hh, ww, c).permute(0, 4, 1, 2, 3)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Spatial /2 per frame: zero pad right/bottom by 1, 3x3 stride-2 convolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=0)

    def _forward_2d(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return per_frame(self._forward_2d, x)


class Upsample(nn.Module):
    """Spatial x2 per frame: nearest neighbour, then a 3x3 convolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)

    def _forward_2d(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return per_frame(self._forward_2d, x)


class Spatial2xTime2x3DDownsample(nn.Module):
    """Space and time /2: zero pad right/bottom, causal 3x3x3 stride-2 convolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(in_channels, out_channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1, 0, 0)))


class Spatial2xTime2x3DUpsample(CausalStreaming, nn.Module):
    """Space and time x2 (``T -> 1 + 2(T - 1)``), then a causal 3x3x3 convolution.

    Frame 0 is only upsampled in space; the others are interpolated in time
    (``t_interpolation``) and then bilinearly in space. With ``trilinear``, frame ``i``'s
    second copy blends in frame ``i + 1``: that is why block-wise decoding looks one
    latent frame ahead. In a stream the block's first frame is interpolated together with
    the last real frame of the previous block (kept here), whose two outputs are dropped.
    A block of a single frame takes the frame-0 path, as in the release.
    """

    def __init__(self, in_channels: int, out_channels: int, t_interpolation: str, depth: int):
        nn.Module.__init__(self)
        CausalStreaming.__init__(self)
        self.t_interpolation = t_interpolation
        self.depth = depth
        self.conv = CausalConv3d(in_channels, out_channels, 3, padding=1)

    def _space(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=(1, 2, 2), mode="trilinear")

    def _time(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=(2, 1, 1), mode=self.t_interpolation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] == 1:
            x = self._space(x)
        elif self.cached:
            carried = self._tail is not None
            if carried:
                x = torch.cat([self._tail, x], dim=2)
            last = x.shape[2] - 2**self.depth
            self._tail = x[:, :, last - 1 : last].clone()
            x = self._time(x)
            if carried:
                x = x[:, :, 2:]
            x = self._space(x)
        else:
            head, rest = x[:, :, :1], x[:, :, 1:]
            x = torch.cat([self._space(head), self._space(self._time(rest))], dim=2)
        return self.conv(x)
