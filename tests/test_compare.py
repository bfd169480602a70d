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
    NO_SPREAD,
    SAME,
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
        deltas = paired_deltas(baseline, candidate).deltas
        ci = bootstrap_mean_ci(deltas, n_resamples=1000, seed=draw)
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


def test_paired_deltas_set_one_sided_infinities_apart():
    """inf == inf is no change; a value infinite on one side only is counted, by sign."""
    paired = paired_deltas(np.array([np.inf, 30.0, np.inf, 20.0, -np.inf]),
                           np.array([np.inf, 31.0, 40.0, np.inf, -np.inf]))
    np.testing.assert_array_equal(paired.deltas, [0.0, 1.0, 0.0])
    assert (paired.up, paired.down, paired.n) == (1, 1, 5)
    with pytest.raises(ValueError, match="NaN"):
        paired_deltas(np.array([np.nan]), np.array([1.0]))
    with pytest.raises(ValueError, match="shape"):
        paired_deltas(np.ones(2), np.ones(3))


def test_verdicts_know_the_direction():
    up = BootstrapCI(0.2, 0.1, 0.3, 10, 0.95, "bca", 1000)
    down = BootstrapCI(-0.2, -0.3, -0.1, 10, 0.95, "bca", 1000)
    across = BootstrapCI(0.0, -0.1, 0.1, 10, 0.95, "bca", 1000)
    assert verdict_for(up, True) == BETTER and verdict_for(up, False) == WORSE
    assert verdict_for(down, True) == WORSE and verdict_for(down, False) == BETTER
    assert verdict_for(across, True) == NO_CHANGE
    zero = BootstrapCI(0.0, 0.0, 0.0, 8, 0.95, "bca", 1000)
    assert verdict_for(zero, True) == SAME
    # one side infinite: psnr (higher is better) lost on 2 clips is worse, gained better
    assert verdict_for(zero, True, down=2) == "worse: ∞ lost on 2/10 clips"
    assert verdict_for(zero, True, up=1) == "better: ∞ gained on 1/9 clips"
    assert verdict_for(zero, False, up=1).startswith(WORSE)  # lower is better: inf is bad
    assert verdict_for(across, True, up=1, down=1).startswith(WORSE)


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
    identity = _delta(comparison, "identity", "psnr")  # inf vs inf: no change, no cap
    assert identity.delta == 0.0 and identity.verdict == SAME
    assert math.isinf(identity.baseline_mean) and "| ∞ | ∞ | +0 [+0, +0] |" in to_markdown(
        comparison)

    latency = {(dict(r.group)["model"], r.phase, dict(r.group)["height"]): r
               for r in comparison.efficiency if r.metric == "latency_s"}
    slow = latency[("m2", "encode", "64")]
    assert slow.ratio == pytest.approx(1.6, rel=0.05) and slow.verdict == WORSE
    memory = [r for r in comparison.efficiency if r.metric == "peak_rss_mb"]
    assert memory and all(r.verdict == SAME for r in memory)


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
    assert files[0].parent == root / "compare" / "both_weights=2222_vs_both_weights=1111"


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
    assert parse_selection("size=64x96,frames=9") == {"height": "64", "width": "96",
                                                      "frames": "9"}
    assert parse_selection("height=64") == {"height": "64"}
    with pytest.raises(CompareError, match="'modle' is not a selectable key; allowed: model, "
                       "weights, dtype, mode, size, height, width, frames, batch_size"):
        parse_selection("modle=m1")
    with pytest.raises(CompareError, match="write key=value pairs"):
        parse_selection("model")


def test_selection_must_match_rows(tmp_path):
    run = load_run(write_run(tmp_path, "r", seed=0))
    with pytest.raises(CompareError, match="no rows with model=nope"):
        compare_runs(run, run, baseline_select={"model": "nope"})


def _ratios(comparison, metric, model="m2", size="128"):
    return {r.phase: r for r in comparison.efficiency if r.metric == metric
            and dict(r.group)["model"] == model and dict(r.group)["height"] == size}


def test_one_sided_failures_are_worse_or_better_with_runner_shaped_rows(tmp_path):
    """The runner writes one ``cell`` row (status oom) for a cell that ran out of memory:
    every metric the other side measured is compared with it."""
    ok = load_run(write_run(tmp_path, "ok", seed=0))
    oom = load_run(write_run(tmp_path, "oom", seed=1, oom=(("m2", 128),)))
    worse = compare_runs(ok, oom, n_resamples=200)
    for metric in ("latency_s", "frames_per_s", "peak_rss_mb"):
        ratios = _ratios(worse, metric)
        assert set(ratios) == {"encode", "decode"}
        assert all(r.verdict == WORSE and r.candidate_status == "oom" for r in ratios.values())
    better = compare_runs(oom, ok, n_resamples=200)
    assert all(r.verdict == BETTER for r in _ratios(better, "latency_s").values())
    both = compare_runs(oom, oom, n_resamples=200)
    assert not _ratios(both, "latency_s")  # measured on neither side: nothing to pair


