"""Sessions: bench (the main job), tests, perf (pytest-benchmark), lint, gate (the
regression gate against reports/baseline) and baseline (refresh it on purpose).

All sessions share ONE virtual environment (.nox/shared): torch and its CUDA wheels
take about 6 GB, too much to install once per session. It is (re)installed from
pyproject.toml + constraints.txt whenever either file changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import nox

ROOT = Path(__file__).parent
SHARED = ROOT / ".nox" / "shared"
BIN = SHARED / ("Scripts" if os.name == "nt" else "bin")
INPUTS = ("pyproject.toml", "constraints.txt")

nox.options.sessions = ["tests"]


def _stamp() -> str:
    digest = hashlib.sha256()
    for name in INPUTS:
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def shared_env(session: nox.Session) -> Path:
    """Create or refresh the shared venv; return its bin directory."""
    stamp_file = SHARED / ".installed"
    stamp = _stamp()
    if not (BIN / "python").exists():
        session.run(sys.executable, "-m", "venv", str(SHARED), external=True)
    if not stamp_file.exists() or stamp_file.read_text() != stamp:
        pip = [str(BIN / "python"), "-m", "pip"]
        session.run(*pip, "install", "--upgrade", "pip", external=True)
        session.run(*pip, "install", "-c", "constraints.txt", "-e", ".[dev]", external=True)
        stamp_file.write_text(stamp)
    session.env["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    session.env["VIRTUAL_ENV"] = str(SHARED)
    return BIN


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """The main job: the default sweep on the embedded synthetic dataset (online, its first
    run fetches the LPIPS backbone and the I3D; `nox -s bench -- default --offline` not)."""
    bin_dir = shared_env(session)
    args = session.posargs or ["sweeps/default.yaml"]
    session.run(str(bin_dir / "vae-bench"), "run", *args, external=True)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The test suite (CPU, minutes)."""
    bin_dir = shared_env(session)
    session.run(str(bin_dir / "python"), "-m", "pytest", *session.posargs, external=True)


@nox.session(venv_backend="none")
def wheel(session: nox.Session) -> None:
    """What a `pip install` user gets: build the wheel, install it into a fresh venv with
    the constraints (no checkout on its path), run the default sweep from an empty folder.

    The run lands in .nox/wheel-check/run/reports/default (`nox -s gate` can gate it).
    """
    bin_dir = shared_env(session)
    work = ROOT / ".nox" / "wheel-check"
    shutil.rmtree(work, ignore_errors=True)
    dist, venv, run_dir = work / "dist", work / "venv", work / "run"
    session.run(str(bin_dir / "python"), "-m", "pip", "wheel", "--no-deps",
                "--no-build-isolation", "-w", str(dist), str(ROOT), external=True)  # fmt: skip
    (built,) = dist.glob("vae_bench-*.whl")
    session.run(sys.executable, "-m", "venv", str(venv), external=True)
    venv_bin = venv / ("Scripts" if os.name == "nt" else "bin")
    session.run(str(venv_bin / "python"), "-m", "pip", "install", "--quiet",
                "-c", str(ROOT / "constraints.txt"), str(built), external=True)  # fmt: skip
    run_dir.mkdir()
    session.chdir(run_dir)
    no_cached_weights(session)  # as the baseline was made: `nox -s gate` can gate this run
    args = session.posargs or ["default", "--no-plots", "--offline"]
    session.run(str(venv_bin / "vae-bench"), "run", *args, external=True)


@nox.session(venv_backend="none")
def perf(session: nox.Session) -> None:
    """Benchmarks (pytest-benchmark): speed is measured here, never asserted in tests."""
    bin_dir = shared_env(session)
    session.run(
        str(bin_dir / "python"),
        "-m",
        "pytest",
        "benchmarks",
        "--benchmark-only",
        "--benchmark-autosave",
        "--benchmark-storage=reports/perf",
        "-s",
        *session.posargs,
        external=True,
    )


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    bin_dir = shared_env(session)
    session.run(str(bin_dir / "ruff"), "check", ".", external=True)


BASELINE = Path("reports") / "baseline"
#: What the gate reads; plots and per-cell parts are not shipped with the baseline.
BASELINE_FILES = ("results.csv", "clips.csv", "run.json")


def no_cached_weights(session: nox.Session) -> None:
    """Run with empty weight caches, as a fresh CI machine does: LPIPS is then skipped and
    rFVD uses the seeded random I3D on every machine, so the default sweep's rows do not
    depend on what a developer happens to have downloaded."""
    empty = Path(tempfile.mkdtemp(prefix="vae-bench-no-weights-"))
    session.env["TORCH_HOME"] = str(empty / "torch")
    session.env["VAE_BENCH_CACHE"] = str(empty / "vae-bench")


@nox.session(venv_backend="none")
def baseline(session: nox.Session) -> None:
    """Refresh reports/baseline on purpose: the default sweep from scratch, CSVs only.

    Commit the result together with the change that moved the default numbers; the gate
    (`nox -s gate`) compares every later run with it.
    """
    bin_dir = shared_env(session)
    no_cached_weights(session)
    with tempfile.TemporaryDirectory() as tmp:
        session.run(str(bin_dir / "vae-bench"), "run", "default", "--name", "baseline",
                    "--out", tmp, "--no-plots", "--offline", external=True)
        shutil.rmtree(BASELINE, ignore_errors=True)
        BASELINE.mkdir(parents=True)
        for name in BASELINE_FILES:
            shutil.copy2(Path(tmp) / "baseline" / name, BASELINE / name)
    session.log(f"refreshed {BASELINE}: review `git diff {BASELINE}` and commit it")


@nox.session(venv_backend="none")
def gate(session: nox.Session) -> None:
    """Regression gate against reports/baseline with the CI rules (.ci/gates.yaml).

    `nox -s gate` runs the default sweep from scratch as reports/ci first; `nox -s gate --
    RUN_DIR [gate options]` gates a run directory made elsewhere (e.g. by an installed
    wheel) instead.
    """
    bin_dir = shared_env(session)
    vae_bench = str(bin_dir / "vae-bench")
    args = list(session.posargs)
    if args and not args[0].startswith("-"):
        current = args.pop(0)
    else:
        current = "reports/ci"
        shutil.rmtree(current, ignore_errors=True)  # a stale run would resume, not rerun
        no_cached_weights(session)
        session.run(vae_bench, "run", "default", "--name", "ci", "--out", "reports",
                    "--no-plots", "--offline", external=True)
    session.run(vae_bench, "gate", "--baseline", str(BASELINE), "--current", current,
                "--rules", ".ci/gates.yaml", *args, external=True)
