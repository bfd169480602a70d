"""The regression gate on synthetic baseline/current runs: noise passes, regressions fail."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.report_fixtures import write_run
from vae_bench.report.compare import load_run
from vae_bench.report.gate import (
    DEFAULT_RULES,
    FAIL,
    PASS,
    WARN,
    GateError,
    gate_runs,
    load_rules,
    parse_rules,
    run_gate,
)

ROOT = Path(__file__).resolve().parent.parent
FAST = {"n_resamples": 500}


def _rules(**overrides):
    return parse_rules({**FAST, **overrides}, "test")


def _gate(tmp_path, rules=None, baseline_sizes=(64, 128), **current):
    base = write_run(tmp_path, "baseline", seed=0, sizes=baseline_sizes)
    cur = write_run(tmp_path, "current", seed=1, **current)
    return gate_runs(load_run(base), load_run(cur), rules or _rules())


def _failures(report, what=None):
    return [c for c in report.checks if c.outcome == FAIL and (what is None or c.what == what)]


def test_noise_and_a_slower_machine_pass(tmp_path):
    """Fresh per-clip noise, and every timing 2.5x slower (identity included): no failure."""
    report = _gate(tmp_path, speed=2.5)
    assert report.passed, report.to_markdown()
    quality = [c for c in report.checks if c.what == "quality"]
    assert len(quality) == 3 * 3 * 2 and all(c.outcome == PASS for c in quality)
    timings = [c for c in report.checks if c.what == "efficiency" and c.metric == "latency_s"]
    assert timings and all(c.outcome == PASS for c in timings)


def test_change_within_tolerance_passes_even_when_significant(tmp_path):
    """A real but tolerated drop (0.03 dB, tolerance 0.05): the interval excludes zero but
    not the tolerance, so the gate passes."""
    report = _gate(tmp_path, shift={("m1", "psnr"): -0.03})
    assert report.passed, report.to_markdown()
    psnr = [c for c in report.checks if c.what == "quality" and c.metric == "psnr"
            and c.subject.startswith("m1")]
    assert psnr and all("within tolerance" in c.message for c in psnr)


def test_injected_quality_regression_fails(tmp_path):
    report = _gate(tmp_path, shift={("m1", "psnr"): -0.4, ("m2", "lpips"): 0.01})
    assert not report.passed
    failed = {(c.subject.split()[0], c.metric) for c in _failures(report, "quality")}
    assert failed == {("m1", "psnr"), ("m2", "lpips")}
    assert "regression" in report.to_markdown()


def test_relative_slowdown_fails_but_raw_ratios_would_not_be_fair(tmp_path):
    """m2 1.6x slower relative to the reference fails; the same slowdown on a machine
    that is 1.6x faster leaves raw timings unchanged but is still caught."""
    report = _gate(tmp_path, speed=1 / 1.6, slower={"m2": 1.6})
    failed = _failures(report, "efficiency")
    assert failed and {c.subject.split()[0] for c in failed} == {"m2"}
    assert {c.metric for c in failed} == {"latency_s", "frames_per_s"}
    raw = _gate(tmp_path, rules=_rules(reference=None, metrics={
        m: {"rel_tol": 0.25} for m in ("latency_s", "frames_per_s", "clips_per_s")}),
        speed=1 / 1.6, slower={"m2": 1.6})
    assert raw.passed  # why timings are normalised by a reference from the same run


def test_machine_factor_weighs_long_reference_cells(tmp_path):
    """The identity's short 64x64 cell runs 3x faster by chance (microsecond timings
    jitter); its 256x256 cell, 16x longer, does not. Dividing each cell by its own
    reference would make every model 3x slower at 64x64; the summed factor stays near 1
    ((1/3 + 16) / (1 + 16) = 0.96 for both phases) and nothing fails."""
    report = _gate(tmp_path, baseline_sizes=(64, 256), sizes=(64, 256),
                   slower_cells={("identity", 64): 1 / 3})
    assert report.passed, report.to_markdown()
    factor = float(re.search(r"Machine factor ([0-9.]+)", report.notes[0]).group(1))
    assert factor == pytest.approx((1 / 3 + 16) / 17, abs=0.02)  # 1% timing noise
    per_cell = _gate(tmp_path, baseline_sizes=(64, 256), sizes=(64, 256),
                     slower_cells={("m1", 64): 1.6})
    assert {c.subject.split()[0] for c in _failures(per_cell)} == {"m1"}


def test_too_short_reference_is_reported_not_trusted(tmp_path):
    """Reference cells of microseconds measure the timer, not the machine: timings become
    warnings that say so, instead of failures (or passes) driven by jitter."""
    tiny = {("identity", 64): 1e-3, ("identity", 128): 1e-3}
    report = _gate(tmp_path, slower_cells=tiny, slower={"m2": 2.0})
    timings = [c for c in report.checks if c.what == "efficiency"
               and c.metric in ("latency_s", "frames_per_s")]
    assert timings and all(c.outcome == WARN and "not gated" in c.message for c in timings)
    assert "min_reference_s" in report.notes[0] and report.passed
    assert not _gate(tmp_path, rules=_rules(min_reference_s=0.0), slower_cells=tiny).passed


def test_timing_spread_gives_the_benefit_of_the_doubt(tmp_path):
    """A 1.27x slowdown sits just beyond a 1.25x tolerance; the recorded spreads (p10 at
    0.97, p90 at 1.03 of the median) explain 1.06x of it, so it passes, unless spreads
    are switched off."""
    assert _gate(tmp_path, slower={"m1": 1.27}).passed
    strict = _gate(tmp_path, rules=_rules(timing_spread=False), slower={"m1": 1.27})
    assert {c.subject.split()[0] for c in _failures(strict)} == {"m1"}


def test_missing_reference_fails_with_a_clear_message(tmp_path):
    report = _gate(tmp_path, rules=_rules(reference={"model": "no-such-model"}))
    failed = _failures(report, "reference")
    assert failed and "no reference cell (model=no-such-model)" in failed[0].message


def test_missing_cells_fail_unless_allowed(tmp_path):
    report = _gate(tmp_path, sizes=(64,))
    missing = _failures(report, "missing")
    assert missing and all("128x128" in c.subject for c in missing)
    assert not report.passed
    lenient = _gate(tmp_path, rules=_rules(allow_missing=True), sizes=(64,))
    assert lenient.passed and any(c.outcome == WARN for c in lenient.checks)


def test_failed_cell_fails(tmp_path):
    report = _gate(tmp_path, oom=(("m2", 128),))
    status = _failures(report, "status")
    assert status and all(c.current == "oom" and c.subject.startswith("m2") for c in status)


def test_changed_protocol_fails_unless_allowed(tmp_path):
    report = _gate(tmp_path, protocol="synthetic:num_clips=24,resize=area")
    changed = _failures(report, "protocol")
    assert len(changed) == 3 * 3 * 2  # every quality row of every model and size
    allowed = _gate(tmp_path, rules=_rules(allow_protocol_change=True),
                    protocol="synthetic:num_clips=24,resize=area")
    assert allowed.passed
    assert sum(c.what == "protocol" and c.outcome == WARN for c in allowed.checks) == 18


def test_new_cells_are_reported(tmp_path):
    base = write_run(tmp_path, "baseline", seed=0, sizes=(64,))
    cur = write_run(tmp_path, "current", seed=1, sizes=(64, 128))
    report = gate_runs(load_run(base), load_run(cur), _rules())
    assert report.passed and any(c.what == "new" for c in report.checks)
    strict = gate_runs(load_run(base), load_run(cur), _rules(allow_new=False))
    assert not strict.passed


def test_run_gate_exit_code_and_summary(tmp_path, capsys):
    base = write_run(tmp_path, "baseline", seed=0)
    good = write_run(tmp_path, "good", seed=1)
    bad = write_run(tmp_path, "bad", seed=1, shift={("m1", "ssim"): -0.01})
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({**FAST}))
    assert run_gate(base, good, rules=rules) == 0
    assert "gate: PASSED" in capsys.readouterr().out
    assert (good / "gate.md").read_text().startswith("# vae-bench gate: PASSED")
    out = tmp_path / "summary.md"
    assert run_gate(base, bad, rules=rules, out=out, quiet=True) == 1
    assert "# vae-bench gate: FAILED" in out.read_text()
    assert capsys.readouterr().out == ""


def test_quality_without_clips_uses_the_point_estimate(tmp_path):
    base = write_run(tmp_path, "baseline", seed=0)
    cur = write_run(tmp_path, "current", seed=1, shift={("m1", "psnr"): -0.4})
    for run in (base, cur):
        (run / "clips.csv").unlink()
    report = gate_runs(load_run(base), load_run(cur), _rules())
    failed = _failures(report, "quality")
    assert failed and all("point estimate" in c.message for c in failed)


def test_rules_files_are_valid_and_cover_every_metric_the_suite_writes():
    """Each metric has a rule or a stated reason not to be gated, in the built-in rules and
    in the CI rules (which gate quality as strictly as the built-in ones)."""
    from vae_bench.metric_info import EFFICIENCY_METRICS, QUALITY_METRICS
    from vae_bench.report.gate import DEFAULT_RULES_FILE

    assert DEFAULT_RULES.source == "built-in defaults" and DEFAULT_RULES_FILE.exists()
    ci = load_rules(ROOT / ".ci" / "gates.yaml")
    for rules in (DEFAULT_RULES, ci):
        for metric in (*QUALITY_METRICS, *EFFICIENCY_METRICS):
            assert (metric in rules.metrics) != (metric in rules.informational), metric
        assert rules.reference == {"model": "identity"}
    assert DEFAULT_RULES.metrics["latency_s"].normalise == "reference"
    assert DEFAULT_RULES.metrics["flicker"].direction == "lower"
    assert DEFAULT_RULES.metrics["psnr_vs_full"].direction == "higher"
    assert {m: ci.metrics[m] for m in QUALITY_METRICS} == {
        m: DEFAULT_RULES.metrics[m] for m in QUALITY_METRICS}
    assert "latency_s" in ci.informational and ci.metrics["peak_rss_mb"].rel_tol == 1.0


def test_a_rules_file_changes_only_what_it_names():
    rules = parse_rules({"metrics": {"psnr": {"abs_tol": 0.5}},
                         "informational": {"ssim": "not ours"}})
    assert rules.metrics["psnr"].abs_tol == 0.5 and rules.metrics["psnr"].direction == "higher"
    assert rules.metrics["lpips"] == DEFAULT_RULES.metrics["lpips"]
    assert "ssim" not in rules.metrics and rules.informational["ssim"] == "not ours"
    gated_again = parse_rules({"metrics": {"rss_growth_mb": {"rel_tol": 0.5}}})
    assert "rss_growth_mb" not in gated_again.informational
    assert gated_again.metrics["rss_growth_mb"].direction == "lower"  # from metric_info


@pytest.mark.parametrize("data,match", [
    ({"metric": {}}, "unknown key"),
    ({"metrics": {"psnr": {"direction": "up"}}}, "direction"),
    ({"metrics": {"psnr": {"abs_tol": -1}}}, "abs_tol"),
    ({"metrics": {"psnr": {"tolerance": 1}}}, "unknown key"),
    ({"metrics": {"mystery": {"abs_tol": 1}}}, "direction required"),
    ({"metrics": {"latency_s": {"normalise": "reference", "abs_tol": 0.1}}}, "rel_tol"),
    ({"reference": {"colour": "red"}}, "reference"),
    ({"reference": None}, "reference is null"),
    ({"confidence": 95}, "confidence"),
    ({"metrics": {"ssim": {"normalise": "reference"}}}, "only timings"),
    ({"timing_spread": 1}, "timing_spread"),
    ({"allow_missing": "yes"}, "allow_missing"),
    ({"informational": {"nvml_used_mb": ""}}, "reason"),
    ({"metrics": {"ssim": {}}, "informational": {"ssim": "x"}}, "both under"),
    ({"min_repeats": 0}, "min_repeats"),
])  # fmt: skip
def test_invalid_rules_name_the_key(data, match):
    with pytest.raises(GateError, match=match):
        parse_rules(data, "gates.yaml")


def test_direction_defaults_from_the_metric():
    rules = parse_rules({"metrics": {"lpips": {"abs_tol": 0.01}}})
    assert rules.metrics["lpips"].direction == "lower"
    assert parse_rules(None).metrics == DEFAULT_RULES.metrics


def test_ignore_rules_skip_rows(tmp_path):
    report = _gate(tmp_path, rules=_rules(ignore=[{"model": "m2"}]), slower={"m2": 3.0})
    assert report.passed
    assert not any(c.subject.startswith("m2") for c in report.checks)


def test_results_are_not_modified(tmp_path):
    base = write_run(tmp_path, "baseline", seed=0)
    before = pd.read_csv(base / "results.csv")
    gate_runs(load_run(base), load_run(base), _rules())
    pd.testing.assert_frame_equal(before, pd.read_csv(base / "results.csv"))


def _set_identity_psnr(run, clip_values):
    """Replace the identity model's per-clip PSNR at 64x64 (and its cell value)."""
    clips = pd.read_csv(run / "clips.csv")
    rows = clips.index[(clips.model == "identity") & (clips.height == 64)]
    clips.loc[rows, "psnr"] = clip_values
    clips.to_csv(run / "clips.csv", index=False)
    results = pd.read_csv(run / "results.csv")
    cell = (results.model == "identity") & (results.height == 64) & (results.metric == "psnr")
    results.loc[cell, "value"] = float(pd.Series(clip_values, dtype=float).mean())
    results.to_csv(run / "results.csv", index=False)


