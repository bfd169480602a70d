"""Figures of the temporal analyses: quality by frame index and by position in the temporal
compression group, flicker, and the cost of chunk/tile seams.

Causal video VAEs encode frame 0 alone and the others in groups, so quality can depend on
where a frame sits (IV-VAE's observation); per-frame averages hide that. These figures
read ``frames.csv`` (one row per cell, metric and frame, with ``group_position``) and the
``flicker`` / ``seam_*`` rows of ``results.csv``. For each model, inference mode, dtype,
weights and dataset, one cell is drawn: the one with the longest clip, then the most
pixels per frame (said in the titles), so lines of one model never mix clip lengths.
Non-finite values (PSNR +inf of a lossless model) are left out of the figures.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

log = logging.getLogger(__name__)

#: Per-frame metrics drawn by frame index and by group position, in panel order.
FRAME_METRICS: tuple[str, ...] = ("psnr", "ssim", "lpips", "flicker")
POSITION_METRICS: tuple[str, ...] = ("psnr", "ssim", "lpips")
SEAM_METRICS: tuple[str, ...] = ("seam_psnr_drop", "seam_discontinuity")
LABELS: dict[str, str] = {
    "psnr": "PSNR (dB) ↑",
    "ssim": "SSIM ↑",
    "lpips": "LPIPS ↓",
    "flicker": "flicker, transition t-1→t ↓",
    "seam_psnr_drop": "PSNR vs full: away − at seams (dB) ↓",
    "seam_discontinuity": "|Δ mode − Δ full| across seams ↓",
    "psnr_vs_full": "PSNR vs full inference (dB) ↑",
}
#: Columns that identify one drawn series (the cell size is chosen per series).
SERIES_KEYS: tuple[str, ...] = ("model", "weights", "mode", "dtype", "dataset")


def read_frames(run_dir: str | Path) -> pd.DataFrame | None:
    """``frames.csv`` of a run directory, or None when the run has none."""
    path = Path(run_dir) / "frames.csv"
    if not path.exists():
        return None
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def representative_cells(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of one cell per series: the longest clip, then the most pixels."""
    if rows.empty:
        return rows
    keys = [k for k in SERIES_KEYS if k in rows.columns]
    sizes = rows.assign(_pixels=rows["height"] * rows["width"])
    best = (
        sizes.sort_values(["frames", "_pixels", "cell"], ascending=[False, False, True])
        .groupby(keys, sort=False, dropna=False)["cell"]
        .first()
    )
    return rows[rows["cell"].isin(set(best))]


def position_profile(frames: pd.DataFrame) -> pd.DataFrame:
    """Mean of each per-frame metric at each group position, per series (one cell each).

    Columns: the series keys, ``metric``, ``group_position``, ``value`` (mean over the
    frames at that position of the per-frame means over clips), ``frames_at_position``.
    Non-finite values are left out (and counted out of ``frames_at_position``).
    """
    rows = representative_cells(frames)
    rows = rows[np.isfinite(rows["value"].astype(float))]
    keys = [k for k in SERIES_KEYS if k in rows.columns]
    grouped = rows.groupby([*keys, "metric", "group_position"], dropna=False)["value"]
    profile = grouped.agg(value="mean", frames_at_position="count").reset_index()
    return profile


def _series_label(row: pd.Series, varying: list[str]) -> str:
    extra = [str(row[k]) for k in varying if k != "model"]
    return f"{row['model']} [{', '.join(extra)}]" if extra else str(row["model"])


def _varying(rows: pd.DataFrame) -> list[str]:
    return [k for k in SERIES_KEYS if k in rows.columns and rows[k].nunique(dropna=False) > 1]


def _labelled(rows: pd.DataFrame, varying: list[str]) -> pd.DataFrame:
    labels = rows.apply(_series_label, axis=1, varying=varying) if len(rows) else []
    return rows.assign(series=labels)


