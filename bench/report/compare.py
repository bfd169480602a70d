"""Compare two runs, or two settings of one run, clip by clip.

Quality: every clip evaluated on both sides is a pair (same dataset, clip, start, size,
frame count and inference mode, and the same model and dtype, except for what a side
selection picks). The per-clip deltas get a paired bootstrap interval (:mod:`.stats`) and
a verdict that knows which way is better (:mod:`vae_bench.metric_info`). Equal values,
infinite ones included, are no change; an infinite value on one side only (a lossless
reconstruction gained or lost) is a named verdict. Set statistics (rFVD) have no per-clip
values: they are compared only over the same clips.

Efficiency: ratios of the medians (latency, throughput) and peaks (memory) of matching
cells. A latency counts as changed only when the two p10-p90 spreads do not overlap,
never from one repeat (no spread) nor below :data:`MIN_LATENCY_S` (timer jitter).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vae_bench.metric_info import EFFICIENCY_METRICS, metric_info
from vae_bench.report.stats import BootstrapCI, PairedDeltas, bootstrap_mean_ci, paired_deltas
from vae_bench.report.tables import key_text
from vae_bench.results import CLIP_COLUMNS, atomic_write_text, read_results

#: Cell settings a side may be selected by (``size`` is ``HxW`` or one side).
SELECT_KEYS = ("model", "weights", "dtype", "mode", "size", "height", "width", "frames",
               "batch_size")  # fmt: skip
#: Columns that must agree for two clips to be a pair (the clip itself and its settings).
CLIP_PAIR_KEYS = ("dataset", "clip", "start", "height", "width", "frames", "mode")
#: Columns that name the compared thing; dropped from the pairing when a side selects them.
IDENTITY_KEYS = ("model", "dtype")
EFFICIENCY_KEYS = ("height", "width", "frames", "batch_size", "mode")
MEMORY_SAME_BAND = 0.01  # memory peaks within 1% (or 1 MiB) of each other are unchanged
MEMORY_SAME_MIB = 1.0
MIN_LATENCY_S = 0.01  # latencies both below this are timer jitter, not a verdict

BETTER, WORSE, NO_CHANGE = "better", "worse", "no significant change"
SAME = "no change"
NO_SPREAD = "no spread (1 repeat)"
FAILED = ("oom", "error", "nonfinite")


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


def load_run(path: str | Path) -> RunData:
    """A run directory (``results.csv``, optional ``clips.csv`` and ``run.json``)."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a run directory (expected reports/<run>/)")
    results = read_results(root)
    clips_path = root / "clips.csv"
    clips = (pd.read_csv(clips_path, keep_default_na=False, na_values=[""])
             if clips_path.exists() else pd.DataFrame(columns=list(CLIP_COLUMNS)))
    meta_path = root / "run.json"
    metadata = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    name = str(metadata.get("run") or root.name)
    return RunData(name, results, clips, metadata, root)


def parse_selection(text: str | None) -> dict[str, str]:
    """``"model=sd-vae-ft-mse,weights=3f1c"`` -> mapping (weights match by prefix);
    ``size=64x96`` (or ``size=64``) becomes ``height`` and ``width``."""
    if not text:
        return {}
    selection: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = (p.strip() for p in part.partition("="))
        if not sep or not key or not value:
            raise CompareError(f"selection {text!r}: write key=value pairs separated by "
                               f"commas, e.g. model=identity,size=64x64")
        if key not in SELECT_KEYS:
            raise CompareError(f"selection {text!r}: {key!r} is not a selectable key; "
                               f"allowed: {', '.join(SELECT_KEYS)}")
        if key == "size":
            height, _, width = value.lower().replace("×", "x").partition("x")
            selection.update(height=height, width=width or height)
        else:
            selection[key] = value
    return selection


