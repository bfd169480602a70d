"""Temporal flicker: how much a reconstruction's frame-to-frame change departs from the
original's.

Per-frame metrics (PSNR, SSIM, LPIPS) score every frame alone, so a reconstruction whose
error changes from one frame to the next (shimmer, a flashed frame, a jump where inference
chunks meet) can score as well as one whose error is steady. This metric sees only the
change over time. With videos mapped to [0, 1] ((x + 1) / 2, clamped), for frames
``t = 1 .. T-1``::

    flicker_t = mean over C, H, W of | (recon_t - recon_{t-1}) - (target_t - target_{t-1}) |
    flicker   = mean over t of flicker_t                      (per clip; lower is better)

A reconstruction equal to the target, or off by the same error in every frame (e.g. a
constant brightness offset), scores 0. ``per_frame()[t]`` is the transition from frame
``t - 1`` into frame ``t``; index 0 has no transition and is NaN. A one-frame clip has no
transition: its clip value is NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vae_bench.metrics.base import VideoMetric, check_videos


def frame_change_error(target: Tensor, preds: Tensor) -> Tensor:
    """[B, T-1] float64: mean |Δpreds - Δtarget| of each transition, in [0, 1] units.

    Mapping to [0, 1] halves every difference, so the [-1, 1] result is divided by 2.
    Differences are taken in float32 and summed in float64.
    """
    batch, channels, frames, height, width = target.shape
    error = preds.float().clamp(-1.0, 1.0) - target.float().clamp(-1.0, 1.0)
    # Δpreds - Δtarget is the change of the error from one frame to the next
    change = (error[:, :, 1:] - error[:, :, :-1]).abs_()
    sums = change.transpose(1, 2).reshape(batch, frames - 1, channels * height * width)
    sums = sums.sum(dim=-1, dtype=torch.float64)
    return sums / (2.0 * channels * height * width)


class Flicker(VideoMetric):
    """Mean absolute change of the reconstruction error between consecutive frames."""

    name = "flicker"

    @property
    def protocol(self) -> str:
        return "flicker:range=[0,1];mean|d(recon)-d(target)|;frame-transition-mean"

    def _score(self, target: Tensor, preds: Tensor) -> tuple[Tensor, Tensor]:
        transitions = frame_change_error(target, preds)
        if transitions.shape[1] == 0:
            clip = torch.full((target.shape[0],), torch.nan, dtype=torch.float64)
        else:
            clip = transitions.mean(dim=1)
        return clip.to(target.device), transitions

    def update(self, target: Tensor, preds: Tensor) -> None:
        """As the base class, but transition ``t-1 -> t`` is stored at frame index ``t``."""
        check_videos(target, preds, max_frames=self.max_frames)
        clip, transitions = self._score(target, preds)
        count = transitions.shape[1]
        self.clip_values.append(clip.detach().to(self.frame_sum.device, torch.float64))
        if count:
            self.frame_sum[1 : count + 1] += transitions.detach().to(self.frame_sum).sum(dim=0)
            self.frame_count[1 : count + 1] += transitions.shape[0]
