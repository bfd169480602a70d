"""Regression gate: a current run against a committed baseline, pass or fail.

Quality is judged clip by clip: the paired bootstrap interval of (current - baseline)
must lie entirely beyond the tolerance, on the worse side, to count as a regression, so
noise within the tolerance never fails a build and a real drop does. Equal values are no
change, infinite ones included; a value infinite on one side only (a lossless clip
gained or lost) is judged by the metric's direction. Timings are compared as ratios
after dividing by one machine factor for the whole run: the summed latency of the
reference cells (by default the identity model's) in the current run over the
baseline's, so a CI machine that is slower across the board is not a regression and a
model that got slower relative to the reference is. Cells of the baseline missing from
the current run, cells that failed, and metrics measured under a changed protocol are
reported and fail the gate unless the rules allow them; nothing passes by being absent.
The built-in rules are ``gates.yaml`` next to this module.
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

from vae_bench.metric_info import metric_info
from vae_bench.report.compare import (
    MetricDelta,
    RunData,
    infinite_verdict,
    is_worse,
    load_run,
    pair_clips,
    quality_deltas,
)
from vae_bench.report.tables import key_text
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
DEFAULT_RULES_FILE = Path(__file__).with_name("gates.yaml")


class GateError(ValueError):
    """Invalid rules or inputs; the message names the file and key."""


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class MetricRule:
    """How one metric is judged.

    ``abs_tol`` (metric units) and ``rel_tol`` (a fraction of the baseline) make the
    tolerance; the larger wins. For ratio-judged metrics (timings, memory) a regression
    is a value more than ``(1 + rel_tol)`` times worse; ``normalise: reference`` first
    divides by the machine factor of the reference cells.
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
    min_repeats: int = 2  # timings of fewer repeats have no spread: reported, not gated
    informational: dict[str, str] = field(default_factory=dict, hash=False)  # metric: why
    source: str = "built-in defaults"


_TOP_KEYS = {"metrics", "informational", "reference", "allow_missing", "allow_protocol_change",
             "allow_new", "confidence", "n_resamples", "seed", "ignore", "timing_spread",
             "min_reference_s", "min_repeats"}  # fmt: skip
_RULE_KEYS = {"direction", "abs_tol", "rel_tol", "normalise"}
_FLAGS = ("allow_missing", "allow_protocol_change", "allow_new", "timing_spread")


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


def _number(source: str, key: str, value: Any, low: float, integer: bool = False) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < low:
        kind = "an integer" if integer else "a number"
        raise GateError(f"{source}: {key}: {value!r} must be {kind} >= {low:g}")
    return value


