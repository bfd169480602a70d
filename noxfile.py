"""Sessions: bench (the main job), tests, perf (pytest-benchmark), lint.

All sessions share ONE virtual environment (.nox/shared): torch and its CUDA wheels
take about 6 GB, too much to install once per session. It is (re)installed from
pyproject.toml + constraints.txt whenever either file changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
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
    args = session.posargs or ["default", "--no-plots"]
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


@nox.session(venv_backend="none")
def gate(session: nox.Session) -> None:
    """Regression gate: run the default sweep as `ci`, compare with reports/baseline."""
    bin_dir = shared_env(session)
    vae_bench = str(bin_dir / "vae-bench")
    # offline: the committed baseline was measured without the metric networks
    session.run(
        vae_bench, "run", "sweeps/default.yaml", "--name", "ci", "--offline", external=True
    )
    session.run(
        vae_bench,
        "gate",
        "--baseline",
        "reports/baseline",
        "--current",
        "reports/ci",
        *session.posargs,
        external=True,
    )
