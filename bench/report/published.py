"""Published numbers beside measured ones: ``vae-bench table RUN --published``.

The papers' values live in one tidy file shipped with the package (``published.csv``,
one row per value: paper, table, row, model, the preset that reproduces it, dataset,
metric, value, unit, the sweep that runs its protocol, and notes). A run made from one of
the ``papers/`` sweeps is matched to the rows of that sweep; each measured column of a
table gets the paper's value and the difference beside it.

Quality: ``Δ = ours - paper``, flagged ``(!)`` when it exceeds the tolerance that the
published numbers themselves allow: for each metric, the largest difference between two
published values of one checkpoint on one dataset under one protocol (the authors'
reports repeat some rows, and not identically), plus the half-width of our own 95%
interval. A metric the sources never repeat has no such spread, so its Δ is shown and
never flagged. Efficiency: absolute times and memory depend on the GPU, so the
comparison is of ratios to the sweep's reference model, measured in the same run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from importlib.resources import files
from pathlib import Path

import pandas as pd

from vae_bench.report.tables import ALIASES, Cell, Column, Table, TableError

COLUMNS = ("paper", "arxiv", "source", "table", "row", "model", "preset", "channels",
           "dataset", "bench_dataset", "metric", "phase", "mode", "resolution", "frames",
           "value", "unit",
           "ratio_to", "sweep", "protocol_notes")  # fmt: skip
CITATION = ("paper", "source", "table", "row", "model", "metric", "sweep")
MODES = ("full", "block-wise")  # block-wise: any chunked or tiled mode of the run
FLAG = " (!)"
# At one clip length frames/s and clips/s differ by a constant factor, so their ratios to a
# reference model are equal: a paper's "it/s" or "img/s" compares with either column.
THROUGHPUTS = {"frames_per_s": ("clips_per_s",), "clips_per_s": ("frames_per_s",)}


class PublishedError(TableError):
    """The published data or a request for it is invalid; the message says which row."""


def data_file() -> Path:
    return Path(str(files("vae_bench.report") / "published.csv"))


def load_published(path: str | Path | None = None) -> pd.DataFrame:
    """The published values, checked: every row cites its source and has a number.

    ``value`` becomes a float; ``decimals`` keeps the precision the paper printed.
    """
    path = Path(path) if path is not None else data_file()
    data = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in data.columns]
    if missing:
        raise PublishedError(f"{path}: missing column(s) {', '.join(missing)}")
    for index, row in data.iterrows():
        where = f"{path}: row {index + 2}"
        empty = [c for c in CITATION if not row[c].strip()]
        if empty:
            raise PublishedError(f"{where}: {', '.join(empty)} must not be empty")
        try:
            value = float(row["value"])
        except ValueError:
            raise PublishedError(f"{where}: value {row['value']!r} is not a number") from None
        if not math.isfinite(value):
            raise PublishedError(f"{where}: value {row['value']!r} is not finite")
        if not re.fullmatch(r"[1-9]\d*x[1-9]\d*", row["resolution"]) or not re.fullmatch(
                r"[1-9]\d*", row["frames"]):
            raise PublishedError(f"{where}: resolution {row['resolution']!r} (HEIGHTxWIDTH) "
                                 f"and frames {row['frames']!r} (a positive integer) needed")
        if row["mode"] not in MODES:
            raise PublishedError(f"{where}: mode {row['mode']!r}; allowed: {', '.join(MODES)}")
        if bool(row["phase"]) != bool(row["ratio_to"]):
            raise PublishedError(f"{where}: efficiency rows need both phase and ratio_to, "
                                 "quality rows neither")
        if not row["phase"] and not row["bench_dataset"]:
            raise PublishedError(f"{where}: a quality row needs bench_dataset")
    data["decimals"] = [len(v.split(".")[1]) if "." in v else 0 for v in data["value"]]
    data["value"] = data["value"].astype(float)
    return data


def tolerances(data: pd.DataFrame) -> dict[str, float]:
    """Per quality metric: the largest spread of repeated published values of one
    checkpoint, dataset, mode, size and length (rows that name a preset, across tables and
    papers)."""
    quality = data[(data.phase == "") & (data.preset != "")]
    key = ["preset", "bench_dataset", "mode", "resolution", "frames", "metric"]
    spread = quality.groupby(key).value.agg(
        lambda v: v.max() - v.min() if len(v) > 1 else math.nan)
    out = spread.dropna().groupby(level="metric").max()
    return {metric: float(value) for metric, value in out.items()}


def sweeps_of(data: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(data.sweep))


def select(data: pd.DataFrame, name: str, runs: Iterable[str]) -> pd.DataFrame:
    """The rows of one sweep: ``name``, or with ``auto`` the run's own name."""
    known = sweeps_of(data)
    wanted = [str(r) for r in runs] if name == "auto" else [name.removeprefix("papers/")]
    for sweep in wanted:
        if sweep in known:
            return data[data.sweep == sweep]
    what = f"run {', '.join(wanted) or '?'}" if name == "auto" else f"--published {name}"
    raise PublishedError(f"{what}: no published values; choose one of: {', '.join(known)}")


