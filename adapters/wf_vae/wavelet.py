"""One-level Haar wavelet transforms as WF-VAE uses them.

Two flavours: 2D (per frame, 4 sub-bands) and 3D (causal in time, 8 sub-bands). The
coefficients are laid out band-major, ``channel = band * C + c``, so ``coeffs[:, :C]``
is always the low-pass band: that is the layout the released checkpoints were trained on.

The 3D transform is causal like the model's convolutions: the first frame is paired
with itself (``x0, x0``), the later frames in pairs ``(x1, x2), (x3, x4), ...``, so a clip
of ``1 + 2k`` frames gives ``1 + k`` coefficient frames and the inverse drops the
duplicated frame again.

Normalisation: the 2D filters use the exact orthonormal ``1/2``; the release's 3D filters
use ``0.3536``, a rounding of ``2**-1.5 = 0.35355...``, so its 3D round trip scales by
``8 * 0.3536**2 = 1.000264`` instead of 1. The model keeps the release's constant (its
checkpoints carry it); the functions here take the scale as an argument so the exact
transform is available too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vae_bench.adapters.wf_vae.layers import CausalStreaming

HAAR_2D_SCALE = 0.5
HAAR_3D_SCALE_EXACT = 2.0**-1.5
HAAR_3D_SCALE_RELEASE = 0.3536

# Band names of the release (its state-dict keys). A band's bits say along which axes its
# filter takes differences: 3D bits (t, h, w) = (k >> 2, k >> 1, k) & 1; 2D bits
# (h, w) = (k, k >> 1) & 1.
BANDS_3D = ("h", "g", "hh", "gh", "h_v", "g_v", "hh_v", "gh_v")
BANDS_2D = ("aa", "ad", "da", "dd")


def _signs(bit: int) -> torch.Tensor:
    return torch.tensor([1.0, -1.0], dtype=torch.float64) if bit else torch.ones(2).double()


def haar_kernels_3d(
    scale: float = HAAR_3D_SCALE_EXACT, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The 8 filters ``[8, 2, 2, 2]`` (time, height, width), in the release's band order."""
    kernels = []
    for k in range(8):
        t, h, w = _signs((k >> 2) & 1), _signs((k >> 1) & 1), _signs(k & 1)
        kernels.append(t[:, None, None] * h[None, :, None] * w[None, None, :] * scale)
    return torch.stack(kernels).to(dtype)


