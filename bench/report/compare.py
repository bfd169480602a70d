"""Compare two runs, or two checkpoints of one model in one run, clip by clip.

Quality: every clip evaluated on both sides is a pair (same dataset, clip, start, size,
frame count and inference mode, and the same model and dtype unless a side selection
picks them). The per-clip deltas get a paired bootstrap interval (:mod:`.stats`) and a
verdict that knows which way is better. Efficiency: ratios of the medians (latency,
throughput) and peaks (memory) of matching cells; a latency only counts as changed when
the two p10-p90 spreads do not overlap.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vae_bench.report.stats import BootstrapCI, bootstrap_mean_ci, paired_deltas
from vae_bench.report.tables import key_text, metric_info
from vae_bench.results import CLIP_COLUMNS, atomic_write_text, read_results

SELECT_KEYS = ("model", "weights", "dtype", "mode")
#: Columns that must agree for two clips to be a pair (the clip itself and its settings).
CLIP_PAIR_KEYS = ("dataset", "clip", "start", "height", "width", "frames", "mode")
#: Columns that name the compared thing; dropped from the pairing when a side selects them.
IDENTITY_KEYS = ("model", "dtype")
EFFICIENCY_KEYS = ("height", "width", "frames", "batch_size", "mode", "phase", "metric")
EFFICIENCY_METRICS = ("latency_s", "frames_per_s", "clips_per_s", "peak_allocated_mb",
                      "peak_reserved_mb", "nvml_used_mb", "peak_rss_mb")  # fmt: skip
MEMORY_SAME_BAND = 0.01  # memory peaks within 1% of each other count as unchanged

BETTER, WORSE, NO_CHANGE = "better", "worse", "no significant change"


class CompareError(ValueError):
    """Runs that cannot be compared as asked; the message says why and what to select."""


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class RunData:
    """A run's tables as read from ``reports/<run>/``."""

    name: str
    results: pd.DataFrame
    clips: pd.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    root: Path | None = None


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def load_run(path: str | Path) -> RunData:
    """A run directory (``results.csv``, optional ``clips.csv`` and ``run.json``)."""
    import json

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a run directory (expected reports/<run>/)")
    results = read_results(root)
    clips_path = root / "clips.csv"
    clips = _read_csv(clips_path) if clips_path.exists() else pd.DataFrame(
        columns=list(CLIP_COLUMNS))
    meta_path = root / "run.json"
    metadata = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    name = str(metadata.get("run") or root.name)
    return RunData(name, results, clips, metadata, root)


def parse_selection(text: str | None) -> dict[str, str]:
    """``"model=sd-vae-ft-mse,weights=3f1c"`` -> mapping (weights match by prefix)."""
    if not text:
        return {}
    selection: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value or key not in SELECT_KEYS:
            raise CompareError(f"selection {text!r}: write key=value pairs separated by commas; "
                               f"keys: {', '.join(SELECT_KEYS)}")
        selection[key] = value
    return selection


def _select(frame: pd.DataFrame, selection: Mapping[str, str], what: str) -> pd.DataFrame:
    for key, value in selection.items():
        if key not in frame.columns:
            raise CompareError(f"{what}: no column {key!r} to select on")
        column = key_text(frame[key])
        keep = column.str.startswith(value) if key == "weights" else column == value
        if not keep.any() and len(frame):
            present = ", ".join(sorted(set(column)))[:300]
            raise CompareError(f"{what}: no rows with {key}={value}; present: {present}")
        frame = frame[keep]
    return frame


def _describe(run: RunData, selection: Mapping[str, str]) -> str:
    where = ", ".join(f"{k}={v}" for k, v in selection.items())
    return f"{run.name} [{where}]" if where else run.name


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class MetricDelta:
    """One quality metric of one compared group: candidate minus baseline."""

    group: tuple[tuple[str, Any], ...]  # (column, value) pairs naming the group
    metric: str
    n_pairs: int
    n_only_baseline: int
    n_only_candidate: int
    baseline_mean: float
    candidate_mean: float
    ci: BootstrapCI | None  # None: a set-level metric without per-clip values
    verdict: str

    @property
    def delta(self) -> float:
        return self.ci.estimate if self.ci else self.candidate_mean - self.baseline_mean

    @property
    def relative(self) -> float:
        base = abs(self.baseline_mean)
        return self.delta / base if base > 0 and math.isfinite(base) else math.nan

    def label(self) -> str:
        return _group_label(self.group)


