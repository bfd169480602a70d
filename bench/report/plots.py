"""Figures of a run: quality, throughput and peak memory against resolution and clip length.

Only rows with status ``ok`` are drawn. A figure against resolution holds the clip length
fixed, and one against clip length holds the resolution fixed: the largest value that was
swept along the other axis (said in the figure's title), so the lines compare like with
like. Resolution is drawn as pixels per frame (H x W) on a log axis, ticks labelled
``HxW``. Each model keeps one colour and marker and each inference mode one line style
in every figure of a run (:mod:`vae_bench.report.style`); other settings that vary (dtype,
batch size, ...) are named in the legend. A metric without one finite value gets no
panel; the footer says which values were left out and why.

Figures are drawn on matplotlib's Agg canvas without pyplot, so importing or calling this
module never changes the caller's backend or global figure state.
"""

from __future__ import annotations

import logging
import math
import textwrap
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
from vae_bench.report.style import RC, Identity, footer, series_label

log = logging.getLogger(__name__)

#: Quality metrics in the order their panels appear; other quality metrics follow, sorted.
QUALITY_ORDER: tuple[str, ...] = ("psnr", "psnr_clip", "ssim", "lpips")
#: Quality metrics with figures of their own (``seams``), left out of ``quality_vs_*``.
OWN_FIGURE: tuple[str, ...] = ("seam_psnr_drop", "seam_discontinuity")
#: Phases drawn in the throughput and memory figures.
PLOT_PHASES: tuple[str, ...] = ("encode", "decode")
THROUGHPUT_METRIC = "frames_per_s"
LATENCY_METRIC = "latency_s"
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
#: Resolution of the PNGs and size (inches) of one panel: two panels side by side make a
#: figure about 950 pixels wide, readable in a README column.
DPI = 100
PANEL_SIZE = (4.7, 3.6)

_X_PIXELS = "pixels"
_X_FRAMES = "frames"
_FILLS = ("full", "none", "left", "bottom")


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


def varying_within_models(df: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """The ``keys`` that take several values for one model: they split its lines. A
    setting that only differs between models (e.g. their weights) is the model's own."""
    present = [k for k in keys if k in df.columns and k != "model"]
    if not present or df.empty:
        return []
    counts = df.groupby(df["model"].astype(str))[present].nunique(dropna=False)
    return [k for k in present if (counts[k] > 1).any()]


def _style_keys(df: pd.DataFrame) -> list[str]:
    return varying_within_models(df, STYLE_KEYS)


# --------------------------------------------------------------------------- drawing


class _Styles:
    """The run's :class:`Identity` for one figure: colour and marker by model, line style
    by inference mode; other settings that vary (dtype, batch size, ...) are named in the
    label and get hollow or half-filled markers."""

    def __init__(self, df: pd.DataFrame, keys: list[str], identity: Identity) -> None:
        self.keys = keys
        self.identity = identity
        values = df[keys].astype(str).drop_duplicates() if keys else pd.DataFrame(index=[0])
        others = sorted(
            {tuple(v for k, v in zip(keys, row, strict=True) if k != "mode")
             for row in values.itertuples(index=False, name=None)}
        )  # fmt: skip
        self.fill = {s: _FILLS[i % len(_FILLS)] for i, s in enumerate(others)}

    def label(self, model: str, setting: tuple[str, ...]) -> str:
        return series_label(model, dict(zip(self.keys, setting, strict=True)))

    def kwargs(self, model: str, setting: tuple[str, ...], mode: str) -> dict[str, object]:
        """Keywords of a line; ``mode`` is its rows' (also when the figure has one mode)."""
        named = dict(zip(self.keys, setting, strict=True))
        rest = tuple(v for k, v in named.items() if k != "mode")
        return {**self.identity.line(model, mode), "fillstyle": self.fill.get(rest, "full")}


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
    ax.set_xticks(ticks, labels, rotation=30 if x == _X_PIXELS else 0)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def plain_log_labels(ax: Axes, axis: str = "y") -> None:
    """Label a log axis ``200``, ``1e+04`` rather than ``2x10^2``, at 1-2-5 steps when it
    spans few decades (a single labelled decade would leave the reader guessing)."""
    which = ax.yaxis if axis == "y" else ax.xaxis
    which.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    which.set_minor_formatter(NullFormatter())
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    if lo > 0 and math.log10(hi / lo) <= 3:
        which.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))


def drawable(values: pd.Series, logy: bool = False) -> np.ndarray:
    """Which values a panel can draw: finite ones (and positive on a log axis)."""
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(v)
    return ok & (v > 0) if logy else ok


