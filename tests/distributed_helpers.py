"""Multi-process scaffolding shared by the tests: gloo process groups on the CPU.

``spawn_gloo`` runs a worker function in N processes joined in one gloo group (for
testing metric state merging); ``torchrun`` runs a command-line module under the
standard launcher, exactly as a user would (for testing whole runs).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _gloo_entry(
    rank: int, world: int, init_file: str, worker: Callable[..., None], args: tuple[Any, ...]
) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        worker(rank, *args)
    finally:
        dist.destroy_process_group()


def spawn_gloo(worker: Callable[..., None], world: int, tmp_path: Path, *args: Any) -> None:
    """Call ``worker(rank, *args)`` in ``world`` processes sharing a gloo group.

    ``worker`` must be a module-level function (it is pickled into the children)."""
    import torch.multiprocessing as mp

    init_file = str(tmp_path / "gloo-init")
    mp.spawn(_gloo_entry, args=(world, init_file, worker, args), nprocs=world, join=True)


def python_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child Python: this checkout first on the path, one thread."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra or {})
    return env


def run_module(
    module: str,
    args: Sequence[str],
    *,
    nproc: int = 0,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` (``nproc == 0``) or the same under
    ``python -m torch.distributed.run --standalone --nproc_per_node=nproc``."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    command = [sys.executable, *(launcher if nproc else []), "-m", module, *args]
    return subprocess.run(
        command, cwd=ROOT, env=python_env(env), capture_output=True, text=True, timeout=timeout
    )
