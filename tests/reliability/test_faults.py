"""Faults inside a cell: out of memory (CUDA allocator or host) and non-finite outputs.

An OOM cell becomes rows with status ``oom`` and the size that failed, its tensors are
released before the next cell, and the next cell runs. Non-finite reconstructions are
flagged per clip and the metrics are computed on the other clips.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from skimage.metrics import peak_signal_noise_ratio

from tests.reliability.faulty import FAILED_CALL_TENSORS, faulty_preset
from vae_bench import runner as bench_runner
from vae_bench.results import read_results
from vae_bench.runner import run_sweep
from vae_bench.sweep import parse_sweep
from vae_bench.synthetic import SyntheticDataset

CUDA_TEXT = "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.10 GiB total capacity)"


def scored(run_dir) -> pd.DataFrame:
    """The run's result rows without the timing rows (how long each stage took)."""
    results = read_results(run_dir)
    return results[results.kind != "timing"].reset_index(drop=True)


def sweep(model: str, **overrides) -> dict:
    data = {
        "name": "faults", "device": "cpu", "models": [model], "resolutions": [32, 16],
        "frames": [5], "quality": {"metrics": ["psnr", "ssim"], "max_clips": 3, "batch_size": 2},
        "efficiency": {"warmup": 0, "repeats": 1},
    }  # fmt: skip
    data.update(overrides)
    return data


@pytest.fixture
def freed(monkeypatch):
    """Records, at each allocator clean-up, whether every failed call's tensors are gone."""
    FAILED_CALL_TENSORS.clear()
    seen: list[bool] = []
    free = bench_runner._free

    def spy(device):
        free(device)
        seen.append(all(ref() is None for ref in FAILED_CALL_TENSORS))

    monkeypatch.setattr(bench_runner, "_free", spy)
    return seen


@pytest.mark.parametrize(
    ("fault", "detail"),
    [
        ("cuda_oom", f"OutOfMemoryError: {CUDA_TEXT}"),
        ("memory_error", "MemoryError: no details"),
        ("host_oom", "RuntimeError: [enforce fail at alloc_cpu.cpp"),  # the real allocator's
    ],
)
def test_oom_in_a_quality_cell_is_a_row_with_the_size_and_the_next_cell_runs(
    tmp_path, freed, fault, detail
):
    faulty_preset("faulty", fault=fault, fail_from=32)
    data = sweep({"preset": "faulty", "quality": True, "efficiency": False})
    results = scored(run_sweep(parse_sweep(data), tmp_path, plots=False))
    assert len(results) == 1 + 2  # the OOM cell's row, then psnr and ssim of the 16x16 cell
    oom = results[results.height == 32].iloc[0]
    assert (oom.status, oom.metric, oom.kind) == ("oom", "cell", "quality")
    prefix = "out of memory at quality faulty on synthetic 32x32x5 float32 full, batch 2: "
    assert oom.message.startswith(prefix + detail), oom.message
    if fault == "host_oom":
        assert "DefaultCPUAllocator: can't allocate memory" in oom.message
    after = results[results.height == 16]
    assert list(after.status) == ["ok", "ok"] and set(after.n) == {3}
    assert FAILED_CALL_TENSORS and freed and all(freed)  # released before the next cell


@pytest.mark.parametrize("fault", ["cuda_oom", "host_oom", "memory_error"])
def test_oom_in_an_efficiency_cell_names_the_input_and_skips_the_dependent_phases(
    tmp_path, fault
):
    faulty_preset("faulty", fault=fault, fail_from=32)
    results = scored(run_sweep(parse_sweep(sweep("faulty")), tmp_path, plots=False))
    big = results[results.height == 32].set_index("phase")
    assert list(big.index) == ["encode", "decode", "roundtrip"]  # one row each, no values
    assert list(big.status) == ["oom", "skipped", "skipped"] and big.value.isna().all()
    assert big.loc["encode", "message"].startswith(
        "encode: out of memory with input [1, 3, 5, 32, 32] float32 on cpu ("
    )
    assert big.loc["decode", "message"] == "not run: encode did not finish (oom)"
    small = results[results.height == 16]
    assert set(small.phase) == {"encode", "decode", "roundtrip"}
    assert set(small[small.metric == "latency_s"].status) == {"ok"}


def _reference_psnr(clips: list, factor: int = 2) -> list[float]:
    """Per-clip PSNR (mean over frames, on [0, 1]) of the pooling reconstruction, by
    scikit-image, for comparison with the runner's values on the finite clips."""
    import torch.nn.functional as F

    values = []
    for clip in clips:
        video = clip.video[None]
        recon = F.interpolate(
            F.avg_pool3d(video, (1, factor, factor)), scale_factor=(1, factor, factor)
        )[0]
        frames = [
            peak_signal_noise_ratio(
                (clip.video[:, t].numpy() + 1) / 2, (recon[:, t].numpy() + 1) / 2, data_range=1
            )
            for t in range(video.shape[2])
        ]
        values.append(float(np.mean(frames)))
    return values


