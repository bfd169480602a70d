"""Figures of a run: quality, throughput and peak memory against resolution and clip length.

Only rows with status ``ok`` are drawn. A figure against resolution holds the clip length
fixed, and one against clip length holds the resolution fixed: the largest value that was
swept along the other axis (said in the figure's title), so the lines compare like with
like. Resolution is drawn as pixels per frame (H x W) on a log axis, ticks labelled
``HxW``. Each model gets one colour; where several inference modes, dtypes, batch sizes,
devices, datasets, protocols, weights or runs are present, each gets its own line style.

Figures are drawn on matplotlib's Agg canvas without pyplot, so importing or calling this
module never changes the caller's backend or global figure state.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

from vae_bench.metric_info import metric_info

log = logging.getLogger(__name__)

#: Quality metrics in the order their panels appear; other quality metrics follow, sorted.
QUALITY_ORDER: tuple[str, ...] = ("psnr", "psnr_clip", "ssim", "lpips")
#: Phases drawn in the throughput and memory figures.
PLOT_PHASES: tuple[str, ...] = ("encode", "decode")
THROUGHPUT_METRIC = "frames_per_s"
CUDA_MEMORY_METRIC = "peak_allocated_mb"
HOST_MEMORY_METRIC = "peak_rss_mb"
#: Columns that split a model's results into separate lines when they take several values.
STYLE_KEYS: tuple[str, ...] = (
    "mode",
    "dtype",
    "batch_size",
    "device",
    "dataset",
    "protocol",
    "weights",
    "run",
)
REQUIRED_COLUMNS: tuple[str, ...] = (
    "kind",
    "model",
    "height",
    "width",
    "frames",
    "phase",
    "metric",
    "value",
    "status",
)
#: Formats every figure is saved in.
FORMATS: tuple[str, ...] = ("png", "svg")

_X_PIXELS = "pixels"
_X_FRAMES = "frames"
_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


@dataclass(frozen=True)
class _Panel:
    """One axes of a figure: its rows (column ``value`` is y) and how to draw them."""

    title: str
    ylabel: str
    data: pd.DataFrame
    logy: bool


# --------------------------------------------------------------------------- selection


def _ok_rows(results: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in results.columns]
    if missing:
        raise ValueError(
            f"results table lacks column(s) {', '.join(missing)}; "
            f"needed: {', '.join(REQUIRED_COLUMNS)}"
        )
    df = results[results["status"].astype(str) == "ok"].copy()
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    for col in ("height", "width", "frames"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    bad = df[["height", "width", "frames"]].isna().any(axis=1)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} ok row(s) lack height, width or frames")
    df[["height", "width", "frames"]] = df[["height", "width", "frames"]].astype(int)
    df[_X_PIXELS] = df["height"] * df["width"]
    if "frames_requested" in df.columns:
        req = pd.to_numeric(df["frames_requested"], errors="coerce")
        df["_frames_fixed"] = req.fillna(df["frames"]).astype(int)
    else:
        df["_frames_fixed"] = df["frames"]
    df["phase"] = df["phase"].astype("string").fillna("").astype(str)
    return df


def _memory_rows(eff: pd.DataFrame) -> pd.DataFrame:
    """Peak memory per row: the CUDA allocator's where a cell measured it, else process RSS.

    The ``device`` column holds a device *name* (e.g. an H100's), so a GPU cell is told by
    its measured allocator peak rather than by that name.
    """
    key = [c for c in ("cell", "phase") if c in eff.columns]
    measured = eff["metric"].eq(CUDA_MEMORY_METRIC) & eff["value"].notna()
    if key:
        cuda_keys = set(map(tuple, eff.loc[measured, key].to_numpy()))
        cuda = pd.Series([tuple(k) in cuda_keys for k in eff[key].to_numpy()], index=eff.index)
    else:
        cuda = pd.Series(False, index=eff.index)
    keep = ((eff["metric"] == CUDA_MEMORY_METRIC) & cuda) | (
        (eff["metric"] == HOST_MEMORY_METRIC) & ~cuda
    )
    return eff[keep]


def _memory_label(rows: pd.DataFrame) -> str:
    metrics = set(rows["metric"])
    if metrics == {CUDA_MEMORY_METRIC}:
        return "peak allocated (MB, CUDA allocator)"
    if metrics == {HOST_MEMORY_METRIC}:
        return "peak RSS (MB, host process)"
    return "peak memory (MB): CUDA allocated on GPU, RSS on CPU"


def _fix_other_axis(df: pd.DataFrame, x: str) -> tuple[pd.DataFrame, str]:
    """Keep the rows at one value of the axis not drawn; the largest one that was swept.

    Swept means at least two distinct x values at that setting; without any, the largest
    setting is kept so a single point still gets its markers.
    """
    if x == _X_PIXELS:
        settings = sorted(df["_frames_fixed"].unique())
        swept = [s for s in settings if df.loc[df["_frames_fixed"] == s, x].nunique() >= 2]
        chosen = (swept or settings)[-1]
        why = "largest clip length swept" if swept else "largest clip length"
        return df[df["_frames_fixed"] == chosen], f"{chosen} frames ({why})"
    sizes = sorted(
        {(int(h), int(w)) for h, w in zip(df["height"], df["width"], strict=True)},
        key=lambda hw: (hw[0] * hw[1], hw),
    )
    at = {hw: (df["height"] == hw[0]) & (df["width"] == hw[1]) for hw in sizes}
    swept = [hw for hw in sizes if df.loc[at[hw], x].nunique() >= 2]
    h, w = (swept or sizes)[-1]
    why = "largest resolution swept" if swept else "largest resolution"
    return df[at[(h, w)]], f"{h}x{w} ({why})"


def _style_keys(df: pd.DataFrame) -> list[str]:
    return [k for k in STYLE_KEYS if k in df.columns and df[k].nunique(dropna=False) > 1]


# --------------------------------------------------------------------------- drawing


class _Styles:
    """Stable colours per model and line styles per setting across every panel of a figure."""

    def __init__(self, df: pd.DataFrame, keys: list[str]) -> None:
        self.keys = keys
        models = sorted(df["model"].astype(str).unique())
        cmap = matplotlib.colormaps["tab10"] if len(models) <= 10 else matplotlib.colormaps["tab20"]
        self.colour = {m: cmap(i % cmap.N) for i, m in enumerate(models)}
        values = df[keys].astype(str).drop_duplicates() if keys else pd.DataFrame(index=[0])
        settings = sorted(tuple(v) for v in values.itertuples(index=False, name=None))
        self.style = {s: i for i, s in enumerate(settings)}

    def label(self, model: str, setting: tuple[str, ...]) -> str:
        if not self.keys:
            return model
        return f"{model} ({', '.join(f'{k}={v}' for k, v in zip(self.keys, setting, strict=True))})"

    def kwargs(self, model: str, setting: tuple[str, ...]) -> dict[str, object]:
        i = self.style.get(setting, 0)
        return dict(
            color=self.colour[model],
            linestyle=_LINESTYLES[i % len(_LINESTYLES)],
            marker=_MARKERS[i % len(_MARKERS)],
            markersize=5,
            linewidth=1.5,
        )


def _series(
    data: pd.DataFrame, keys: list[str]
) -> Iterator[tuple[str, tuple[str, ...], pd.DataFrame]]:
    """(model, setting, rows) for each line of a panel."""
    group_cols = ["model", *keys]
    frame = data.assign(**{k: data[k].astype(str) for k in group_cols})
    for name, rows in frame.groupby(group_cols, sort=True):
        name = name if isinstance(name, tuple) else (name,)
        yield str(name[0]), tuple(str(v) for v in name[1:]), rows


def _set_x_ticks(ax: Axes, data: pd.DataFrame, x: str) -> None:
    if x == _X_PIXELS:
        names: dict[int, list[str]] = {}
        for h, w in sorted(
            {(int(h), int(w)) for h, w in zip(data["height"], data["width"], strict=True)}
        ):
            names.setdefault(h * w, []).append(f"{h}x{w}")
        ticks = sorted(names)
        labels = ["/".join(names[t]) for t in ticks]
    else:
        ticks = sorted(int(v) for v in data[x].unique())
        labels = [str(t) for t in ticks]
    ax.set_xticks(ticks, labels, rotation=30 if x == _X_PIXELS else 0, fontsize=8)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _plain_log_labels(ax: Axes) -> None:
    """Label a log y axis ``200``, ``1e+04`` rather than ``2x10^2``, at 1-2-5 steps when it
    spans few decades (a single labelled decade would leave the reader guessing)."""
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    lo, hi = ax.get_ylim()
    if lo > 0 and math.log10(hi / lo) <= 3:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))


def _draw_panel(
    ax: Axes, panel: _Panel, x: str, styles: _Styles, handles: dict[str, Line2D]
) -> None:
    data = panel.data
    finite = np.isfinite(data["value"].to_numpy(dtype=float))
    positive = finite & (data["value"].to_numpy(dtype=float) > 0)
    drawable = positive if panel.logy else finite
    notes = []
    n_inf = int(np.isinf(data["value"].to_numpy(dtype=float)).sum())
    if n_inf:
        notes.append(f"{n_inf} infinite value(s) not drawn (lossless reconstruction)")
    n_nan = int(np.isnan(data["value"].to_numpy(dtype=float)).sum())
    if n_nan:
        notes.append(f"{n_nan} missing value(s) not drawn")
    n_nonpos = int((finite & ~positive).sum()) if panel.logy else 0
    if n_nonpos:
        notes.append(f"{n_nonpos} value(s) <= 0 not drawn on the log axis")
    data = data[drawable]

    for model, setting, rows in _series(data, styles.keys):
        per_x = rows.groupby(x)["value"]
        if (per_x.size() > 1).any():
            warnings.warn(
                f"{panel.title}: {model} {setting} has several rows at one {x} value;"
                " drawing their mean",
                stacklevel=3,
            )
        points = per_x.mean().sort_index()
        label = styles.label(model, setting)
        (line,) = ax.plot(
            points.index.to_numpy(), points.to_numpy(), label=label, **styles.kwargs(model, setting)
        )
        handles.setdefault(label, line)

    ax.set_xscale("log")
    if panel.logy:
        ax.set_yscale("log")
        _plain_log_labels(ax)
    if not data.empty:
        _set_x_ticks(ax, data, x)
    ax.set_title(panel.title, fontsize=10)
    ax.set_ylabel(panel.ylabel)
    ax.set_xlabel("resolution (pixels per frame, HxW)" if x == _X_PIXELS else "frames per clip")
    ax.grid(True, which="major", alpha=0.3)
    if notes:
        ax.text(
            0.01,
            0.01,
            "\n".join(notes),
            transform=ax.transAxes,
            fontsize=7,
            va="bottom",
            ha="left",
            color="0.3",
        )


def _save(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    paths = []
    for fmt in FORMATS:
        path = out_dir / f"{name}.{fmt}"
        # No dates or random ids in the files, so an unchanged run gives unchanged figures;
        # SVG text stays text, editable and searchable.
        metadata = {"Date": None} if fmt == "svg" else {"Software": None}
        with matplotlib.rc_context({"svg.hashsalt": "vae-bench", "svg.fonttype": "none"}):
            fig.savefig(path, format=fmt, dpi=120, metadata=metadata)
        paths.append(path)
    return paths


def _figure(
    panels: Sequence[_Panel], x: str, suptitle: str, out_dir: Path, name: str
) -> list[Path]:
    panels = [p for p in panels if not p.data.empty]
    if not panels:
        log.info("figure %s skipped: no rows", name)
        return []
    everything = pd.concat([p.data for p in panels])
    styles = _Styles(everything, _style_keys(everything))
    ncols = min(len(panels), 2)
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(5.2 * ncols, 3.9 * nrows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    handles: dict[str, Line2D] = {}
    for ax, panel in zip(axes, panels, strict=False):
        _draw_panel(ax, panel, x, styles, handles)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(suptitle, fontsize=11)
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="outside lower center",
            ncols=min(len(handles), 3),
            fontsize=8,
            frameon=False,
        )
    return _save(fig, out_dir, name)


def _quality_panels(q: pd.DataFrame) -> list[_Panel]:
    present = list(dict.fromkeys(q["metric"].astype(str)))
    ordered = [m for m in QUALITY_ORDER if m in present] + sorted(
        m for m in present if m not in QUALITY_ORDER
    )
    return [_Panel(m, metric_info(m).axis_label(), q[q["metric"] == m], logy=False)
            for m in ordered]


def _phase_panels(rows: pd.DataFrame, what: str, ylabel: str) -> list[_Panel]:
    return [
        _Panel(f"{phase}: {what}", ylabel, rows[rows["phase"] == phase], logy=True)
        for phase in PLOT_PHASES
    ]


def plot_run(
    results: pd.DataFrame, out_dir: Path, frames: pd.DataFrame | None = None
) -> list[Path]:
    """Draw every figure the results allow into ``out_dir``; return the files written.

    Figures (each as PNG and SVG): ``quality_vs_resolution``, ``quality_vs_clip_length``,
    ``throughput_vs_resolution``, ``throughput_vs_clip_length``, ``memory_vs_resolution``,
    ``memory_vs_clip_length``, and the temporal ones of :mod:`vae_bench.report.temporal`
    (those by frame and group position need ``frames``, the run's ``frames.csv``).
    A figure without any ok rows of its kind is not written.
    """
    from vae_bench.report.temporal import plot_temporal

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    df = _ok_rows(results)
    quality = df[df["kind"] == "quality"]
    eff = df[df["kind"] == "efficiency"]
    kinds = {
        "quality": (quality, _quality_panels, "Reconstruction quality"),
        "throughput": (
            eff[eff["metric"] == THROUGHPUT_METRIC],
            lambda d: _phase_panels(d, "throughput", "frames / s"),
            "Throughput",
        ),
        "memory": (
            _memory_rows(eff),
            lambda d: _phase_panels(d, "peak memory", _memory_label(d)),
            "Peak memory",
        ),
    }
    written: list[Path] = []
    for kind, (rows, panels, heading) in kinds.items():
        if rows.empty:
            log.info("%s figures skipped: no ok rows", kind)
            continue
        for x, axis_name, axis_words in (
            (_X_PIXELS, "resolution", "resolution"),
            (_X_FRAMES, "clip_length", "clip length"),
        ):
            fixed, at = _fix_other_axis(rows, x)
            title = f"{heading} vs {axis_words}, at {at}"
            written += _figure(panels(fixed), x, title, out_dir, f"{kind}_vs_{axis_name}")
    return written + plot_temporal(results, frames, out_dir)