def left_out(name: str, values: pd.Series, logy: bool = False) -> str:
    """Why values of a panel are not drawn (``""`` when all are), for the footer."""
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    finite = np.isfinite(v)
    parts = []
    if n := int(np.isposinf(v).sum()):
        parts.append(f"{n} infinite value(s) not drawn (lossless reconstruction)")
    if n := int(np.isneginf(v).sum()):
        parts.append(f"{n} value(s) of -inf not drawn")
    if n := int(np.isnan(v).sum()):
        parts.append(f"{n} missing value(s) not drawn")
    if logy and (n := int((finite & (v <= 0)).sum())):
        parts.append(f"{n} value(s) <= 0 not drawn on the log axis")
    if not parts:
        return ""
    if not drawable(values, logy).any():
        return f"{name}: no panel, no value to draw ({'; '.join(parts)})"
    return f"{name}: {'; '.join(parts)}"


def _draw_panel(
    ax: Axes, panel: _Panel, x: str, styles: _Styles, handles: dict[str, Line2D]
) -> None:
    data = panel.data[drawable(panel.data["value"], panel.logy)]
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
        mode = str(rows["mode"].iloc[0]) if "mode" in rows.columns else "full"
        (line,) = ax.plot(points.index.to_numpy(), points.to_numpy(), label=label,
                          **styles.kwargs(model, setting, mode))  # fmt: skip
        handles.setdefault(label, line)

    ax.set_xscale("log")
    if panel.logy:
        ax.set_yscale("log")
        plain_log_labels(ax)
    _set_x_ticks(ax, data, x)
    ax.set_title(panel.title)
    ax.set_ylabel(panel.ylabel)
    ax.set_xlabel("resolution (HxW)" if x == _X_PIXELS else "frames per clip")
    ax.grid(True, which="major", alpha=0.3)