def _select(frame: pd.DataFrame, selection: Mapping[str, str], what: str,
            optional: Sequence[str] = ()) -> pd.DataFrame:
    for key, value in selection.items():
        if key not in frame.columns:
            if key in optional:
                continue
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
    """One quality metric of one compared group: candidate minus baseline.

    ``n_pairs`` counts every paired clip; ``ci`` is over the finite deltas only, and
    ``n_inf_up``/``n_inf_down`` count pairs whose delta is ``+inf``/``-inf`` (one side
    infinite). ``ci`` is ``None`` for a set statistic without per-clip values.
    """

    group: tuple[tuple[str, Any], ...]  # (column, value) pairs naming the group
    metric: str
    n_pairs: int
    n_only_baseline: int
    n_only_candidate: int
    baseline_mean: float
    candidate_mean: float
    ci: BootstrapCI | None
    verdict: str
    n_inf_up: int = 0
    n_inf_down: int = 0

    @property
    def delta(self) -> float:
        if self.n_inf_up and self.n_inf_down:
            return math.nan  # infinitely better on some clips, worse on others
        if self.n_inf_up or self.n_inf_down:
            return math.inf if self.n_inf_up else -math.inf
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


def infinite_verdict(up: int, down: int, n: int, higher_is_better: bool | None) -> str:
    """The named verdict of pairs with one side infinite: ``∞ gained`` (delta ``+inf``, e.g.
    a clip became lossless) or ``∞ lost`` (``-inf``), judged by the metric's direction."""
    parts = [f"∞ {word} on {count}/{n} clips" for word, count in (("lost", down),
                                                                  ("gained", up)) if count]
    text = ", ".join(parts)
    if higher_is_better is None:
        return f"changed: {text}"
    worse = down if higher_is_better else up
    return f"{WORSE if worse else BETTER}: {text}"


def verdict_for(ci: BootstrapCI, higher_is_better: bool | None, up: int = 0,
                down: int = 0) -> str:
    """Direction-aware verdict of a paired interval (``0`` excluded, or not); pairs with one
    side infinite (``up``/``down``) decide it when present."""
    if up or down:
        return infinite_verdict(up, down, ci.n + up + down, higher_is_better)
    if not ci.defined:
        return "too few clips"
    if ci.low == ci.high == 0.0:
        return SAME
    if higher_is_better is None:
        return "changed" if ci.excludes(0.0) else NO_CHANGE
    if ci.low > 0:
        return BETTER if higher_is_better else WORSE
    if ci.high < 0:
        return WORSE if higher_is_better else BETTER
    return NO_CHANGE


def is_worse(verdict: str) -> bool:
    return verdict.startswith(WORSE)


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
                f"side with {'=/'.join(SELECT_KEYS)}=")
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


def _unpaired_counts(frame: pd.DataFrame, group_cols: list[str]) -> dict[tuple, int]:
    if not len(frame):
        return {}
    counts = frame.groupby(group_cols).size().to_dict()
    return {k if isinstance(k, tuple) else (k,): int(v) for k, v in counts.items()}


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
    unpaired_b = _unpaired_counts(only_baseline, group_cols)
    unpaired_c = _unpaired_counts(only_candidate, group_cols)
    for values, part in pairs.groupby(group_cols, sort=False):
        values = values if isinstance(values, tuple) else (values,)
        group = tuple(zip(group_cols, values, strict=True))
        for metric in metrics:
            both = part[[f"{metric}_baseline", f"{metric}_candidate"]].dropna()
            if both.empty:
                continue
            a = both[f"{metric}_baseline"].to_numpy(float)
            b = both[f"{metric}_candidate"].to_numpy(float)
            paired: PairedDeltas = paired_deltas(a, b)
            ci = bootstrap_mean_ci(paired.deltas, confidence=confidence,
                                   n_resamples=n_resamples, seed=seed)
            verdict = verdict_for(ci, metric_info(metric).higher_is_better, paired.up,
                                  paired.down)
            out.append(MetricDelta(
                group, metric, paired.n, unpaired_b.get(values, 0), unpaired_c.get(values, 0),
                float(a.mean()), float(b.mean()), ci, verdict, paired.up, paired.down))
    return out


