"""Clips decoded and resized ahead of the model, in worker processes.

A torch :class:`~torch.utils.data.DataLoader` over the requested clip ids: ``workers``
processes each load whole clips (decode, convert, resize, crop) while the main process
runs the model and the metrics, ``prefetch`` clips per worker queued ahead. Clips keep
their order (the sampler is sequential), skipped clips travel as :class:`SkippedClip`
like any other item, and clip tensors cross process boundaries through shared memory in
the dataset's compact form (8-bit for decoded video), pinned for an asynchronous copy
when the model runs on CUDA. ``workers=0`` loads in the main process, the same way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader

from vae_bench.data import Clip, Dataset, SkippedClip, check_request

MAX_DEFAULT_WORKERS = 8


class WorkerDied(RuntimeError):
    """A loader worker process ended without an answer (killed, out of memory, crashed)."""


def _cpus() -> int:
    """CPUs this process may use, shared among the ranks of this node (torchrun's
    ``LOCAL_WORLD_SIZE``)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)))


def default_workers() -> int:
    """One worker per CPU of this rank, at most :data:`MAX_DEFAULT_WORKERS`."""
    return min(MAX_DEFAULT_WORKERS, _cpus())


@contextlib.contextmanager
def sharing_cpus(device: torch.device, workers: int) -> Iterator[None]:
    """On a CPU device, torch's threads in this process take only the CPUs the loader
    workers leave (at least one): more threads than free cores spin against the workers
    and run several times slower than one. Restored afterwards."""
    before = torch.get_num_threads()
    if device.type == "cpu" and workers > 0:
        torch.set_num_threads(max(1, min(before, _cpus() - workers)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class ClipRequests(torch.utils.data.Dataset):
    """Clip ``i`` of ``clip_ids`` at one size and length: what a worker is asked for."""

    def __init__(
        self, dataset: Dataset, clip_ids: Sequence[str], frames: int, height: int, width: int
    ) -> None:
        check_request(frames, height, width)
        self.dataset, self.clip_ids = dataset, list(clip_ids)
        self.frames, self.height, self.width = frames, height, width

    def __len__(self) -> int:
        return len(self.clip_ids)

    def __getitem__(self, index: int) -> Clip | SkippedClip:
        return self.dataset.load(self.clip_ids[index], self.frames, self.height, self.width)


def load_clips(
    dataset: Dataset,
    clip_ids: Sequence[str],
    frames: int,
    height: int,
    width: int,
    *,
    workers: int,
    pin_memory: bool = False,
    prefetch: int = 2,
) -> Iterator[Clip | SkippedClip]:
    """The clips of ``clip_ids`` in order, loaded by ``workers`` processes ahead of use.

    A worker that dies mid-cell raises :class:`WorkerDied` (the cell fails and is retried
    on resume); an exception inside a worker is raised here with its original type.
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    requests = ClipRequests(dataset, clip_ids, frames, height, width)
    workers = min(workers, len(requests))  # no idle processes for a short list
    loader = DataLoader(
        requests,
        batch_size=None,  # one clip per item; the quality loop batches
        shuffle=False,
        num_workers=workers,
        prefetch_factor=prefetch if workers else None,
        pin_memory=pin_memory,
    )
    iterator = iter(loader)
    try:
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                return
            except RuntimeError as error:
                if "DataLoader worker" in str(error) and "exited unexpectedly" in str(error):
                    raise WorkerDied(
                        f"a clip-loading worker of dataset {dataset.name!r} died ({error}); "
                        "the cell is retried when the run is resumed"
                    ) from None
                raise
            yield item
    finally:
        del iterator  # stops the workers now, also when the consumer stops early
