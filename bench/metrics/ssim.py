"""SSIM under the official WF-VAE evaluation convention, batched over frames and channels.

Convention: [0, 1] range, 11x11 Gaussian window with sigma 1.5 (OpenCV's
``getGaussianKernel(11, 1.5)``, also scikit-image's window for ``gaussian_weights=True,
sigma=1.5``), only the 'valid' region where the window fits (no padding), C1 = 0.01^2,
C2 = 0.03^2, population (not sample) covariances; mean over the map, then over channels,
frames and clips.

Arithmetic is float32 (float64 for float64 input) on planes centred on their own mean:
the local variances E[x^2] - E[x]^2 cancel badly where the image is flat, and the
rounding error of that cancellation scales with the magnitude of x. Centring shrinks it
by two to four orders (flat white or black areas lose < 2e-8 of SSIM instead of ~4e-6),
well inside the 1e-5 agreement with the official float64 script that the suite
guarantees, at half the memory traffic of float64.

Planes (one channel of one frame) are filtered in chunks of ``chunk_pixels`` pixels.
On a CPU a cache-sized chunk is several times faster than streaming whole batches
through memory; on a GPU the default chunk holds typical batches whole, and the chunk
bounds the working memory at high resolutions.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from vae_bench.metrics.base import VideoMetric

WINDOW = 11
SIGMA = 1.5
K1 = 0.01
K2 = 0.03
CPU_CHUNK_PIXELS = 2**18
DEVICE_CHUNK_PIXELS = 2**24


def gaussian_taps(size: int = WINDOW, sigma: float = SIGMA) -> list[float]:
    """Normalised 1-D Gaussian window; its outer product is the 2-D window."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    taps = torch.exp(-(offsets**2) / (2 * sigma**2))
    return (taps / taps.sum()).tolist()


def valid_filter(maps: Tensor, taps: list[float]) -> Tensor:
    """Separable correlation over the last two dims, keeping only the 'valid' region.

    A weighted sum of shifted views (one multiply-add per tap) is exact to rounding on
    every device and beats the CPU's single-channel convolution kernels.
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


def working_dtype(video: Tensor) -> torch.dtype:
    """float32, or float64 when the input already is float64."""
    return torch.promote_types(video.dtype, torch.float32)


def centred_statistics(target: Tensor, preds: Tensor) -> tuple[Tensor, Tensor]:
    """[4, N, H, W] maps x, y, x^2 + y^2, x * y and the [N, 1, 1] centre of x.

    x and y are the [0, 1] planes minus the mean of the target plane (the same constant
    for both, so variances and covariances are unchanged). Written into one buffer in
    place: on a CPU, fresh allocations cost more than the arithmetic. x^2 + y^2 is one
    map because only the sum of the variances enters SSIM.
    """
    stats = torch.empty((4, *target.shape), dtype=working_dtype(target), device=target.device)
    x, y, squares, cross = stats.unbind(0)
    torch.clamp(target, -1.0, 1.0, out=x).mul_(0.5)  # [0, 1] value minus 0.5
    torch.clamp(preds, -1.0, 1.0, out=y).mul_(0.5)
    offset = x.mean(dim=(-2, -1), keepdim=True)
    x.sub_(offset)
    y.sub_(offset)
    torch.mul(x, x, out=squares).addcmul_(y, y)
    torch.mul(x, y, out=cross)
    return stats, offset.add_(0.5)


def ssim_planes(target: Tensor, preds: Tensor, taps: list[float]) -> Tensor:
    """[N] float64 mean SSIM of each [H, W] plane pair of [-1, 1] planes [N, H, W].

    The steps are ordered so that identical planes give exactly 1 (2 * cov and the
    variance sum then round identically).
    """
    c1 = K1**2
    c2 = K2**2
    stats, centre = centred_statistics(target, preds)
    mu_x, mu_y, sq_sum, cross = valid_filter(stats, taps).unbind(0)
    sigma_sq_sum = sq_sum.sub_(torch.mul(mu_x, mu_x).add_(mu_y * mu_y))
    sigma_xy = cross.sub_(mu_x * mu_y)
    mu_x.add_(centre)
    mu_y.add_(centre)
    mu_xy = mu_x * mu_y
    mu_sq_sum = mu_x.square_().add_(mu_y.square_())
    numerator = mu_xy.mul_(2.0).add_(c1).mul_(sigma_xy.mul_(2.0).add_(c2))
    denominator = mu_sq_sum.add_(c1).mul_(sigma_sq_sum.add_(c2))
    return numerator.div_(denominator).mean(dim=(-2, -1), dtype=torch.float64)


class SSIM(VideoMetric):
    """Per-frame SSIM (official convention), mean over frames per clip."""

    name = "ssim"

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
