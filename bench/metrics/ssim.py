"""SSIM under the official WF-VAE evaluation convention, batched over frames and channels.

Convention: [0, 1] range, 11x11 Gaussian window with sigma 1.5 (OpenCV's
``getGaussianKernel(11, 1.5)``, also scikit-image's window for ``gaussian_weights=True,
sigma=1.5``), only the 'valid' region where the window fits (no padding), C1 = 0.01^2,
C2 = 0.03^2, population (not sample) covariances; mean over the map, then over channels,
frames and clips.

Arithmetic is float64 on every device: in float32 the variances E[x^2] - E[x]^2 of flat
regions lose about 1e-4 of SSIM to cancellation, far outside the 1e-5 agreement with the
official float64 script that the suite guarantees.

Planes (one channel of one frame) are filtered in chunks of ``chunk_pixels`` pixels.
On a CPU a cache-sized chunk is several times faster than streaming whole batches
through memory; on a GPU the default chunk holds typical batches whole, and the chunk
bounds the float64 working memory at high resolutions.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bench.metrics.base import VideoMetric

WINDOW = 11
SIGMA = 1.5
K1 = 0.01
K2 = 0.03
CPU_CHUNK_PIXELS = 2**17
DEVICE_CHUNK_PIXELS = 2**24


def gaussian_taps(size: int = WINDOW, sigma: float = SIGMA) -> list[float]:
    """Normalised 1-D Gaussian window; its outer product is the 2-D window."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    taps = torch.exp(-(offsets**2) / (2 * sigma**2))
    return (taps / taps.sum()).tolist()


def valid_filter(maps: Tensor, taps: list[float]) -> Tensor:
    """Separable correlation over the last two dims, keeping only the 'valid' region.

    A weighted sum of shifted views (one multiply-add per tap) stays exact in float64
    and avoids the slow float64 convolution kernels of CPUs.
    """
    size = len(taps)
    height, width = maps.shape[-2:]
    rows = maps[..., : height - size + 1, :] * taps[0]
    for k in range(1, size):
        rows.add_(maps[..., k : k + height - size + 1, :], alpha=taps[k])
    out = rows[..., : width - size + 1] * taps[0]
    for k in range(1, size):
        out.add_(rows[..., k : k + width - size + 1], alpha=taps[k])
    return out


def unit_statistics(target: Tensor, preds: Tensor) -> Tensor:
    """[4, N, H, W] float64 maps x, y, x^2 + y^2, x * y of [-1, 1] planes mapped to [0, 1].

    Written into one buffer in place: on a CPU, fresh allocations cost more than the
    arithmetic. x^2 + y^2 is one map because only the sum of the variances enters SSIM.
    """
    stats = torch.empty((4, *target.shape), dtype=torch.float64, device=target.device)
    x, y, squares, cross = stats.unbind(0)
    for unit, video in ((x, target), (y, preds)):
        unit.copy_(video).add_(1.0).mul_(0.5).clamp_(0.0, 1.0)
    torch.mul(x, x, out=squares).addcmul_(y, y)
    torch.mul(x, y, out=cross)
    return stats


def ssim_planes(target: Tensor, preds: Tensor, taps: list[float]) -> Tensor:
    """[N] mean SSIM of each [H, W] plane pair of [-1, 1] planes [N, H, W].

    The steps are ordered so that identical planes give exactly 1 (2 * cov and the
    variance sum then round identically).
    """
    c1 = K1**2
    c2 = K2**2
    mu_x, mu_y, sq_sum, cross = valid_filter(unit_statistics(target, preds), taps).unbind(0)
    mu_xy = mu_x * mu_y
    mu_sq_sum = mu_x.square_().add_(mu_y.square_())
    sigma_sq_sum = sq_sum.sub_(mu_sq_sum)
    sigma_xy = cross.sub_(mu_xy)
    numerator = mu_xy.mul_(2.0).add_(c1).mul_(sigma_xy.mul_(2.0).add_(c2))
    denominator = mu_sq_sum.add_(c1).mul_(sigma_sq_sum.add_(c2))
    return numerator.div_(denominator).mean(dim=(-2, -1))


class SSIM(VideoMetric):
    """Per-frame SSIM (official convention), mean over frames per clip."""

    name = "ssim"
    unit = ""
    higher_is_better = True

    def __init__(self, *, chunk_pixels: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if chunk_pixels is not None and chunk_pixels < 1:
            raise ValueError(f"chunk_pixels must be >= 1, got {chunk_pixels}")
        self.chunk_pixels = chunk_pixels
        self._taps = gaussian_taps()

    @property
    def protocol(self) -> str:
        return (
            f"ssim:range=[0,1];gaussian={WINDOW}x{WINDOW},sigma={SIGMA:g};valid;"
            f"k1={K1:g};k2={K2:g};channel-mean;frame-mean"
        )

    def _score(self, target: Tensor, preds: Tensor) -> tuple[Tensor, Tensor]:
        batch, channels, frames, height, width = target.shape
        if height < WINDOW or width < WINDOW:
            raise ValueError(
                f"SSIM needs frames of at least {WINDOW}x{WINDOW} pixels, got {height}x{width}"
            )
        chunk = self.chunk_pixels
        if chunk is None:
            chunk = CPU_CHUNK_PIXELS if target.device.type == "cpu" else DEVICE_CHUNK_PIXELS
        planes_per_chunk = max(1, chunk // (height * width))
        target_planes = target.reshape(-1, height, width)
        preds_planes = preds.reshape(-1, height, width)
        total = target_planes.shape[0]
        scores = [
            ssim_planes(
                target_planes[start : start + planes_per_chunk],
                preds_planes[start : start + planes_per_chunk],
                self._taps,
            )
            for start in range(0, total, planes_per_chunk)
        ]
        per_frame = torch.cat(scores).view(batch, channels, frames).mean(dim=1)
        return per_frame.mean(dim=1), per_frame
