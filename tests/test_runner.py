"""The runner end to end on tiny sweeps: rows, schema, resume after a kill, bad clips."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from vae_bench.results import CLIP_COLUMNS, RESULT_COLUMNS, read_results
from vae_bench.runner import plan, run_sweep
from vae_bench.sweep import SweepError, parse_sweep

ROOT = Path(__file__).resolve().parent.parent
VOLATILE = ["timestamp"]  # the only columns allowed to differ between identical runs


def tiny_sweep(**overrides) -> dict:
    data = {
        "name": "tiny",
        "device": "cpu",
        "models": [
            "identity",
            {"preset": "toy-pool", "quality": True, "efficiency": False},
        ],
        "datasets": ["synthetic"],
        "resolutions": [16, [16, 24]],
        "frames": [5, 7],
        "quality": {"metrics": ["psnr", "psnr_clip", "ssim"], "max_clips": 3, "batch_size": 2},
        "efficiency": {"warmup": 1, "repeats": 2},
    }
    data.update(overrides)
    return data


def test_run_writes_tidy_rows(tmp_path, toy_preset):
    root = run_sweep(parse_sweep(tiny_sweep()), tmp_path, plots=False)
    results = read_results(root)
    assert list(results.columns[: len(RESULT_COLUMNS)]) == list(RESULT_COLUMNS)
    for column in ("protocol", "device", "dtype", "weights", "torch_version", "suite_version"):
        assert (results[column].astype(str) != "").all(), column

    quality = results[(results.kind == "quality") & (results.status == "ok")]
    ident = quality[quality.model == "identity"].set_index("metric")
    assert np.isinf(ident.loc["psnr", "value"]).all()
    assert np.allclose(ident.loc["ssim", "value"], 1.0)
    toy = quality[quality.model == "toy-pool"]
    assert np.isfinite(toy[toy.metric == "psnr"].value).all()
    assert (toy[toy.metric == "ssim"].value < 1).all()
    assert set(toy.weights) == {"random"} and set(ident.weights) == {"none"}
    # frame rule 1 + 4k: 7 requested frames run as 5, and the row says both
    assert set(toy.frames) == {5} and set(toy.frames_requested) == {5}
    assert set(results[results.model == "identity"].frames) == {5, 7}

    eff = results[results.kind == "efficiency"]
    assert set(eff.phase) == {"encode", "decode", "roundtrip"}
    latency = eff[eff.metric == "latency_s"]
    assert (latency.value > 0).all() and (latency.p10 <= latency.p90).all()
    assert (eff[eff.metric == "peak_rss_mb"].value > 0).all()

    clips = pd.read_csv(root / "clips.csv")
    assert list(clips.columns[: len(CLIP_COLUMNS)]) == list(CLIP_COLUMNS)
    toy_clips = clips[clips.model == "toy-pool"]
    # per-clip values average to the cell value
    for cell, group in toy_clips.groupby("cell"):
        cell_value = toy[(toy.cell == cell) & (toy.metric == "ssim")].value.item()
        assert group.ssim.mean() == pytest.approx(cell_value, rel=1e-9)
        assert len(group) == 3
    frames = pd.read_csv(root / "frames.csv")
    assert set(frames.frame) == set(range(7))


def test_rerun_skips_finished_cells(tmp_path, toy_preset):
    sweep = parse_sweep(tiny_sweep())
    root = run_sweep(sweep, tmp_path, plots=False)
    parts = {p: p.stat().st_mtime_ns for p in (root / "cells").glob("*.csv")}
    before = read_results(root)
    run_sweep(sweep, tmp_path, plots=False)
    assert {p: p.stat().st_mtime_ns for p in (root / "cells").glob("*.csv")} == parts
    pd.testing.assert_frame_equal(read_results(root), before)


def _run_cli(sweep_file: Path, out: Path) -> subprocess.Popen:
    code = (
        "import sys; from tests.toy_vae import register_toy; register_toy();"
        "from vae_bench.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, "run", str(sweep_file), "--out", str(out)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _comparable(results: pd.DataFrame) -> pd.DataFrame:
    results = results.drop(columns=VOLATILE)
    results.loc[results.kind == "timing", "value"] = math.nan  # how long stages took
    return results.sort_values(["cell", "phase", "metric"]).reset_index(drop=True)


def test_killed_run_resumes_to_the_same_csv(tmp_path):
    sweep = tiny_sweep(
        resolutions=[16, 24, 32], frames=[5, 9],
        models=[{"preset": "identity", "efficiency": False},
                {"preset": "toy-pool", "quality": True, "efficiency": False}],
    )  # fmt: skip
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(sweep))
    reference = _run_cli(sweep_file, tmp_path / "ref")
    assert reference.wait(timeout=300) == 0

    killed = _run_cli(sweep_file, tmp_path / "resumed")
    cells = tmp_path / "resumed" / "tiny" / "cells"
    deadline = time.monotonic() + 240
    while len(list(cells.glob("*.results.csv"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    finished = len(list(cells.glob("*.results.csv")))
    assert 2 <= finished < 12, "the kill must land in the middle of the run"
    assert _run_cli(sweep_file, tmp_path / "resumed").wait(timeout=300) == 0

    ref = read_results(tmp_path / "ref" / "tiny")
    resumed = read_results(tmp_path / "resumed" / "tiny")
    assert len(ref) == len(resumed) and not resumed.duplicated(["cell", "phase", "metric"]).any()
    pd.testing.assert_frame_equal(_comparable(ref), _comparable(resumed))
    ref_clips = pd.read_csv(tmp_path / "ref" / "tiny" / "clips.csv").sort_values(["cell", "clip"])
    res_clips = pd.read_csv(tmp_path / "resumed" / "tiny" / "clips.csv").sort_values(
        ["cell", "clip"]
    )
    pd.testing.assert_frame_equal(
        ref_clips.reset_index(drop=True), res_clips.reset_index(drop=True)
    )


def _write_video(path: Path, frames: int, size: int = 32) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(frames):
            image = np.full((size, size, 3), (index * 20) % 255, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_bad_videos_become_clip_rows_not_crashes(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    _write_video(videos / "a_good.mp4", 12)
    (videos / "b_corrupt.mp4").write_bytes(os.urandom(2048))
    _write_video(videos / "c_short.mp4", 3)
    datasets = tmp_path / "datasets.yaml"
    datasets.write_text(yaml.safe_dump({"clips": {"kind": "folder", "root": str(videos)}}))
    sweep = tiny_sweep(
        models=[{"preset": "identity", "efficiency": False}], datasets=["clips"],
        datasets_file=str(datasets), resolutions=[16], frames=[5],
    )  # fmt: skip
    root = run_sweep(parse_sweep(sweep), tmp_path / "out", plots=False)
    clips = pd.read_csv(root / "clips.csv", keep_default_na=False).set_index("clip")
    by_source = {
        Path(s).name: row for s, (_, row) in zip(clips.source, clips.iterrows(), strict=True)
    }
    assert by_source["a_good.mp4"].status == "ok"
    assert by_source["b_corrupt.mp4"].status == "error" and by_source["b_corrupt.mp4"].reason
    assert (
        by_source["c_short.mp4"].status == "skipped" and "short" in by_source["c_short.mp4"].reason
    )
    results = read_results(root)
    psnr = results[results.metric == "psnr"].iloc[0]
    assert psnr.status == "ok" and psnr.n == 1 and math.isinf(psnr.value)
    assert "2 clips skipped" in psnr.message


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"models": ["no-such-model"]}, "unknown model 'no-such-model'"),
        ({"datasets": ["nope"]}, "datasets: unknown ['nope']"),
        ({"models": [{"preset": "identity", "modes": ["spatial_tiles(8)"]}, "toy-pool"],
          "modes": ["temporal_chunks(4)"]}, "temporal_chunks(4) not supported"),
        ({"models": ["toy-pool"], "resolutions": [15]}, "height 15 is not divisible"),
        ({"models": ["toy-pool"], "frames": [0]}, "frames: 0 is not a positive integer"),
        ({"dtypes": ["float8"]}, "allowed: ['float32', 'float16', 'bfloat16']"),
        ({"colour": "red"}, "unknown key(s) ['colour']"),
        ({"quality": {"convention": "paper"}},
         "quality.convention: 'paper' not allowed; allowed: ['suite', 'wf-vae-official']"),
    ],
)  # fmt: skip
def test_invalid_sweeps_fail_before_any_work(tmp_path, toy_preset, overrides, needle):
    with pytest.raises(SweepError) as error:
        plan(parse_sweep(tiny_sweep(**overrides), "sweep.yaml"))
    assert needle in str(error.value) and "sweep.yaml" in str(error.value)


def test_official_convention_reports_perfect_frames_as_100_db(tmp_path):
    quality = {"metrics": ["psnr", "psnr_clip", "ssim"], "max_clips": 2,
               "convention": "wf-vae-official"}  # fmt: skip
    sweep = tiny_sweep(models=[{"preset": "identity", "efficiency": False}], resolutions=[16],
                       frames=[5], quality=quality)  # fmt: skip
    results = read_results(run_sweep(parse_sweep(sweep), tmp_path, plots=False))
    rows = results[results.kind == "quality"].set_index("metric")
    assert rows.loc["psnr", "value"] == rows.loc["psnr_clip", "value"] == 100.0
    assert rows.loc["psnr", "protocol"].endswith(";inf->100")
    assert rows.loc["ssim", "value"] == 1.0


def test_adapter_caveats_reach_the_quality_rows(tmp_path, toy_preset, monkeypatch):
    """A ResultWarning (e.g. a codec missing its bit budget) is written once into the
    cell's rows; an ordinary warning is not."""
    import warnings

    from tests.toy_vae import PoolVAE
    from vae_bench.adapters.base import ResultWarning

    encode = PoolVAE._encode

    def caveated(self, video, mode):
        warnings.warn("toy-pool: 3% over budget", ResultWarning, stacklevel=2)
        warnings.warn("an unrelated deprecation", DeprecationWarning, stacklevel=2)
        return encode(self, video, mode)

    monkeypatch.setattr(PoolVAE, "_encode", caveated)
    sweep = tiny_sweep(models=[{"preset": "toy-pool", "quality": True, "efficiency": False}],
                       resolutions=[16], frames=[5])  # fmt: skip
    results = read_results(run_sweep(parse_sweep(sweep), tmp_path, plots=False))
    messages = set(results[results.kind == "quality"].message)
    assert messages == {"toy-pool: 3% over budget"}


