"""Data-parallel runs under ``torchrun``: one process per device, clips sharded by rank.

``torchrun --nproc_per_node=N -m vae_bench run SWEEP`` starts N copies of the ordinary
command; each reads its place from the variables torchrun sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``). Without them everything here is a
no-op and the run is the plain single-process one.

What a distributed run does differently:

- every rank plans the sweep (the same checks), rank 0 decides which cells remain;
- a quality cell's clips are dealt out by :func:`shard` (clip ``i`` goes to rank
  ``i % world``): every clip is scored exactly once, with no padding duplicates, so the
  merged metric states (torchmetrics' distributed sync) equal a single-process pass;
- per-clip rows are gathered with ``all_gather_object`` and put back in clip order;
- efficiency cells run on rank 0 alone (one timed device; the rows name it), the others
  wait for the verdict;
- after each cell every rank reports success or its error (:func:`agreement`); any
  failure stops all ranks with :class:`RankFailed` naming the rank and its message;
- rank 0 alone writes the run directory, so finished cells stay valid and a rerun resumes.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

log = logging.getLogger("vae_bench")

T = TypeVar("T")
ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class RankFailed(Exception):  # not a RuntimeError: a cell's own error handler must not eat it
    """A rank failed; raised on every rank so that all of them stop together."""

    def __init__(self, where: str, failures: Sequence[tuple[int, str]]) -> None:
        self.where = where
        self.failures = tuple(failures)
        self.ranks = tuple(rank for rank, _ in self.failures)
        lines = [f"rank {rank}: {message}" for rank, message in self.failures]
        super().__init__(f"failed during {where}: " + "; ".join(lines))


@dataclass(frozen=True)
class Context:
    """This process's place in the job (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""  # "" when no process group is used

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def from_environment() -> Context:
    """The context torchrun describes in the environment (no process group is created)."""
    present = [k for k in ENV_KEYS if k in os.environ]
    if not present:
        return Context()
    missing = [k for k in ENV_KEYS if k not in os.environ]
    if missing:
        raise ValueError(f"torchrun environment incomplete: {present} set, {missing} missing")
    rank, world, local = (_env_int(k) for k in ENV_KEYS)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(f"invalid torchrun environment: RANK={rank} WORLD_SIZE={world} "
                         f"LOCAL_RANK={local}")  # fmt: skip
    return Context(rank, world, local)


_context = Context()


def context() -> Context:
    """The context set up by :func:`setup` (single process until then)."""
    return _context


def setup(device: str, timeout_s: float = 1800.0) -> tuple[Context, str]:
    """Join the torchrun job, if any; returns the context and the device this rank uses.

    The backend is NCCL when this rank computes on CUDA, gloo otherwise. A CUDA device
    (``auto`` on a GPU machine, ``cuda`` or ``cuda:N``) becomes ``cuda:LOCAL_RANK``: one
    device per process is what torchrun's ``--nproc_per_node`` means.
    """
    global _context
    found = from_environment()
    if not found.active:
        _context = found
        return found, device
    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if on_cuda:
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        if found.local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={found.local_rank} but only "
                             f"{torch.cuda.device_count()} CUDA devices are visible")  # fmt: skip
        if device not in ("auto", "cuda", f"cuda:{found.local_rank}"):
            log.warning("device %s replaced by cuda:%d (one device per rank)", device,
                        found.local_rank)  # fmt: skip
        device = f"cuda:{found.local_rank}"
        torch.cuda.set_device(found.local_rank)
    backend = "nccl" if on_cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(
            backend, timeout=datetime.timedelta(seconds=timeout_s),
            **({"device_id": torch.device(device)} if on_cuda else {}),
        )  # fmt: skip
    _context = Context(found.rank, found.world_size, found.local_rank, backend)
    return _context, device


def shutdown() -> None:
    """Leave the process group (a no-op in a single process)."""
    global _context
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _context = Context()


def shard(items: Sequence[T], rank: int | None = None, world_size: int | None = None) -> list[T]:
    """This rank's share: items ``rank, rank + world, ...`` (every item on exactly one rank)."""
    rank = _context.rank if rank is None else rank
    world_size = _context.world_size if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of {world_size}")
    return list(items[rank::world_size])


def _exchange(status: str, value: Any) -> list[Any]:
    """All-gather ``(status, value)``; any rank's ``failed`` status stops every rank.

    Every collective of this module goes through here, so a rank that fails before a
    collective announces its error at the one its peers are waiting in, whatever that
    is: all ranks then raise the same :class:`RankFailed`.
    """
    gathered: list[Any] = [None] * _context.world_size
    dist.all_gather_object(gathered, (status, value))
    failures = [(rank, v) for rank, (s, v) in enumerate(gathered) if s == "failed"]
    if failures:
        raise RankFailed(_where, failures)
    return [v for _, v in gathered]


_where = "the run"  # what the job is doing, for error messages


def gather(value: T) -> list[T]:
    """Every rank's ``value``, in rank order (``[value]`` in a single process)."""
    if not _context.active:
        return [value]
    return _exchange("ok", value)


def broadcast(value: T) -> T:
    """Rank 0's ``value`` on every rank."""
    return gather(value)[0]


def all_true(flag: bool) -> bool:
    """Whether ``flag`` holds on every rank (e.g. a cache present on every node)."""
    return all(gather(bool(flag)))


def merge_clip_rows(
    rows: list[dict[str, Any]], order: Sequence[str], nonfinite: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """All ranks' per-clip rows of a quality cell.

    Returns the rows in clip order (as one process writes them), the evaluated rows
    (status ``ok``) in rank order, which is how torchmetrics concatenates the per-clip
    states, and the total of clips with non-finite reconstructions.
    """
    per_rank = gather((rows, nonfinite))
    position = {name: index for index, name in enumerate(order)}
    merged = sorted((r for part, _ in per_rank for r in part), key=lambda r: position[r["clip"]])
    evaluated = [r for part, _ in per_rank for r in part if r["status"] == "ok"]
    return merged, evaluated, sum(count for _, count in per_rank)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


@contextlib.contextmanager
def agreement(where: str) -> Iterator[None]:
    """Run the body, then agree across ranks: if any rank raised, every rank raises
    :class:`RankFailed` naming the failed ranks and their errors.

    Collectives must be called by every rank in the same order, so a rank-local failure
    (a bad file on one node, an out-of-memory on one device) is announced rather than
    left to make the others wait forever. In a single process this is transparent.
    """
    global _where
    if not _context.active:
        yield
        return
    _where = where
    try:
        yield
    except RankFailed:
        raise  # raised on every rank at once: already agreed
    except Exception as error:
        log.error("rank %d failed during %s", _context.rank, where, exc_info=True)
        _exchange("failed", _describe(error))
        raise AssertionError("unreachable: a failed exchange raises") from error
    _exchange("ok", None)


def run_cell(kind: str, title: str, function: Callable[[], T]) -> T | None:
    """Run one cell under :func:`agreement`: a quality cell on every rank (its clips are
    sharded inside), anything else on rank 0 alone while the others wait. Returns the
    result on rank 0, the only writer, and ``None`` elsewhere."""
    result = None
    with agreement(f"cell {title}"):
        if kind == "quality" or _context.is_main:
            result = function()
    return result if _context.is_main else None
