"""Frame-by-frame numpy/OpenCV re-implementation of the official WF-VAE evaluation rules.

Written from the conventions of WF-VAE's ``causalvideovae/eval/cal_psnr.py`` and
``cal_ssim.py`` (videos in [0, 1], float64):

- PSNR: per frame ``20 * log10(1 / sqrt(MSE))`` (data range 1), mean over every frame of
  every clip in the batch; a batch whose mean is infinite scores 100.
- SSIM: per frame and per channel, ``cv2.filter2D`` with the outer product of
  ``cv2.getGaussianKernel(11, 1.5)``, cropped by 5 pixels on each side (the 'valid'
  region), C1 = 0.01^2, C2 = 0.03^2, map mean; mean over channels; mean over clips at
  each frame index.

It loops in Python on purpose: it is the slow, obviously-correct reference that the
batched metrics are checked and timed against.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

OFFICIAL_INF_PSNR = 100.0


def frame_psnr(frame1: np.ndarray, frame2: np.ndarray) -> float:
    """PSNR of one [C, H, W] frame pair in [0, 1]; inf when identical."""
    mse = float(np.mean((frame1.astype(np.float64) - frame2.astype(np.float64)) ** 2))
    if mse == 0.0:
        return math.inf
    return 20.0 * math.log10(1.0 / math.sqrt(mse))


def psnr_frames(videos1: np.ndarray, videos2: np.ndarray) -> np.ndarray:
    """[B, T] per-frame PSNR of [B, C, T, H, W] videos in [0, 1]."""
    batch, _, frames = videos1.shape[:3]
    out = np.empty((batch, frames), dtype=np.float64)
    for b in range(batch):
        for t in range(frames):
            out[b, t] = frame_psnr(videos1[b, :, t], videos2[b, :, t])
    return out


def batch_psnr(videos1: np.ndarray, videos2: np.ndarray) -> float:
    """The official batch score: mean frame PSNR, 100 when that mean is infinite."""
    value = float(np.mean(psnr_frames(videos1, videos2)))
    return OFFICIAL_INF_PSNR if math.isinf(value) else value


def _plane_ssim(plane1: np.ndarray, plane2: np.ndarray) -> float:
    c1 = 0.01**2
    c2 = 0.03**2
    a = plane1.astype(np.float64)
    b = plane2.astype(np.float64)
    column = cv2.getGaussianKernel(11, 1.5)
    window = column @ column.T

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.filter2D(image, -1, window)[5:-5, 5:-5]

    mean_a = blur(a)
    mean_b = blur(b)
    var_a = blur(a * a) - mean_a**2
    var_b = blur(b * b) - mean_b**2
    cov = blur(a * b) - mean_a * mean_b
    numerator = (2 * mean_a * mean_b + c1) * (2 * cov + c2)
    denominator = (mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)
    return float(np.mean(numerator / denominator))


def frame_ssim(frame1: np.ndarray, frame2: np.ndarray) -> float:
    """SSIM of one [C, H, W] frame pair: each channel on its own, then their mean."""
    return float(np.mean([_plane_ssim(frame1[c], frame2[c]) for c in range(frame1.shape[0])]))


def ssim_frames(videos1: np.ndarray, videos2: np.ndarray) -> np.ndarray:
    """[B, T] per-frame SSIM of [B, C, T, H, W] videos in [0, 1]."""
    batch, _, frames = videos1.shape[:3]
    out = np.empty((batch, frames), dtype=np.float64)
    for b in range(batch):
        for t in range(frames):
            out[b, t] = frame_ssim(videos1[b, :, t], videos2[b, :, t])
    return out


def ssim_per_timestamp(videos1: np.ndarray, videos2: np.ndarray) -> np.ndarray:
    """[T] the official result: mean over clips at each frame index."""
    return ssim_frames(videos1, videos2).mean(axis=0)