def parse_rules(data: Any, source: str = "<rules>", base: GateRules | None = None
                ) -> GateRules:
    """Validate a rules mapping (the content of ``gates.yaml``) over ``base`` (default:
    the built-in rules): ``metrics`` and ``informational`` replace its entries per
    metric; other keys left out keep its values."""
    base = DEFAULT_RULES if base is None else base
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise GateError(f"{source}: top level must be a mapping")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise GateError(f"{source}: unknown key(s) {unknown}; allowed: {sorted(_TOP_KEYS)}")
    metrics_data = data.get("metrics") or {}
    if not isinstance(metrics_data, Mapping):
        raise GateError(f"{source}: metrics: must be a mapping of metric name to rule")
    given = {str(name): _rule(source, str(name), rule) for name, rule in metrics_data.items()}
    info_data = data.get("informational") or {}
    if not isinstance(info_data, Mapping) or not all(
            isinstance(why, str) and why.strip() for why in info_data.values()):
        raise GateError(f"{source}: informational: a mapping of metric name to the reason it "
                        "is not gated, e.g. {nvml_used_mb: counts other processes}")
    both = sorted(set(given) & set(map(str, info_data)))
    if both:
        raise GateError(f"{source}: {', '.join(both)}: both under metrics and informational")
    informational = {k: v for k, v in base.informational.items() if k not in given}
    informational.update({str(k): " ".join(str(v).split()) for k, v in info_data.items()})
    rules = {k: v for k, v in base.metrics.items() if k not in informational}
    rules.update(given)
    reference = data.get("reference", base.reference)
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
    for key in _FLAGS:
        value = data.get(key, getattr(base, key))
        if not isinstance(value, bool):
            raise GateError(f"{source}: {key}: {value!r} must be true or false")
        flags[key] = value
    confidence = data.get("confidence", base.confidence)
    if not isinstance(confidence, float) or not 0 < confidence < 1:
        raise GateError(f"{source}: confidence: {confidence!r} must be in (0, 1)")
    min_reference_s = _number(source, "min_reference_s",
                              data.get("min_reference_s", base.min_reference_s), 0)
    n_resamples = _number(source, "n_resamples", data.get("n_resamples", base.n_resamples),
                          100, integer=True)
    seed = _number(source, "seed", data.get("seed", base.seed), 0, integer=True)
    min_repeats = _number(source, "min_repeats", data.get("min_repeats", base.min_repeats), 1,
                          integer=True)
    ignore = data.get("ignore", list(base.ignore)) or []
    if not isinstance(ignore, list) or not all(isinstance(i, Mapping) and i for i in ignore):
        raise GateError(f"{source}: ignore: a list of mappings, e.g. [{{metric: nvml_used_mb}}]")
    return GateRules(rules, reference, confidence=confidence, n_resamples=n_resamples,
                     seed=seed, min_reference_s=float(min_reference_s), min_repeats=min_repeats,
                     ignore=tuple(dict(i) for i in ignore), informational=informational,
                     source=source, **flags)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise GateError(f"{path}: not valid YAML: {error}") from None


DEFAULT_RULES = parse_rules(_read_yaml(DEFAULT_RULES_FILE), "built-in defaults",
                            base=GateRules({}, reference=None))


def load_rules(path: str | Path | None = None) -> GateRules:
    """Rules from a YAML file; without one, ``./gates.yaml`` if present, else defaults."""
    if path is None:
        if not Path("gates.yaml").exists():
            return DEFAULT_RULES
        path = Path("gates.yaml")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"gate rules {path} not found")
    return parse_rules(_read_yaml(path), str(path))


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

    def line(self) -> str:
        """One readable line: what, where, how much, against which tolerance, why."""
        change = self.change or f"{self.baseline} → {self.current}"
        if self.change and self.what in ("quality", "efficiency"):
            change = f"{self.baseline} → {self.current}, Δ {self.change}"
        tolerance = f" (tolerance {self.tolerance})" if self.tolerance else ""
        metric = f" · {self.metric}" if self.metric else ""
        return f"{self.what}: {self.subject}{metric}: {change}{tolerance}: {self.message}"


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

    def _timings_text(self) -> str:
        if not any(m in self.rules.metrics for m in TIMING_EXPONENT):
            return "Timings: not gated by these rules (informational)."
        return ("Timings: ratios current/baseline"
                + (", divided by the machine factor of the reference cells"
                   if self.rules.reference else "")
                + (", judged with the benefit of the p10–p90 spreads"
                   if self.rules.timing_spread else "") + ".")

    def to_markdown(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"# vae-bench gate: {verdict}", "",
            f"Current `{self.current}` against baseline `{self.baseline}` "
            f"(rules: {self.rules.source}). {self.count(FAIL)} failed, {self.count(WARN)} "
            f"warnings, {self.count(PASS)} passed, {self.count(INFO)} notes.", "",
            f"Quality: regression only when the {round(self.rules.confidence * 100)}% paired "
            "bootstrap interval of Δ = current − baseline lies entirely beyond the tolerance "
            "on the worse side. " + self._timings_text(), "",
            *[f"- {note}" for note in self.notes], "" if self.notes else None,
        ]  # fmt: skip
        lines = [line for line in lines if line is not None]
        failed = [c for c in self.checks if c.outcome == FAIL]
        if failed:
            shown = [f"- {c.line()}" for c in failed[:20]]
            more = [f"- … and {len(failed) - 20} more (table below)"] if len(failed) > 20 else []
            lines[1:1] = ["", "What failed:", "", *shown, *more]
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