@dataclass(frozen=True)
class EfficiencyRatio:
    """One efficiency metric of one matching cell: candidate / baseline."""

    group: tuple[tuple[str, Any], ...]
    phase: str
    metric: str
    baseline: float
    candidate: float
    baseline_status: str
    candidate_status: str
    verdict: str

    @property
    def ratio(self) -> float:
        if self.baseline_status != "ok" or self.candidate_status != "ok" or self.baseline == 0:
            return math.nan
        return self.candidate / self.baseline

    def label(self) -> str:
        return _group_label(self.group)


@dataclass(frozen=True)
class Comparison:
    baseline: str
    candidate: str
    quality: tuple[MetricDelta, ...]
    efficiency: tuple[EfficiencyRatio, ...]
    pairs: pd.DataFrame = field(hash=False, compare=False)  # per-clip values, both sides
    notes: tuple[str, ...] = ()
    confidence: float = 0.95


def _group_label(group: tuple[tuple[str, Any], ...]) -> str:
    values = dict(group)
    parts = [str(values[k]) for k in ("model", "dataset", "dtype") if values.get(k)]
    if "height" in values:
        size = f"{values['height']}x{values['width']}"
        if "frames" in values:
            size += f"x{values['frames']}"
        parts.append(size)
    if values.get("batch_size") not in (None, ""):
        parts.append(f"batch {values['batch_size']}")
    if values.get("mode") and values["mode"] != "full":
        parts.append(str(values["mode"]))
    return " ".join(parts)


def verdict_for(ci: BootstrapCI, higher_is_better: bool | None) -> str:
    """Direction-aware verdict of a paired interval (``0`` excluded, or not)."""
    if not ci.defined:
        return "too few clips"
    if higher_is_better is None:
        return "changed" if ci.excludes(0.0) else NO_CHANGE
    if ci.low > 0:
        return BETTER if higher_is_better else WORSE
    if ci.high < 0:
        return WORSE if higher_is_better else BETTER
    return NO_CHANGE


# --------------------------------------------------------------------------- pairing


def metric_columns(clips: pd.DataFrame) -> list[str]:
    """The per-clip metric columns of a ``clips.csv``: the numeric ones after the fixed ones."""
    return [c for c in clips.columns
            if c not in CLIP_COLUMNS and pd.api.types.is_numeric_dtype(clips[c])]


