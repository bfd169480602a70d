"""Paired bootstrap (against scipy and by coverage) and run comparisons on synthetic runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tests.report_fixtures import write_run
from vae_bench.report.compare import (
    BETTER,
    NO_CHANGE,
    WORSE,
    CompareError,
    compare_runs,
    load_run,
    parse_selection,
    run_compare,
    to_markdown,
    verdict_for,
)
from vae_bench.report.stats import BootstrapCI, bootstrap_mean_ci, paired_deltas

# ------------------------------------------------------------------------------ stats


@pytest.mark.parametrize("noise", ["normal", "skewed"])
def test_bootstrap_interval_covers_true_delta_about_95_percent(noise):
    """200 synthetic paired data sets (30 clips each, clip difficulty shared by both
    sides): the interval must contain the true mean delta about 95% of the time."""
    rng = np.random.default_rng(2024)
    true_delta, hits, draws = 0.3, 0, 200
    for draw in range(draws):
        clips = rng.normal(30.0, 2.0, 30)  # difficulty, cancelled by pairing
        baseline = clips + rng.normal(0.0, 0.1, 30)
        if noise == "normal":
            candidate = clips + true_delta + rng.normal(0.0, 0.5, 30)
        else:  # exponential noise with mean 0.5: skewed deltas, same true mean
            candidate = clips + true_delta - 0.5 + rng.exponential(0.5, 30)
        ci = bootstrap_mean_ci(paired_deltas(baseline, candidate), n_resamples=1000, seed=draw)
        hits += ci.low <= true_delta <= ci.high
    assert 0.90 <= hits / draws <= 0.99


@pytest.mark.parametrize("method,scipy_method", [("bca", "BCa"), ("percentile", "percentile")])
def test_bootstrap_matches_scipy_without_expansion(method, scipy_method):
    values = np.random.default_rng(3).gamma(2.0, 1.0, 40)
    ours = bootstrap_mean_ci(values, n_resamples=40000, method=method, seed=1, expand=False)
    ref = stats.bootstrap((values,), np.mean, n_resamples=40000, method=scipy_method,
                          random_state=2).confidence_interval
    spread = values.std() / math.sqrt(len(values))
    assert ours.estimate == pytest.approx(values.mean())
    assert ours.low == pytest.approx(ref.low, abs=0.03 * spread)
    assert ours.high == pytest.approx(ref.high, abs=0.03 * spread)


def test_expansion_matches_student_t_for_large_resamples_of_symmetric_data():
    """Hesterberg's expansion turns the percentile interval of symmetric data into about
    the Student-t interval, whatever the sample size."""
    values = np.linspace(-1.0, 1.0, 8) + 5.0
    ci = bootstrap_mean_ci(values, n_resamples=200000, method="percentile", seed=0)
    t = stats.t.interval(0.95, 7, loc=values.mean(), scale=stats.sem(values))
    width, ref_width = ci.high - ci.low, t[1] - t[0]
    assert width == pytest.approx(ref_width, rel=0.05)


def test_bootstrap_edge_cases():
    assert not bootstrap_mean_ci(np.array([1.0])).defined
    flat = bootstrap_mean_ci(np.full(5, 0.25))
    assert (flat.low, flat.high, flat.estimate) == (0.25, 0.25, 0.25)
    with pytest.raises(ValueError, match="finite"):
        bootstrap_mean_ci(np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match="method"):
        bootstrap_mean_ci(np.ones(3), method="abc")
    ci = bootstrap_mean_ci(np.arange(10.0), seed=5)
    assert ci == bootstrap_mean_ci(np.arange(10.0), seed=5)  # seeded: reproducible


def test_paired_deltas_cap_infinite_psnr():
    deltas = paired_deltas(np.array([np.inf, 30.0, np.inf]), np.array([np.inf, 31.0, 40.0]),
                           cap=100.0)
    np.testing.assert_allclose(deltas, [0.0, 1.0, -60.0])
    with pytest.raises(ValueError, match="no cap"):
        paired_deltas(np.array([np.inf]), np.array([1.0]))
    with pytest.raises(ValueError, match="shape"):
        paired_deltas(np.ones(2), np.ones(3))


def test_verdicts_know_the_direction():
    up = BootstrapCI(0.2, 0.1, 0.3, 10, 0.95, "bca", 1000)
    down = BootstrapCI(-0.2, -0.3, -0.1, 10, 0.95, "bca", 1000)
    across = BootstrapCI(0.0, -0.1, 0.1, 10, 0.95, "bca", 1000)
    assert verdict_for(up, True) == BETTER and verdict_for(up, False) == WORSE
    assert verdict_for(down, True) == WORSE and verdict_for(down, False) == BETTER
    assert verdict_for(across, True) == NO_CHANGE


# ---------------------------------------------------------------------------- compare


@pytest.fixture
def two_runs(tmp_path):
    base = write_run(tmp_path, "base", seed=0)
    cand = write_run(tmp_path, "cand", seed=1, speed=1.0, slower={"m2": 1.6},
                     shift={("m1", "psnr"): -0.5, ("m1", "lpips"): -0.01})
    return load_run(base), load_run(cand)


def _delta(comparison, model, metric, size=64):
    found = [d for d in comparison.quality if dict(d.group)["model"] == model
             and d.metric == metric and dict(d.group)["height"] == str(size)]
    assert len(found) == 1
    return found[0]


def test_compare_finds_injected_changes_and_no_others(two_runs):
    comparison = compare_runs(*two_runs, n_resamples=1000)
    psnr = _delta(comparison, "m1", "psnr")
    assert psnr.verdict == WORSE and psnr.ci.low <= -0.5 + 0.02 and psnr.ci.high >= -0.5 - 0.02
    assert psnr.n_pairs == 24 and psnr.n_only_baseline == 0
    lpips = _delta(comparison, "m1", "lpips")  # lower is better: a drop is an improvement
    assert lpips.verdict == BETTER
    assert _delta(comparison, "m2", "psnr").verdict == NO_CHANGE
    # direct check of the paired mean against the clip files
    pairs = comparison.pairs
    sel = (pairs.model == "m1") & (pairs.height == "64")
    expected = (pairs.loc[sel, "psnr_candidate"] - pairs.loc[sel, "psnr_baseline"]).mean()
    assert psnr.delta == pytest.approx(expected)
    identity = _delta(comparison, "identity", "psnr")  # inf vs inf: capped, no change
    assert identity.delta == 0.0 and identity.verdict == NO_CHANGE

    latency = {(dict(r.group)["model"], r.phase, dict(r.group)["height"]): r
               for r in comparison.efficiency if r.metric == "latency_s"}
    slow = latency[("m2", "encode", "64")]
    assert slow.ratio == pytest.approx(1.6, rel=0.05) and slow.verdict == WORSE
    memory = [r for r in comparison.efficiency if r.metric == "peak_rss_mb"]
    assert memory and all(r.verdict == "same" for r in memory)


def test_compare_two_checkpoints_in_one_run(tmp_path):
    root = tmp_path / "both"
    base = write_run(tmp_path, "a", seed=0, weights={"m1": "1" * 64})
    cand = write_run(tmp_path, "b", seed=1, weights={"m1": "2" * 64},
                     shift={("m1", "ssim"): 0.01})
    root.mkdir()
    for table in ("results", "clips"):  # one run holding both checkpoints
        frames = [pd.read_csv(d / f"{table}.csv", keep_default_na=False, na_values=[""])
                  for d in (base, cand)]
        joined = pd.concat(frames, ignore_index=True)
        if table == "results":  # efficiency cells once, as a real run would have them
            joined = joined.drop_duplicates(["kind", "model", "weights", "height", "phase",
                                             "metric", "dataset"])
        joined.to_csv(root / f"{table}.csv", index=False)
    with pytest.raises(CompareError, match="several clips"):
        compare_runs(load_run(root), load_run(root), baseline_select={"model": "m1"},
                     candidate_select={"model": "m1"})
    comparison, files = run_compare(root, baseline_select="weights=1111",
                                    candidate_select="weights=2222", n_resamples=500)
    ssim = [d for d in comparison.quality if d.metric == "ssim"]
    assert ssim and all(d.verdict == BETTER for d in ssim)
    assert {dict(d.group)["model"] for d in comparison.quality} == {"m1"}
    names = {p.name for p in files}
    assert {"compare.md", "quality.csv", "pairs.csv", "deltas.png", "deltas.svg"} <= names
    assert all(p.stat().st_size > 0 for p in files)
    assert files[0].parent == root / "compare" / "both_weights=1111"


def test_compare_reports_unpaired_clips_protocol_changes_and_failures(tmp_path):
    base = write_run(tmp_path, "base", seed=0)
    cand = write_run(tmp_path, "cand", seed=1, protocol="synthetic:num_clips=24,v2",
                     oom=(("m2", 128),))
    clips = pd.read_csv(cand / "clips.csv", keep_default_na=False, na_values=[""])
    clips.drop(index=[0, 1, 2]).to_csv(cand / "clips.csv", index=False)
    comparison = compare_runs(load_run(base), load_run(cand), n_resamples=500)
    text = to_markdown(comparison)
    assert "3 only in the baseline" in text
    assert "Protocol differs" in text
    assert "Failed in the candidate: m2 efficiency 128x128x9 (oom)" in text
    assert sum(d.n_only_baseline for d in comparison.quality) == 3 * 3  # 3 metrics


def test_selection_parsing_errors():
    assert parse_selection("model=m1,weights=ab") == {"model": "m1", "weights": "ab"}
    with pytest.raises(CompareError, match="keys"):
        parse_selection("modle=m1")
    with pytest.raises(CompareError, match="keys"):
        parse_selection("model")


def test_selection_must_match_rows(tmp_path):
    run = load_run(write_run(tmp_path, "r", seed=0))
    with pytest.raises(CompareError, match="no rows with model=nope"):
        compare_runs(run, run, baseline_select={"model": "nope"})