def test_memory_verdict_follows_the_metric_direction(tmp_path):
    base = load_run(write_run(tmp_path, "base", seed=0))
    lighter = load_run(write_run(tmp_path, "lighter", seed=0, heavier={"m2": 0.8}))
    heavier = load_run(write_run(tmp_path, "heavier", seed=0, heavier={"m2": 1.25}))
    assert _ratios(compare_runs(base, lighter, n_resamples=200), "peak_rss_mb")[
        "encode"].verdict == BETTER
    assert _ratios(compare_runs(base, heavier, n_resamples=200), "peak_rss_mb")[
        "encode"].verdict == WORSE
    assert _ratios(compare_runs(base, base, n_resamples=200), "peak_rss_mb")[
        "encode"].verdict == SAME


def test_timing_verdicts_need_a_spread_and_measurable_times(tmp_path):
    """One repeat has no spread: no verdict, however different; so do microsecond timings
    (the identity's 2 ms here) even with spreads that do not overlap."""
    base = write_run(tmp_path, "base", seed=0)
    cand = write_run(tmp_path, "cand", seed=1, slower={"m2": 3.0, "identity": 3.0})
    assert _ratios(compare_runs(load_run(base), load_run(cand), n_resamples=200),
                   "latency_s")["encode"].verdict == WORSE
    for run in (base, cand):
        results = pd.read_csv(run / "results.csv")
        results.loc[results.kind == "efficiency", "n"] = 1
        results.to_csv(run / "results.csv", index=False)
    single = compare_runs(load_run(base), load_run(cand), n_resamples=200)
    assert {r.verdict for r in single.efficiency if r.metric in ("latency_s", "frames_per_s")
            } == {NO_SPREAD}
    short = compare_runs(load_run(write_run(tmp_path, "b2", seed=0)),
                         load_run(write_run(tmp_path, "c2", seed=1, slower={"identity": 3.0})),
                         n_resamples=200)
    identity = _ratios(short, "latency_s", model="identity", size="64")["encode"]
    assert identity.ratio == pytest.approx(3.0, rel=0.05)
    assert identity.verdict.startswith("too short to time")


def test_set_statistic_over_different_clips_is_not_compared(tmp_path):
    """rFVD of 24 clips against rFVD of 20: the value moves with the clip set, so the
    verdict says not comparable instead of a delta; over the same clips it is a delta."""
    base = write_run(tmp_path, "base", seed=0)
    cand = write_run(tmp_path, "cand", seed=1)
    for run, n, value in ((base, 24, 50.0), (cand, 20, 80.0)):
        results = pd.read_csv(run / "results.csv")
        row = results[(results.model == "m1") & (results.metric == "psnr")].iloc[[0]].assign(
            metric="rfvd", value=value, n=n, ci_low=np.nan, ci_high=np.nan)
        pd.concat([results, row]).to_csv(run / "results.csv", index=False)
    clips = pd.read_csv(cand / "clips.csv")
    clips.drop(index=clips.index[(clips.model == "m1") & (clips.height == 64)][:4]).to_csv(
        cand / "clips.csv", index=False)
    rfvd = [d for d in compare_runs(load_run(base), load_run(cand), n_resamples=200).quality
            if d.metric == "rfvd"]
    assert len(rfvd) == 1 and rfvd[0].verdict.startswith("not comparable")
    assert "24 vs 20 clips" in rfvd[0].verdict
    same = [d for d in compare_runs(load_run(base), load_run(base), n_resamples=200).quality
            if d.metric == "rfvd"]
    assert same[0].verdict == SAME


def test_select_two_sizes_of_one_run(tmp_path):
    run = write_run(tmp_path, "r", seed=0)
    comparison, files = run_compare(run, baseline_select="size=64",
                                    candidate_select="size=128", n_resamples=200)
    psnr = [d for d in comparison.quality if d.metric == "psnr" and dict(d.group)["model"]
            == "m1"]
    assert len(psnr) == 1 and psnr[0].n_pairs == 24 and "height" not in dict(psnr[0].group)
    latency = [r for r in comparison.efficiency if r.metric == "latency_s"
               and dict(r.group)["model"] == "m2" and r.phase == "encode"]
    assert latency[0].ratio == pytest.approx(4.0, rel=0.05)  # 128^2 / 64^2 pixels
    assert files[0].parent.name == "r_height=128,_width=128_vs_r_height=64,_width=64"
    _, reverse = run_compare(run, baseline_select="size=128", candidate_select="size=64",
                             n_resamples=200)
    assert reverse[0].parent != files[0].parent  # one compare never overwrites another
