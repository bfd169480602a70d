"""Figures of the temporal analyses: quality by frame index and by position in the temporal
compression group, flicker, and the cost of chunk/tile seams.

Causal video VAEs encode frame 0 alone and the others in groups, so quality can depend on
where a frame sits (IV-VAE's observation); per-frame averages hide that. These figures
read ``frames.csv`` (one row per cell, metric and frame, with ``group_position``) and the
``flicker`` / ``seam_*`` rows of ``results.csv``. For each model, inference mode, dtype,
weights and dataset, one cell is drawn: the one with the longest clip, then the most
pixels per frame (said in the titles), so lines of one model never mix clip lengths.
Non-finite values (PSNR +inf of a lossless model) are left out of the figures and counted
in their footers; each model and mode is drawn as in every other figure of the run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vae_bench.report.plots import _save as save
from vae_bench.report.plots import (
    drawable,
    figure_legend,
    left_out,
    new_figure,
    varying_within_models,
)
from vae_bench.report.style import RC, Identity, footer, series_label

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


def _varying(rows: pd.DataFrame) -> list[str]:
    return varying_within_models(rows, SERIES_KEYS)


def _labelled(rows: pd.DataFrame, varying: list[str]) -> pd.DataFrame:
    keys = [k for k in varying if k != "model"]
    labels = [series_label(r["model"], {k: str(r[k]) for k in keys})
              for _, r in rows.iterrows()]  # fmt: skip
    return rows.assign(series=labels)


def _size_note(rows: pd.DataFrame) -> str:
    sizes = sorted({f"{int(r.frames)}x{int(r.height)}x{int(r.width)}" for r in rows.itertuples()})
    return "T x H x W " + ", ".join(sizes)


def _finite_metrics(
    rows: pd.DataFrame, metrics: tuple[str, ...]
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The finite rows, the metrics that have any, and footer notes on what was left out."""
    notes = [left_out(LABELS.get(m, m), rows.loc[rows["metric"] == m, "value"])
             for m in metrics if (rows["metric"] == m).any()]  # fmt: skip
    rows = rows[drawable(rows["value"])]
    return rows, [m for m in metrics if (rows["metric"] == m).any()], notes


def _mode(row: pd.DataFrame | pd.Series) -> str:
    value = row["mode"] if "mode" in row else "full"
    return str(value.iloc[0] if isinstance(value, pd.Series) else value)


def _lines(ax: Axes, data: pd.DataFrame, x: str, identity: Identity) -> None:
    """One line per series, drawn in its model's colour and marker and its mode's style."""
    for name, line in data.groupby("series", sort=True):
        line = line.sort_values(x)
        ax.plot(line[x], line["value"], label=name,
                **identity.line(str(line["model"].iloc[0]), _mode(line)))  # fmt: skip
    ax.grid(True, alpha=0.3)


def _bars(ax: Axes, data: pd.DataFrame, x: str, ylabel: str, identity: Identity) -> None:
    """Grouped bars: one group per ``x`` value, one bar per series (model colour, mode
    hatch); a panel whose every value is 0 says so rather than showing an empty box."""
    groups = sorted(data[x].unique(), key=str)
    series = sorted(dict.fromkeys(data["series"]))
    width = 0.8 / max(len(series), 1)
    for i, name in enumerate(series):
        rows = data[data["series"] == name]
        part = rows.set_index(x)
        xs = [g for g in groups if g in part.index]
        heights = np.array([float(part.loc[g, "value"]) for g in xs])
        positions = [groups.index(g) - 0.4 + width * (i + 0.5) for g in xs]
        err = None
        if {"ci_low", "ci_high"} <= set(part.columns):
            low = np.array([float(part.loc[g, "ci_low"]) for g in xs])
            high = np.array([float(part.loc[g, "ci_high"]) for g in xs])
            if np.isfinite(low).all() and np.isfinite(high).all():
                err = np.abs(np.vstack([heights - low, high - heights]))
        ax.bar(positions, heights, width=width, yerr=err, label=name,
               **identity.bar(str(rows["model"].iloc[0]), _mode(rows)))  # fmt: skip
    if (data["value"] == 0).all():
        ax.text(0.5, 0.5, "0 for every series shown", transform=ax.transAxes, ha="center",
                va="center", color="#444444")  # fmt: skip
    ax.set_xticks(range(len(groups)), [str(g) for g in groups])
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)


