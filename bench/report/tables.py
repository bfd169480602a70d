"""Paper-ready tables from a run's ``results.csv``: Markdown, LaTeX (booktabs) or CSV.

A *layout* names the columns of a table the way a paper's main table has them (the
WF-VAE table: latent channels, parameters, encode throughput and memory, then PSNR,
SSIM, LPIPS and rFVD per dataset). One table shows one operating point, so a layout
selects one resolution, clip length and (for timings) batch size; by default the
largest resolution with at least one finished value, then the longest clip there. The
footnote says what was chosen, and on what device, dtype, protocol and clip count the
numbers rest, so a table never travels without its conditions.

The best value of each column is bold; every value that ties with it at the printed
precision is bold too (a reader cannot tell them apart, so neither does the table).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vae_bench.metric_info import MetricInfo, metric_info
from vae_bench.report.table_formats import FORMATS, notes_text, render

MISSING = "—"
STATUS_TEXT = {
    "oom": "OOM",
    "error": "error",
    "skipped": "skipped",
    "unavailable": "n/a",
    "nonfinite": "NaN",
}


class TableError(ValueError):
    """A table cannot be built as asked; the message names the option and allowed values."""


# --------------------------------------------------------------------------- metrics

#: Names a layout may use for "whichever of these the run has", first present wins.
ALIASES: dict[str, tuple[str, ...]] = {
    "memory": ("peak_allocated_mb", "peak_rss_mb"),
    "fvd": ("rfvd", "fvd"),
}


# --------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a layout.

    ``source``: ``latent_channels``, ``params`` (model facts), ``efficiency`` (a metric
    of ``phase``) or ``quality`` (repeated for each dataset). ``metric`` may be an alias
    (``memory``, ``fvd``). ``label``/``unit``/``scale`` override the metric's defaults;
    ``{Phase}`` in a label becomes the phase shown (``Encode``, ``Decode``, ...).
    """

    source: str
    metric: str = ""
    phase: str = ""
    label: str = ""
    unit: str | None = None
    scale: float | None = None
    group: str | None = None  # header group; default: the dataset or the phase


@dataclass(frozen=True)
class Layout:
    name: str
    description: str
    columns: tuple[ColumnSpec, ...]


LAYOUTS: dict[str, Layout] = {}


def register_layout(layout: Layout, *, replace_existing: bool = False) -> Layout:
    """Add a layout to the registry (``vae-bench table --layout NAME``)."""
    if layout.name in LAYOUTS and not replace_existing:
        raise TableError(f"layout {layout.name!r} is already registered")
    for column in layout.columns:
        if column.source not in ("latent_channels", "params", "efficiency", "quality"):
            raise TableError(f"layout {layout.name}: unknown column source {column.source!r}")
        if column.source == "efficiency" and not column.phase:
            raise TableError(f"layout {layout.name}: efficiency column {column.metric} needs "
                             "a phase (encode, decode or roundtrip)")
    LAYOUTS[layout.name] = layout
    return layout


_GIB = dict(unit="GiB", scale=1.0 / 1024)
register_layout(Layout(
    "wf-vae",
    "the columns of WF-VAE's main comparison (CVPR 2025): latent channels, parameters, "
    "encode throughput and memory, then PSNR, SSIM, LPIPS and rFVD per dataset",
    (
        ColumnSpec("latent_channels"),
        ColumnSpec("params"),
        ColumnSpec("efficiency", "clips_per_s", "encode", label="{Phase} TP", group=""),
        ColumnSpec("efficiency", "memory", "encode", label="{Phase} Mem.", group="", **_GIB),
        ColumnSpec("quality", "psnr"),
        ColumnSpec("quality", "ssim"),
        ColumnSpec("quality", "lpips"),
        ColumnSpec("quality", "fvd"),
    ),
))  # fmt: skip
register_layout(Layout(
    "quality",
    "reconstruction quality per dataset: PSNR (per-frame mean and whole clip), SSIM, "
    "LPIPS and rFVD",
    (
        ColumnSpec("params"),
        ColumnSpec("quality", "psnr"),
        ColumnSpec("quality", "psnr_clip"),
        ColumnSpec("quality", "ssim"),
        ColumnSpec("quality", "lpips"),
        ColumnSpec("quality", "fvd"),
    ),
))  # fmt: skip
register_layout(Layout(
    "efficiency",
    "encode and decode cost: median latency, throughput and peak memory",
    tuple(
        ColumnSpec("efficiency", metric, phase, label=label)
        for phase in ("encode", "decode")
        for metric, label in (("latency_s", ""), ("frames_per_s", ""), ("memory", ""))
    ) + (ColumnSpec("params"),),
))  # fmt: skip