def test_infinite_values_equal_pass_and_one_sided_are_judged(tmp_path):
    """inf vs inf (the identity) is no change; a lossless clip lost fails by name, a clip
    that became lossless passes as an improvement; no error either way."""
    base = write_run(tmp_path, "baseline", seed=0)
    same = gate_runs(load_run(base), load_run(write_run(tmp_path, "same", seed=1)), _rules())
    identity = [c for c in same.checks if c.what == "quality" and c.metric == "psnr"
                and c.subject.startswith("identity")]
    assert len(identity) == 2 and all(c.outcome == PASS for c in identity)
    assert all(c.message.startswith("no change") for c in identity)
    lossy = write_run(tmp_path, "lossy", seed=1)
    _set_identity_psnr(lossy, [60.0] * 3 + [float("inf")] * 21)
    report = gate_runs(load_run(base), load_run(lossy), _rules())
    failed = _failures(report, "quality")
    assert [(c.subject.split()[0], c.metric) for c in failed] == [("identity", "psnr")]
    assert "regression: worse: ∞ lost on 3/24 clips" in failed[0].message
    assert "∞ lost on 3/24 clips" in report.to_markdown().split("## Failures")[0]
    gained = gate_runs(load_run(lossy), load_run(base), _rules())
    psnr = [c for c in gained.checks if c.what == "quality" and c.metric == "psnr"
            and c.subject.startswith("identity") and "64x64" in c.subject]
    assert gained.passed and psnr[0].message.startswith("better: ∞ gained on 3/24 clips")


