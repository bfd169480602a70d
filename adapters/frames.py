"""Running a per-frame image VAE over a clip: frames folded into the batch.

``[B, C, T, H, W]`` becomes ``[B*T, C, H, W]``, which runs in groups of at most
``frame_batch`` frames (memory bounded whatever the clip length), and the output is
unfolded back to ``[B, C', T, H', W']``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from vae_bench.adapters.base import AdapterError

DEFAULT_FRAME_BATCH = 8
ADAPTER_KEYS = ("frame_batch",)


def frame_batch_of(config: Mapping[str, Any], model_keys: Sequence[str], name: str) -> int:
    """The ``frame_batch`` of a preset config whose other keys must all be ``model_keys``;
    unknown keys and non-positive batches are errors naming what is allowed."""
    unknown = sorted(set(config) - set(model_keys) - set(ADAPTER_KEYS))
    if unknown:
        raise AdapterError(
            f"{name}: unknown config keys {', '.join(unknown)}; allowed: "
            f"{', '.join((*model_keys, *ADAPTER_KEYS))}"
        )
    frame_batch = config.get("frame_batch", DEFAULT_FRAME_BATCH)
    if not isinstance(frame_batch, int) or isinstance(frame_batch, bool) or frame_batch < 1:
        raise AdapterError(f"{name}: frame_batch must be a positive integer, got {frame_batch!r}")
    return frame_batch


def per_frame(
    video: torch.Tensor,
    run: Callable[[torch.Tensor], torch.Tensor],
    frame_batch: int,
    dtype: torch.dtype,
    name: str,
) -> torch.Tensor:
    """``run`` over the frames of ``video`` (cast to ``dtype``), ``frame_batch`` at a time."""
    batch, channels, frames = video.shape[:3]
    count = batch * frames
    if count == 0:
        raise AdapterError(f"{name}: empty clip of shape {tuple(video.shape)}")
    folded = video.transpose(1, 2).reshape(count, channels, *video.shape[3:]).to(dtype)
    out: torch.Tensor | None = None
    for start in range(0, count, frame_batch):
        result = run(folded[start : start + frame_batch])
        if out is None:
            out = result.new_empty((count, *result.shape[1:]))
        out[start : start + len(result)] = result
    assert out is not None
    return out.reshape(batch, frames, *out.shape[1:]).transpose(1, 2).contiguous()
