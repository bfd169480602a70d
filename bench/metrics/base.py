"""Streaming, mergeable video quality metrics: the shared state layout and input checks.

Every metric scores each clip of a batch at once (all frames together on the tensor's
device) and keeps only torchmetrics states, so that a torchrun job merges them with
torchmetrics' own distributed sync and a single process can merge instances with
``merge_state``:

- ``clip_values``: one value per clip, list state reduced by concatenation;
- ``frame_sum`` / ``frame_count``: per-frame-position sums and clip counts over a fixed
  capacity of ``max_frames`` positions, reduced by summation (a fixed shape keeps the
  sum reduction valid when clips of different lengths, or none, reach a process).
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from vae_bench.metric_info import known

DEFAULT_MAX_FRAMES = 1024


class MetricUnavailable(RuntimeError):
    """A metric cannot be built on this machine (e.g. pretrained backbone weights missing)."""


def check_videos(target: Tensor, preds: Tensor, *, max_frames: int) -> None:
    """Reject inputs that would silently give a wrong number."""
    for label, video in (("target", target), ("preds", preds)):
        if not isinstance(video, Tensor):
            raise TypeError(f"{label} must be a torch.Tensor, got {type(video).__name__}")
        if video.ndim != 5:
            raise ValueError(
                f"{label} must be a video batch [B, C, T, H, W], got shape {tuple(video.shape)}"
            )
        if not video.is_floating_point():
            raise ValueError(f"{label} must be a float tensor in [-1, 1], got {video.dtype}")
    if target.shape != preds.shape:
        raise ValueError(
            f"target and preds shapes differ: {tuple(target.shape)} vs {tuple(preds.shape)}"
        )
    if target.shape[0] == 0 or target.shape[2] == 0:
        raise ValueError(f"empty video batch of shape {tuple(target.shape)}")
    if target.shape[2] > max_frames:
        raise ValueError(
            f"clips have {target.shape[2]} frames, more than max_frames={max_frames}; "
            "build the metric with a larger max_frames"
        )
    for label, video in (("target", target), ("preds", preds)):
        if not all_finite(video):
            raise ValueError(f"{label} has NaN or Inf values")


def all_finite(video: Tensor) -> bool:
    """True when no element is NaN or +-Inf.

    A sum propagates any NaN/Inf and needs no boolean copy of the clip; only a sum that
    overflows (values near the float limit) falls back to the element-wise check.
    """
    if bool(torch.isfinite(video.sum())):
        return True
    return bool(torch.isfinite(video).all())


class RankSafeMetric(Metric):
    """A Metric whose list states sync from a rank that saw no clips (more ranks than
    clips).

    torchmetrics' placeholder for an empty list state has the metric's default dtype
    (float32), which does not match the float64 tensors the other ranks gather, and the
    collective fails; this gives such a rank a float64 placeholder. The states cached
    before a sync are restored afterwards, so nothing changes beyond it.
    """

    def _sync_dist(self, *args: Any, **kwargs: Any) -> None:
        for attr, reduce in self._reductions.items():
            state = getattr(self, attr)
            if reduce is dim_zero_cat and isinstance(state, list) and not state:
                setattr(self, attr, [torch.zeros(0, dtype=torch.float64, device=self.device)])
        super()._sync_dist(*args, **kwargs)


@contextlib.contextmanager
def synced(metric: Metric) -> Iterator[None]:
    """Gather a metric's states across processes (no-op in one process), then restore
    them: what per-clip and set-level readers need beyond ``compute``'s own sync."""
    if metric._is_synced:
        yield
        return
    with metric.sync_context(
        dist_sync_fn=metric.dist_sync_fn,
        should_sync=metric._to_sync,
        should_unsync=metric._should_unsync,
    ):
        yield


class VideoMetric(RankSafeMetric):
    """Base class: subclasses score a batch in ``_score``; this class keeps the states.

    ``update(target, preds)`` takes float videos ``[B, C, T, H, W]`` in [-1, 1].
    ``compute()`` is the mean over clips of the per-clip values, ``per_clip()`` the
    values in update order (after ``merge_state`` the incoming metric's clips come
    first, as torchmetrics concatenates them), ``per_frame()`` the mean over clips at
    each frame index (over the clips long enough to have that frame).
    """

    name: ClassVar[str]
    unit: ClassVar[str]
    higher_is_better: ClassVar[bool]
    is_differentiable: ClassVar[bool] = False
    full_state_update: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A class that names its metric takes the unit and direction of its entry in
        :mod:`vae_bench.metric_info`, the reports' source too."""
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            info = known(cls.name)
            cls.unit, cls.higher_is_better = info.unit, bool(info.higher_is_better)

    clip_values: list[Tensor]
    frame_sum: Tensor
    frame_count: Tensor

    def __init__(self, *, max_frames: int = DEFAULT_MAX_FRAMES, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        self.max_frames = max_frames
        self.add_state("clip_values", default=[], dist_reduce_fx="cat")
        zeros = torch.zeros(max_frames, dtype=torch.float64)
        self.add_state("frame_sum", default=zeros.clone(), dist_reduce_fx="sum")
        self.add_state("frame_count", default=zeros.clone(), dist_reduce_fx="sum")

    @property
    @abstractmethod
    def protocol(self) -> str:
        """The conventions behind the number, recorded next to it in the results."""

    @abstractmethod
    def _score(self, target: Tensor, preds: Tensor) -> tuple[Tensor, Tensor]:
        """Return (per-clip values [B], per-frame values [B, T]), both float64."""

    def update(self, target: Tensor, preds: Tensor) -> None:
        check_videos(target, preds, max_frames=self.max_frames)
        clip, frames = self._score(target, preds)
        frames_n = frames.shape[1]
        self.clip_values.append(clip.detach().to(self.frame_sum.device, torch.float64))
        self.frame_sum[:frames_n] += frames.detach().to(self.frame_sum).sum(dim=0)
        self.frame_count[:frames_n] += frames.shape[0]

    def _finalize(self, values: Tensor) -> Tensor:
        """Hook applied to every reported value (e.g. mapping +inf to a cap)."""
        return values

    def _local_clip_values(self) -> Tensor:
        if isinstance(self.clip_values, Tensor):  # after a distributed sync
            return self.clip_values
        if not self.clip_values:
            return torch.zeros(0, dtype=torch.float64, device=self.frame_sum.device)
        return dim_zero_cat(self.clip_values)

    def compute(self) -> Tensor:
        return self._finalize(self._local_clip_values()).mean()

    def per_clip(self) -> Tensor:
        """[N] float64 values, one per clip, in update order."""
        with synced(self):
            return self._finalize(self._local_clip_values()).clone()

    def per_frame(self) -> Tensor:
        """[T] float64: mean over clips at each frame index, T = longest clip seen."""
        with synced(self):
            seen = torch.nonzero(self.frame_count).flatten()
            length = int(seen.max()) + 1 if seen.numel() else 0
            means = self.frame_sum[:length] / self.frame_count[:length]
            return self._finalize(means).clone()
