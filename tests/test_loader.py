"""Clips loaded in worker processes: same clips, order, skips and rows as in-process
loading; a corrupt file or a dying worker inside the loader handled like any other."""

from __future__ import annotations

import os
import signal

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch.utils.data import get_worker_info

from tests.test_data import folder, write_video
from vae_bench import runner
from vae_bench.cli import main
from vae_bench.data import Clip, SkippedClip
from vae_bench.loader import WorkerDied, default_workers, load_clips
from vae_bench.results import read_results
from vae_bench.runner import plan, run_sweep
from vae_bench.sweep import SweepError, parse_sweep
from vae_bench.synthetic import SyntheticDataset


def same_items(a: list[Clip | SkippedClip], b: list[Clip | SkippedClip]) -> None:
    assert [type(x) for x in a] == [type(y) for y in b]
    for x, y in zip(a, b, strict=True):
        assert x.clip_id == y.clip_id and x.source == y.source
        if isinstance(x, Clip):
            assert x.start == y.start and x.video.dtype == y.video.dtype
            assert torch.equal(x.video, y.video)
        else:
            assert (x.status, x.reason) == (y.status, y.reason)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Good videos of different lengths between a too-short, a corrupt and an empty file."""
    root = tmp_path_factory.mktemp("library")
    for name, frames in (("a.mp4", 9), ("c.mp4", 4), ("e.mkv", 12), ("g.mp4", 7)):
        write_video(root / name, frames)
    data = (root / "a.mp4").read_bytes()
    (root / "b.mp4").write_bytes(data[: len(data) // 2])  # truncated mid-stream
    (root / "d.mp4").write_bytes(np.random.default_rng(0).bytes(2048))  # not a video
    (root / "f.mp4").write_bytes(b"")
    return root


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_give_the_in_process_clips_in_order(library, workers):
    """Corrupt, truncated, empty and too-short files are found inside the workers and come
    back as the same skipped items, in the same place, as a plain in-process load."""
    dataset = folder(library)
    ids = dataset.clip_ids()
    direct = [dataset.load(clip_id, 5, 16, 24) for clip_id in ids]
    assert [type(i).__name__ for i in direct] == [
        "Clip", "SkippedClip", "SkippedClip", "SkippedClip", "Clip", "SkippedClip", "Clip"]
    loaded = list(load_clips(dataset, ids, 5, 16, 24, workers=workers))
    same_items(loaded, direct)
    same_items(list(load_clips(dataset, ids, 5, 16, 24, workers=0)), direct)


def test_synthetic_float_clips_through_workers_are_bit_identical():
    dataset = SyntheticDataset(num_clips=5)
    ids = dataset.clip_ids()[::-1]  # any order asked for is the order given back
    loaded = list(load_clips(dataset, ids, 5, 16, 16, workers=2))
    same_items(loaded, [dataset.load(clip_id, 5, 16, 16) for clip_id in ids])


class FailingDataset(SyntheticDataset):
    """Dies (``kill``) or raises (``raise``) on one clip, but only inside a loader worker;
    ``none`` is the plain synthetic dataset."""

    def __init__(self, how: str, bad: int = 2) -> None:
        super().__init__(name="synthetic", num_clips=5)
        self.how, self.bad = how, bad

    def load(self, clip_id, frames, height, width):
        bad = clip_id == self.clip_ids()[self.bad]
        if self.how != "none" and bad and get_worker_info() is not None:
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise OSError(f"disk gone while reading {clip_id}")
        return super().load(clip_id, frames, height, width)


def test_a_killed_worker_is_a_clear_error_and_an_exception_keeps_its_type():
    dataset = FailingDataset("kill")
    with pytest.raises(WorkerDied, match="clip-loading worker of dataset 'synthetic' died"):
        list(load_clips(dataset, dataset.clip_ids(), 3, 8, 8, workers=2))
    failing = FailingDataset("raise")
    with pytest.raises(OSError, match="disk gone while reading 0002"):
        list(load_clips(failing, failing.clip_ids(), 3, 8, 8, workers=2))
    # in the main process nothing fails: the faults are the workers' own
    assert len(list(load_clips(dataset, dataset.clip_ids(), 3, 8, 8, workers=0))) == 5


def sweep_for(tmp_path, library, **overrides) -> dict:
    datasets = tmp_path / "datasets.yaml"
    datasets.write_text(yaml.safe_dump({"lib": {"kind": "folder", "root": str(library)}}))
    data = {
        "name": "loading", "device": "cpu", "datasets": ["synthetic", "lib"],
        "datasets_file": str(datasets),
        "models": [{"preset": "bicubic-f8", "efficiency": False}],
        "resolutions": [16], "frames": [5],
        "quality": {"metrics": ["psnr", "ssim"], "batch_size": 2, "max_clips": 6},
    }  # fmt: skip
    return data | overrides


def test_worker_count_does_not_change_any_row(tmp_path, library, capsys):
    """workers=0 (in-process) and 2: identical results, clip rows and frame rows, apart
    from the timing rows; each quality cell says where its time went."""
    roots = {}
    for workers in (0, 2):
        sweep = parse_sweep(sweep_for(tmp_path, library))
        roots[workers] = run_sweep(sweep, tmp_path / f"w{workers}", workers=workers, plots=False)
    tables = {}
    for workers, root in roots.items():
        results = read_results(root)
        timing = results[results.kind == "timing"]
        tables[workers] = (
            results[results.kind != "timing"].drop(columns=["timestamp"]),
            pd.read_csv(root / "clips.csv", keep_default_na=False),
            pd.read_csv(root / "frames.csv", keep_default_na=False),
        )
        for _cell, rows in timing.groupby("cell"):
            seconds = rows.set_index("metric").value
            assert sorted(seconds.index) == [
                "time_data_s", "time_metrics_s", "time_model_s", "time_total_s"]
            assert (seconds >= 0).all()
            parts = seconds.drop("time_total_s").sum()
            assert parts <= seconds["time_total_s"]
            assert set(rows.protocol) == {f"timing:workers={workers};timer=perf_counter"}
    for a, b in zip(tables[0], tables[2], strict=True):
        pd.testing.assert_frame_equal(a, b)
    clips = tables[0][1]
    lib = clips[clips.dataset == "lib"]
    assert dict(zip(lib["clip"], lib.status, strict=True)) == {  # the first 6 of 7
        "a.mp4": "ok", "b.mp4": "error", "c.mp4": "skipped", "d.mp4": "error", "e.mkv": "ok",
        "f.mp4": "error"}  # fmt: skip
    psnr = tables[0][0].set_index(["dataset", "metric"]).loc[("lib", "psnr")]
    assert psnr.protocol.startswith("folder(") and "max_clips=6" in psnr.protocol
    assert "rounded-to-uint8" in psnr.protocol
    # the run ends with one line per cell that could not use every clip
    lines = [line for line in capsys.readouterr().out.splitlines() if "not evaluated" in line]
    assert len(lines) == 2, lines
    cell = clips[clips.dataset == "lib"].cell.iloc[0]
    assert lines[-1] == (
        f"quality bicubic-f8 on lib 16x16x5 float32 full: 4 of 6 clips not evaluated "
        f"(3 error, 1 skipped); reasons: {roots[2] / 'clips.csv'} (cell {cell})")


def test_a_worker_killed_mid_cell_fails_the_cell_and_resume_retries_it(tmp_path, monkeypatch):
    sweep = parse_sweep({
        "name": "killed", "device": "cpu", "models": [{"preset": "identity",
                                                      "efficiency": False}],
        "resolutions": [8], "frames": [3], "quality": {"metrics": ["psnr"]},
        "data": {"workers": 2},
    })  # fmt: skip
    monkeypatch.setattr(runner, "load_datasets", lambda path: {"synthetic": FailingDataset("kill")})
    root = run_sweep(sweep, tmp_path, plots=False)
    row = read_results(root).iloc[0]
    assert (row.metric, row.status) == ("cell", "error")
    assert row.message.startswith("WorkerDied: a clip-loading worker of dataset 'synthetic' died")
    monkeypatch.setattr(runner, "load_datasets", lambda path: {"synthetic": FailingDataset("none")})
    results = read_results(run_sweep(sweep, tmp_path, plots=False))
    psnr = results.set_index("metric").loc["psnr"]
    assert (psnr.status, psnr.n) == ("ok", 5) and np.isinf(psnr.value)


def test_workers_from_the_sweep_the_command_line_or_the_machine(tmp_path):
    data = {"name": "w", "device": "cpu", "models": ["identity"], "resolutions": [8],
            "frames": [3], "quality": {"metrics": ["psnr"]}}  # fmt: skip
    assert plan(parse_sweep(data)).workers == default_workers() >= 1
    assert plan(parse_sweep(data | {"data": {"workers": 3}})).workers == 3
    assert plan(parse_sweep(data | {"data": {"workers": 3}}), workers=0).workers == 0
    for bad in (-1, "two", True):
        with pytest.raises(SweepError, match=r"data\.workers: must be an integer >= 0"):
            parse_sweep(data | {"data": {"workers": bad}})
    with pytest.raises(SweepError, match=r"data: unknown key\(s\) \['threads'\]"):
        parse_sweep(data | {"data": {"threads": 2}})
    with pytest.raises(SystemExit):
        main(["run", "default", "--workers", "-1"])


def test_default_workers_share_the_cpus_among_local_ranks(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(12)), raising=False)
    assert default_workers() == 8  # capped
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert default_workers() == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert default_workers() == 1


def test_torch_threads_leave_the_workers_their_cpus(monkeypatch):
    from vae_bench.loader import sharing_cpus

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        for device, workers, threads in (("cpu", 2, 4), ("cpu", 4, 2), ("cpu", 8, 1),
                                         ("cpu", 0, 4), ("cuda", 6, 4)):  # fmt: skip
            with sharing_cpus(torch.device(device), workers):
                assert torch.get_num_threads() == threads
            assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)