def operating_point(data: pd.DataFrame, name: str, results: pd.DataFrame,
                    resolution: tuple[int, int] | None, frames: int | None,
                    ) -> tuple[tuple[int, int] | None, int | None]:
    """The table's size and clip length: the paper's, unless asked for, which must agree.

    A comparison at another size than the paper's would be meaningless, so an explicit
    different one is an error."""
    runs = dict.fromkeys(str(r) for r in results["run"]) if "run" in results else {}
    rows = select(data, name, runs)
    rows = rows[rows.preset != ""]
    sizes = {tuple(int(v) for v in r.split("x")) for r in rows.resolution}
    lengths = {int(f) for f in rows.frames}
    if len(sizes) == 1:
        (size,) = sizes
        if resolution is not None and resolution != size:
            raise PublishedError(f"--resolution {resolution[0]}x{resolution[1]}: the published "
                                 f"values are at {size[0]}x{size[1]}")
        resolution = size
    if len(lengths) == 1:
        (length,) = lengths
        if frames is not None and frames != length:
            raise PublishedError(f"--frames {frames}: the published values are at {length} "
                                 "frames")
        frames = length
    return resolution, frames


# ------------------------------------------------------------------------ annotating


@dataclass(frozen=True)
class _Match:
    """Which published rows a table column compares with."""

    kind: str  # quality | efficiency
    where: str  # dataset or phase
    metric: str  # the run's metric name


def _published_for(rows: pd.DataFrame, match: _Match, model: str, mode: str) -> pd.Series | None:
    wanted = "full" if mode == "full" else "block-wise"
    if match.kind == "quality":
        part = rows[(rows.phase == "") & (rows.bench_dataset == match.where)
                    & (rows.metric == match.metric)]
    else:
        names = [m for m, aliases in ALIASES.items() if match.metric in aliases] + [
            match.metric, *THROUGHPUTS.get(match.metric, ())]
        part = rows[(rows.phase == match.where) & rows.metric.isin(names)]
    part = part[(part.preset == model) & (part["mode"] == wanted)]
    return part.iloc[0] if len(part) else None


def _fmt(value: float, decimals: int, sign: bool = False) -> str:
    return f"{value:+.{decimals}f}" if sign else f"{value:.{decimals}f}"


def _ok(cell: Cell) -> bool:
    return cell.status == "ok" and math.isfinite(cell.value)