def get_layout(name: str) -> Layout:
    if name not in LAYOUTS:
        raise TableError(f"unknown layout {name!r}; registered: {', '.join(LAYOUTS)}")
    return LAYOUTS[name]


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    unit: str
    higher_is_better: bool | None
    group: str = ""

    def header(self, arrow_up: str = "↑", arrow_down: str = "↓") -> str:
        unit = f" ({self.unit})" if self.unit else ""
        arrow = {True: f" {arrow_up}", False: f" {arrow_down}", None: ""}[self.higher_is_better]
        return f"{self.label}{unit}{arrow}"


@dataclass(frozen=True)
class Cell:
    """A value in display units, or the status that stands in for it."""

    value: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    status: str = "missing"  # ok | missing | oom | error | skipped | unavailable | ...
    text: str = ""  # the formatted value (without markup), set by the builder
    ci_text: str = ""  # the formatted CI half-width, "" when not shown
    best: bool = False


@dataclass(frozen=True)
class Table:
    """A built table, independent of the output format."""

    title: str
    columns: tuple[Column, ...]
    row_labels: tuple[str, ...]
    cells: tuple[tuple[Cell, ...], ...]  # [row][column]
    notes: tuple[str, ...] = ()
    row_keys: tuple[tuple[str, ...], ...] = ()  # (model, weights, dtype, mode) per row

    @property
    def groups(self) -> list[tuple[str, int]]:
        """Consecutive column groups as ``(name, span)``."""
        spans: list[tuple[str, int]] = []
        for column in self.columns:
            if spans and spans[-1][0] == column.group:
                spans[-1] = (column.group, spans[-1][1] + 1)
            else:
                spans.append((column.group, 1))
        return spans

    @property
    def grouped(self) -> bool:
        return len({c.group for c in self.columns if c.group}) > 1


@dataclass(frozen=True)
class TableOptions:
    """Which operating point a table shows; ``None`` picks the default (see module doc)."""

    resolution: tuple[int, int] | None = None
    frames: int | None = None  # frames requested (the frame rule may fit it down per model)
    batch_size: int | None = None  # efficiency cells; default: the smallest present
    dtype: str | None = None
    mode: str | None = None
    datasets: tuple[str, ...] | None = None
    models: tuple[str, ...] | None = None  # filter and order of the rows
    phase: str | None = None  # show every efficiency column for this phase instead
    ci: bool = True
    build_models: bool = False  # build random-weight models for undeclared latent channels
    latent_channels: Mapping[str, int] = field(default_factory=dict)  # explicit values


def parse_resolution(text: str | int | tuple[int, int]) -> tuple[int, int]:
    """``256`` or ``"256"`` (square) or ``"256x448"`` (height x width)."""
    if isinstance(text, tuple):
        return int(text[0]), int(text[1])
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) <= 0:
        raise TableError(f"resolution {text!r}: write a side (256) or HEIGHTxWIDTH (256x448)")
    return (values[0], values[-1])


# ------------------------------------------------------------------ latent channels

LATENT_CONFIG_KEYS = ("latent_channels", "latent_dim", "z_dim", "z_channels", "embed_dim")


def latent_channels(model: str, *, build: bool = False) -> tuple[int | None, str]:
    """A preset's latent channels without building the model, and where they came from.

    Read from the preset's architecture config (``latent_channels``, ``latent_dim``,
    ...); building a large model only to read its spec would cost seconds to minutes
    and gigabytes, so that happens only with ``build=True`` (random weights).
    """
    from vae_bench.adapters import AdapterError, get_preset

    try:
        preset = get_preset(model)
    except AdapterError:
        return None, "not a registered preset"
    for key in LATENT_CONFIG_KEYS:
        value = preset.config.get(key)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return int(value), f"preset config '{key}'"
    if build:
        return int(preset.create("random").spec.latent_channels), "model spec (random build)"
    return None, "not declared in the preset config"


# ------------------------------------------------------------------------ building

_REQUIRED = ("kind", "model", "weights", "params", "dataset", "protocol", "height", "width",
             "frames_requested", "frames", "batch_size", "dtype", "mode", "device", "phase",
             "metric", "value", "ci_low", "ci_high", "n", "status", "message")  # fmt: skip