def _ok_rows(results: pd.DataFrame, kind: str) -> pd.DataFrame:
    rows = results[results.kind == kind].copy()
    for column in ("dataset", "phase", "mode", "dtype", "model", "status", "protocol", "metric",
                   "height", "width", "frames", "batch_size"):  # fmt: skip
        rows[column] = key_text(rows[column])
    return rows


def set_level_deltas(baseline: pd.DataFrame, candidate: pd.DataFrame, keys: Sequence[str],
                     per_clip: set[str], unpaired: set[tuple] = frozenset()
                     ) -> list[MetricDelta]:
    """Quality metrics with no per-clip values (rFVD): a plain delta over the same clips.

    A set statistic over different clips measures the clip sets as much as the models
    (rFVD of 8 clips against rFVD of 4), so a group whose clip sets differ (another
    count, or unpaired clips) gets the verdict "not comparable" instead of a delta.
    """
    cols = _group_columns(keys) + ["metric"]
    sides = []
    for frame in (baseline, candidate):
        rows = _ok_rows(frame, "quality")
        sides.append(rows[(rows.status == "ok") & ~rows.metric.isin(per_clip)])
    merged = sides[0][cols + ["value", "n"]].merge(sides[1][cols + ["value", "n"]], on=cols,
                                                   suffixes=("_b", "_c"))
    out = []
    for record in merged.to_dict("records"):
        group = tuple((c, record[c]) for c in cols if c != "metric")
        b, c = float(record["value_b"]), float(record["value_c"])
        n_b, n_c = record["n_b"], record["n_c"]
        if n_b != n_c or tuple(v for _, v in group) in unpaired:
            verdict = (f"not comparable: a set statistic over different clips ({n_b:g} vs "
                       f"{n_c:g} clips{', not all paired' if n_b == n_c else ''}); compare "
                       "runs over the same clips")
        elif b == c:
            verdict = SAME
        else:
            verdict = "changed; no interval (set statistic)"
        out.append(MetricDelta(group, record["metric"], 0, 0, 0, b, c, None, verdict))
    return out


# --------------------------------------------------------------------------- efficiency


def _side_index(results: pd.DataFrame, cols: list[str]
                ) -> tuple[dict[tuple, dict[str, Any]], dict[tuple, str]]:
    """Measured rows by (group, phase, metric), and failures by (group, phase), where a
    whole-cell failure (metric ``cell``) has phase ``""`` and stands for every phase."""
    rows = _ok_rows(results, "efficiency")
    measured: dict[tuple, dict[str, Any]] = {}
    failed: dict[tuple, str] = {}
    for row in rows.to_dict("records"):
        group = tuple((c, row[c]) for c in cols)
        if row["status"] in FAILED:
            failed[(group, "" if row["metric"] == "cell" else row["phase"])] = row["status"]
        elif row["metric"] in EFFICIENCY_METRICS and row["status"] != "unavailable":
            measured[(group, row["phase"], row["metric"])] = row
    return measured, failed


def efficiency_ratios(baseline: pd.DataFrame, candidate: pd.DataFrame,
                      cols: Sequence[str]) -> list[EfficiencyRatio]:
    """Median/peak ratios of matching efficiency cells, with a noise-aware verdict.

    A cell or phase that failed (out of memory, error) on one side is compared with the
    other side's measurements: it became better (now measured) or worse (now failing).
    """
    (b_rows, b_failed), (c_rows, c_failed) = (_side_index(f, list(cols))
                                              for f in (baseline, candidate))
    out = []
    for key in list(dict.fromkeys([*b_rows, *c_rows])):
        group, phase, metric = key
        sides = []
        for rows, failed in ((b_rows, b_failed), (c_rows, c_failed)):
            row = rows.get(key)
            status = (row["status"] if row is not None else
                      failed.get((group, phase)) or failed.get((group, "")))
            sides.append((row, status))
        (b_row, b_status), (c_row, c_status) = sides
        if b_status is None or c_status is None:
            continue  # measured on one side only: nothing to compare
        b_value = float(b_row["value"]) if b_row is not None else math.nan
        c_value = float(c_row["value"]) if c_row is not None else math.nan
        latency_key = (group, phase, "latency_s")
        verdict = _verdict(metric, b_status, c_status, b_value, c_value,
                           b_rows.get(latency_key), c_rows.get(latency_key))
        out.append(EfficiencyRatio(tuple(group), phase, metric, b_value, c_value, b_status,
                                   c_status, verdict))
    return out