def test_rfvd_rows_with_random_i3d_and_cached_real_statistics(tmp_path, toy_preset):
    sweep = tiny_sweep(
        models=[{"preset": "identity", "efficiency": False},
                {"preset": "toy-pool", "quality": True, "efficiency": False}],
        resolutions=[16], frames=[5, 9],
        quality={"metrics": ["psnr", "rfvd"], "max_clips": 3, "batch_size": 3,
                 "fvd_weights": "random"},
    )  # fmt: skip
    root = run_sweep(parse_sweep(sweep), tmp_path, plots=False)
    results = read_results(root)
    rfvd = results[results.metric == "rfvd"].set_index(["model", "frames"])
    # 5 frames are too few for the I3D: a skipped row that says so, not a failed cell
    assert set(rfvd.loc[(slice(None), 5), "status"]) == {"skipped"}
    assert "at least 9 frames" in rfvd.loc[("identity", 5), "message"]
    ident, toy = rfvd.loc[("identity", 9)], rfvd.loc[("toy-pool", 9)]
    assert ident.status == toy.status == "ok" and ident.n == toy.n == 3
    assert "weights=random" in ident.protocol and ident.protocol == toy.protocol
    assert abs(ident.value) < 1e-6 < toy.value  # identical sets score zero
    stats = list((Path(os.environ["VAE_BENCH_CACHE"]) / "fvd" / "stats").glob("*.npz"))
    assert len(stats) == 1  # the originals were extracted once, then reused


