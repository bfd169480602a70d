"""compare, gate and table on run directories the runner wrote (not hand-written rows).

One tiny sweep (identity in full and chunked mode, whose PSNR is infinite by design, and a
lossy test model) is run once; the other runs are copies of it in which one thing was
changed: the test model's quality cell rerun with a planted regression, its timings
slowed in the rows, or a protocol string changed. Timings are planted in the rows, so
no test depends on how fast this machine is.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.toy_vae import register_planted
from vae_bench.cli import main
from vae_bench.report.compare import SAME, compare_runs, load_run
from vae_bench.report.gate import FAIL, PASS, gate_runs, parse_rules
from vae_bench.runner import run_sweep
from vae_bench.sweep import parse_sweep

SWEEP = {
    "name": "base",
    "device": "cpu",
    "models": [
        "identity",
        {"preset": "identity", "efficiency": False, "modes": ["temporal_chunks(4)"]},
        {"preset": "toy-planted", "quality": True},
    ],
    "datasets": ["synthetic"],
    "resolutions": [16],
    "frames": [5],
    "quality": {"metrics": ["psnr", "psnr_clip", "ssim", "flicker"], "max_clips": 6,
                "batch_size": 2},
    "efficiency": {"warmup": 0, "repeats": 2},
}
FAST = {"n_resamples": 500}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread) -> dict[str, Path]:
    """``base``, its exact ``copy``, and ``regressed``: the copy with the test model's
    quality cell rerun with planted error."""
    root = tmp_path_factory.mktemp("runs")
    register_planted(0.0)
    base = run_sweep(parse_sweep(SWEEP), root, plots=False)
    copy = shutil.copytree(base, root / "copy")
    regressed = shutil.copytree(base, root / "regressed")
    results = pd.read_csv(base / "results.csv")
    cell = results[(results.model == "toy-planted") & (results.kind == "quality")].cell.iloc[0]
    for part in (regressed / "cells").glob(f"{cell}.*"):
        part.unlink()
    register_planted(0.04)
    try:
        run_sweep(parse_sweep({**SWEEP, "name": "regressed"}), root, plots=False)
    finally:
        register_planted(0.0)
    return {"base": base, "copy": copy, "regressed": regressed, "root": root}


def _copy_with(runs, name: str, change) -> Path:
    """A copy of the base run whose results.csv went through ``change``."""
    target = runs["root"] / name
    if not target.exists():
        shutil.copytree(runs["base"], target)
        results = pd.read_csv(target / "results.csv", keep_default_na=False, na_values=[""])
        change(results).to_csv(target / "results.csv", index=False)
    return target


def test_the_run_has_what_the_gate_must_cope_with(runs):
    results = pd.read_csv(runs["base"] / "results.csv")
    ok = results[results.status == "ok"]
    psnr = ok[(ok.model == "identity") & (ok.metric == "psnr")]
    assert set(psnr["mode"]) == {"full", "temporal_chunks(4)"} and psnr.value.map(
        math.isinf).all()
    assert {"psnr_vs_full", "seam_psnr_drop", "seam_discontinuity", "flicker",
            "rss_growth_mb", "latency_s"} <= set(ok.metric)


def test_a_run_passes_the_gate_against_itself(runs, capsys):
    assert main(["gate", "--baseline", str(runs["base"]), "--current", str(runs["copy"])]) == 0
    summary = (runs["copy"] / "gate.md").read_text()
    assert summary.startswith("# vae-bench gate: PASSED") and "What failed" not in summary
    report = gate_runs(load_run(runs["base"]), load_run(runs["copy"]), parse_rules(FAST))
    quality = [c for c in report.checks if c.what == "quality"]
    infinite = [c for c in quality if c.subject.startswith("identity") and c.metric == "psnr"]
    assert len(infinite) == 2 and all(c.outcome == PASS and c.message.startswith(
        "no change") for c in infinite)
    assert {c.metric for c in quality} >= {"psnr_vs_full", "seam_psnr_drop", "flicker"}
    notes = [c for c in report.checks if c.what == "rules"]
    assert {c.metric for c in notes} == {"rss_growth_mb"}  # nvml: unavailable on a CPU
    assert all(c.message.startswith("informational, not gated: ") for c in notes)


def test_a_run_compares_with_itself(runs, capsys):
    assert main(["compare", str(runs["base"]), str(runs["copy"]), "--n-resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "| ∞ | ∞ | +0 [+0, +0] | — | no change |" in out
    comparison = compare_runs(load_run(runs["base"]), load_run(runs["copy"]), n_resamples=200)
    assert {d.verdict for d in comparison.quality} == {SAME}
    assert {"flicker", "seam_psnr_drop", "psnr_vs_full"} <= {d.metric for d in comparison.quality}
    growth = [r for r in comparison.efficiency if r.metric == "rss_growth_mb"]
    assert growth and {r.verdict for r in growth} == {SAME}
    assert (runs["copy"] / "compare" / "base_vs_base" / "compare.md").exists()  # run.json names it


def test_planted_regression_fails_with_a_readable_summary(runs):
    report = gate_runs(load_run(runs["base"]), load_run(runs["regressed"]), parse_rules(FAST))
    failed = [c for c in report.checks if c.outcome == FAIL]
    assert failed and {c.subject.split()[0] for c in failed} == {"toy-planted"}
    assert {c.metric for c in failed} >= {"psnr", "psnr_clip", "ssim"}
    text = report.to_markdown()
    assert text.startswith("# vae-bench gate: FAILED")
    line = next(t for t in text.splitlines() if t.startswith("- quality: toy-planted")
                and "· psnr:" in t)
    # the cell, the metric, the values, the interval and the tolerance, on one line
    assert "on synthetic 16x16x5 float32 full" in line
    assert "(tolerance -0.05): regression: whole interval beyond tolerance" in line
    low, high = (float(v) for v in line.split("[")[1].split("]")[0].split(","))
    assert low <= high < -0.05
    assert main(["gate", "--baseline", str(runs["base"]), "--current",
                 str(runs["regressed"]), "-q"]) == 1


def test_planted_slowdown_fails_relative_to_the_reference(runs):
    """Timings planted in the rows: the reference (identity) 50 ms in both runs, the test
    model 100 ms in the baseline and 2.5x that in the current run."""
    def timings(factor: float):
        def change(results: pd.DataFrame) -> pd.DataFrame:
            eff = (results.kind == "efficiency") & (results.status == "ok")
            for model, seconds in (("identity", 0.05), ("toy-planted", 0.1 * factor)):
                rows = eff & (results.model == model)
                latency = rows & (results.metric == "latency_s")
                results.loc[latency, ["value", "p10", "p90"]] = [seconds, seconds * 0.98,
                                                                  seconds * 1.02]
                for metric, amount in (("frames_per_s", 5), ("clips_per_s", 1)):
                    results.loc[rows & (results.metric == metric), "value"] = amount / seconds
            return results
        return change

    base = _copy_with(runs, "timed", timings(1.0))
    slower = _copy_with(runs, "slower", timings(2.5))
    report = gate_runs(load_run(base), load_run(slower), parse_rules(FAST))
    failed = [c for c in report.checks if c.outcome == FAIL]
    assert failed and {(c.subject.split()[0], c.metric) for c in failed} == {
        ("toy-planted", m) for m in ("latency_s", "frames_per_s", "clips_per_s")}
    assert all("normalised by machine factor 1" in c.message for c in failed)
    assert gate_runs(load_run(base), load_run(base), parse_rules(FAST)).passed


def test_protocol_change_fails_unless_allowed(runs):
    def change(results: pd.DataFrame) -> pd.DataFrame:
        psnr = (results.metric == "psnr") & (results.status == "ok")
        results.loc[psnr, "protocol"] = results.loc[psnr, "protocol"] + ";inf->100"
        return results

    changed = _copy_with(runs, "protocol", change)
    report = gate_runs(load_run(runs["base"]), load_run(changed), parse_rules(FAST))
    failed = [c for c in report.checks if c.outcome == FAIL]
    assert failed and {(c.what, c.metric) for c in failed} == {("protocol", "psnr")}
    assert gate_runs(load_run(runs["base"]), load_run(changed),
                     parse_rules({**FAST, "allow_protocol_change": True})).passed


def test_tables_of_the_run(runs, capsys):
    for layout in ("wf-vae", "quality", "efficiency"):
        for fmt in ("md", "latex", "csv"):
            assert main(["table", str(runs["base"]), "--layout", layout, "--format", fmt]) == 0
    capsys.readouterr()
    assert main(["table", str(runs["base"]), "--layout", "quality", "--format", "csv"]) == 0
    out = capsys.readouterr()
    frame = pd.read_csv(pd.io.common.StringIO(out.out)).set_index("model")
    assert math.isinf(frame.loc["identity (full)", "synthetic PSNR (dB) ↑"])
    assert "Protocol (synthetic)" in out.err  # the footnotes, beside the CSV
    assert main(["table", str(runs["base"]), "--layout", "efficiency", "--mode",
                 "temporal_chunks(4)"]) == 2
    assert "efficiency cells have mode full" in capsys.readouterr().err