def pair_clips(baseline: pd.DataFrame, candidate: pd.DataFrame,
               keys: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Join the ok clips of both sides on ``keys``; also return the unpaired ones.

    Paired metric values are in columns ``<metric>_baseline`` and ``<metric>_candidate``.
    Several clips of one side on one key means the key does not say what is compared
    (e.g. two checkpoints of a model in one run): an error naming the culprit columns.
    """
    frames = []
    for side, clips in (("baseline", baseline), ("candidate", candidate)):
        ok = clips[key_text(clips.status) == "ok"].copy()
        for key in keys:
            ok[key] = key_text(ok[key])
        dup = ok.duplicated(list(keys), keep=False)
        if dup.any():
            first = ok[dup].iloc[0]
            differs = [c for c in ("model", "weights", "dtype", "mode", "device", "run")
                       if c in ok.columns and ok[dup][c].nunique() > 1]
            raise CompareError(
                f"{side}: several clips for {first['dataset']}/{first['clip']} at one pairing "
                f"key; they differ in {', '.join(differs) or 'nothing recorded'}: select one "
                "side with model=/weights=/dtype=/mode=")
        frames.append(ok)
    base, cand = frames
    metrics = [m for m in metric_columns(base) if m in set(metric_columns(cand))]
    keep = list(keys) + metrics
    merged = base[keep].merge(cand[keep], on=list(keys), how="outer",
                              suffixes=("_baseline", "_candidate"), indicator=True)
    pairs = merged[merged["_merge"] == "both"].drop(columns="_merge")
    only_base = merged[merged["_merge"] == "left_only"][list(keys)]
    only_cand = merged[merged["_merge"] == "right_only"][list(keys)]
    return pairs.reset_index(drop=True), only_base, only_cand


def _group_columns(keys: Sequence[str]) -> list[str]:
    return [k for k in keys if k not in ("clip", "start")]


def quality_deltas(
    pairs: pd.DataFrame,
    only_baseline: pd.DataFrame,
    only_candidate: pd.DataFrame,
    keys: Sequence[str],
    *,
    metrics: Sequence[str] | None = None,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> list[MetricDelta]:
    """Paired bootstrap of every metric in every group of ``pairs``."""
    group_cols = _group_columns(keys)
    present = sorted({c[: -len("_baseline")] for c in pairs.columns if c.endswith("_baseline")})
    metrics = [m for m in (metrics or present) if m in present]
    out: list[MetricDelta] = []
    if pairs.empty:
        return out
    unpaired_b = only_baseline.groupby(group_cols).size().to_dict() if len(only_baseline) else {}
    unpaired_c = (only_candidate.groupby(group_cols).size().to_dict()
                  if len(only_candidate) else {})
    for values, part in pairs.groupby(group_cols, sort=False):
        values = values if isinstance(values, tuple) else (values,)
        group = tuple(zip(group_cols, values, strict=True))
        for metric in metrics:
            both = part[[f"{metric}_baseline", f"{metric}_candidate"]].dropna()
            if both.empty:
                continue
            info = metric_info(metric)
            a = both[f"{metric}_baseline"].to_numpy(float)
            b = both[f"{metric}_candidate"].to_numpy(float)
            try:
                deltas = paired_deltas(a, b, cap=info.cap)
            except ValueError as error:
                raise CompareError(f"{_group_label(group)} {metric}: {error}") from None
            ci = bootstrap_mean_ci(deltas, confidence=confidence, n_resamples=n_resamples,
                                   seed=seed)
            cap = info.cap if info.cap is not None else math.inf
            out.append(MetricDelta(
                group, metric, len(deltas), int(unpaired_b.get(values, 0)),
                int(unpaired_c.get(values, 0)), float(np.minimum(a, cap).mean()),
                float(np.minimum(b, cap).mean()), ci, verdict_for(ci, info.higher_is_better)))
    return out


def _ok_rows(results: pd.DataFrame, kind: str) -> pd.DataFrame:
    rows = results[results.kind == kind].copy()
    for column in ("dataset", "phase", "mode", "dtype", "model", "status", "protocol", "metric"):
        rows[column] = key_text(rows[column])
    return rows


def set_level_deltas(baseline: pd.DataFrame, candidate: pd.DataFrame, keys: Sequence[str],
                     per_clip: set[str]) -> list[MetricDelta]:
    """Quality metrics with no per-clip values (e.g. rFVD): a plain delta, no interval."""
    cols = [k for k in _group_columns(keys)] + ["metric"]
    base = _ok_rows(baseline, "quality")
    cand = _ok_rows(candidate, "quality")
    base = base[(base.status == "ok") & ~base.metric.isin(per_clip)]
    cand = cand[(cand.status == "ok") & ~cand.metric.isin(per_clip)]
    for frame in (base, cand):
        for c in cols:
            frame[c] = key_text(frame[c])
    merged = base[cols + ["value", "n"]].merge(cand[cols + ["value", "n"]], on=cols,
                                               suffixes=("_b", "_c"))
    out = []
    for row in merged.itertuples(index=False):
        record = row._asdict()
        group = tuple((c, record[c]) for c in cols if c != "metric")
        out.append(MetricDelta(group, record["metric"], 0, 0, 0, float(record["value_b"]),
                               float(record["value_c"]), None, "no per-clip values"))
    return out


def efficiency_ratios(baseline: pd.DataFrame, candidate: pd.DataFrame,
                      identity: Sequence[str]) -> list[EfficiencyRatio]:
    """Median/peak ratios of matching efficiency cells, with a noise-aware verdict."""
    cols = list(identity) + list(EFFICIENCY_KEYS)
    sides = []
    for frame in (baseline, candidate):
        rows = _ok_rows(frame, "efficiency")
        rows = rows[rows.metric.isin(EFFICIENCY_METRICS) & (rows.status != "unavailable")]
        for c in cols:
            rows[c] = key_text(rows[c])
        sides.append(rows.drop_duplicates(cols, keep="last"))
    fields = cols + ["value", "p10", "p90", "status"]
    merged = sides[0][fields].merge(sides[1][fields], on=cols, suffixes=("_b", "_c"))
    latency_verdicts: dict[tuple[Any, ...], str] = {}
    records = []
    for row in merged.to_dict("records"):
        group = tuple((c, row[c]) for c in cols if c not in ("phase", "metric"))
        ratio_record = EfficiencyRatio(group, row["phase"], row["metric"], float(row["value_b"]),
                                       float(row["value_c"]), row["status_b"], row["status_c"],
                                       "")
        records.append((row, ratio_record))
        if row["metric"] == "latency_s":
            latency_verdicts[(group, row["phase"])] = _latency_verdict(row)
    out = []
    for row, record in records:
        metric = row["metric"]
        if record.baseline_status != "ok" or record.candidate_status != "ok":
            verdict = (BETTER if record.candidate_status == "ok" else
                       WORSE if record.baseline_status == "ok" else "failed on both")
        elif metric == "latency_s":
            verdict = latency_verdicts[(record.group, record.phase)]
        elif metric in ("frames_per_s", "clips_per_s"):
            verdict = latency_verdicts.get((record.group, record.phase), "within noise")
        else:
            ratio = record.ratio
            verdict = ("same" if abs(ratio - 1) <= MEMORY_SAME_BAND else
                       BETTER if ratio < 1 else WORSE)
        out.append(EfficiencyRatio(record.group, record.phase, metric, record.baseline,
                                   record.candidate, record.baseline_status,
                                   record.candidate_status, verdict))
    return out


def _latency_verdict(row: Mapping[str, Any]) -> str:
    if row["status_b"] != "ok" or row["status_c"] != "ok":
        return BETTER if row["status_c"] == "ok" else WORSE
    lo_b, hi_b, lo_c, hi_c = (float(row[k]) for k in ("p10_b", "p90_b", "p10_c", "p90_c"))
    if not all(math.isfinite(v) for v in (lo_b, hi_b, lo_c, hi_c)):
        return "no spread recorded"
    if lo_c > hi_b:
        return WORSE
    if hi_c < lo_b:
        return BETTER
    return "within noise"


def _protocol_notes(baseline: pd.DataFrame, candidate: pd.DataFrame) -> list[str]:
    notes = []
    for kind, key in (("quality", ["dataset", "metric"]), ("efficiency", ["phase", "metric"])):
        b = _ok_rows(baseline, kind)
        c = _ok_rows(candidate, kind)
        b = b[b.status == "ok"].groupby(key).protocol.agg(lambda p: sorted(set(p)))
        c = c[c.status == "ok"].groupby(key).protocol.agg(lambda p: sorted(set(p)))
        for index in sorted(set(b.index) & set(c.index)):
            if b[index] != c[index]:
                what = "/".join(i for i in index if i)
                notes.append(f"Protocol differs for {what}: baseline {' | '.join(b[index])}; "
                             f"candidate {' | '.join(c[index])}. Its deltas mix conventions.")
    return notes


def _failure_notes(results: pd.DataFrame, side: str) -> list[str]:
    """Cells that failed on one side have nothing to pair with: say so, do not drop them."""
    failed = results[results.status.isin(["oom", "error", "nonfinite"])]
    if failed.empty:
        return []
    titles: set[str] = set()
    for row in failed.to_dict("records"):
        where = " ".join(str(row[k]) for k in ("dataset", "phase")
                         if str(row[k]) not in ("", "nan"))
        size = f"{row['height']}x{row['width']}x{row['frames']}"
        titles.add(" ".join(p for p in (row["model"], row["kind"], where, size) if p)
                   + f" ({row['status']})")
    return [f"Failed in the {side}: {'; '.join(sorted(titles))}."]


def compare_runs(
    baseline: RunData,
    candidate: RunData,
    *,
    baseline_select: Mapping[str, str] | None = None,
    candidate_select: Mapping[str, str] | None = None,
    metrics: Sequence[str] | None = None,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Paired per-clip deltas and efficiency ratios of ``candidate`` against ``baseline``.

    A column that either side selects on (``model``, ``weights``, ``dtype``, ``mode``) is
    what is being compared, so it is left out of the pairing; every other setting must
    match for two clips to pair.
    """
    baseline_select = dict(baseline_select or {})
    candidate_select = dict(candidate_select or {})
    chosen = set(baseline_select) | set(candidate_select)
    identity = [k for k in IDENTITY_KEYS if k not in chosen]
    keys = [k for k in (*identity, *CLIP_PAIR_KEYS) if k not in chosen]
    b_label = _describe(baseline, baseline_select)
    c_label = _describe(candidate, candidate_select)

    b_clips = _select(baseline.clips, baseline_select, f"baseline {b_label} clips")
    c_clips = _select(candidate.clips, candidate_select, f"candidate {c_label} clips")
    b_results = _select(baseline.results, baseline_select, f"baseline {b_label}")
    c_results = _select(candidate.results, candidate_select, f"candidate {c_label}")
    keys = [k for k in keys if k in b_clips.columns and k in c_clips.columns] or keys
    notes: list[str] = []
    quality: list[MetricDelta] = []
    pairs = pd.DataFrame()
    if len(b_clips) and len(c_clips):
        pairs, only_b, only_c = pair_clips(b_clips, c_clips, keys)
        quality = quality_deltas(pairs, only_b, only_c, keys, metrics=metrics,
                                 confidence=confidence, n_resamples=n_resamples, seed=seed)
        if len(only_b) or len(only_c):
            notes.append(f"Unpaired clips left out: {len(only_b)} only in the baseline, "
                         f"{len(only_c)} only in the candidate.")
        if pairs.empty:
            notes.append("No clip was evaluated on both sides: check the selections, sizes, "
                         "frame counts and datasets.")
    per_clip = set(metric_columns(b_clips)) & set(metric_columns(c_clips))
    quality += [d for d in set_level_deltas(b_results, c_results, keys, per_clip)
                if metrics is None or d.metric in metrics]
    efficiency = efficiency_ratios(b_results, c_results, identity)
    notes += _protocol_notes(b_results, c_results)
    notes += _failure_notes(b_results, "baseline") + _failure_notes(c_results, "candidate")
    if not quality and not efficiency:
        raise CompareError(f"nothing to compare between {b_label} and {c_label}: no quality "
                           "clips nor efficiency cells match (same sizes, frames, modes?)")
    return Comparison(b_label, c_label, tuple(quality), tuple(efficiency), pairs, tuple(notes),
                      confidence)


# --------------------------------------------------------------------------- outputs


def _num(value: float, digits: int = 4) -> str:
    if math.isnan(value):
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.{digits}g}"