def test_infinite_values_without_clips_are_judged_too(tmp_path):
    base = write_run(tmp_path, "baseline", seed=0)
    lossy = write_run(tmp_path, "lossy", seed=1)
    _set_identity_psnr(lossy, [60.0] * 24)
    for run in (base, lossy):
        (run / "clips.csv").unlink()
    report = gate_runs(load_run(base), load_run(lossy), _rules())
    failed = _failures(report, "quality")
    assert [c.metric for c in failed] == ["psnr"] and "∞ lost" in failed[0].message
    assert gate_runs(load_run(base), load_run(base), _rules()).passed


def test_a_set_statistic_over_other_clips_fails_as_not_comparable(tmp_path):
    base = write_run(tmp_path, "baseline", seed=0)
    cur = write_run(tmp_path, "current", seed=1)
    for run, n in ((base, 24), (cur, 12)):
        results = pd.read_csv(run / "results.csv")
        row = results[(results.model == "m1") & (results.metric == "psnr")].iloc[[0]].assign(
            metric="rfvd", value=40.0, n=n)
        pd.concat([results, row]).to_csv(run / "results.csv", index=False)
    failed = _failures(gate_runs(load_run(base), load_run(cur), _rules()), "quality")
    assert len(failed) == 1 and failed[0].metric == "rfvd"
    assert "not comparable: a set statistic over different clips (24 vs 12" in failed[0].message


def test_one_repeat_is_not_gated(tmp_path):
    """A 3x slowdown timed once: reported as a warning (no spread), not a pass or fail."""
    base = write_run(tmp_path, "baseline", seed=0)
    cur = write_run(tmp_path, "current", seed=1, slower={"m2": 3.0})
    for run in (base, cur):
        results = pd.read_csv(run / "results.csv")
        results.loc[results.kind == "efficiency", "n"] = 1
        results.to_csv(run / "results.csv", index=False)
    report = gate_runs(load_run(base), load_run(cur), _rules())
    timings = [c for c in report.checks if c.what == "efficiency" and c.metric == "latency_s"
               and c.subject.startswith("m2")]
    assert report.passed and timings and all(
        c.outcome == WARN and "no spread (1 repeat" in c.message for c in timings)
    assert not gate_runs(load_run(base), load_run(cur), _rules(min_repeats=1)).passed