def _figure(n_panels: int, title: str) -> tuple[Figure, list[Axes]]:
    ncols = min(n_panels, 2)
    nrows = -(-n_panels // ncols)
    fig = Figure(figsize=(5.4 * ncols, 3.8 * nrows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=11)
    return fig, axes[:n_panels]


def _size_note(rows: pd.DataFrame) -> str:
    sizes = sorted({f"{int(r.frames)}x{int(r.height)}x{int(r.width)}" for r in rows.itertuples()})
    return "T x H x W " + ", ".join(sizes)


def _legend(fig: Figure, axes: list[Axes]) -> None:
    handles: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                   ncols=min(len(handles), 3), fontsize=8, frameon=False)  # fmt: skip


def _bars(ax: Axes, data: pd.DataFrame, x: str, ylabel: str) -> None:
    """Grouped bars: one group per ``x`` value, one bar per series."""
    groups = sorted(data[x].unique(), key=str)
    series = list(dict.fromkeys(data["series"]))
    width = 0.8 / max(len(series), 1)
    for i, name in enumerate(series):
        part = data[data["series"] == name].set_index(x)
        xs = [g for g in groups if g in part.index]
        heights = [float(part.loc[g, "value"]) for g in xs]
        positions = [groups.index(g) - 0.4 + width * (i + 0.5) for g in xs]
        err = None
        if {"ci_low", "ci_high"} <= set(part.columns):
            low = np.array([float(part.loc[g, "ci_low"]) for g in xs])
            high = np.array([float(part.loc[g, "ci_high"]) for g in xs])
            if np.isfinite(low).all() and np.isfinite(high).all():
                err = np.abs(np.vstack([heights - low, high - np.array(heights)]))
        ax.bar(positions, heights, width=width, yerr=err, label=name, color=f"C{i % 10}")
    ax.set_xticks(range(len(groups)), [str(g) for g in groups], fontsize=8)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)


def _frame_curves(frames: pd.DataFrame, out_dir: Path) -> list[Path]:
    rows = representative_cells(frames[frames["metric"].isin(FRAME_METRICS)])
    rows = rows[np.isfinite(rows["value"].astype(float))]
    metrics = [m for m in FRAME_METRICS if m in set(rows["metric"])]
    if not metrics:
        return []
    rows = _labelled(rows, _varying(rows))
    fig, axes = _figure(len(metrics), f"Quality by frame index ({_size_note(rows)})")
    for ax, metric in zip(axes, metrics, strict=True):
        part = rows[rows["metric"] == metric]
        for i, (name, line) in enumerate(part.groupby("series", sort=False)):
            line = line.sort_values("frame")
            ax.plot(line["frame"], line["value"], marker="o", ms=3, label=name, color=f"C{i}")
        ax.set_title(LABELS.get(metric, metric), fontsize=10)
        ax.set_xlabel("frame index", fontsize=9)
        ax.grid(True, alpha=0.3)
    _legend(fig, axes)
    return _save(fig, out_dir, "quality_by_frame")


def _position_bars(frames: pd.DataFrame, out_dir: Path) -> list[Path]:
    profile = position_profile(frames[frames["metric"].isin(POSITION_METRICS)])
    metrics = [m for m in POSITION_METRICS if m in set(profile["metric"])]
    if not metrics:
        return []
    profile = _labelled(profile, _varying(profile))
    title = "Quality by position in the temporal compression group (causal: 0 = frame 0 alone)"
    fig, axes = _figure(len(metrics), title)
    for ax, metric in zip(axes, metrics, strict=True):
        _bars(ax, profile[profile["metric"] == metric], "group_position", LABELS[metric])
        ax.set_xlabel("group position", fontsize=9)
    _legend(fig, axes)
    return _save(fig, out_dir, "quality_by_group_position")


def _result_bars(
    results: pd.DataFrame, metrics: tuple[str, ...], x: str, title: str, name: str, out_dir: Path
) -> list[Path]:
    rows = results[(results["status"] == "ok") & results["metric"].isin(metrics)]
    rows = representative_cells(rows[np.isfinite(rows["value"].astype(float))])
    present = [m for m in metrics if m in set(rows["metric"])]
    if not present:
        return []
    varying = [k for k in _varying(rows) if k != x]
    rows = _labelled(rows, varying)
    fig, axes = _figure(len(present), f"{title} ({_size_note(rows)})")
    for ax, metric in zip(axes, present, strict=True):
        _bars(ax, rows[rows["metric"] == metric], x, LABELS.get(metric, metric))
        ax.set_title(LABELS.get(metric, metric), fontsize=10)
    _legend(fig, axes)
    return _save(fig, out_dir, name)


def plot_temporal(
    results: pd.DataFrame, frames: pd.DataFrame | None, out_dir: str | Path
) -> list[Path]:
    """Draw the temporal figures the rows allow; return the files written.

    ``quality_by_frame`` and ``quality_by_group_position`` (from ``frames``), ``flicker``
    (mean over clips per model and mode, 95% CI) and ``seams`` (seam metrics per mode).
    """
    from vae_bench.report.plots import _ok_rows

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if frames is not None and len(frames):
        written += _frame_curves(frames, out_dir)
        written += _position_bars(frames, out_dir)
    quality = _ok_rows(results)
    quality = quality[quality["kind"] == "quality"]
    written += _result_bars(quality, ("flicker",), "model", "Temporal flicker per clip",
                            "flicker", out_dir)  # fmt: skip
    written += _result_bars(quality, SEAM_METRICS, "mode", "Chunk/tile seams vs full inference",
                            "seams", out_dir)  # fmt: skip
    return written


def _save(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    from vae_bench.report.plots import _save as save

    return save(fig, out_dir, name)