def _handles(axes: list[Axes]) -> dict[str, object]:
    handles: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    return dict(sorted(handles.items()))


def _finish(
    fig: Figure, axes: list[Axes], notes: list[str], out_dir: Path, name: str
) -> list[Path]:
    figure_legend(fig, _handles(axes))
    footer(fig, notes)
    return save(fig, out_dir, name)


def _frame_curves(frames: pd.DataFrame, out_dir: Path, identity: Identity) -> list[Path]:
    rows = representative_cells(frames[frames["metric"].isin(FRAME_METRICS)])
    rows, metrics, notes = _finite_metrics(rows, FRAME_METRICS)
    if not metrics:
        return []
    rows = _labelled(rows, _varying(rows))
    fig, axes = new_figure(len(metrics), f"Quality by frame index ({_size_note(rows)})")
    for ax, metric in zip(axes, metrics, strict=True):
        _lines(ax, rows[rows["metric"] == metric], "frame", identity)
        ax.set_title(LABELS.get(metric, metric))
        ax.set_xlabel("frame index")
        ax.xaxis.get_major_locator().set_params(integer=True)
    return _finish(fig, axes, notes, out_dir, "quality_by_frame")


def _position_curves(frames: pd.DataFrame, out_dir: Path, identity: Identity) -> list[Path]:
    rows = frames[frames["metric"].isin(POSITION_METRICS)]
    notes = [left_out(LABELS[m], rows.loc[rows["metric"] == m, "value"])
             for m in POSITION_METRICS if (rows["metric"] == m).any()]  # fmt: skip
    profile = position_profile(rows)
    metrics = [m for m in POSITION_METRICS if m in set(profile["metric"])]
    if not metrics:
        return []
    profile = _labelled(profile, _varying(profile))
    title = "Quality by position in the temporal compression group\n(causal: 0 = frame 0 alone)"
    fig, axes = new_figure(len(metrics), title)
    for ax, metric in zip(axes, metrics, strict=True):
        _lines(ax, profile[profile["metric"] == metric], "group_position", identity)
        ax.set_title(LABELS[metric])
        ax.set_xlabel("position in group")
        ax.set_xticks(sorted(profile["group_position"].unique()))
    return _finish(fig, axes, notes, out_dir, "quality_by_group_position")


def _result_bars(
    results: pd.DataFrame, metrics: tuple[str, ...], x: str, title: str, name: str,
    out_dir: Path, identity: Identity,
) -> list[Path]:  # fmt: skip
    rows = results[(results["status"] == "ok") & results["metric"].isin(metrics)]
    rows, present, notes = _finite_metrics(representative_cells(rows), metrics)
    if not present:
        return []
    varying = [k for k in _varying(rows) if k != x]
    rows = _labelled(rows, varying)
    fig, axes = new_figure(len(present), f"{title} ({_size_note(rows)})")
    for ax, metric in zip(axes, present, strict=True):
        _bars(ax, rows[rows["metric"] == metric], x, LABELS.get(metric, metric), identity)
        ax.set_title(LABELS.get(metric, metric))
    return _finish(fig, axes, notes, out_dir, name)


def plot_temporal(
    results: pd.DataFrame, frames: pd.DataFrame | None, out_dir: str | Path,
    identity: Identity | None = None,
) -> list[Path]:  # fmt: skip
    """Draw the temporal figures the rows allow; return the files written.

    ``quality_by_frame`` and ``quality_by_group_position`` (from ``frames``), ``flicker``
    (mean over clips per model and mode, 95% CI) and ``seams`` (seam metrics per mode).
    ``identity`` is the run's (:func:`~vae_bench.report.plots.plot_run` passes it); by
    default it is built from these rows.
    """
    from vae_bench.report.plots import _ok_rows

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    quality = _ok_rows(results)
    quality = quality[quality["kind"] == "quality"]
    identity = identity or Identity.of(results, frames)
    written: list[Path] = []
    with matplotlib.rc_context(RC):
        if frames is not None and len(frames):
            written += _frame_curves(frames, out_dir, identity)
            written += _position_curves(frames, out_dir, identity)
        written += _result_bars(quality, ("flicker",), "model", "Temporal flicker per clip",
                                "flicker", out_dir, identity)  # fmt: skip
        written += _result_bars(quality, SEAM_METRICS, "mode",
                                "Chunk/tile seams vs full inference", "seams", out_dir,
                                identity)  # fmt: skip
    return written
