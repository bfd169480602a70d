"""Inflated Inception-v1 (I3D) in the pytorch-i3d layout used by VideoGPT, TATS and cd-fvd.

The module and parameter names match that layout exactly (``Conv3d_1a_7x7.conv3d.weight``,
``Mixed_3b.b1b.bn.running_var``, ``logits.conv3d.bias``, ...), so the released
``i3d_pretrained_400.pt`` state dict loads with a strict key match. Convolutions and max
pools pad "same" as TensorFlow does (the original I3D is a TF model): the padding is
computed from the input size at run time, split with the smaller half in front, and filled
with zeros. The head averages a 2x7x7 window (stride 1, no padding) and then the logits
over the remaining time steps, so an input needs at least ``MIN_FRAMES`` frames and
``MIN_SIZE`` pixels per side: the network downsamples time by 8 and space by 32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_CLASSES = 400
#: ceil(T / 8) >= 2 for the 2-frame temporal average of the head.
MIN_FRAMES = 9
#: ceil(S / 32) >= 7 for the 7x7 spatial average of the head.
MIN_SIZE = 193

Triple = tuple[int, int, int]

# (branch widths: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | pool -> 1x1) per Inception block.
_MIXED: dict[str, tuple[int, int, int, int, int, int]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


def _triple(value: int | Sequence[int]) -> Triple:
    if isinstance(value, int):
        return (value, value, value)
    t, h, w = value
    return (int(t), int(h), int(w))


def same_padding(size: Sequence[int], kernel: Triple, stride: Triple) -> tuple[int, ...]:
    """TensorFlow 'SAME' padding for a [T, H, W] input, in ``F.pad`` order (W, H, T)."""
    pads: list[int] = []
    for length, k, s in zip(reversed(size), reversed(kernel), reversed(stride), strict=True):
        total = max(k - (s if length % s == 0 else length % s), 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


class MaxPool3dSamePadding(nn.MaxPool3d):
    """Max pool with TF 'SAME' zero padding (inputs follow a ReLU, so zeros never win)."""

    def __init__(self, kernel_size: int | Sequence[int], stride: int | Sequence[int]) -> None:
        super().__init__(kernel_size=_triple(kernel_size), stride=_triple(stride), padding=0)

    def forward(self, x: Tensor) -> Tensor:
        pad = same_padding(x.shape[2:], _triple(self.kernel_size), _triple(self.stride))
        return super().forward(F.pad(x, pad))


class Unit3D(nn.Module):
    """Conv3d with 'SAME' padding, then optional batch norm and activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int | Sequence[int] = 1,
        stride: int | Sequence[int] = 1,
        *,
        batch_norm: bool = True,
        bias: bool = False,
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.kernel = _triple(kernel)
        self.stride = _triple(stride)
        self.relu = relu
        self.conv3d = nn.Conv3d(
            in_channels, out_channels, self.kernel, stride=self.stride, padding=0, bias=bias
        )
        # eps and momentum as in the VideoGPT/TATS layout that i3d_pretrained_400.pt uses.
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-5, momentum=0.001) if batch_norm else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3d(F.pad(x, same_padding(x.shape[2:], self.kernel, self.stride)))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class InceptionModule(nn.Module):
    """Four parallel branches concatenated on channels."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.out_channels = w0 + w1b + w2b + w3
        self.b0 = Unit3D(in_channels, w0)
        self.b1a = Unit3D(in_channels, w1a)
        self.b1b = Unit3D(w1a, w1b, 3)
        self.b2a = Unit3D(in_channels, w2a)
        self.b2b = Unit3D(w2a, w2b, 3)
        self.b3a = MaxPool3dSamePadding(3, 1)
        self.b3b = Unit3D(in_channels, w3)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(
            [
                self.b0(x),
                self.b1b(self.b1a(x)),
                self.b2b(self.b2a(x)),
                self.b3b(self.b3a(x)),
            ],
            dim=1,
        )


class InceptionI3d(nn.Module):
    """I3D classifier; ``forward`` returns the time-averaged pre-softmax logits [B, classes].

    Dropout sits before the logits as in the reference layout and is inert in eval mode,
    which is how feature extraction runs.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, in_channels: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, 7, 2)
        self.MaxPool3d_2a_3x3 = MaxPool3dSamePadding((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, 3)
        self.MaxPool3d_3a_3x3 = MaxPool3dSamePadding((1, 3, 3), (1, 2, 2))
        channels = 192
        for name, widths in _MIXED.items():
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = MaxPool3dSamePadding(3, 2)
            if name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPool3dSamePadding(2, 2)
            block = InceptionModule(channels, widths)
            self.add_module(name, block)
            channels = block.out_channels
        self.feature_channels = channels
        self.avg_pool = nn.AvgPool3d(kernel_size=(2, 7, 7), stride=1)
        self.dropout = nn.Dropout(0.5)
        self.logits = Unit3D(channels, num_classes, batch_norm=False, bias=True, relu=False)

    @staticmethod
    def check_input(x: Tensor) -> None:
        """Name the minimum clip size instead of failing deep inside the pooling head."""
        if x.ndim != 5:
            raise ValueError(f"I3D takes [B, C, T, H, W] videos, got shape {tuple(x.shape)}")
        t, h, w = x.shape[2:]
        if t < MIN_FRAMES or h < MIN_SIZE or w < MIN_SIZE:
            raise ValueError(
                f"I3D needs clips of at least {MIN_FRAMES} frames and {MIN_SIZE}x{MIN_SIZE} "
                f"pixels (time /8 and space /32 before a 2x7x7 average); got T={t}, {h}x{w}"
            )

    def trunk(self, x: Tensor) -> Tensor:
        """The convolutional trunk up to Mixed_5c: [B, 1024, ceil(T/8), ceil(H/32), ceil(W/32)]."""
        x = self.Conv3d_1a_7x7(x)
        x = self.MaxPool3d_2a_3x3(x)
        x = self.Conv3d_2b_1x1(x)
        x = self.Conv3d_2c_3x3(x)
        x = self.MaxPool3d_3a_3x3(x)
        for name in _MIXED:
            if name == "Mixed_4b":
                x = self.MaxPool3d_4a_3x3(x)
            if name == "Mixed_5b":
                x = self.MaxPool3d_5a_2x2(x)
            x = getattr(self, name)(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        x = self.logits(self.dropout(self.avg_pool(self.trunk(x))))
        return x.mean(dim=(3, 4)).mean(dim=2)


def trunk_shape(frames: int, height: int, width: int) -> Triple:
    """[T, H, W] of the trunk's output for an input clip (for shape checks and docs)."""
    return (math.ceil(frames / 8), math.ceil(height / 32), math.ceil(width / 32))