def _signed(value: float, digits: int = 3) -> str:
    return "—" if math.isnan(value) else f"{value:+.{digits}g}"


def quality_frame(comparison: Comparison) -> pd.DataFrame:
    """One row per (group, metric): means, delta, interval, verdict."""
    rows = []
    for d in comparison.quality:
        rows.append({
            **dict(d.group), "metric": d.metric, "n_pairs": d.n_pairs,
            "n_only_baseline": d.n_only_baseline, "n_only_candidate": d.n_only_candidate,
            "baseline": d.baseline_mean, "candidate": d.candidate_mean, "delta": d.delta,
            "ci_low": d.ci.low if d.ci else math.nan, "ci_high": d.ci.high if d.ci else math.nan,
            "relative": d.relative, "verdict": d.verdict,
        })  # fmt: skip
    return pd.DataFrame(rows)


def efficiency_frame(comparison: Comparison) -> pd.DataFrame:
    rows = [{**dict(r.group), "phase": r.phase, "metric": r.metric, "baseline": r.baseline,
             "candidate": r.candidate, "ratio": r.ratio, "baseline_status": r.baseline_status,
             "candidate_status": r.candidate_status, "verdict": r.verdict}
            for r in comparison.efficiency]  # fmt: skip
    return pd.DataFrame(rows)