def _clip_deltas(baseline: RunData, current: RunData, rules: GateRules
                 ) -> tuple[dict[tuple[str, ...], MetricDelta], set[tuple[str, ...]]]:
    """Paired deltas of every quality group, keyed like :data:`QUALITY_KEYS`, and the
    groups (keys without the metric) whose clips did not all pair."""
    if baseline.clips.empty or current.clips.empty:
        return {}, set()
    keys = [k for k in CLIP_KEYS if k in baseline.clips.columns and k in current.clips.columns]
    pairs, only_b, only_c = pair_clips(baseline.clips, current.clips, keys)
    deltas = quality_deltas(pairs, only_b, only_c, keys, confidence=rules.confidence,
                            n_resamples=rules.n_resamples, seed=rules.seed)
    out, unpaired = {}, set()
    for d in deltas:
        group = dict(d.group)
        key = ("quality", *(_text(group.get(k, "")) if k != "metric" else d.metric
                            for k in QUALITY_KEYS))
        out[key] = d
        if d.n_only_baseline or d.n_only_candidate:
            unpaired.add(key[:-1])
    return out, unpaired


def _quality_check(key: tuple[str, ...], base: Mapping[str, Any], cur: Mapping[str, Any],
                   rule: MetricRule, delta: MetricDelta | None, rules: GateRules,
                   unpaired: bool) -> Check:
    """Per-clip interval where there is one, else the values themselves (set statistics
    such as rFVD, or runs without clips.csv); infinite values by direction, never capped."""
    subject, metric = _subject(key), str(base["metric"])
    b_value, c_value = float(base["value"]), float(cur["value"])
    sign = 1.0 if rule.higher_is_better else -1.0
    reference = abs(delta.baseline_mean if delta is not None else b_value)
    tol = max(rule.abs_tol, rule.rel_tol * reference if math.isfinite(reference) else 0.0)
    tolerance = f"{'-' if rule.higher_is_better else '+'}{tol:.4g}"

    def check(outcome: str, change: str, message: str) -> Check:
        return Check(outcome, "quality", subject, metric, _fmt(b_value), _fmt(c_value), change,
                     tolerance, message)

    if delta is not None and delta.ci is not None:
        ci = delta.ci
        unpaired_n = delta.n_only_baseline + delta.n_only_candidate
        note = f"{delta.n_pairs} paired clips" + (f", {unpaired_n} unpaired" if unpaired_n
                                                  else "")
        infinite = ""
        if delta.n_inf_up or delta.n_inf_down:
            verdict = infinite_verdict(delta.n_inf_up, delta.n_inf_down, delta.n_pairs,
                                       rule.higher_is_better)
            if is_worse(verdict):
                return check(FAIL, _fmt(delta.delta), f"regression: {verdict}; {note}")
            infinite = f"{verdict}; "
        if ci.defined:
            worse_bound = ci.high if rule.higher_is_better else ci.low  # the best case
            better_bound = ci.low if rule.higher_is_better else ci.high
            change = f"{ci.estimate:+.4g} [{ci.low:+.4g}, {ci.high:+.4g}]"
            if sign * worse_bound < -tol:
                return check(FAIL, change, f"{infinite}regression: whole interval beyond "
                             f"tolerance; {note}")
            verdict = ("no change" if ci.low == ci.high == 0.0 else
                       "improved" if sign * better_bound > tol else "within tolerance")
            return check(PASS, change, f"{infinite}{verdict}; {note}")
        if ci.n == 0:  # every pair infinite on one side, and none worse
            return check(PASS, _fmt(delta.delta), f"{infinite}{note}")
        point, why = ci.estimate, f"{infinite}one finite pair, no interval"
    else:
        n_b, n_c = base.get("n"), cur.get("n")
        if unpaired or (_text(n_b) != _text(n_c)):
            return check(WARN if rules.allow_missing else FAIL, "",
                         f"not comparable: a set statistic over different clips ({_text(n_b)} "
                         f"vs {_text(n_c)} clips{', not all paired' if unpaired else ''})")
        if b_value == c_value:
            return check(PASS, "+0", "no change")
        point, why = c_value - b_value, "no per-clip values; point estimate"
        if math.isinf(point):
            verdict = infinite_verdict(int(point > 0), int(point < 0), 1, rule.higher_is_better)
            return check(FAIL if is_worse(verdict) else PASS, _fmt(point),
                         ("regression: " if is_worse(verdict) else "") + f"{verdict}; {why}")
    outcome = FAIL if sign * point < -tol else PASS
    return check(outcome, f"{point:+.4g}", ("regression; " if outcome == FAIL else "") + why)


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
                 rule: MetricRule, machine: _MachineFactor, slack: float,
                 min_repeats: int = 1) -> Check:
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
    repeats = min(_repeats(base), _repeats(cur))
    if exponent and repeats < min_repeats:
        return Check(WARN, "efficiency", subject, metric, _fmt(b_value), _fmt(c_value),
                     f"{ratio:.3f}× raw", tolerance, f"not gated: no spread ({repeats:g} "
                     f"repeat{'s' if repeats != 1 else ''}; min_repeats = {min_repeats})")
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


