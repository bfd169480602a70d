"""Row shaping shared by the quality and efficiency loops: per-clip columns, intervals,
rows for metrics that could not be computed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

CLIP_KEYS = ("run", "cell", "model", "weights", "dataset", "height", "width", "frames", "dtype",
             "mode", "device")  # fmt: skip


def mean_ci(values: np.ndarray) -> tuple[float, float]:
    """95% Student-t interval of the mean over clips (nan when undefined)."""
    finite = values[np.isfinite(values)]
    if len(finite) < 2 or len(finite) != len(values):
        return math.nan, math.nan
    sem = stats.sem(finite)
    if sem == 0:
        return float(finite.mean()), float(finite.mean())
    low, high = stats.t.interval(0.95, len(finite) - 1, loc=finite.mean(), scale=sem)
    return float(low), float(high)


def skipped_row(base: dict[str, Any], protocol: str, metric: str, reason: str) -> dict[str, Any]:
    """A metric row that was not computed, with the reason as its message."""
    return {**base, "protocol": protocol, "metric": metric, "n": 0, "value": math.nan,
            "status": "skipped", "message": reason}  # fmt: skip
