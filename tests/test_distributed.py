"""Data-parallel runs under torchrun (gloo, CPU): the same numbers as one process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.distributed_helpers import run_module, spawn_gloo
from vae_bench.distributed import Context, RankFailed, from_environment, shard
from vae_bench.results import read_results

QUALITY_FLOATS = ["value", "ci_low", "ci_high"]
METRICS = ["psnr", "psnr_clip", "ssim", "flicker", "rfvd"]  # rfvd: feature statistics merged


@pytest.mark.parametrize(("count", "world"), [(5, 2), (4, 2), (7, 3), (2, 4), (0, 2), (9, 1)])
def test_shards_cover_every_item_once(count: int, world: int) -> None:
    items = [f"clip{i}" for i in range(count)]
    shards = [shard(items, rank, world) for rank in range(world)]
    assert sorted(x for part in shards for x in part) == sorted(items)  # no gap, no duplicate
    assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced
    assert shards == [shard(items, rank, world) for rank in range(world)]  # deterministic


def test_shard_rejects_a_rank_outside_the_world() -> None:
    with pytest.raises(ValueError, match="rank 2 is not in a world of 2"):
        shard([1, 2, 3], 2, 2)


def test_environment_is_read_as_torchrun_sets_it(monkeypatch) -> None:
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert from_environment() == Context()
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(ValueError, match=r"\['LOCAL_RANK'\] missing"):
        from_environment()
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert from_environment() == Context(rank=3, world_size=4, local_rank=1)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK=4 WORLD_SIZE=4"):
        from_environment()


def test_rank_failure_names_every_failed_rank() -> None:
    error = RankFailed("cell x", [(1, "RuntimeError: boom"), (3, "OSError: gone")])
    assert error.ranks == (1, 3)
    assert str(error) == "failed during cell x: rank 1: RuntimeError: boom; rank 3: OSError: gone"


def _empty_rank_worker(rank: int, out_dir: str) -> None:
    import torch

    from vae_bench.metrics import build_metrics

    generator = torch.Generator().manual_seed(5)
    target = torch.rand((2, 3, 2, 16, 16), generator=generator) * 2 - 1
    preds = (target + 0.1 * torch.randn(target.shape, generator=generator)).clamp(-1, 1)
    values = {}
    for metric in build_metrics(["psnr", "ssim"]):
        if rank == 0:  # rank 1 saw no clip: more ranks than clips
            metric.update(target, preds)
        values[metric.name] = (metric.per_clip(), metric.compute())
    torch.save(values, Path(out_dir) / f"rank{rank}.pt")


def test_a_rank_without_clips_merges_with_the_others(tmp_path: Path) -> None:
    import torch

    spawn_gloo(_empty_rank_worker, 2, tmp_path, str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    for name in ("psnr", "ssim"):
        (clips0, mean0), (clips1, mean1) = ranks[0][name], ranks[1][name]
        assert clips0.shape == (2,) and torch.equal(clips0, clips1)
        assert float(mean0) == float(mean1) == pytest.approx(float(clips0.mean()), rel=1e-12)


def _write_sweep(tmp_path: Path, models: list) -> Path:
    sweep = {
        "name": "tiny", "device": "cpu", "models": models, "datasets": ["synthetic"],
        "resolutions": [32], "frames": [9],  # rFVD needs 9 frames
        # 5 clips on 2 ranks: 3 + 2, the count does not divide
        "quality": {"metrics": METRICS, "max_clips": 5, "batch_size": 2,
                    "fvd_missing": "random"},  # a seeded random I3D, the same on every rank
        "efficiency": {"warmup": 1, "repeats": 2},
    }  # fmt: skip
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def _ok(process) -> None:
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]


def test_two_processes_give_the_numbers_and_rows_of_one(tmp_path: Path) -> None:
    sweep = _write_sweep(tmp_path, [{"preset": "identity", "efficiency": False},
                                    {"preset": "bicubic-f8", "efficiency": True}])  # fmt: skip
    _ok(run_module("bench", ["run", str(sweep), "--out", str(tmp_path / "one")]))
    _ok(run_module("bench", ["run", str(sweep), "--out", str(tmp_path / "two")], nproc=2))
    one, two = tmp_path / "one" / "tiny", tmp_path / "two" / "tiny"
    assert json.loads((two / "run.json").read_text())["world_size"] == 2

    key = ["cell", "phase", "metric"]
    a = read_results(one).sort_values(key).reset_index(drop=True)
    b = read_results(two).sort_values(key).reset_index(drop=True)
    assert not b.duplicated(key).any()
    assert a[key].equals(b[key])  # the same rows, efficiency ones written once
    quality = a.kind == "quality"
    assert a.status.equals(b.status) and (b.status[quality] == "ok").all()
    assert set(a[quality].metric) == set(METRICS) and (a[quality].n == 5).all()
    np.testing.assert_allclose(
        b.loc[quality, QUALITY_FLOATS].to_numpy(float),
        a.loc[quality, QUALITY_FLOATS].to_numpy(float), rtol=1e-10, atol=1e-12,
    )  # fmt: skip
    fixed = [c for c in a.columns if c not in [*QUALITY_FLOATS, "p10", "p90", "timestamp"]]
    pd.testing.assert_frame_equal(a.loc[quality, fixed], b.loc[quality, fixed])
    efficiency = b[b.kind == "efficiency"]
    assert set(efficiency.phase) == {"encode", "decode", "roundtrip"}
    assert set(efficiency.device) == set(a[a.kind == "efficiency"].device)  # rank 0's device

    per_clip = [m for m in METRICS if m != "rfvd"]  # rFVD is a set statistic
    for table, order, floats in (("clips", ["cell", "clip"], per_clip),
                                 ("frames", ["cell", "metric", "frame"], ["value"])):  # fmt: skip
        a = pd.read_csv(one / f"{table}.csv").sort_values(order).reset_index(drop=True)
        b = pd.read_csv(two / f"{table}.csv").sort_values(order).reset_index(drop=True)
        assert not b.duplicated(order).any()
        pd.testing.assert_frame_equal(a.drop(columns=floats), b.drop(columns=floats))
        np.testing.assert_allclose(b[floats].to_numpy(float), a[floats].to_numpy(float),
                                   rtol=0, atol=1e-12)  # fmt: skip
    assert len(pd.read_csv(two / "clips.csv")) == 2 * 5  # every clip of both cells, once


def test_failure_on_one_rank_stops_all_and_the_rerun_resumes(tmp_path: Path) -> None:
    sweep = _write_sweep(tmp_path, [{"preset": "identity", "efficiency": False},
                                    {"preset": "toy-pool-fails-on-rank1", "quality": True,
                                     "efficiency": False}])  # fmt: skip
    args = ["run", str(sweep), "--out", str(tmp_path)]
    failed = run_module("tests.toy_vae", args, nproc=2, env={"TOY_VAE_FAIL": "1"})
    assert failed.returncode != 0
    assert (
        "error: failed during cell quality toy-pool-fails-on-rank1 on synthetic 32x32x9 "
        "float32 full: rank 1: RuntimeError: toy failure on rank 1"
    ) in failed.stderr
    root = tmp_path / "tiny"
    before = read_results(root)
    assert set(before.model) == {"identity"} and (before.status == "ok").all()
    parts = {p: p.stat().st_mtime_ns for p in (root / "cells").glob("*.csv")}

    resumed = run_module("tests.toy_vae", args, nproc=2)
    _ok(resumed)
    assert "2 cells, 1 already done, 1 to run" in resumed.stdout
    assert {p: p.stat().st_mtime_ns for p in parts} == parts  # finished cell untouched
    after = read_results(root)
    assert set(after.model) == {"identity", "toy-pool-fails-on-rank1"}
    assert (after.status == "ok").all() and (after.n == 5).all()
    assert len(pd.read_csv(root / "clips.csv")) == 2 * 5