def _repeats(row: Mapping[str, Any]) -> float:
    try:
        n = float(row.get("n"))
    except (TypeError, ValueError):
        return math.inf  # not recorded: do not hold it against the row
    return n if math.isfinite(n) else math.inf


def gate_runs(baseline: RunData, current: RunData, rules: GateRules = DEFAULT_RULES
              ) -> GateReport:
    """Judge every baseline row against the current run (see the module doc)."""
    base_rows = _prepared(baseline.results)
    cur_rows = _prepared(current.results)
    base_index, cur_index = _index(base_rows, rules), _index(cur_rows, rules)
    cur_failed = _failed_cells(cur_rows)
    deltas, unpaired = _clip_deltas(baseline, current, rules)
    machine = _MachineFactor(base_rows, cur_rows, rules.reference, rules.min_reference_s)
    checks: list[Check] = []
    unruled: set[str] = set()
    for key, base in base_index.items():
        metric = str(base["metric"])
        subject = _subject(key)
        cur = cur_index.get(key)
        if cur is None:
            failed = cur_failed.get(_cell_identity(base))
            phase = cur_index.get((*key[:-1], "latency_s")) if key[0] == "efficiency" else None
            if failed is None and phase is not None and phase["status"] != "ok":
                failed = phase  # the phase failed: it wrote one latency row for all metrics
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
            checks.append(_quality_check(key, base, cur, rule, deltas.get(key), rules,
                                         key[:-1] in unpaired))
        else:
            latency_key = (*key[:-1], "latency_s")
            slack = (_spread_slack(base_index.get(latency_key), cur_index.get(latency_key))
                     if rules.timing_spread else 1.0)
            checks.append(_ratio_check(key, base, cur, rule, machine, slack,
                                       rules.min_repeats))
        if base["weights"] != cur["weights"] and base["weights"] not in ("", "none"):
            checks.append(Check(INFO, "weights", subject, metric, base["weights"][:12],
                                cur["weights"][:12], message="weights differ"))
    for key, cur in cur_index.items():
        if key not in base_index and cur["status"] == "ok":
            outcome = INFO if rules.allow_new else FAIL
            checks.append(Check(outcome, "new", _subject(key), str(cur["metric"]), "absent",
                                _fmt(float(cur["value"])), message="not in the baseline"))
    for metric in sorted(unruled):
        why = rules.informational.get(metric)
        checks.append(Check(INFO if why else WARN, "rules", "all cells", metric,
                            message=f"informational, not gated: {why}" if why else
                            "no rule for this metric: not gated (add one, or list it under "
                            "informational with the reason)"))
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