def _quality_columns(table: Table, j: int, rows: pd.DataFrame, match: _Match,
                     tolerance: float | None, used: list[pd.Series]):
    column = table.columns[j]
    paper, delta = [], []
    for key, row in zip(table.row_keys, table.cells, strict=True):
        published = _published_for(rows, match, key[0], key[3])
        if published is None:
            paper.append(Cell(text="—"))
            delta.append(Cell(text="—"))
            continue
        used.append(published)
        decimals = int(published.decimals)
        paper.append(Cell(float(published.value), status="ok",
                          text=_fmt(published.value, decimals)))
        ours = row[j]
        if ours.status != "ok" or math.isnan(ours.value):
            delta.append(Cell(text="—"))
            continue
        diff = ours.value - float(published.value)  # infinite for a perfect PSNR
        half = (ours.ci_high - ours.ci_low) / 2 if math.isfinite(ours.ci_high - ours.ci_low) else 0
        flag = tolerance is not None and abs(diff) > tolerance + half
        text = _fmt(diff, decimals, sign=True) if math.isfinite(diff) else (
            "+∞" if diff > 0 else "-∞")
        delta.append(Cell(diff, status="ok", text=text + (FLAG if flag else "")))
    if all(c.status != "ok" for c in paper):
        return []
    return [(Column(f"published:{match.where}:{match.metric}", "Paper", column.unit, None,
                    column.group), paper),
            (Column(f"delta:{match.where}:{match.metric}", "Δ", column.unit, None,
                    column.group), delta)]


def _efficiency_columns(table: Table, j: int, rows: pd.DataFrame, match: _Match,
                        used: list[pd.Series]):
    column = table.columns[j]
    refs = set(rows.ratio_to) - {""}
    if len(refs) != 1:
        return []
    ref = refs.pop()
    ours_ratio, paper_ratio, delta = [], [], []
    for key, row in zip(table.row_keys, table.cells, strict=True):
        published = _published_for(rows, match, key[0], key[3])
        base = _published_for(rows, match, ref, "full")
        ref_index = next((i for i, k in enumerate(table.row_keys)
                          if k[0] == ref and k[2] == key[2] and k[3] == "full"), None)
        if published is None or base is None or ref_index is None:
            for out in (ours_ratio, paper_ratio, delta):
                out.append(Cell(text="—"))
            continue
        used += [published, base]
        theirs = float(published.value) / float(base.value)
        paper_ratio.append(Cell(theirs, status="ok", text=f"{theirs:.2f}"))
        ours, reference = row[j], table.cells[ref_index][j]
        if not (_ok(ours) and _ok(reference)) or reference.value == 0:
            ours_ratio.append(Cell(text="—"))
            delta.append(Cell(text="—"))
            continue
        mine = ours.value / reference.value
        ours_ratio.append(Cell(mine, status="ok", text=f"{mine:.2f}"))
        change = (mine / theirs - 1) * 100
        delta.append(Cell(change, status="ok", text="ref" if key[0] == ref else f"{change:+.0f}"))
    if all(c.status != "ok" for c in paper_ratio):
        return []
    label = f"÷ {ref}"
    return [(Column(f"ratio:{match.where}:{match.metric}", f"Ours {label}", "", None,
                    column.group), ours_ratio),
            (Column(f"published-ratio:{match.where}:{match.metric}", f"Paper {label}", "", None,
                    column.group), paper_ratio),
            (Column(f"delta-ratio:{match.where}:{match.metric}", "Δ", "%", None,
                    column.group), delta)]


def _notes(used: list[pd.Series], tolerance: dict[str, float], quality: bool,
           efficiency: bool) -> list[str]:
    if not used:
        return []
    frame = pd.DataFrame(used).drop_duplicates(subset=["paper", "table", "row", "metric", "mode",
                                                       "bench_dataset"])
    notes = []
    for (paper, arxiv, table, source), part in frame.groupby(
            ["paper", "arxiv", "table", "source"], sort=False):
        cite = f"{paper}" + (f", arXiv {arxiv}" if arxiv else "")
        rows = "; ".join(dict.fromkeys(part.row))
        notes.append(f"Published: {cite}, {table}, rows {rows} (read from {source}).")
        for text in dict.fromkeys(part.protocol_notes):
            if text:
                notes.append(f"Published protocol ({table}): {text}.")
    if quality:
        spread = ", ".join(f"{m} {v:g}" for m, v in sorted(tolerance.items()))
        notes.append("Δ = ours − paper; (!) where |Δ| exceeds the spread of the published "
                     f"values themselves (largest difference between repeated reports of one "
                     f"checkpoint: {spread or 'none'}) plus our 95% half-width; metrics never "
                     "reported twice are not flagged.")
    if efficiency:
        notes.append("Efficiency: ratios to the reference model measured in this run and in "
                     "the paper (devices differ, ratios carry); Δ = ours ÷ paper − 1 in %.")
    return notes


