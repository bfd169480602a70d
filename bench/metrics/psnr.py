"""PSNR in the two conventions papers use: per-frame mean (official) and per-clip MSE.

Videos are mapped to [0, 1] ((x + 1) / 2, clamped) and compared with a data range of 1;
squared errors are summed in float64 over short runs summed in the input precision.
Identical frames (MSE 0) give +inf and are kept as +inf: a cap would hide perfect
reconstructions inside an average. The official WF-VAE script instead returns 100 for a
batch whose mean frame PSNR is infinite;
``inf_value=100.0`` reproduces that for batches of one clip by mapping every infinite
reported value to 100.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from vae_bench.metrics.base import VideoMetric

#: Pixels summed in the input precision before the float64 sum (see :func:`frame_mse`).
PARTIAL_SUM_PIXELS = 64


def frame_mse(target: Tensor, preds: Tensor) -> Tensor:
    """[B, T] mean squared error of each frame in [0, 1] units, float64.

    After clamping to [-1, 1], a [0, 1] difference is exactly half the [-1, 1] one. The
    differences are squared in the input precision and summed in runs of
    :data:`PARTIAL_SUM_PIXELS` contiguous values in that precision, then in float64 over
    the runs: ~1e-8 relative on the MSE for float32 input (< 1e-7 dB), and several times
    faster than a float64 reduction of every pixel, which CPUs do without vector units.
    """
    batch, channels, frames, height, width = target.shape
    diff = target.clamp(-1.0, 1.0).sub_(preds.clamp(-1.0, 1.0)).square_()
    pixels = diff.reshape(batch, channels, frames, -1)
    whole_runs = pixels.shape[-1] - pixels.shape[-1] % PARTIAL_SUM_PIXELS
    runs = pixels[..., :whole_runs].reshape(batch, channels, frames, -1, PARTIAL_SUM_PIXELS)
    sums = runs.sum(dim=-1).sum(dim=-1, dtype=torch.float64)
    sums += pixels[..., whole_runs:].sum(dim=-1, dtype=torch.float64)
    return sums.sum(dim=1) / (4.0 * channels * height * width)


def psnr_from_mse(mse: Tensor) -> Tensor:
    """PSNR in dB for a data range of 1; MSE 0 gives +inf."""
    return -10.0 * torch.log10(mse)


class _PSNRBase(VideoMetric):
    """PSNR variants: +inf for a perfect reconstruction unless ``inf_value`` maps it."""

    def __init__(self, *, inf_value: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inf_value = inf_value

    def _inf_note(self) -> str:
        return "" if self.inf_value is None else f";inf->{self.inf_value:g}"

    def _finalize(self, values: Tensor) -> Tensor:
        if self.inf_value is None:
            return values
        return torch.where(torch.isposinf(values), torch.full_like(values, self.inf_value), values)


class PSNR(_PSNRBase):
    """Mean over frames of the per-frame PSNR, then mean over clips (official convention)."""

    name = "psnr"

    @property
    def protocol(self) -> str:
        return f"psnr:range=[0,1];frame-mean{self._inf_note()}"

    def _score(self, target: Tensor, preds: Tensor) -> tuple[Tensor, Tensor]:
        frames = psnr_from_mse(frame_mse(target, preds))
        return frames.mean(dim=1), frames


class ClipPSNR(_PSNRBase):
    """PSNR of the MSE pooled over the whole clip, then mean over clips.

    ``per_frame`` reports the per-frame PSNR (a frame's own pooled MSE), the same
    quantity as for ``psnr``.
    """

    name = "psnr_clip"

    @property
    def protocol(self) -> str:
        return f"psnr_clip:range=[0,1];clip-mse{self._inf_note()}"

    def _score(self, target: Tensor, preds: Tensor) -> tuple[Tensor, Tensor]:
        mse = frame_mse(target, preds)
        return psnr_from_mse(mse.mean(dim=1)), psnr_from_mse(mse)


class PSNRVsFull(PSNR):
    """PSNR of a tiled/chunked reconstruction against the same model's ``full`` one.

    Not a quality metric against the original: it isolates what the inference mode
    itself changes. Its ``per_frame`` curve shows where chunk seams are (e.g. the
    frames at a temporal tile boundary drop while the others stay near +inf).
    """

    name = "psnr_vs_full"

    @property
    def protocol(self) -> str:
        reference = "reference=full-mode-reconstruction"
        return f"psnr_vs_full:{reference};range=[0,1];frame-mean{self._inf_note()}"