def _verdict(metric: str, b_status: str, c_status: str, b_value: float, c_value: float,
             b_latency: Mapping[str, Any] | None, c_latency: Mapping[str, Any] | None) -> str:
    if b_status != "ok" or c_status != "ok":
        if b_status == c_status or (b_status != "ok" and c_status != "ok"):
            return "failed on both"
        return BETTER if c_status == "ok" else WORSE
    if metric in ("latency_s", "frames_per_s", "clips_per_s"):
        if b_latency is None or c_latency is None:
            return "no latency recorded"
        return latency_verdict(b_latency, c_latency)
    higher = metric_info(metric).higher_is_better
    if abs(c_value - b_value) <= max(MEMORY_SAME_BAND * abs(b_value), MEMORY_SAME_MIB):
        return SAME
    return BETTER if (c_value > b_value) == bool(higher) else WORSE


def latency_verdict(base: Mapping[str, Any], cur: Mapping[str, Any]) -> str:
    """Slower or faster only beyond both p10-p90 spreads, with more than one repeat, and
    above the timer's jitter (:data:`MIN_LATENCY_S`)."""
    if min(float(base.get("n") or 0), float(cur.get("n") or 0)) < 2:
        return NO_SPREAD
    lo_b, hi_b, lo_c, hi_c = (float(r[k]) for r, k in ((base, "p10"), (base, "p90"),
                                                       (cur, "p10"), (cur, "p90")))
    if max(float(base["value"]), float(cur["value"])) < MIN_LATENCY_S:
        return f"too short to time (< {MIN_LATENCY_S * 1e3:g} ms)"
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
    failed = results[results.status.isin(FAILED)]
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

    A setting that either side selects on (:data:`SELECT_KEYS`) is what is being
    compared, so it is left out of the pairing; every other setting must match for two
    clips or cells to pair.
    """
    baseline_select = dict(baseline_select or {})
    candidate_select = dict(candidate_select or {})
    chosen = set(baseline_select) | set(candidate_select)
    identity = [k for k in IDENTITY_KEYS if k not in chosen]
    keys = [k for k in (*identity, *CLIP_PAIR_KEYS) if k not in chosen]
    b_label = _describe(baseline, baseline_select)
    c_label = _describe(candidate, candidate_select)

    optional = ("batch_size",)  # clips have no timing batch
    b_clips = _select(baseline.clips, baseline_select, f"baseline {b_label} clips", optional)
    c_clips = _select(candidate.clips, candidate_select, f"candidate {c_label} clips", optional)
    b_results = _select(baseline.results, baseline_select, f"baseline {b_label}")
    c_results = _select(candidate.results, candidate_select, f"candidate {c_label}")
    keys = [k for k in keys if k in b_clips.columns and k in c_clips.columns] or keys
    notes: list[str] = []
    quality: list[MetricDelta] = []
    pairs = pd.DataFrame()
    unpaired: set[tuple] = set()
    if len(b_clips) and len(c_clips):
        pairs, only_b, only_c = pair_clips(b_clips, c_clips, keys)
        quality = quality_deltas(pairs, only_b, only_c, keys, metrics=metrics,
                                 confidence=confidence, n_resamples=n_resamples, seed=seed)
        group_cols = _group_columns(keys)
        unpaired = set(_unpaired_counts(only_b, group_cols)) | set(
            _unpaired_counts(only_c, group_cols))
        if len(only_b) or len(only_c):
            notes.append(f"Unpaired clips left out: {len(only_b)} only in the baseline, "
                         f"{len(only_c)} only in the candidate.")
        if pairs.empty:
            notes.append("No clip was evaluated on both sides: check the selections, sizes, "
                         "frame counts and datasets.")
    per_clip = set(metric_columns(b_clips)) & set(metric_columns(c_clips))
    quality += [d for d in set_level_deltas(b_results, c_results, keys, per_clip, unpaired)
                if metrics is None or d.metric in metrics]
    eff_cols = [k for k in (*identity, *EFFICIENCY_KEYS) if k not in chosen]
    efficiency = efficiency_ratios(b_results, c_results, eff_cols)
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
    if math.isinf(value):
        return "+∞" if value > 0 else "−∞"
    return "—" if math.isnan(value) else f"{value:+.{digits}g}"


def _bold(verdict: str) -> str:
    return f"**{verdict}**" if verdict.startswith((BETTER, WORSE)) else verdict


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
             "bootstrap interval (BCa); verdicts know which way is better (↑/↓). "
             "Infinite values (PSNR of a lossless clip) are never capped: equal on both "
             "sides they are no change, on one side only they are counted (∞ gained or "
             "lost) and the interval is over the other clips.", ""]
    if comparison.quality:
        lines += ["## Quality", "",
                  f"| group | metric | pairs | baseline | candidate | Δ [{pct}% CI] | Δ % | "
                  "verdict |", "| :--- | :--- | ---: | ---: | ---: | :--- | ---: | :--- |"]
        for d in comparison.quality:
            info = metric_info(d.metric)
            interval = _signed(d.delta)
            if d.ci is not None and d.ci.defined:
                finite = f"{_signed(d.ci.estimate)} [{_signed(d.ci.low)}, {_signed(d.ci.high)}]"
                interval = (f"{interval}; other clips {finite}" if d.n_inf_up or d.n_inf_down
                            else finite)
            lines.append(
                f"| {d.label()} | {info.label} {info.arrow} | {d.n_pairs or '—'} | "
                f"{_num(d.baseline_mean)} | {_num(d.candidate_mean)} | {interval} | "
                f"{_signed(d.relative * 100, 2)} | {_bold(d.verdict)} |")
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
            unit = f" ({info.unit})" if info.unit else ""
            lines.append(f"| {r.label()} | {r.phase} | {info.label}{unit} "
                         f"{info.arrow} | {base} | {cand} | {ratio} | {_bold(r.verdict)} |")
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
        summaries = [d for d in comparison.quality if d.metric == metric and d.ci is not None]
        all_deltas = []
        lo, hi = np.inf, -np.inf
        for index, summary in enumerate(summaries):
            colour = colours[index % len(colours)]
            keep = np.ones(len(pairs), dtype=bool)
            for column, value in summary.group:
                keep &= pairs[column].to_numpy() == value
            a = pairs.loc[keep, f"{metric}_baseline"].to_numpy(float)
            b = pairs.loc[keep, f"{metric}_candidate"].to_numpy(float)
            finite = np.isfinite(a) & np.isfinite(b)  # infinite clips are counted in the table
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
        if 1 < len(scatter.get_legend_handles_labels()[1]) <= 10:
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


def output_name(comparison: Comparison) -> str:
    """A folder name naming both sides, so that comparisons of one candidate against
    different baselines (or selections) never overwrite each other."""
    def clean(label: str) -> str:
        text = label.replace(" [", "_").replace("]", "").replace(" ", "_").replace("/", "_")
        return "".join(ch for ch in text if ch.isalnum() or ch in "-_=.,")

    return f"{clean(comparison.candidate)}_vs_{clean(comparison.baseline)}"


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
    ``<candidate run>/compare/<candidate>_vs_<baseline>`` (see :func:`output_name`)."""
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
        out = Path(cand_run.root or ".") / "compare" / output_name(comparison)
    paths = write_comparison(comparison, out)
    if candidate is not None and base_run.root and cand_run.root:  # two runs: their pictures
        from vae_bench.samples import write_sample_comparison

        paths += write_sample_comparison(base_run.root, cand_run.root, Path(out) / "samples")
    return comparison, paths


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
                        help="output directory (default: "
                        "<candidate>/compare/<candidate>_vs_<baseline>)")