@dataclass(frozen=True)
class _Point:
    """The operating point of one kind of cell."""

    height: int
    width: int
    frames_requested: int
    batch_size: int | None = None

    @property
    def size(self) -> str:
        return f"{self.height}x{self.width}"


def _check_columns(results: pd.DataFrame) -> None:
    missing = [c for c in _REQUIRED if c not in results.columns]
    if missing:
        raise TableError(f"results lack column(s) {', '.join(missing)}; is this a results.csv?")


def key_text(series: pd.Series) -> pd.Series:
    """A key column as text; whole floats (``256.0``, read next to blanks) as ``256``."""
    def one(value: Any) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return ""
            if value.is_integer():
                return str(int(value))
        return str(value)

    return series.map(one)


def _clean(results: pd.DataFrame) -> pd.DataFrame:
    df = results.copy()
    for column in ("dataset", "phase", "message", "protocol", "mode", "dtype", "weights",
                   "device", "status", "metric", "model"):  # fmt: skip
        df[column] = key_text(df[column])
    return df


def _pick_point(rows: pd.DataFrame, kind: str, options: TableOptions) -> _Point | None:
    if rows.empty:
        return None
    if options.frames is not None and options.resolution is None:
        with_frames = rows[rows.frames_requested == options.frames]
        rows = with_frames if len(with_frames) else rows  # else: the error below names them
    sizes = sorted({(int(h), int(w)) for h, w in zip(rows.height, rows.width, strict=True)},
                   key=lambda s: (s[0] * s[1], s[0]))
    ok = rows[rows.status == "ok"]
    if options.resolution is not None:
        if options.resolution not in sizes:
            raise TableError(f"resolution {options.resolution[0]}x{options.resolution[1]}: no "
                             f"{kind} cells; present: {', '.join(f'{h}x{w}' for h, w in sizes)}")
        height, width = options.resolution
    else:
        ok_sizes = {(int(h), int(w)) for h, w in zip(ok.height, ok.width, strict=True)}
        height, width = [s for s in sizes if s in ok_sizes or not ok_sizes][-1]
    at = rows[(rows.height == height) & (rows.width == width)]
    frames = sorted(set(at.frames_requested.astype(int)))
    if options.frames is not None:
        if options.frames not in frames:
            raise TableError(f"frames {options.frames}: no {kind} cells at {height}x{width}; "
                             f"present (requested): {', '.join(map(str, frames))}")
        chosen = options.frames
    else:
        ok_at = set(at[at.status == "ok"].frames_requested.astype(int))
        chosen = [f for f in frames if f in ok_at or not ok_at][-1]
    batch = None
    if kind == "efficiency":
        here = at[at.frames_requested == chosen]
        batches = sorted(set(here.batch_size.astype(int)))
        if options.batch_size is not None:
            if options.batch_size not in batches:
                raise TableError(f"batch size {options.batch_size}: no efficiency cells there; "
                                 f"present: {', '.join(map(str, batches))}")
            batch = options.batch_size
        else:
            batch = batches[0]
    return _Point(height, width, chosen, batch)


def _at(rows: pd.DataFrame, point: _Point | None) -> pd.DataFrame:
    if point is None:
        return rows.iloc[0:0]
    keep = ((rows.height == point.height) & (rows.width == point.width)
            & (rows.frames_requested == point.frames_requested))  # fmt: skip
    if point.batch_size is not None:
        keep &= rows.batch_size == point.batch_size
    return rows[keep]


def _short_weights(weights: str) -> str:
    return weights[:8] if len(weights) == 64 else weights


