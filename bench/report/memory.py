"""How a phase's memory grows with clip length: the exponent ``k`` of ``memory ~ frames**k``.

The memory fitted is the one that scales with the work. On a GPU cell that is the CUDA
allocator's peak (``peak_allocated_mb``). On a CPU cell the process's peak RSS also holds
the interpreter, libraries and weights, a fixed cost that pulls every exponent to about 0;
the phase's own RSS growth (``rss_growth_mb``: the peak minus the RSS at the phase's start)
is fitted instead. Each row of the table names the metric it was fitted on.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

CUDA_METRIC = "peak_allocated_mb"
HOST_METRIC = "rss_growth_mb"
#: What each fitted metric is, in words (the console table's header says it).
MEASURES: dict[str, str] = {
    CUDA_METRIC: "CUDA allocator peak (GPU cells)",
    HOST_METRIC: "host RSS growth over the phase's start (CPU cells)",
}
#: Settings held fixed when fitting; one exponent per model and setting.
GROWTH_KEYS: tuple[str, ...] = ("height", "width", "batch_size", "dtype", "mode", "device")
PHASES: tuple[str, ...] = ("encode", "decode", "roundtrip")
REQUIRED_COLUMNS: tuple[str, ...] = ("kind", "model", "frames", "phase", "metric", "value",
                                     "status")  # fmt: skip


def growth_rows(results: pd.DataFrame, phase: str) -> pd.DataFrame:
    """The ok efficiency rows of ``phase`` that measure its memory: the CUDA allocator's
    peak where the cell has one, else the RSS growth; only positive finite values.

    The ``device`` column holds a device *name*, so a GPU cell is told by its measured
    allocator peak rather than by that name.
    """
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; allowed: {', '.join(PHASES)}")
    missing = [c for c in REQUIRED_COLUMNS if c not in results.columns]
    if missing:
        raise ValueError(f"results table lacks column(s) {', '.join(missing)}; "
                         f"needed: {', '.join(REQUIRED_COLUMNS)}")  # fmt: skip
    rows = results[
        (results["status"].astype(str) == "ok")
        & (results["kind"] == "efficiency")
        & (results["phase"].astype(str) == phase)
        & results["metric"].isin(MEASURES)
    ].copy()
    rows["value"] = pd.to_numeric(rows["value"], errors="coerce")
    rows["frames"] = pd.to_numeric(rows["frames"], errors="coerce")
    rows = rows[np.isfinite(rows["value"]) & (rows["value"] > 0) & rows["frames"].notna()]
    cell = "cell" if "cell" in rows.columns else None
    if cell is None:
        on_gpu = pd.Series(False, index=rows.index)
    else:
        gpu_cells = set(rows.loc[rows["metric"] == CUDA_METRIC, cell])
        on_gpu = rows[cell].isin(gpu_cells)
    keep = (rows["metric"] == CUDA_METRIC) | ((rows["metric"] == HOST_METRIC) & ~on_gpu)
    return rows[keep]


def memory_growth_exponent(results: pd.DataFrame, phase: str) -> pd.DataFrame:
    """The slope ``k`` of a least-squares fit of log(memory) on log(frames), per model and
    fixed setting (:data:`GROWTH_KEYS` present), over :func:`growth_rows`.

    Returns one row per model and setting: the setting columns, ``metric``, ``exponent``
    (``nan`` with fewer than two clip lengths), ``n_points``, ``frames_min``, ``frames_max``.
    """
    rows = growth_rows(results, phase)
    keys = ["model", *[k for k in GROWTH_KEYS if k in rows.columns]]
    columns = [*keys, "metric", "exponent", "n_points", "frames_min", "frames_max"]
    out = []
    for name, group in rows.groupby(keys, sort=True, dropna=False):
        frames = group["frames"].to_numpy(dtype=float)
        memory = group["value"].to_numpy(dtype=float)
        slope = math.nan
        if len(np.unique(frames)) >= 2:
            slope = float(np.polyfit(np.log(frames), np.log(memory), 1)[0])
        metric = "/".join(sorted(set(group["metric"])))
        out.append([*name, metric, slope, len(group), int(frames.min()), int(frames.max())])
    return pd.DataFrame(out, columns=columns)


def memory_growth_table(results: pd.DataFrame) -> pd.DataFrame:
    """:func:`memory_growth_exponent` of the encode and decode phases, where a run swept
    at least two clip lengths (empty otherwise)."""
    table = pd.concat(
        [memory_growth_exponent(results, p).assign(phase=p) for p in ("encode", "decode")],
        ignore_index=True,
    )
    return table[table["n_points"] >= 2].reset_index(drop=True)


def describe(table: pd.DataFrame) -> str:
    """The header line of a growth table: the fit, and what memory each metric is."""
    metrics = sorted(set(table["metric"])) if len(table) else []
    what = "; ".join(f"{m} = {MEASURES.get(m, m)}" for m in metrics)
    return f"memory ~ frames**k ({what}):" if what else "memory ~ frames**k:"
