"""Regression gate: a current run against a committed baseline, pass or fail.

Quality is judged clip by clip: the paired bootstrap interval of (current - baseline)
must lie entirely beyond the tolerance, on the worse side, to count as a regression, so
noise within the tolerance never fails a build and a real drop does. Timings are
compared as ratios after dividing each by a reference cell timed in the same run (by
default the identity model at the same size, frames, dtype, mode, batch and phase): a
CI machine that is slower across the board is not a regression, a model that got slower
relative to it is. Cells of the baseline missing from the current run, cells that
failed, and metrics measured under a changed protocol are reported and fail the gate
unless the rules allow them; nothing passes by being absent.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from vae_bench.report.compare import RunData, load_run, pair_clips, quality_deltas
from vae_bench.report.tables import key_text, metric_info
from vae_bench.results import atomic_write_text

PASS, FAIL, WARN, INFO = "pass", "fail", "warn", "info"
DIRECTIONS = ("higher", "lower")
NORMALISE = ("none", "reference")
#: Columns that identify a row across runs (weights may change: that is what is gated).
QUALITY_KEYS = ("model", "dataset", "height", "width", "frames", "dtype", "mode", "metric")
EFFICIENCY_KEYS = ("model", "height", "width", "frames", "dtype", "mode", "batch_size",
                   "phase", "metric")  # fmt: skip
#: Columns matched between a timed cell and its reference cell, unless the rule pins them.
REFERENCE_KEYS = ("model", "weights", "height", "width", "frames_requested", "frames", "dtype",
                  "mode", "batch_size")  # fmt: skip
#: Timing metrics and how they scale with time (latency ~ t, throughput ~ 1/t).
TIMING_EXPONENT = {"latency_s": 1, "frames_per_s": -1, "clips_per_s": -1}
CLIP_KEYS = ("model", "dtype", "dataset", "clip", "start", "height", "width", "frames", "mode")


class GateError(ValueError):
    """Invalid rules or inputs; the message names the file and key."""


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class MetricRule:
    """How one metric is judged.

    ``abs_tol`` (metric units) and ``rel_tol`` (a fraction of the baseline) make the
    tolerance; the larger wins. For ratio-judged metrics (timings, memory) a regression
    is a value more than ``(1 + rel_tol)`` times worse; ``normalise: reference`` first
    divides by the reference cell of the same run.
    """

    direction: str
    abs_tol: float = 0.0
    rel_tol: float = 0.0
    normalise: str = "none"

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "higher"


@dataclass(frozen=True)
class GateRules:
    metrics: dict[str, MetricRule] = field(hash=False)
    reference: dict[str, Any] | None = field(default=None, hash=False)
    allow_missing: bool = False
    allow_protocol_change: bool = False
    allow_new: bool = True
    confidence: float = 0.95
    n_resamples: int = 2000
    seed: int = 0
    ignore: tuple[dict[str, Any], ...] = ()
    timing_spread: bool = True  # judge timings with the benefit of their p10-p90 spreads
    min_reference_s: float = 0.01  # summed reference latency below which it is only noise
    source: str = "built-in defaults"


DEFAULT_RULES = GateRules(
    metrics={
        "psnr": MetricRule("higher", abs_tol=0.05),
        "psnr_clip": MetricRule("higher", abs_tol=0.05),
        "ssim": MetricRule("higher", abs_tol=0.002),
        "lpips": MetricRule("lower", abs_tol=0.002),
        "rfvd": MetricRule("lower", rel_tol=0.05),
        "fvd": MetricRule("lower", rel_tol=0.05),
        "latency_s": MetricRule("lower", rel_tol=0.25, normalise="reference"),
        "frames_per_s": MetricRule("higher", rel_tol=0.25, normalise="reference"),
        "clips_per_s": MetricRule("higher", rel_tol=0.25, normalise="reference"),
        "peak_allocated_mb": MetricRule("lower", rel_tol=0.05),
        "peak_reserved_mb": MetricRule("lower", rel_tol=0.10),
        "peak_rss_mb": MetricRule("lower", rel_tol=0.20),
    },
    reference={"model": "identity"},
)

_TOP_KEYS = {"metrics", "reference", "allow_missing", "allow_protocol_change", "allow_new",
             "confidence", "n_resamples", "seed", "ignore", "timing_spread",
             "min_reference_s"}  # fmt: skip
_RULE_KEYS = {"direction", "abs_tol", "rel_tol", "normalise"}


def _rule(source: str, name: str, data: Any) -> MetricRule:
    where = f"{source}: metrics.{name}"
    if not isinstance(data, Mapping):
        raise GateError(f"{where}: must be a mapping with keys {sorted(_RULE_KEYS)}")
    unknown = sorted(set(data) - _RULE_KEYS)
    if unknown:
        raise GateError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_RULE_KEYS)}")
    direction = data.get("direction")
    if direction is None:
        info = metric_info(name)
        if info.higher_is_better is None:
            raise GateError(f"{where}: direction required (higher or lower)")
        direction = "higher" if info.higher_is_better else "lower"
    if direction not in DIRECTIONS:
        raise GateError(f"{where}.direction: {direction!r}; allowed: {', '.join(DIRECTIONS)}")
    normalise = data.get("normalise", "none")
    if normalise not in NORMALISE:
        raise GateError(f"{where}.normalise: {normalise!r}; allowed: {', '.join(NORMALISE)}")
    tolerances = {}
    for key in ("abs_tol", "rel_tol"):
        value = data.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise GateError(f"{where}.{key}: {value!r} must be a number >= 0")
        tolerances[key] = float(value)
    if normalise == "reference" and name not in TIMING_EXPONENT:
        raise GateError(f"{where}.normalise: only timings ({', '.join(TIMING_EXPONENT)}) "
                        "can be normalised by the reference's speed")
    if normalise == "reference" and tolerances["abs_tol"]:
        raise GateError(f"{where}: abs_tol has no meaning for a normalised ratio; use `rel_tol`")
    return MetricRule(direction, normalise=normalise, **tolerances)


def parse_rules(data: Any, source: str = "<rules>") -> GateRules:
    """Validate a rules mapping (the content of ``gates.yaml``)."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise GateError(f"{source}: top level must be a mapping")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise GateError(f"{source}: unknown key(s) {unknown}; allowed: {sorted(_TOP_KEYS)}")
    metrics = data.get("metrics")
    if metrics is None:
        rules = dict(DEFAULT_RULES.metrics)
    elif isinstance(metrics, Mapping):
        rules = {str(name): _rule(source, str(name), rule) for name, rule in metrics.items()}
    else:
        raise GateError(f"{source}: metrics: must be a mapping of metric name to rule")
    reference = data.get("reference", DEFAULT_RULES.reference)
    if reference is not None:
        if not isinstance(reference, Mapping) or not reference:
            raise GateError(f"{source}: reference: a mapping such as {{model: identity}}, "
                            "or null for raw timings")
        bad = sorted(set(reference) - set(REFERENCE_KEYS))
        if bad:
            raise GateError(f"{source}: reference: unknown key(s) {bad}; allowed: "
                            f"{', '.join(REFERENCE_KEYS)}")
        reference = {str(k): v for k, v in reference.items()}
    if any(r.normalise == "reference" for r in rules.values()) and reference is None:
        raise GateError(f"{source}: a metric has normalise: reference but reference is null")
    flags = {}
    for key in ("allow_missing", "allow_protocol_change", "allow_new", "timing_spread"):
        value = data.get(key, getattr(DEFAULT_RULES, key))
        if not isinstance(value, bool):
            raise GateError(f"{source}: {key}: {value!r} must be true or false")
        flags[key] = value
    confidence = data.get("confidence", DEFAULT_RULES.confidence)
    if not isinstance(confidence, float) or not 0 < confidence < 1:
        raise GateError(f"{source}: confidence: {confidence!r} must be in (0, 1)")
    min_reference_s = data.get("min_reference_s", DEFAULT_RULES.min_reference_s)
    if isinstance(min_reference_s, bool) or not isinstance(min_reference_s, (int, float)) or (
            min_reference_s < 0):
        raise GateError(f"{source}: min_reference_s: {min_reference_s!r} must be a number >= 0")
    n_resamples = data.get("n_resamples", DEFAULT_RULES.n_resamples)
    seed = data.get("seed", DEFAULT_RULES.seed)
    for key, value, low in (("n_resamples", n_resamples, 100), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise GateError(f"{source}: {key}: {value!r} must be an integer >= {low}")
    ignore = data.get("ignore") or []
    if not isinstance(ignore, list) or not all(isinstance(i, Mapping) and i for i in ignore):
        raise GateError(f"{source}: ignore: a list of mappings, e.g. [{{metric: nvml_used_mb}}]")
    return GateRules(rules, reference, confidence=confidence, n_resamples=n_resamples,
                     seed=seed, min_reference_s=float(min_reference_s),
                     ignore=tuple(dict(i) for i in ignore), source=source, **flags)


def load_rules(path: str | Path | None = None) -> GateRules:
    """Rules from a YAML file; without one, ``./gates.yaml`` if present, else defaults."""
    if path is None:
        if not Path("gates.yaml").exists():
            return DEFAULT_RULES
        path = Path("gates.yaml")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"gate rules {path} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise GateError(f"{path}: not valid YAML: {error}") from None
    return parse_rules(data, str(path))


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Check:
    """One judged item of the gate."""

    outcome: str  # pass | fail | warn | info
    what: str  # quality | efficiency | missing | status | protocol | new | reference | rules
    subject: str
    metric: str = ""
    baseline: str = ""
    current: str = ""
    change: str = ""
    tolerance: str = ""
    message: str = ""


@dataclass(frozen=True)
class GateReport:
    baseline: str
    current: str
    rules: GateRules
    checks: tuple[Check, ...]
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not any(c.outcome == FAIL for c in self.checks)

    def count(self, outcome: str) -> int:
        return sum(c.outcome == outcome for c in self.checks)

    def to_markdown(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"# vae-bench gate: {verdict}", "",
            f"Current `{self.current}` against baseline `{self.baseline}` "
            f"(rules: {self.rules.source}). {self.count(FAIL)} failed, {self.count(WARN)} "
            f"warnings, {self.count(PASS)} passed, {self.count(INFO)} notes.", "",
            f"Quality: regression only when the {round(self.rules.confidence * 100)}% paired "
            "bootstrap interval of Δ = current − baseline lies entirely beyond the tolerance "
            "on the worse side. Timings: ratios current/baseline"
            + (", divided by the machine factor of the reference cells"
               if self.rules.reference else "")
            + (", judged with the benefit of the p10–p90 spreads"
               if self.rules.timing_spread else "") + ".", "",
            *[f"- {note}" for note in self.notes], "" if self.notes else None,
        ]  # fmt: skip
        lines = [line for line in lines if line is not None]
        header = ["| outcome | check | subject | metric | baseline | current | change | "
                  "tolerance | note |",
                  "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]

        def rows(checks: Sequence[Check]) -> list[str]:
            return ["| " + " | ".join(_cell(v) for v in (
                c.outcome, c.what, c.subject, c.metric, c.baseline, c.current, c.change,
                c.tolerance, c.message)) + " |" for c in checks]

        for outcome, title in ((FAIL, "Failures"), (WARN, "Warnings")):
            selected = [c for c in self.checks if c.outcome == outcome]
            if selected:
                lines += [f"## {title}", "", *header, *rows(selected), ""]
        rest = [c for c in self.checks if c.outcome in (PASS, INFO)]
        if rest:
            lines += ["<details><summary>Passed checks and notes "
                      f"({len(rest)})</summary>", "", *header, *rows(rest), "", "</details>", ""]
        return "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# --------------------------------------------------------------------------- judging


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.4g}"


def _prepared(results: pd.DataFrame) -> pd.DataFrame:
    rows = results.copy()
    for column in ("kind", "model", "weights", "dataset", "dtype", "mode", "phase", "metric",
                   "status", "protocol", "message", "device"):  # fmt: skip
        rows[column] = key_text(rows[column])
    return rows


def _text(value: Any) -> str:
    """A key value as text; ``256.0`` (a number read from a column with blanks) is ``256``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _key_of(row: Mapping[str, Any], kind: str) -> tuple[str, ...]:
    keys = QUALITY_KEYS if kind == "quality" else EFFICIENCY_KEYS
    return (kind, *(_text(row[k]) for k in keys))


def _subject(key: tuple[str, ...]) -> str:
    kind = key[0]
    names = QUALITY_KEYS if kind == "quality" else EFFICIENCY_KEYS
    values = dict(zip(names, key[1:], strict=True))
    size = f"{values['height']}x{values['width']}x{values['frames']}"
    extra = (f" on {values['dataset']}" if kind == "quality"
             else f" {values['phase']} batch {values['batch_size']}")
    return f"{values['model']}{extra} {size} {values['dtype']} {values['mode']}"


def _ignored(row: Mapping[str, Any], rules: GateRules) -> bool:
    return any(all(str(row.get(k)) == str(v) for k, v in pattern.items())
               for pattern in rules.ignore)


def _index(results: pd.DataFrame, rules: GateRules) -> dict[tuple[str, ...], dict[str, Any]]:
    """Rows by key; cell-level failures (metric ``cell``) stand for every metric of it."""
    index: dict[tuple[str, ...], dict[str, Any]] = {}
    for row in results.to_dict("records"):
        if row["kind"] not in ("quality", "efficiency") or row["metric"] == "cell":
            continue
        if _ignored(row, rules):
            continue
        key = _key_of(row, row["kind"])
        if key not in index or row["status"] == "ok":
            index[key] = row
    return index


def _failed_cells(results: pd.DataFrame) -> dict[tuple[str, ...], dict[str, Any]]:
    """Cell-level failures by (kind, model, dataset/phase-less identity)."""
    out = {}
    for row in results[results.metric == "cell"].to_dict("records"):
        out[_cell_identity(row)] = row
    return out


def _cell_identity(row: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(_text(row[k]) for k in ("kind", "model", "dataset", "height", "width",
                                         "frames", "dtype", "mode"))


class _MachineFactor:
    """How much slower the current machine runs the reference cells than the baseline's.

    Every reference cell timed in both runs (same size, requested frames, dtype, mode,
    batch and phase; the rules' pinned fields, e.g. ``model: identity``) contributes its
    median latency; the factor is the ratio of the sums, so the longest, least noisy
    reference cells weigh most and one jittery microsecond-scale cell cannot swing it.
    """

    MATCHED = ("height", "width", "frames_requested", "dtype", "mode", "batch_size", "phase")

    def __init__(self, baseline: pd.DataFrame, current: pd.DataFrame,
                 reference: Mapping[str, Any] | None, min_seconds: float = 0.0) -> None:
        self.reference = {k: _text(v) for k, v in (reference or {}).items()}
        sides = [self._latencies(frame) for frame in (baseline, current)]
        common = sorted(set(sides[0]) & set(sides[1]))
        self.n = len(common)
        self.totals = (sum(sides[0][k] for k in common), sum(sides[1][k] for k in common))
        self.min_seconds = min_seconds
        self.factor = self.totals[1] / self.totals[0] if self.totals[0] > 0 else math.nan

    @property
    def too_short(self) -> bool:
        """Reference cells so short that timer jitter, not the machine, sets their time."""
        return self.n > 0 and min(self.totals) < self.min_seconds

    def _latencies(self, results: pd.DataFrame) -> dict[tuple[str, ...], float]:
        rows = results[(results.kind == "efficiency") & (results.status == "ok")
                       & (results.metric == "latency_s")]
        return {tuple(_text(row[k]) for k in self.MATCHED): float(row["value"])
                for row in rows.to_dict("records") if self.is_reference(row)}

    def is_reference(self, row: Mapping[str, Any]) -> bool:
        return bool(self.reference) and all(
            _text(row.get(k)) == v for k, v in self.reference.items())

    @property
    def usable(self) -> bool:
        return self.n > 0 and math.isfinite(self.factor) and self.factor > 0

    def describe(self) -> str:
        where = ", ".join(f"{k}={v}" for k, v in self.reference.items())
        if not self.usable:
            return f"no reference cell ({where}) timed in both runs"
        if self.too_short:
            return (f"the reference cells ({where}, {self.n} timed in both runs) sum to "
                    f"{min(self.totals) * 1e3:.3g} ms, under min_reference_s = "
                    f"{self.min_seconds:g} s: too short to measure the machine, so timings "
                    "are reported as warnings, not gated (time the reference at larger sizes)")
        return (f"machine factor {self.factor:.3g}: the current run's reference cells ({where}, "
                f"{self.n} timed in both runs) took {self.factor:.3g}× the baseline's time")


def _clip_deltas(baseline: RunData, current: RunData, rules: GateRules) -> dict:
    """Paired deltas of every quality group, keyed like :data:`QUALITY_KEYS`."""
    if baseline.clips.empty or current.clips.empty:
        return {}
    keys = [k for k in CLIP_KEYS if k in baseline.clips.columns and k in current.clips.columns]
    pairs, only_b, only_c = pair_clips(baseline.clips, current.clips, keys)
    deltas = quality_deltas(pairs, only_b, only_c, keys, confidence=rules.confidence,
                            n_resamples=rules.n_resamples, seed=rules.seed)
    out = {}
    for d in deltas:
        group = dict(d.group)
        key = ("quality", *(_text(group.get(k, "")) if k != "metric" else d.metric
                            for k in QUALITY_KEYS))
        out[key] = d
    return out


def _quality_check(key: tuple[str, ...], base: Mapping[str, Any], cur: Mapping[str, Any],
                   rule: MetricRule, delta: Any) -> Check:
    subject, metric = _subject(key), str(base["metric"])
    b_value, c_value = float(base["value"]), float(cur["value"])
    info = metric_info(metric)
    sign = 1.0 if rule.higher_is_better else -1.0
    if delta is not None:
        reference = abs(delta.baseline_mean)
    else:
        reference = abs(min(b_value, info.cap) if info.cap else b_value)
    tol = max(rule.abs_tol, rule.rel_tol * reference if math.isfinite(reference) else 0.0)
    tolerance = f"{'-' if rule.higher_is_better else '+'}{tol:.4g}"
    if delta is not None and delta.ci is not None and delta.ci.defined:
        ci = delta.ci
        worse_bound = ci.high if rule.higher_is_better else ci.low  # the best case
        better_bound = ci.low if rule.higher_is_better else ci.high
        change = f"{ci.estimate:+.4g} [{ci.low:+.4g}, {ci.high:+.4g}]"
        unpaired = delta.n_only_baseline + delta.n_only_candidate
        note = f"{delta.n_pairs} paired clips" + (f", {unpaired} unpaired" if unpaired else "")
        if sign * worse_bound < -tol:
            return Check(FAIL, "quality", subject, metric, _fmt(b_value), _fmt(c_value), change,
                         tolerance, f"regression: whole interval beyond tolerance; {note}")
        verdict = "improved" if sign * better_bound > tol else "within tolerance"
        return Check(PASS, "quality", subject, metric, _fmt(b_value), _fmt(c_value), change,
                     tolerance, f"{verdict}; {note}")
    # no interval: the point estimate is all there is
    capped = [min(v, info.cap) if info.cap else v for v in (b_value, c_value)]
    if not all(math.isfinite(v) for v in capped):
        same = b_value == c_value
        return Check(PASS if same else FAIL, "quality", subject, metric, _fmt(b_value),
                     _fmt(c_value), "", tolerance, "non-finite value")
    point = capped[1] - capped[0]
    why = ("one paired clip, no interval" if delta is not None
           else "no per-clip values; point estimate")
    outcome = FAIL if sign * point < -tol else PASS
    return Check(outcome, "quality", subject, metric, _fmt(b_value), _fmt(c_value),
                 f"{point:+.4g}", tolerance, ("regression; " if outcome == FAIL else "") + why)


def _spread_slack(base_latency: Mapping[str, Any] | None,
                  cur_latency: Mapping[str, Any] | None) -> float:
    """``(p10/median of current) / (p90/median of baseline)``: the latency ratio that the
    two runs' timing spreads alone could explain (1 when a spread is not recorded)."""
    if base_latency is None or cur_latency is None:
        return 1.0
    try:
        low = float(cur_latency["p10"]) / float(cur_latency["value"])
        high = float(base_latency["p90"]) / float(base_latency["value"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return 1.0
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 or high <= 0:
        return 1.0
    return min(1.0, low / high)


def _ratio_check(key: tuple[str, ...], base: Mapping[str, Any], cur: Mapping[str, Any],
                 rule: MetricRule, machine: _MachineFactor, slack: float) -> Check:
    """Ratio-judged metrics (timings, memory).

    Timings (normalised): the ratio is divided by the machine factor, and the timing
    spread is given to the current run (its p10 against the baseline's p90), so only a
    slowdown beyond noise and tolerance fails.
    """
    subject, metric = _subject(key), str(base["metric"])
    b_value, c_value = float(base["value"]), float(cur["value"])
    tolerance = f"{1 + rule.rel_tol:.3g}× worse"
    if rule.abs_tol:
        tolerance += f" {'-' if rule.higher_is_better else '+'}{rule.abs_tol:.4g}"
    if b_value <= 0 or not math.isfinite(b_value) or not math.isfinite(c_value):
        return Check(WARN, "efficiency", subject, metric, _fmt(b_value), _fmt(c_value), "",
                     tolerance, "ratio undefined (zero or non-finite baseline)")
    ratio = c_value / b_value
    exponent = TIMING_EXPONENT.get(metric, 0)
    how = "raw ratio"
    judged = ratio
    if rule.normalise == "reference":
        if machine.is_reference(cur):
            return Check(INFO, "reference", subject, metric, _fmt(b_value), _fmt(c_value),
                         f"{ratio:.3f}×", "", "a reference cell (it measures the machine)")
        if not machine.usable:
            return Check(FAIL, "reference", subject, metric, _fmt(b_value), _fmt(c_value),
                         f"{ratio:.3f}×", tolerance, f"{machine.describe()}: time it in both "
                         "runs or change the rules' reference")
        if machine.too_short:
            return Check(WARN, "efficiency", subject, metric, _fmt(b_value), _fmt(c_value),
                         f"{ratio:.3f}× raw", tolerance, "not gated: reference cells too "
                         "short to measure the machine (see the note above)")
        ratio = ratio / machine.factor**exponent
        judged = ratio
        how = f"normalised by machine factor {machine.factor:.3g}"
    if exponent and slack < 1.0:
        judged = ratio * slack**exponent  # the benefit of the doubt, within the spreads
        how += f"; p10–p90 spreads allow {1 / slack:.3g}×"
    change = f"{ratio:.3f}×"
    if rule.higher_is_better:
        failed = judged * b_value < b_value / (1 + rule.rel_tol) - rule.abs_tol
    else:
        failed = judged * b_value > b_value * (1 + rule.rel_tol) + rule.abs_tol
    if failed:
        return Check(FAIL, "efficiency", subject, metric, _fmt(b_value), _fmt(c_value), change,
                     tolerance, f"regression; {how}")
    return Check(PASS, "efficiency", subject, metric, _fmt(b_value), _fmt(c_value), change,
                 tolerance, how)


def gate_runs(baseline: RunData, current: RunData, rules: GateRules = DEFAULT_RULES
              ) -> GateReport:
    """Judge every baseline row against the current run (see the module doc)."""
    base_rows = _prepared(baseline.results)
    cur_rows = _prepared(current.results)
    base_index, cur_index = _index(base_rows, rules), _index(cur_rows, rules)
    cur_failed = _failed_cells(cur_rows)
    deltas = _clip_deltas(baseline, current, rules)
    machine = _MachineFactor(base_rows, cur_rows, rules.reference, rules.min_reference_s)
    checks: list[Check] = []
    unruled: set[str] = set()
    for key, base in base_index.items():
        metric = str(base["metric"])
        subject = _subject(key)
        cur = cur_index.get(key)
        if cur is None:
            failed = cur_failed.get(_cell_identity(base))
            if failed is not None:
                cur = {**base, "status": failed["status"], "message": failed["message"],
                       "value": math.nan, "protocol": base["protocol"]}
        if base["status"] != "ok":
            if cur is not None and cur["status"] == "ok":
                checks.append(Check(INFO, "status", subject, metric, base["status"], "ok",
                                    message="now measured"))
            continue
        if cur is None:
            outcome = WARN if rules.allow_missing else FAIL
            checks.append(Check(outcome, "missing", subject, metric, _fmt(float(base["value"])),
                                "absent", message="baseline cell not in the current run"))
            continue
        if cur["status"] != "ok":
            outcome = WARN if rules.allow_missing and cur["status"] == "skipped" else FAIL
            checks.append(Check(outcome, "status", subject, metric, "ok", cur["status"],
                                message=str(cur["message"])[:200]))
            continue
        if base["protocol"] != cur["protocol"]:
            outcome = WARN if rules.allow_protocol_change else FAIL
            checks.append(Check(outcome, "protocol", subject, metric, base["protocol"],
                                cur["protocol"], message="protocol changed: values measured "
                                "under different conventions"))
            if outcome == FAIL:
                continue
        rule = rules.metrics.get(metric)
        if rule is None:
            unruled.add(metric)
            continue
        if key[0] == "quality":
            checks.append(_quality_check(key, base, cur, rule, deltas.get(key)))
        else:
            latency_key = (*key[:-1], "latency_s")
            slack = (_spread_slack(base_index.get(latency_key), cur_index.get(latency_key))
                     if rules.timing_spread else 1.0)
            checks.append(_ratio_check(key, base, cur, rule, machine, slack))
        if base["weights"] != cur["weights"] and base["weights"] not in ("", "none"):
            checks.append(Check(INFO, "weights", subject, metric, base["weights"][:12],
                                cur["weights"][:12], message="weights differ"))
    for key, cur in cur_index.items():
        if key not in base_index and cur["status"] == "ok":
            outcome = INFO if rules.allow_new else FAIL
            checks.append(Check(outcome, "new", _subject(key), str(cur["metric"]), "absent",
                                _fmt(float(cur["value"])), message="not in the baseline"))
    if unruled:
        checks.append(Check(INFO, "rules", "all cells", ", ".join(sorted(unruled)),
                            message="no rule for these metrics: not gated"))
    devices = (sorted(set(base_rows.device) - {""}), sorted(set(cur_rows.device) - {""}))
    if devices[0] != devices[1]:
        checks.append(Check(INFO, "device", "run", "", ", ".join(devices[0]),
                            ", ".join(devices[1]), message="different devices"))
    notes = []
    if rules.reference and any(r.normalise == "reference" for r in rules.metrics.values()):
        described = machine.describe()
        notes.append(described[:1].upper() + described[1:] + ".")
    return GateReport(baseline.name, current.name, rules, tuple(checks), tuple(notes))


def run_gate(
    baseline: str | Path,
    current: str | Path,
    *,
    rules: str | Path | None = None,
    out: str | Path | None = None,
    quiet: bool = False,
) -> int:
    """``vae-bench gate``: judge, print and write the Markdown summary; 0 pass, 1 fail.

    The summary goes to ``out`` (default ``<current>/gate.md``).
    """
    report = gate_runs(load_run(baseline), load_run(current), load_rules(rules))
    text = report.to_markdown()
    atomic_write_text(Path(out) if out else Path(current) / "gate.md", text)
    if not quiet:
        print(text)
    return 0 if report.passed else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``vae-bench gate`` (dest names match :func:`run_gate`)."""
    parser.add_argument("--baseline", required=True, help="baseline run directory")
    parser.add_argument("--current", required=True, help="current run directory")
    parser.add_argument("--rules", default=None,
                        help="rules YAML (default: ./gates.yaml if present, else built-in)")
    parser.add_argument("--out", default=None, help="summary file (default: <current>/gate.md)")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print the summary")