def _row_keys(quality: pd.DataFrame, efficiency: pd.DataFrame,
              notes: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add ``row_weights``, the checkpoint a row of the table stands for.

    Timings and memory do not depend on weight values, so a model's efficiency cells
    run with random weights join the row of its one evaluated checkpoint.
    """
    checkpoints = quality.groupby("model").weights.agg(lambda w: sorted(set(w))).to_dict()
    joined: dict[str, set[str]] = {}

    def eff_weights(model: str, weights: str) -> str:
        known = checkpoints.get(model, [])
        if weights in known or len(known) != 1:
            return weights
        joined.setdefault(model, set()).add(weights)
        return known[0]

    quality = quality.assign(row_weights=quality.weights)
    efficiency = efficiency.assign(row_weights=[
        eff_weights(m, w) for m, w in zip(efficiency.model, efficiency.weights, strict=True)
    ])
    if joined:
        described = {m: "random" if w == {"random"} else "other" for m, w in joined.items()}
        for kind in ("random", "other"):
            models = sorted(m for m, d in described.items() if d == kind)
            if models:
                notes.append(f"Timings and memory of {', '.join(models)} were measured with "
                             f"{kind} weights (they do not depend on the weight values).")
    return quality, efficiency


def _row_label(key: tuple[str, str, str, str], varying: dict[str, bool],
               multi_ckpt: set[str]) -> str:
    model, weights, dtype, mode = key
    extras = []
    if weights == "random":
        extras.append("random weights")
    elif model in multi_ckpt:
        extras.append(f"@{_short_weights(weights)}")
    if varying["dtype"]:
        extras.append(dtype)
    if varying["mode"]:
        extras.append(mode)
    return f"{model} ({', '.join(extras)})" if extras else model


def _auto_decimals(values: Iterable[float]) -> int:
    finite = [abs(v) for v in values if math.isfinite(v) and v != 0]
    if not finite:
        return 2
    return int(min(6, max(0, 2 - math.floor(math.log10(min(finite))))))


def _fmt(value: float, decimals: int) -> str:
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.{decimals}f}"


def _finish_column(cells: list[Cell], info: MetricInfo, decimals: int | None,
                   ci: bool) -> list[Cell]:
    """Format values, CI half-widths and mark the best (ties included)."""
    ok = [c for c in cells if c.status == "ok" and not math.isnan(c.value)]
    if decimals is None:
        decimals = _auto_decimals(c.value for c in ok)
    shown = {id(c): (c.value if math.isinf(c.value) else round(c.value, decimals)) for c in ok}
    best_value = None
    if info.higher_is_better is not None and len(ok) >= 2:
        pick = max if info.higher_is_better else min
        best_value = pick(shown.values())
    out = []
    for c in cells:
        if c.status != "ok" or math.isnan(c.value):
            status = c.status if c.status != "ok" else "missing"
            out.append(replace(c, status=status, text=STATUS_TEXT.get(status, MISSING)))
            continue
        ci_text = ""
        if ci and math.isfinite(c.ci_low) and math.isfinite(c.ci_high) and math.isfinite(c.value):
            ci_text = _fmt((c.ci_high - c.ci_low) / 2, decimals)
        out.append(replace(c, text=_fmt(c.value, decimals), ci_text=ci_text,
                           best=best_value is not None and shown[id(c)] == best_value))
    return out


def _pick(frame: pd.DataFrame) -> pd.Series | None:
    """One row of possibly duplicated ones: a finished one if any, else the last."""
    if frame.empty:
        return None
    ok = frame[frame.status == "ok"]
    return (ok if len(ok) else frame).iloc[-1]


def _resolve_alias(metric: str, rows: pd.DataFrame) -> str:
    for name in ALIASES.get(metric, (metric,)):
        if ((rows.metric == name) & (rows.status == "ok")).any():
            return name
    for name in ALIASES.get(metric, (metric,)):
        if (rows.metric == name).any():
            return name
    return ALIASES.get(metric, (metric,))[0]


def _common_prefix(texts: Sequence[str]) -> str:
    prefix = os.path.commonprefix(list(texts))
    return prefix[: prefix.rfind(";") + 1] if len(texts) > 1 else ""


def _protocol_notes(rows: pd.DataFrame, kind: str) -> list[str]:
    rows = rows[rows.status == "ok"]  # a skipped or failed row records no conventions
    texts = sorted(set(rows.protocol) - {""})
    if not texts:
        return []
    if kind == "efficiency":
        return [f"Timing protocol: {'; '.join(texts)}."] if len(texts) == 1 else [
            f"Timing protocols differ between rows: {' | '.join(texts)}."]
    notes = []
    for dataset, part in rows.groupby("dataset", sort=False):
        protos = sorted(set(part.protocol) - {""})
        if not protos:
            continue
        prefix = _common_prefix(protos)
        rest = [p[len(prefix):] for p in protos]
        body = f"{prefix.rstrip(';')}; " if prefix else ""
        notes.append(f"Protocol ({dataset}): {body}{' | '.join(rest)}.")
        for metric, by_metric in part.groupby("metric"):
            if len(set(by_metric.protocol) - {""}) > 1:
                notes.append(f"Warning: {dataset} {metric} was measured under different "
                             "protocols in different rows; those values are not comparable.")
    return notes


def _frames_used(rows: pd.DataFrame) -> str:
    """``"33 used"``, or ``"33 used; acme-vae 32"`` where a frame rule fitted it down."""
    per_model = rows.groupby("model", sort=False).frames.agg(lambda f: sorted(set(map(int, f))))
    counts = pd.Series([f for fs in per_model for f in fs]).value_counts()
    common = int(counts.index[0]) if len(counts) else 0
    others = [f"{model} {', '.join(map(str, fs))}" for model, fs in per_model.items()
              if fs != [common]]
    return f"{common} used" + (f"; {'; '.join(others)}" if others else "")


def _n_text(values: Iterable[float]) -> str:
    ns = sorted({int(v) for v in values if not pd.isna(v)})
    if not ns:
        return "?"
    return str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"


def _expand(layout: Layout, datasets: Sequence[str],
            phase: str | None = None) -> list[tuple[ColumnSpec, str]]:
    """Layout columns in table order: every quality column of a dataset side by side;
    with ``phase``, efficiency columns of that phase (duplicates merged)."""
    quality = [c for c in layout.columns if c.source == "quality"]
    out: list[tuple[ColumnSpec, str]] = []
    seen: set[tuple[str, str, str]] = set()
    for spec in layout.columns:
        if spec.source == "efficiency":
            spec = replace(spec, phase=phase or spec.phase)
            spec = replace(spec, label=spec.label.replace("{Phase}", spec.phase.capitalize()))
            if (spec.metric, spec.phase, spec.label) in seen:
                continue
            seen.add((spec.metric, spec.phase, spec.label))
            out.append((spec, ""))
        elif spec.source != "quality":
            out.append((spec, ""))
        elif spec is quality[0]:
            out += [(q, dataset) for dataset in datasets for q in quality]
    return out


def _nothing_to_show(layout: Layout, sources: set[str], everything: pd.DataFrame,
                     options: TableOptions) -> str:
    """Why a layout has no cells, with the settings its kinds of cells do have."""
    kinds = [k for k in ("quality", "efficiency") if k in sources]
    chosen = ", ".join(f"{k}={v}" for k, v in (("dtype", options.dtype),
                                               ("mode", options.mode)) if v)
    if options.models:
        chosen += f"{', ' if chosen else ''}models {' '.join(options.models)}"
    present = []
    for kind in kinds:
        rows = everything[everything.kind == kind]
        if rows.empty:
            present.append(f"no {kind} cells at all")
            continue
        present.append(f"{kind} cells have mode {', '.join(sorted(set(rows['mode'])))}; "
                       f"dtype {', '.join(sorted(set(rows.dtype)))}; "
                       f"models {', '.join(sorted(set(rows.model)))}")
    return (f"layout {layout.name}: no {' or '.join(kinds)} cells"
            f"{f' with {chosen}' if chosen else ''}; present: {'; '.join(present)}")


def build_table(results: pd.DataFrame, layout: str | Layout = "wf-vae",
                options: TableOptions | None = None) -> Table:
    """Build ``layout`` from a results table (``vae_bench.results.read_results``)."""
    options = options or TableOptions()
    layout = get_layout(layout) if isinstance(layout, str) else layout
    _check_columns(results)
    df = _clean(results)
    if options.dtype is not None:
        if options.dtype not in set(df.dtype):
            raise TableError(f"dtype {options.dtype}: not in results; present: "
                             f"{', '.join(sorted(set(df.dtype)))}")
        df = df[df.dtype == options.dtype]
    if options.mode is not None:
        if options.mode not in set(df["mode"]):
            raise TableError(f"mode {options.mode}: not in results; present: "
                             f"{', '.join(sorted(set(df['mode'])))}")
        df = df[df["mode"] == options.mode]
    if options.models is not None:
        unknown = [m for m in options.models if m not in set(df.model)]
        if unknown:
            raise TableError(f"models {', '.join(unknown)}: not in results; present: "
                             f"{', '.join(dict.fromkeys(df.model))}")
        df = df[df.model.isin(options.models)]
    notes: list[str] = []
    sources = {c.source for c in layout.columns}

    quality = df[df.kind == "quality"]
    datasets = list(dict.fromkeys(d for d in quality.dataset if d))
    if options.datasets is not None:
        unknown = [d for d in options.datasets if d not in datasets]
        if unknown:
            raise TableError(f"datasets {', '.join(unknown)}: no quality cells; present: "
                             f"{', '.join(datasets) or 'none'}")
        datasets = list(options.datasets)
        quality = quality[quality.dataset.isin(datasets)]
    efficiency = df[df.kind == "efficiency"]
    q_point = _pick_point(quality, "quality", options) if "quality" in sources else None
    e_point = _pick_point(efficiency, "efficiency", options) if "efficiency" in sources else None
    quality, efficiency = _at(quality, q_point), _at(efficiency, e_point)
    if q_point is None and e_point is None:
        raise TableError(_nothing_to_show(layout, sources, _clean(results), options))
    quality, efficiency = _row_keys(quality, efficiency, notes)

    key_cols = ["model", "row_weights", "dtype", "mode"]
    everything = pd.concat([quality, efficiency], ignore_index=True)
    keys = list(dict.fromkeys(tuple(map(str, k)) for k in everything[key_cols].itertuples(
        index=False)))
    # results.csv lists cells in storage order, which says nothing: rows go by model name
    # (or the order asked for), then checkpoint, dtype and mode
    order = options.models if options.models is not None else sorted({k[0] for k in keys})
    keys.sort(key=lambda k: (order.index(k[0]), k[1:]))
    varying = {"dtype": len({k[2] for k in keys}) > 1, "mode": len({k[3] for k in keys}) > 1}
    checkpoints = pd.Series([m for m, _ in {(k[0], k[1]) for k in keys
                                             if k[1] not in ("random", "none")}])
    multi_ckpt = set(checkpoints[checkpoints.duplicated()])
    labels = [_row_label(k, varying, multi_ckpt) for k in keys]
    by_key = {k: g for k, g in everything.groupby(key_cols, sort=False)}

    def group_of(key: tuple[str, ...]) -> pd.DataFrame:
        return by_key.get(tuple(key), everything.iloc[0:0])

    columns: list[Column] = []
    column_cells: list[list[Cell]] = []
    latent_sources: dict[str, str] = {}
    used: dict[str, list[str]] = {"quality": [], "efficiency": [], "params": [],
                                  "latent_channels": []}
    if options.phase is not None:
        phases = sorted(set(efficiency.phase) - {""})
        if options.phase not in phases:
            raise TableError(f"phase {options.phase}: no efficiency rows; present: "
                             f"{', '.join(phases) or 'none'}")
    for spec, dataset in _expand(layout, datasets, options.phase):
        kind_rows = {"quality": quality[quality.dataset == dataset],
                     "efficiency": efficiency[efficiency.phase == spec.phase]}.get(
                         spec.source, everything)
        metric = (_resolve_alias(spec.metric, kind_rows) if spec.metric
                  else spec.source)
        info = metric_info(metric)
        scale = spec.scale if spec.scale is not None else info.scale
        unit = spec.unit if spec.unit is not None else info.unit
        label = spec.label or info.label
        group = spec.group if spec.group is not None else (
            dataset if spec.source == "quality" else spec.phase)
        cells = []
        for key in keys:
            rows = group_of(key)
            if spec.source == "latent_channels":
                value, source = options.latent_channels.get(key[0], None), "given"
                if value is None:
                    value, source = latent_channels(key[0], build=options.build_models)
                latent_sources[key[0]] = source
                cells.append(Cell(float(value), status="ok") if value is not None
                             else Cell())
                continue
            if spec.source == "params":
                params = pd.to_numeric(rows.params, errors="coerce").dropna()
                cells.append(Cell(float(params.iloc[0]) * scale, status="ok")
                             if len(params) else Cell())
                continue
            kind = spec.source
            part = rows[rows.kind == kind]
            part = part[part.dataset == dataset] if kind == "quality" else part[
                (part.phase == spec.phase) | (part.metric == "cell")]
            row = _pick(part[part.metric == metric])
            if row is None:  # a failed cell or phase writes one row for all its metrics
                failed = _pick(part[part.status.isin(["oom", "error"])])
                cells.append(Cell(status=failed.status) if failed is not None else Cell())
                continue
            if row.status != "ok":
                cells.append(Cell(status=row.status))
                continue
            cells.append(Cell(float(row.value) * scale, float(row.ci_low) * scale,
                              float(row.ci_high) * scale, "ok"))
        statuses = {c.status for c in cells}
        if statuses <= {"missing", "skipped"} and spec.source in ("quality", "efficiency"):
            where = f" on {dataset}" if dataset else (f" ({spec.phase})" if spec.phase
                                                      else "")
            reason = ("skipped" if "skipped" in statuses else "not measured in this run")
            notes.append(f"{label}{where}: {reason}; column left out.")
            if "skipped" in statuses:
                messages = set(kind_rows[(kind_rows.metric == metric)
                                         & (kind_rows.status == "skipped")].message) - {""}
                if messages:
                    notes[-1] = notes[-1][:-1] + f" ({'; '.join(sorted(messages))})."
            continue
        if spec.source == "latent_channels" and statuses == {"missing"}:
            notes.append("Latent channels: not declared by any preset config; column left "
                         "out (--build-models reads them from the model specs).")
            continue
        decimals = info.decimals if spec.scale is None and spec.unit is None else None
        columns.append(Column(f"{spec.source}:{dataset or spec.phase}:{metric}", label,
                              unit, info.higher_is_better, group))
        used[spec.source].append(spec.phase or metric)
        column_cells.append(_finish_column(cells, info, decimals, options.ci))

    cells_by_row = tuple(tuple(col[i] for col in column_cells) for i in range(len(keys)))
    notes = _footnote(quality[quality.metric.isin(used["quality"])],
                      efficiency[efficiency.phase.isin(used["efficiency"])
                                 | (efficiency.metric == "cell")],
                      q_point, e_point, df, cells_by_row, columns, latent_sources,
                      options) + notes
    title = f"{layout.name}: {layout.description}"
    return Table(title, tuple(columns), tuple(labels), cells_by_row, tuple(notes), tuple(keys))


def _footnote(quality: pd.DataFrame, efficiency: pd.DataFrame,
              q_point: _Point | None, e_point: _Point | None, df: pd.DataFrame,
              cells: tuple[tuple[Cell, ...], ...], columns: list[Column],
              latent_sources: dict[str, str], options: TableOptions) -> list[str]:
    notes: list[str] = []
    used_quality = any(c.key.startswith("quality:") for c in columns)
    used_eff = any(c.key.startswith("efficiency:") for c in columns)
    if options.resolution is None and options.frames is None:
        default = " (default: the largest size measured, then its longest clips)"
    elif options.frames is None:
        default = " (default: the longest clips measured at this size)"
    else:
        default = ""
    if used_quality and q_point is not None:
        used = _frames_used(quality)
        ok = quality[quality.status == "ok"]
        shown_ci = any(c.ci_text for row in cells for c in row)
        ci = (" ± half-width of the 95% Student-t interval of the mean over clips"
              if shown_ci else "")
        notes.append(
            f"Quality: {', '.join(dict.fromkeys(quality.dataset))} at {q_point.size}, "
            f"{q_point.frames_requested} frames requested ({used}){default}; "
            f"n = {_n_text(ok.n)} clips per value; mean over clips{ci}.")
    if used_eff and e_point is not None:
        phases = list(dict.fromkeys(c.key.split(":")[1] for c in columns
                                    if c.key.startswith("efficiency:")))
        frames = _frames_used(efficiency)
        memory = sorted({c.key.rsplit(":", 1)[1] for c in columns
                         if c.key.rsplit(":", 1)[1] in ALIASES["memory"]})
        what = {"peak_allocated_mb": "peak CUDA allocator memory (allocated)",
                "peak_rss_mb": "peak process RSS"}
        mem = (f"; memory: {', '.join(what.get(m, m) for m in memory)}" if memory else "")
        ok = efficiency[efficiency.status == "ok"]
        notes.append(
            f"Efficiency: {', '.join(phases)} at {e_point.size}, "
            f"{e_point.frames_requested} frames requested ({frames}), batch "
            f"{e_point.batch_size}{default}; latency and throughput from the median of "
            f"{_n_text(ok.n)} timed repeats{mem}.")
    shown = pd.concat([quality, efficiency], ignore_index=True)
    devices = ", ".join(sorted(set(shown.device) - {""})) or "?"
    dtypes = ", ".join(sorted(set(shown.dtype) - {""})) or "?"
    modes = ", ".join(sorted(set(shown["mode"]) - {""})) or "?"
    notes.append(f"Device: {devices}; dtype: {dtypes}; inference mode: {modes}.")
    if used_quality:
        notes += _protocol_notes(quality, "quality")
    if used_eff:
        notes += _protocol_notes(efficiency, "efficiency")
    notes.append("Bold: best per column (all ties bold); ↑ higher is better, ↓ lower is "
                 f"better; {MISSING} not measured, OOM out of memory.")
    if latent_sources and any(c.key.startswith("latent_channels") for c in columns):
        parts = [f"{model}: {source}" for model, source in latent_sources.items()]
        notes.append(f"Latent channels — {'; '.join(parts)}.")
    failed = shown[shown.status.isin(["skipped", "oom", "error"])]
    for (metric, status), part in failed.groupby(["metric", "status"]):
        messages = sorted(set(part.message) - {""})
        if messages and any(c.status == status for row in cells for c in row):
            what = STATUS_TEXT[status] + ("" if metric == "cell" else f" ({metric})")
            notes.append(f"{what}: {'; '.join(messages)}.")
    provenance = []
    for column in ("run", "suite_version", "git_sha", "torch_version", "cuda_version"):
        if column in df.columns:
            values = sorted({str(v) for v in df[column].dropna()} - {""})
            if values:
                provenance.append(f"{column} {', '.join(values)}")
    if provenance:
        notes.append(f"Source: {'; '.join(provenance)}.")
    return notes


# ------------------------------------------------------------------------ command


def make_table(
    results: str | Path,
    layout: str = "wf-vae",
    fmt: str = "md",
    *,
    resolution: str | None = None,
    frames: int | None = None,
    batch_size: int | None = None,
    dtype: str | None = None,
    mode: str | None = None,
    phase: str | None = None,
    datasets: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    ci: bool = True,
    build_models: bool = False,
    output: str | Path | None = None,
    published: str | None = None,
) -> str:
    """``vae-bench table``: read a run (directory or results.csv), render, optionally write.

    A CSV table's footnotes go to :func:`csv_notes_path` beside ``output``, or to stderr.
    """
    from vae_bench.results import read_results

    if fmt not in FORMATS:
        raise TableError(f"format {fmt!r} unknown; allowed: {', '.join(FORMATS)}")
    options = TableOptions(
        resolution=parse_resolution(resolution) if resolution is not None else None,
        frames=frames, batch_size=batch_size, dtype=dtype, mode=mode, phase=phase,
        datasets=tuple(datasets) if datasets else None,
        models=tuple(models) if models else None, ci=ci, build_models=build_models,
    )  # fmt: skip
    frame = read_results(results)
    # --- published values beside ours (vae_bench.report.published), at the paper's size ---
    if published is not None:
        from vae_bench.report import published as paper

        size, length = paper.operating_point(paper.load_published(), published, frame,
                                             options.resolution, options.frames)
        options = replace(options, resolution=size, frames=length)
    table = build_table(frame, layout, options)
    if published is not None:
        table = paper.with_published(table, frame, published)
    # --- end published ---
    text = render(table, fmt)
    if output is not None:
        from vae_bench.results import atomic_write_text

        atomic_write_text(Path(output), text)
        if fmt == "csv":  # the CSV stays machine-readable: its footnotes go beside it
            atomic_write_text(csv_notes_path(output), notes_text(table))
    elif fmt == "csv":
        print(notes_text(table), end="", file=sys.stderr)  # stdout stays pure CSV
    return text


def csv_notes_path(output: str | Path) -> Path:
    """``table.csv`` -> ``table.notes.txt``: where a CSV table's footnotes go."""
    path = Path(output)
    return path.with_name(f"{path.stem}.notes.txt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``vae-bench table`` (dest names match :func:`make_table`)."""
    parser.add_argument("results", help="run directory or results.csv")
    parser.add_argument("--layout", default="wf-vae", choices=sorted(LAYOUTS),
                        help="columns of the table (default: wf-vae)")
    parser.add_argument("--format", dest="fmt", default="md", choices=FORMATS,
                        help="output format (default: md)")
    parser.add_argument("--resolution", default=None,
                        help="HEIGHTxWIDTH or side (default: largest with results)")
    parser.add_argument("--frames", type=int, default=None,
                        help="frames requested (default: longest at that resolution)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="batch of the efficiency cells (default: smallest)")
    parser.add_argument("--dtype", default=None, help="only this dtype (default: all, one row "
                        "each)")
    parser.add_argument("--mode", default=None, help="only this inference mode")
    parser.add_argument("--phase", default=None, choices=("encode", "decode", "roundtrip"),
                        help="show the efficiency columns for this phase (default: the "
                        "layout's, e.g. encode for wf-vae)")
    parser.add_argument("--datasets", nargs="+", default=None, help="datasets and their order")
    parser.add_argument("--models", nargs="+", default=None, help="rows and their order")
    parser.add_argument("--no-ci", dest="ci", action="store_false",
                        help="leave out the ± confidence half-widths")
    parser.add_argument("--build-models", action="store_true",
                        help="build models (random weights) whose presets do not declare "
                        "their latent channels")
    parser.add_argument("-o", "--output", default=None, help="write to this file too")
    parser.add_argument("--published", nargs="?", const="auto", default=None, metavar="SWEEP",
                        help="the paper's values and the difference beside each measured one "
                        "(default: the paper sweep named like the run; `vae-bench papers`)")