def to_markdown(comparison: Comparison) -> str:
    """The delta table (quality) and the ratio table (efficiency) as Markdown."""
    pct = round(comparison.confidence * 100)
    lines = [f"# Comparison: {comparison.candidate} vs {comparison.baseline}", "",
             f"Baseline: `{comparison.baseline}`; candidate: `{comparison.candidate}`. "
             f"Δ = candidate − baseline, mean over paired clips with a {pct}% paired "
             "bootstrap interval (BCa); verdicts know which way is better (↑/↓).", ""]
    if comparison.quality:
        lines += ["## Quality", "",
                  f"| group | metric | pairs | baseline | candidate | Δ [{pct}% CI] | Δ % | "
                  "verdict |", "| :--- | :--- | ---: | ---: | ---: | :--- | ---: | :--- |"]
        for d in comparison.quality:
            info = metric_info(d.metric)
            interval = (f"{_signed(d.delta)} [{_signed(d.ci.low)}, {_signed(d.ci.high)}]"
                        if d.ci and d.ci.defined else _signed(d.delta))
            verdict = f"**{d.verdict}**" if d.verdict in (BETTER, WORSE) else d.verdict
            lines.append(
                f"| {d.label()} | {info.label} {info.arrow} | {d.n_pairs or '—'} | "
                f"{_num(d.baseline_mean)} | {_num(d.candidate_mean)} | {interval} | "
                f"{_signed(d.relative * 100, 2)} | {verdict} |")
        lines.append("")
    if comparison.efficiency:
        lines += ["## Efficiency", "",
                  "| group | phase | metric | baseline | candidate | ratio | verdict |",
                  "| :--- | :--- | :--- | ---: | ---: | ---: | :--- |"]
        for r in comparison.efficiency:
            info = metric_info(r.metric)
            base = _num(r.baseline) if r.baseline_status == "ok" else r.baseline_status
            cand = _num(r.candidate) if r.candidate_status == "ok" else r.candidate_status
            ratio = "—" if math.isnan(r.ratio) else f"{r.ratio:.3f}×"
            verdict = f"**{r.verdict}**" if r.verdict in (BETTER, WORSE) else r.verdict
            lines.append(f"| {r.label()} | {r.phase} | {info.label} ({info.unit}) "
                         f"{info.arrow} | {base} | {cand} | {ratio} | {verdict} |")
        lines.append("")
    if comparison.notes:
        lines += [f"- {note}" for note in comparison.notes]
        lines.append("")
    return "\n".join(lines)