def haar_kernels_2d(
    scale: float = HAAR_2D_SCALE, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The 4 filters ``[4, 2, 2]`` (height, width), in the release's band order."""
    kernels = []
    for k in range(4):
        h, w = _signs(k & 1), _signs((k >> 1) & 1)
        kernels.append(h[:, None] * w[None, :] * scale)
    return torch.stack(kernels).to(dtype)


def _band_major(out: torch.Tensor, batch: int, channels: int, bands: int) -> torch.Tensor:
    """``[B*C, bands, ...]`` -> ``[B, bands*C, ...]`` with channel = band * C + c."""
    rest = out.shape[2:]
    out = out.reshape(batch, channels, bands, *rest).transpose(1, 2)
    return out.reshape(batch, bands * channels, *rest)


def _per_channel(coeffs: torch.Tensor, bands: int) -> tuple[torch.Tensor, int, int]:
    """``[B, bands*C, ...]`` -> ``[B*C, bands, ...]`` (the inverse of :func:`_band_major`)."""
    batch, total = coeffs.shape[:2]
    if total % bands:
        raise ValueError(f"{total} coefficient channels are not a multiple of {bands} bands")
    channels = total // bands
    rest = coeffs.shape[2:]
    out = coeffs.reshape(batch, bands, channels, *rest).transpose(1, 2)
    return out.reshape(batch * channels, bands, *rest), batch, channels


def haar_2d(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Per-frame 2D analysis: ``[B, C, T, H, W] -> [B, 4C, T, H/2, W/2]``."""
    b, c, t, h, w = x.shape
    planes = x.reshape(b * c * t, 1, h, w)
    out = F.conv2d(planes, kernels.reshape(4, 1, 2, 2).to(x.dtype), stride=2)
    out = out.reshape(b, c, t, 4, h // 2, w // 2).permute(0, 3, 1, 2, 4, 5)
    return out.reshape(b, 4 * c, t, h // 2, w // 2)


def inverse_haar_2d(coeffs: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Per-frame 2D synthesis: ``[B, 4C, T, h, w] -> [B, C, T, 2h, 2w]``."""
    b, total, t, h, w = coeffs.shape
    c = total // 4
    planes = coeffs.reshape(b, 4, c, t, h, w).permute(0, 2, 3, 1, 4, 5)
    planes = planes.reshape(b * c * t, 4, h, w)
    out = F.conv_transpose2d(planes, kernels.reshape(4, 1, 2, 2).to(coeffs.dtype), stride=2)
    return out.reshape(b, c, t, 2 * h, 2 * w)


def haar_3d(x: torch.Tensor, kernels: torch.Tensor, causal_pad: bool = True) -> torch.Tensor:
    """Causal 3D analysis: ``[B, C, T, H, W] -> [B, 8C, T', H/2, W/2]``.

    With ``causal_pad`` the first frame is repeated once in front (``T' = (T + 1) / 2``);
    without it (a later block of a causal stream, or a plain block transform) ``T`` must
    be even and ``T' = T / 2``.
    """
    b, c = x.shape[:2]
    planes = x.reshape(b * c, 1, *x.shape[2:])
    if causal_pad:
        planes = torch.cat([planes[:, :, :1], planes], dim=2)
    out = F.conv3d(planes, kernels.reshape(8, 1, 2, 2, 2).to(x.dtype), stride=2)
    return _band_major(out, b, c, 8)


def inverse_haar_3d(
    coeffs: torch.Tensor, kernels: torch.Tensor, causal_pad: bool = True
) -> torch.Tensor:
    """Causal 3D synthesis, the inverse of :func:`haar_3d` with the same ``causal_pad``."""
    planes, b, c = _per_channel(coeffs, 8)
    out = F.conv_transpose3d(planes, kernels.reshape(8, 1, 2, 2, 2).to(coeffs.dtype), stride=2)
    if causal_pad:
        out = out[:, :, 1:]
    return out.reshape(b, c, *out.shape[2:])


class _FilterSlot(nn.Module):
    """Holds one fixed 3D filter where the release keeps it (``<band>_conv.conv.weight``)."""

    def __init__(self, kernel: torch.Tensor) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 1, 2, stride=2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(kernel.reshape(1, 1, 2, 2, 2))
        self.conv.weight.requires_grad_(False)


class Haar3D(CausalStreaming, nn.Module):
    """3D analysis with the release's filters as (frozen) parameters.

    In a causal stream, only the first block gets the repeated first frame; later blocks
    start on a pair boundary (the release keeps no frames for a stride-2 kernel of 2).
    """

    def __init__(self, scale: float = HAAR_3D_SCALE_RELEASE) -> None:
        nn.Module.__init__(self)
        CausalStreaming.__init__(self)
        for name, kernel in zip(BANDS_3D, haar_kernels_3d(scale), strict=True):
            setattr(self, f"{name}_conv", _FilterSlot(kernel))

    def kernels(self) -> torch.Tensor:
        return torch.cat([getattr(self, f"{name}_conv").conv.weight for name in BANDS_3D])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return haar_3d(x, self.kernels(), causal_pad=self.first_chunk)


class InverseHaar3D(CausalStreaming, nn.Module):
    """3D synthesis with the release's filters as buffers; drops the duplicated frame 0."""

    def __init__(self, scale: float = HAAR_3D_SCALE_RELEASE) -> None:
        nn.Module.__init__(self)
        CausalStreaming.__init__(self)
        for name, kernel in zip(BANDS_3D, haar_kernels_3d(scale), strict=True):
            self.register_buffer(name, kernel.reshape(1, 1, 2, 2, 2).clone())

    def kernels(self) -> torch.Tensor:
        return torch.cat([getattr(self, name) for name in BANDS_3D])

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        first = self.first_chunk or not self.cached
        return inverse_haar_3d(coeffs, self.kernels(), causal_pad=first)


class Haar2D(nn.Module):
    """Per-frame 2D analysis with the release's filters as buffers."""

    def __init__(self) -> None:
        super().__init__()
        for name, kernel in zip(BANDS_2D, haar_kernels_2d(), strict=True):
            self.register_buffer(name, kernel.reshape(1, 1, 2, 2).clone())

    def kernels(self) -> torch.Tensor:
        return torch.cat([getattr(self, name) for name in BANDS_2D])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return haar_2d(x, self.kernels())


class InverseHaar2D(Haar2D):
    """Per-frame 2D synthesis (same buffers as :class:`Haar2D`)."""

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        return inverse_haar_2d(coeffs, self.kernels())


HAAR_MODULES = (Haar3D, InverseHaar3D, Haar2D, InverseHaar2D)