@pytest.mark.parametrize("missing", ["error", "skip", "random"])
def test_missing_i3d_weights_error_skip_or_random(tmp_path, toy_preset, missing):
    sweep = parse_sweep(
        tiny_sweep(models=[{"preset": "identity", "efficiency": False}], resolutions=[16],
                   frames=[9], quality={"metrics": ["rfvd"], "max_clips": 2,
                                        "fvd_missing": missing}),
        "sweep.yaml",
    )  # fmt: skip
    if missing == "error":
        with pytest.raises(SweepError, match="i3d_torchscript.pt"):
            plan(sweep)
        return
    row = read_results(run_sweep(sweep, tmp_path, plots=False)).iloc[0]
    if missing == "skip":
        assert row.status == "skipped" and "i3d_torchscript.pt" in row.message
    else:
        assert row.status == "ok" and "weights=random" in row.protocol
        assert "random I3D used" in row.message


def test_tiled_modes_report_psnr_against_full_inference(tmp_path):
    from tests.test_od_vae import tiny_preset
    from vae_bench.adapters import register

    register(tiny_preset(), replace=True)
    sweep = tiny_sweep(
        models=[{"preset": "od-vae-4ch-tiny", "quality": True, "efficiency": False,
                 "modes": ["full", "temporal_chunks(9)"]}],
        resolutions=[16], frames=[17], quality={"metrics": ["psnr"], "max_clips": 2},
    )  # fmt: skip
    root = run_sweep(parse_sweep(sweep), tmp_path, plots=False)
    results = read_results(root).set_index(["mode", "metric"])
    assert ("full", "psnr_vs_full") not in results.index  # only tiled modes compare
    gap = results.loc[("temporal_chunks(9)", "psnr_vs_full")]
    assert gap.status == "ok" and np.isfinite(gap.value) and gap.n == 2
    frames = pd.read_csv(root / "frames.csv")
    gap_frames = frames[frames.metric == "psnr_vs_full"].sort_values("frame")
    # causal 4x time compression: frame 0 alone, then groups of four (positions 1..4)
    assert gap_frames.group_position.tolist()[:10] == [0, 1, 2, 3, 4, 1, 2, 3, 4, 1]
    curve = gap_frames.value.to_numpy()
    # the release's group norm sees only a window's frames, so every frame differs from
    # full inference, by an amount that changes from one window to the next
    assert len(curve) == 17 and np.isfinite(curve).all() and np.ptp(curve) > 0.1


def test_efficiency_only_sweeps_need_no_metric_weights(tmp_path, toy_preset):
    # LPIPS (and rFVD) weights are absent here; a sweep without quality cells must not care
    sweep = tiny_sweep(models=["toy-pool"], quality={"metrics": ["lpips", "rfvd"]})
    cells = plan(parse_sweep(sweep)).cells
    assert cells and {c.kind for c in cells} == {"efficiency"}