def annotate(table: Table, published: pd.DataFrame, tolerance: dict[str, float]) -> Table:
    """``table`` with the paper's value and the difference after each measured column."""
    if len(table.row_keys) != len(table.row_labels):
        raise PublishedError("this table does not carry its row keys; rebuild it")
    columns: list[Column] = []
    by_column: list[list[Cell]] = []
    used: list[pd.Series] = []
    kinds: set[str] = set()
    for j, column in enumerate(table.columns):
        columns.append(column)
        by_column.append([row[j] for row in table.cells])
        kind, where, metric = (column.key.split(":") + ["", ""])[:3]
        if kind == "quality":
            extra = _quality_columns(table, j, published, _Match(kind, where, metric),
                                     tolerance.get(metric), used)
        elif kind == "efficiency":
            extra = _efficiency_columns(table, j, published, _Match(kind, where, metric), used)
        else:
            extra = []
        if extra:
            kinds.add(kind)
        for new_column, cells in extra:
            columns.append(new_column)
            by_column.append(cells)
    cells = tuple(tuple(col[i] for col in by_column) for i in range(len(table.row_labels)))
    notes = _notes(used, tolerance, "quality" in kinds, "efficiency" in kinds)
    if not notes:
        notes = ["Published: no published value matches a row and column of this table "
                 "(rows match by preset and inference mode, columns by dataset and metric)."]
    return replace(table, columns=tuple(columns), cells=cells, notes=table.notes + tuple(notes))


def with_published(table: Table, results: pd.DataFrame, name: str = "auto",
                   path: str | Path | None = None) -> Table:
    """The ``--published`` option of ``vae-bench table``."""
    data = load_published(path)
    runs = dict.fromkeys(str(r) for r in results["run"]) if "run" in results else {}
    return annotate(table, select(data, name, runs), tolerances(data))


# ------------------------------------------------------------------------ listing


def list_papers(path: str | Path | None = None) -> str:
    """``vae-bench papers``: each paper sweep, what it reproduces and the data it needs."""
    from vae_bench import sweeps
    from vae_bench.sweep import SweepError, load_sweep

    data = load_published(path)
    shipped = sweeps.shipped()
    lines = ["Paper protocols (`vae-bench run papers/NAME`, then "
             "`vae-bench table reports/NAME --published`):"]
    for sweep in sweeps_of(data):
        rows = data[data.sweep == sweep]
        key = f"papers/{sweep}"
        where = str(shipped[key]) if key in shipped else "(sweep file missing)"
        lines.append(f"\n{key}  {where}")
        for (paper, table), part in rows.groupby(["paper", "table"], sort=False):
            lines.append(f"  {paper}: {table}: {len(part)} values, "
                         f"{part.row.nunique()} rows")
        runnable = sorted(set(rows.preset) - {""})
        missing = sorted({f"{r.model} ({r.channels}ch)" if r.channels else r.model
                          for r in rows[rows.preset == ""].itertuples()})
        lines.append(f"  reproduced with: {', '.join(runnable)}")
        if missing:
            lines.append(f"  not reproducible here (no preset or no released weights): "
                         f"{', '.join(missing)}")
        if key in shipped:
            try:
                spec = load_sweep(shipped[key])
                quality = any(m.quality or (m.quality is None and m.weights != "random")
                              for m in spec.models)
                data_text = ", ".join(spec.datasets) if quality else "none (efficiency only)"
                lines.append(f"  data: {data_text}; "
                             f"{'/'.join(f'{h}x{w}' for h, w in spec.resolutions)}, "
                             f"{'/'.join(map(str, spec.frames))} frames, "
                             f"{'/'.join(spec.dtypes)}")
            except SweepError as error:
                lines.append(f"  sweep invalid: {error}")
    return "\n".join(lines)