def _save(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    paths = []
    for fmt in FORMATS:
        path = out_dir / f"{name}.{fmt}"
        # No dates or random ids in the files, so an unchanged run gives unchanged figures;
        # SVG text stays text, editable and searchable.
        metadata = {"Date": None} if fmt == "svg" else {"Software": None}
        with matplotlib.rc_context({"svg.hashsalt": "vae-bench", "svg.fonttype": "none"}):
            fig.savefig(path, format=fmt, dpi=DPI, metadata=metadata)
        paths.append(path)
    return paths


def new_figure(n_panels: int, title: str) -> tuple[Figure, list[Axes]]:
    """A figure of ``n_panels`` axes, two per row, sized for a README column. The title
    is kept as the figure's label and drawn by :func:`figure_legend`."""
    ncols = min(n_panels, 2)
    nrows = math.ceil(n_panels / ncols)
    width = max(PANEL_SIZE[0] * ncols, 6.4)  # room for the title and legend
    fig = Figure(figsize=(width, PANEL_SIZE[1] * nrows + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    fig.set_label(title)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def figure_legend(fig: Figure, handles: dict[str, object], subtitle: str = "") -> None:
    """One legend for all panels at the top, headed by the figure's title (every figure
    has one; a separate suptitle would collide with it in the constrained layout, and the
    bottom is the footer's)."""
    size = float(RC["figure.titlesize"])  # type: ignore[arg-type]
    chars = int(fig.get_figwidth() * 72 / (size * 0.6))
    title = "\n".join(textwrap.fill(t, chars) for t in (fig.get_label(), subtitle) if t)
    if not handles:
        fig.suptitle(title)
        return
    fig.legend(list(handles.values()), list(handles), loc="outside upper center",
               ncols=min(len(handles), 3), frameon=False, title=title,
               title_fontproperties={"size": size})  # fmt: skip


def _figure(
    panels: Sequence[_Panel], x: str, suptitle: str, out_dir: Path, name: str,
    identity: Identity,
) -> list[Path]:  # fmt: skip
    panels = [p for p in panels if not p.data.empty]
    notes = [left_out(p.title, p.data["value"], p.logy) for p in panels]
    panels = [p for p in panels if drawable(p.data["value"], p.logy).any()]
    if not panels:
        log.info("figure %s skipped: nothing to draw", name)
        return []
    everything = pd.concat([p.data for p in panels])
    # settings that vary within a panel; e.g. each metric's own protocol does not split lines
    varying = {k for p in panels for k in _style_keys(p.data)}
    styles = _Styles(everything, [k for k in STYLE_KEYS if k in varying], identity)
    fig, axes = new_figure(len(panels), suptitle)
    handles: dict[str, Line2D] = {}
    for ax, panel in zip(axes, panels, strict=True):
        _draw_panel(ax, panel, x, styles, handles)
    figure_legend(fig, handles)
    footer(fig, notes)
    return _save(fig, out_dir, name)


def _quality_panels(q: pd.DataFrame) -> list[_Panel]:
    present = [m for m in dict.fromkeys(q["metric"].astype(str)) if m not in OWN_FIGURE]
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


def _time_memory_panels(rows: pd.DataFrame) -> list[_Panel]:
    """Encode and decode time per clip, then their peak memory (WF-VAE's Fig. 4)."""
    time = rows[rows["metric"] == LATENCY_METRIC]
    memory = _memory_rows(rows)
    label = _memory_label(memory) if len(memory) else ""
    return (_phase_panels(time, "time per clip", "seconds per clip")
            + _phase_panels(memory, "peak memory", label))  # fmt: skip


def plot_run(
    results: pd.DataFrame, out_dir: Path, frames: pd.DataFrame | None = None
) -> list[Path]:
    """Draw every figure the results allow into ``out_dir``; return the files written.

    Figures (each as PNG and SVG): ``quality_vs_resolution``, ``quality_vs_clip_length``,
    ``throughput_vs_resolution``, ``throughput_vs_clip_length``, ``memory_vs_resolution``,
    ``memory_vs_clip_length``, ``time_memory_vs_resolution``, the comparisons of
    :mod:`vae_bench.report.paper` and the temporal ones of :mod:`vae_bench.report.temporal`
    (those by frame and group position need ``frames``, the run's ``frames.csv``).
    A figure without any drawable rows of its kind is not written. Every model and mode
    looks the same in all of them (:class:`~vae_bench.report.style.Identity`).
    """
    from vae_bench.report.paper import plot_paper
    from vae_bench.report.temporal import plot_temporal

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    df = _ok_rows(results)
    identity = Identity.of(results, frames)  # all rows: a failed cell changes no colour
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
    with matplotlib.rc_context(RC):
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
                written += _figure(panels(fixed), x, title, out_dir, f"{kind}_vs_{axis_name}",
                                   identity)  # fmt: skip
        timed = eff[eff["metric"].isin([LATENCY_METRIC, CUDA_MEMORY_METRIC, HOST_MEMORY_METRIC])]
        if len(timed):
            fixed, at = _fix_other_axis(timed, _X_PIXELS)
            written += _figure(_time_memory_panels(fixed), _X_PIXELS,
                               f"Encode/decode time and memory vs resolution, at {at}",
                               out_dir, "time_memory_vs_resolution", identity)  # fmt: skip
        written += plot_paper(df, out_dir, identity)
        written += plot_temporal(results, frames, out_dir, identity)
    return written


# --------------------------------------------------------------------------- analysis


#: Settings held fixed when fitting memory growth; one exponent per model and setting.
GROWTH_KEYS: tuple[str, ...] = ("height", "width", "batch_size", "dtype", "mode", "device")


def memory_growth_exponent(df: pd.DataFrame, phase: str) -> pd.DataFrame:
    """How peak memory grows with clip length: the slope ``k`` of ``memory ~ frames**k``.

    Least squares fit of log(peak memory) on log(frames) over ok efficiency rows of
    ``phase``, per model and fixed setting (:data:`GROWTH_KEYS` present in ``df``). Peak
    memory is the CUDA allocator's on GPU rows and the process RSS on CPU rows; both
    include weights and inputs, so fixed costs pull the slope below that of the
    activations alone. Settings with fewer than two clip lengths get ``nan``.

    Returns one row per model and setting: the setting columns, ``metric``, ``exponent``,
    ``n_points``, ``frames_min``, ``frames_max``.
    """
    if phase not in ("encode", "decode", "roundtrip"):
        raise ValueError(f"unknown phase {phase!r}; allowed: encode, decode, roundtrip")
    rows = _ok_rows(df)
    rows = _memory_rows(rows[(rows["kind"] == "efficiency") & (rows["phase"] == phase)])
    rows = rows[np.isfinite(rows["value"]) & (rows["value"] > 0)]
    keys = ["model", *[k for k in GROWTH_KEYS if k in rows.columns]]
    columns = [*keys, "metric", "exponent", "n_points", "frames_min", "frames_max"]
    out = []
    for name, group in rows.groupby(keys, sort=True, dropna=False):
        name = name if isinstance(name, tuple) else (name,)
        frames = group["frames"].to_numpy(dtype=float)
        memory = group["value"].to_numpy(dtype=float)
        if len(np.unique(frames)) >= 2:
            slope = float(np.polyfit(np.log(frames), np.log(memory), 1)[0])
        else:
            slope = math.nan
        out.append(
            [
                *name,
                "/".join(sorted(set(group["metric"]))),
                slope,
                len(group),
                int(frames.min()),
                int(frames.max()),
            ]
        )
    return pd.DataFrame(out, columns=columns)


def memory_growth_table(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`memory_growth_exponent` of the encode and decode phases, where a run swept
    at least two clip lengths (empty otherwise)."""
    tables = [
        memory_growth_exponent(df, phase).assign(phase=phase) for phase in ("encode", "decode")
    ]
    table = pd.concat(tables, ignore_index=True)
    return table[table["n_points"] >= 2].reset_index(drop=True)