@pytest.mark.parametrize("poison", ["nan", "inf"])
def test_non_finite_reconstructions_are_flagged_and_the_rest_is_measured(tmp_path, poison):
    clips = list(SyntheticDataset().iter_clips(5, 16, 16))[:4]
    means = sorted(float(c.video.mean()) for c in clips)
    threshold = (means[1] + means[2]) / 2  # two clips poisoned, two clean
    faulty_preset("faulty", fault=poison, poison_above=threshold)
    data = sweep({"preset": "faulty", "quality": True, "efficiency": False}, resolutions=[16],
                 quality={"metrics": ["psnr"], "max_clips": 4, "batch_size": 3})  # fmt: skip
    root = run_sweep(parse_sweep(data), tmp_path, plots=False)

    rows = pd.read_csv(root / "clips.csv", keep_default_na=False)
    assert list(rows["clip"]) == [c.clip_id for c in clips]  # one row per clip, in order
    poisoned = [float(c.video.mean()) > threshold for c in clips]
    assert list(rows.status) == ["nonfinite" if p else "ok" for p in poisoned]
    assert list(rows.reason) == ["reconstruction has NaN/Inf values" if p else ""
                                 for p in poisoned]  # fmt: skip
    clean = [c for c, p in zip(clips, poisoned, strict=True) if not p]
    expected = _reference_psnr(clean)
    measured = pd.to_numeric(rows.psnr[rows.status == "ok"]).tolist()
    np.testing.assert_allclose(measured, expected, rtol=1e-5)
    assert (rows.psnr[rows.status == "nonfinite"] == "").all()  # no value for them

    psnr = scored(root).set_index("metric").loc["psnr"]
    assert (psnr.status, psnr.n) == ("ok", 2)
    assert psnr.message == "2 clips with non-finite reconstructions excluded"
    assert psnr.value == pytest.approx(np.mean(expected), rel=1e-5)


def test_a_cell_where_every_reconstruction_is_non_finite_is_an_error(tmp_path):
    faulty_preset("faulty", fault="nan", poison_above=-math.inf)
    data = sweep({"preset": "faulty", "quality": True, "efficiency": False}, resolutions=[16])
    root = run_sweep(parse_sweep(data), tmp_path, plots=False)
    results = scored(root)
    assert list(results.status) == ["error", "error"] and set(results.n) == {0}
    assert set(results.message) == {
        "no clip could be evaluated; 3 clips with non-finite reconstructions excluded"
    }
    assert list(pd.read_csv(root / "clips.csv").status) == ["nonfinite"] * 3


def test_an_unexpected_exception_in_a_cell_is_an_error_row_and_the_run_goes_on(
    tmp_path, monkeypatch
):
    """A bug in one adapter (here a TypeError) must not end a long run."""
    faulty_preset("faulty")
    original = bench_runner.run_quality

    def flaky(cell, *args):
        if cell.height == 32:
            raise TypeError("unsupported operand type(s) for +: 'Tensor' and 'NoneType'")
        return original(cell, *args)

    monkeypatch.setattr(bench_runner, "run_quality", flaky)
    data = sweep({"preset": "faulty", "quality": True, "efficiency": False})
    results = scored(run_sweep(parse_sweep(data), tmp_path, plots=False))
    failed = results[results.height == 32].iloc[0]
    assert (failed.status, failed.metric) == ("error", "cell")
    assert failed.message == "TypeError: unsupported operand type(s) for +: 'Tensor' and 'NoneType'"
    assert list(results[results.height == 16].status) == ["ok", "ok"]


def test_a_model_that_does_not_fit_on_the_device_fails_its_cells_only(tmp_path, toy_preset):
    faulty_preset("faulty", fault="load_oom")
    data = sweep({"preset": "faulty", "quality": True, "efficiency": False}, resolutions=[16],
                 models=[{"preset": "faulty", "quality": True, "efficiency": False},
                         {"preset": "toy-pool", "quality": True, "efficiency": False}])  # fmt: skip
    results = scored(run_sweep(parse_sweep(data), tmp_path, plots=False))
    failed = results[results.model == "faulty"].iloc[0]
    assert (failed.status, failed.metric, failed.weights) == ("oom", "cell", "random")
    assert pd.isna(failed.family) and pd.isna(failed.params)  # the model never loaded
    assert failed.message == (
        "out of memory at quality faulty on synthetic 16x16x5 float32 full, batch 2: "
        "OutOfMemoryError: CUDA out of memory. Tried to allocate 6.00 GiB"
    )
    assert list(results[results.model == "toy-pool"].status) == ["ok", "ok"]
