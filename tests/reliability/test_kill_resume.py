"""Killed runs: SIGKILL at random moments, power loss, Ctrl-C and SIGTERM.

A real ``vae-bench run`` runs as a subprocess on a tiny sweep. After every kill the run
directory must hold only whole files and no duplicated rows; a rerun must run only the
missing cells and end with the same CSVs as an uninterrupted run (timings aside).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from vae_bench.results import RunStore, csv_damage, read_results

ROOT = Path(__file__).resolve().parents[2]
RUN = "kill"
# columns that differ between identical runs: when and where, and the measured timings
VOLATILE = ["timestamp", "host", "p10", "p90"]
SWEEP = {
    "name": RUN, "device": "cpu",
    "models": [{"preset": "identity", "modes": ["full"]},
               {"preset": "bicubic-f8", "efficiency": False},
               {"preset": "toy-pool", "quality": True, "efficiency": False}],
    "datasets": ["synthetic", "synthetic-b"], "resolutions": [16], "frames": [5, 9],
    "quality": {"metrics": ["psnr", "psnr_clip", "ssim"], "max_clips": 2, "batch_size": 2},
    "efficiency": {"warmup": 0, "repeats": 1},
}  # fmt: skip
DATASETS = {"synthetic-b": {"kind": "synthetic", "num_clips": 3, "seed": 7}}
CELLS = 14  # 2 frame counts x (identity's efficiency + 3 models x 2 datasets of quality)


def start(sweep_file: Path, out: Path) -> subprocess.Popen:
    """``vae-bench run`` in a fresh interpreter, with the toy model registered."""
    code = (
        "import sys; from tests.toy_vae import register_toy; register_toy();"
        "from vae_bench.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code, "run", str(sweep_file), "--out", str(out), "--no-plots"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=foreground_signals,
    )  # fmt: skip


def foreground_signals() -> None:
    """Ctrl-C as in a terminal: a shell without job control starts background jobs (a CI
    runner's, say) with SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=300)
    return process.returncode, stdout, stderr


def finished(run_dir: Path) -> set[str]:
    return RunStore(run_dir).done_cells()


def wait_for(process: subprocess.Popen, run_dir: Path, cells: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(finished(run_dir)) < cells and process.poll() is None:
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)


def comparable(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    frame = frame.drop(columns=[c for c in VOLATILE if c in frame.columns])
    if "kind" in frame.columns and "value" in frame.columns:  # efficiency values are timings
        frame.loc[frame.kind.isin(["efficiency", "timing"]), "value"] = float("nan")
    return frame.sort_values(keys).reset_index(drop=True)


def read(run_dir: Path, table: str) -> pd.DataFrame:
    return pd.read_csv(run_dir / f"{table}.csv", keep_default_na=False, na_values=[""])


KEYS = {"results": ["cell", "phase", "metric"], "clips": ["cell", "clip"],
        "frames": ["cell", "metric", "frame"]}  # fmt: skip


def assert_consistent(run_dir: Path) -> None:
    """Whatever the moment of the kill: whole files, no duplicated rows, merged files
    holding finished cells only."""
    cells = run_dir / "cells"
    for part in cells.glob("*.csv") if cells.exists() else []:
        assert csv_damage(part) == "", part
    done = finished(run_dir)
    for table, keys in KEYS.items():
        path = run_dir / f"{table}.csv"
        if path.exists():
            assert csv_damage(path) == "", path
            frame = read(run_dir, table)
            assert not frame.duplicated(keys).any(), table
            assert set(frame.cell) <= done, table


def assert_same_as(reference: Path, run_dir: Path) -> None:
    for table, keys in KEYS.items():
        expected = comparable(read(reference, table), keys)
        got = comparable(read(run_dir, table), keys)
        assert not got.duplicated(keys).any()
        pd.testing.assert_frame_equal(got, expected)


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "sweep.yaml"
    (path.parent / "datasets.yaml").write_text(yaml.safe_dump(DATASETS))
    path.write_text(yaml.safe_dump({**SWEEP, "datasets_file": str(path.parent / "datasets.yaml")}))
    return path


@pytest.fixture(scope="module")
def reference(sweep_file, tmp_path_factory) -> Path:
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("reference")
    code, stdout, stderr = finish(start(sweep_file, out))
    assert code == 0, stderr
    assert f"run {RUN}: {CELLS} cells, 0 already done, {CELLS} to run" in stdout
    return out / RUN


def test_sigkill_at_random_moments_then_resume_gives_the_same_csvs(
    sweep_file, reference, tmp_path
):
    rng = random.Random(20261123)
    run_dir = tmp_path / RUN
    kills = 0
    # the first kill at a random moment from the start (imports, planning, first cells);
    # the next ones once a random number of further cells is done, plus a random delay
    # so that they land inside a cell or inside the writing of its files
    for attempt in range(3):
        process = start(sweep_file, tmp_path)
        if attempt == 0:
            time.sleep(rng.uniform(0.0, 4.0))
        else:
            before = len(finished(run_dir))
            wait_for(process, run_dir, rng.randint(before + 1, min(before + 6, CELLS - 1)))
            time.sleep(rng.uniform(0.0, 0.3))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.communicate()
        assert_consistent(run_dir)
    assert kills == 3 and len(finished(run_dir)) < CELLS, "the kills must land inside the run"

    done = finished(run_dir)
    parts = {p: p.stat().st_mtime_ns for p in (run_dir / "cells").glob("*.csv")}
    code, stdout, stderr = finish(start(sweep_file, tmp_path))
    assert code == 0, stderr
    assert f"{CELLS} cells, {len(done)} already done, {CELLS - len(done)} to run" in stdout
    for part, mtime in parts.items():  # finished cells are not run again
        if part.name.split(".")[0] in done:
            assert part.stat().st_mtime_ns == mtime, part
    assert not list(run_dir.rglob("*.tmp"))
    assert_same_as(reference, run_dir)


def test_power_loss_leftovers_are_repaired_on_rerun(
    sweep_file, reference, tmp_path, capsys, toy_preset, one_thread
):
    """What a crash on a file system without ordered writes can leave: temporary files,
    a merged CSV and a cell part cut mid-line, a cell part lost; the rerun repairs them."""
    import shutil

    from vae_bench.runner import run_sweep
    from vae_bench.sweep import load_sweep

    run_dir = tmp_path / RUN
    shutil.copytree(reference, run_dir)
    cells = sorted((run_dir / "cells").glob("*.results.csv"))
    cut, lost = cells[3], cells[7]
    (run_dir / ".results.csv.x1y2.tmp").write_text("run,cell\nkill,e-")
    (run_dir / "cells" / f".{cut.name}.a9b8.tmp").write_text("run,cell,kind\n")
    for path in (run_dir / "results.csv", cut):
        text = path.read_text()
        path.write_text(text[: len(text) - 25])  # the last line cut off
    # reports refuse the cut file instead of reading one row fewer
    with pytest.raises(ValueError, match="last line cut off; rerun the sweep"):
        read_results(run_dir)
    for table in ("results", "clips", "frames"):
        part = lost.with_name(lost.name.replace(".results.", f".{table}."))
        part.unlink(missing_ok=True)

    run_sweep(load_sweep(sweep_file), tmp_path, plots=False)
    stdout = capsys.readouterr().out
    assert f"run {RUN}: removed the unfinished temporary file .results.csv.x1y2.tmp" in stdout
    cell = cut.name.split(".")[0]
    assert f"run {RUN}: cell {cell} will run again: {cut.name}: last line cut off" in stdout
    assert f"{CELLS} cells, {CELLS - 2} already done, 2 to run" in stdout
    assert (cut.parent / (cut.name + ".damaged")).exists()  # kept aside, not deleted
    assert not list(run_dir.rglob("*.tmp"))
    assert_same_as(reference, run_dir)


@pytest.mark.parametrize(("signum", "code", "name"), [
    (signal.SIGINT, 130, "SIGINT (Ctrl-C)"), (signal.SIGTERM, 143, "SIGTERM"),
])  # fmt: skip
def test_sigint_and_sigterm_stop_gracefully(sweep_file, tmp_path, signum, code, name):
    """The cell in progress is dropped, the finished ones are saved and merged, the exit
    code and message say what happened (the resume itself is tested above)."""
    run_dir = tmp_path / RUN
    process = start(sweep_file, tmp_path)
    wait_for(process, run_dir, 3)
    process.send_signal(signum)
    returncode, stdout, stderr = finish(process)
    assert returncode == code, stderr
    assert "Traceback" not in stderr
    assert f"vae-bench: stopped by {name}" in stderr
    done = len(finished(run_dir))
    assert 3 <= done < CELLS
    assert (
        f"interrupted: {done}/{CELLS} cells finished and saved; "
        "run the same command again to resume"
    ) in stdout
    assert_consistent(run_dir)
    assert set(read(run_dir, "results").cell) == finished(run_dir)  # merged up to the stop