def plot_comparison(comparison: Comparison) -> Figure | None:
    """Per metric: candidate vs baseline per clip (scatter, y = x dashed) and the
    distribution of the deltas, with each group's mean delta and interval in its colour.
    ``None`` without paired clips."""
    pairs = comparison.pairs
    metrics = list(dict.fromkeys(d.metric for d in comparison.quality if d.ci is not None))
    if pairs.empty or not metrics:
        return None
    fig = Figure(figsize=(11, 3.4 * len(metrics)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(metrics), 2, squeeze=False)
    colours = [f"C{i}" for i in range(10)]
    for (scatter, hist), metric in zip(axes, metrics, strict=True):
        info = metric_info(metric)
        cap = info.cap if info.cap is not None else np.inf
        summaries = [d for d in comparison.quality if d.metric == metric and d.ci is not None]
        all_deltas = []
        lo, hi = np.inf, -np.inf
        for index, summary in enumerate(summaries):
            colour = colours[index % len(colours)]
            keep = np.ones(len(pairs), dtype=bool)
            for column, value in summary.group:
                keep &= pairs[column].to_numpy() == value
            a = np.minimum(pairs.loc[keep, f"{metric}_baseline"].to_numpy(float), cap)
            b = np.minimum(pairs.loc[keep, f"{metric}_candidate"].to_numpy(float), cap)
            finite = np.isfinite(a) & np.isfinite(b)
            a, b = a[finite], b[finite]
            if not len(a):
                continue
            scatter.scatter(a, b, s=12, alpha=0.7, color=colour,
                            label=summary.label() if len(summaries) <= 10 else None)
            lo, hi = min(lo, a.min(), b.min()), max(hi, a.max(), b.max())
            all_deltas.append(b - a)
            if summary.ci.defined:
                hist.axvspan(summary.ci.low, summary.ci.high, color=colour, alpha=0.2)
                hist.axvline(summary.ci.estimate, color=colour, linewidth=1.2)
        if np.isfinite(lo):
            scatter.plot([lo, hi], [lo, hi], "k--", linewidth=0.8)
        if 1 < len(summaries) <= 10:
            scatter.legend(fontsize=7)
        deltas = np.concatenate(all_deltas) if all_deltas else np.array([])
        hist.hist(deltas, bins=min(40, max(5, len(deltas) // 3)), color="0.6", alpha=0.8)
        hist.axvline(0.0, color="k", linewidth=0.8)
        scatter.set_xlabel(f"baseline {info.label} {info.arrow}")
        scatter.set_ylabel(f"candidate {info.label}")
        scatter.set_title(f"{info.label}: per clip")
        hist.set_xlabel(f"Δ {info.label} (candidate − baseline)")
        hist.set_ylabel("clips")
        pct = round(comparison.confidence * 100)
        hist.set_title(f"{info.label}: deltas (lines: mean Δ per group, bands: {pct}% CI)")
    fig.suptitle(f"{comparison.candidate} vs {comparison.baseline}")
    return fig


def write_comparison(comparison: Comparison, out_dir: str | Path) -> list[Path]:
    """``compare.md``, ``quality.csv``, ``efficiency.csv``, ``pairs.csv`` and
    ``deltas.png``/``deltas.svg`` into ``out_dir``; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "compare.md"]
    atomic_write_text(written[0], to_markdown(comparison))
    for name, frame in (("quality", quality_frame(comparison)),
                        ("efficiency", efficiency_frame(comparison)),
                        ("pairs", comparison.pairs)):
        if len(frame):
            path = out / f"{name}.csv"
            atomic_write_text(path, frame.to_csv(index=False))
            written.append(path)
    fig = plot_comparison(comparison)
    if fig is not None:
        for fmt in ("png", "svg"):
            path = out / f"deltas.{fmt}"
            fig.savefig(path, format=fmt, dpi=120, metadata={"Date": None} if fmt == "svg"
                        else None)
            written.append(path)
    return written


def run_compare(
    baseline: str | Path,
    candidate: str | Path | None = None,
    *,
    baseline_select: str | None = None,
    candidate_select: str | None = None,
    metrics: Sequence[str] | None = None,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    out: str | Path | None = None,
) -> tuple[Comparison, list[Path]]:
    """``vae-bench compare``: ``candidate`` defaults to ``baseline`` (two checkpoints or
    settings of one run, told apart by the selections). Output defaults to
    ``<candidate run>/compare/<baseline>``."""
    base_run = load_run(baseline)
    cand_run = load_run(candidate) if candidate is not None else base_run
    b_sel, c_sel = parse_selection(baseline_select), parse_selection(candidate_select)
    if candidate is None and not (b_sel or c_sel):
        raise CompareError("one run given: select the two sides, e.g. --baseline-select "
                           "weights=3f1c --candidate-select weights=a1b2")
    comparison = compare_runs(base_run, cand_run, baseline_select=b_sel,
                              candidate_select=c_sel, metrics=metrics, confidence=confidence,
                              n_resamples=n_resamples, seed=seed)
    if out is None:
        stem = _describe(base_run, b_sel).replace(" ", "_").replace("/", "_")
        stem = "".join(ch for ch in stem if ch.isalnum() or ch in "-_=.,")
        out = Path(cand_run.root or ".") / "compare" / stem
    return comparison, write_comparison(comparison, out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``vae-bench compare`` (dest names match :func:`run_compare`)."""
    parser.add_argument("baseline", help="baseline run directory (reports/<run>)")
    parser.add_argument("candidate", nargs="?", default=None,
                        help="candidate run directory (default: the baseline run, with "
                        "selections)")
    parser.add_argument("--baseline-select", default=None,
                        help="rows of the baseline, e.g. model=wf-vae-l-16ch,weights=3f1c")
    parser.add_argument("--candidate-select", default=None, help="rows of the candidate")
    parser.add_argument("--metrics", nargs="+", default=None, help="quality metrics to compare")
    parser.add_argument("--confidence", type=float, default=0.95, help="interval level")
    parser.add_argument("--n-resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("-o", "--out", default=None,
                        help="output directory (default: <candidate>/compare/<baseline>)")
