"""Quality cells: one pass over a dataset's clips computing every metric at once.

The data path reads top to bottom in :func:`run_quality`: dataset -> batches -> model ->
metrics -> rows (per cell, per clip, per frame position).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import torch
from tqdm.auto import tqdm

from vae_bench import distributed
from vae_bench.adapters import FULL, InferenceMode, VideoVAE
from vae_bench.adapters.base import ResultWarning
from vae_bench.data import Clip, Dataset, SkippedClip, to_model_range
from vae_bench.environment import DTYPES
from vae_bench.loader import load_clips, sharing_cpus
from vae_bench.metrics import VideoMetric, build_metrics
from vae_bench.metrics.psnr import PSNRVsFull
from vae_bench.profile import release_free_heap
from vae_bench.rows import CLIP_KEYS, mean_ci, skipped_row
from vae_bench.samples import SampleKeeper
from vae_bench.seams import SEAM_METRICS, build_seam_metrics
from vae_bench.sweep import Cell

if TYPE_CHECKING:
    from vae_bench.runner import Plan


def _batches(
    items: Iterator[Clip | SkippedClip], size: int
) -> Iterator[tuple[list[Clip], list[SkippedClip]]]:
    batch: list[Clip] = []
    skipped: list[SkippedClip] = []
    for item in items:
        if isinstance(item, SkippedClip):
            skipped.append(item)
            continue
        batch.append(item)
        if len(batch) == size:
            yield batch, skipped
            batch, skipped = [], []
    if batch or skipped:
        yield batch, skipped


def _build_rfvd(settings: dict[str, Any], cell: Cell, dataset: Dataset, plan: Plan):
    """The rFVD metric of a cell, or the reason it cannot run (too few frames)."""
    from vae_bench.fvd import MIN_FRAMES, RFVD, StatsCache

    if cell.frames < MIN_FRAMES:
        return None, f"rFVD's I3D needs at least {MIN_FRAMES} frames; this cell has {cell.frames}"
    legacy = settings["fvd_protocol"] == "rfvd-legacy-batch"
    metric = RFVD(settings["fvd_extractor"], settings["fvd_weights"], legacy_batch=legacy)
    metric.real_key = (  # originals' statistics depend on the clips and their size
        f"{dataset.name};{dataset.protocol};{cell.height}x{cell.width}x{cell.frames};"
        f"max_clips={settings['max_clips']}"
    )
    if not legacy:
        cached = StatsCache().load(metric.real_key, metric.protocol, metric.extractor.name)
        if distributed.all_true(cached is not None):  # every rank, or none, uses the cache
            metric = RFVD(metric.extractor, real_stats=cached)
            metric.real_key = None  # nothing to save
    return metric.to(plan.device), ""


def group_position(frame: int, spec: Any) -> int:
    """A frame's place in its temporal compression group: causal VAEs encode frame 0
    alone (position 0), then groups of ``temporal_factor`` frames (positions 1..k);
    non-causal ones groups of k from frame 0 (0..k-1). Image VAEs: always 0."""
    k = spec.temporal_factor
    if k <= 1:
        return 0
    if spec.causal:
        return 0 if frame == 0 else (frame - 1) % k + 1
    return frame % k



@contextlib.contextmanager
def collect_result_warnings() -> Iterator[list[str]]:
    """Collect the adapters' :class:`ResultWarning` texts (each once, in order) for the
    rows' message; other warnings are shown as usual."""
    caveats: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResultWarning)
        yield caveats
    for warning in caught:
        if issubclass(warning.category, ResultWarning):
            if str(warning.message) not in caveats:
                caveats.append(str(warning.message))
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )


class ClipObserver(Protocol):
    """Sees each evaluated clip of a quality cell, e.g. to draw reconstruction samples.

    Called once per clip whose reconstruction is finite, in clip order, with float
    ``[C, T, H, W]`` tensors in ``[-1, 1]`` on the cell's device (do not modify them)."""

    def __call__(self, clip_id: str, original: torch.Tensor, reconstruction: torch.Tensor) -> None:
        ...


class Stopwatch:
    """Where a cell's wall time goes: seconds per stage, with the device synchronised at
    each boundary so that queued GPU work is charged to the stage that queued it."""

    STAGES = ("data", "model", "metrics")

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds = dict.fromkeys(self.STAGES, 0.0)
        self.started = time.perf_counter()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.seconds[name] += time.perf_counter() - start

    def timed(self, name: str, items: Iterator[T]) -> Iterator[T]:
        """``items``, charging the wait for each one to stage ``name``."""
        while True:
            with self.stage(name):
                item = next(items, _END)
            if item is _END:
                return
            yield item

    def total(self) -> float:
        return time.perf_counter() - self.started


_END: Any = object()
T = TypeVar("T")
TRIM_EVERY = 8  # clips between returns of freed heap pages to the OS
TIME_METRICS = {"time_data_s": "data", "time_model_s": "model", "time_metrics_s": "metrics"}


def run_quality(
    cell: Cell,
    vae: VideoVAE,
    dataset: Dataset,
    plan: Plan,
    base: dict[str, Any],
    observers: Sequence[ClipObserver] = (),
):
    """One pass over the clips computing every metric; returns (results, clips, frames).

    The data path: clips load ahead in worker processes (:func:`load_clips`), batches
    go to the device, the model reconstructs, every metric updates, and each clip gets
    its row; ``observers`` see each evaluated clip right after its reconstruction."""
    clock = Stopwatch(plan.device)
    settings = json.loads(cell.settings)
    names = [m for m in settings["metrics"] if m not in ("rfvd", "rfid")]  # set-level ones
    metrics: list[VideoMetric] = build_metrics(
        names,
        device=plan.device,
        lpips_net=settings["lpips_net"],
        convention=settings.get("convention", "suite"),
    )
    vs_full = PSNRVsFull().to(plan.device) if cell.mode != "full" else None
    seams, seam_skip = build_seam_metrics(cell.mode, vae.spec, cell.frames, cell.height,
                                          cell.width)  # fmt: skip
    against_full = [m.to(plan.device) for m in [vs_full, *seams] if m is not None]
    metrics += against_full
    rfvd, rfvd_skip = None, ""
    if "rfvd" in settings["metrics"]:
        rfvd, rfvd_skip = _build_rfvd(settings, cell, dataset, plan)
    rfid = None
    if "rfid" in settings["metrics"]:
        from vae_bench.metrics.rfid import RFID

        rfid = RFID(settings.get("fid_weights")).to(plan.device)
    whole_set = [m for m in (rfvd, rfid) if m is not None]  # one value per cell
    against_target = [m for m in [*metrics, *whole_set]  # torchmetrics' == composes: identity
                      if not any(m is f for f in against_full)]  # fmt: skip
    clip_ids = dataset.clip_ids()
    if settings["max_clips"]:
        clip_ids = clip_ids[: settings["max_clips"]]
    local_ids = distributed.shard(clip_ids)  # all of them in a single process
    mode = InferenceMode.parse(cell.mode)
    dtype = DTYPES[cell.dtype]
    clip_base = {k: base[k] for k in CLIP_KEYS}
    clip_rows: list[dict[str, Any]] = []
    evaluated: list[dict[str, Any]] = []
    nonfinite = 0
    on_cuda = plan.device.type == "cuda"
    items = load_clips(dataset, local_ids, cell.frames, cell.height, cell.width,
                       workers=plan.workers, pin_memory=on_cuda)  # fmt: skip
    keeper = SampleKeeper.for_cell(cell, vae.spec, local_ids, plan.samples_dir, plan.sweep.quality)
    observers = [*observers, keeper.offer]
    progress = tqdm(total=len(local_ids), desc=f"  clips {cell.model}", unit="clip", leave=False,
                    disable=not distributed.context().is_main)  # fmt: skip
    with collect_result_warnings() as caveats, sharing_cpus(plan.device, plan.workers):
        for batch, skipped in _batches(clock.timed("data", items), cell.batch_size):
            for item in skipped:
                clip_rows.append({**clip_base, "clip": item.clip_id, "source": item.source,
                                  "status": item.status, "reason": item.reason})  # fmt: skip
            if batch:
                with clock.stage("data"):  # compact (8-bit) to the device, to [-1, 1] there
                    videos = [c.video.to(plan.device, non_blocking=on_cuda) for c in batch]
                    target = to_model_range(torch.stack(videos))
                with clock.stage("model"):
                    recon = vae.reconstruct(target.to(dtype), mode).float()
                    if vs_full is not None:  # what the tiling alone changes, frame by frame
                        full = vae.reconstruct(target.to(dtype), FULL).float()
                    finite = torch.isfinite(recon).flatten(1).all(dim=1)
                ok = finite.tolist()
                for index, clip in enumerate(batch):
                    reason = "" if ok[index] else "reconstruction has NaN/Inf values"
                    row = {**clip_base, "clip": clip.clip_id, "source": clip.source,
                           "start": clip.start, "status": "ok" if ok[index] else "nonfinite",
                           "reason": reason}  # fmt: skip
                    clip_rows.append(row)
                    if ok[index]:
                        evaluated.append(row)
                        for observer in observers:
                            observer(clip.clip_id, target[index], recon[index])
                nonfinite += ok.count(False)
                if any(ok):
                    with clock.stage("metrics"):
                        if not all(ok):  # copies only when a clip must be left out
                            target, recon = target[finite], recon[finite]
                            full = full[finite] if vs_full is not None else None
                        for metric in against_target:
                            metric.update(target, recon)
                        for metric in against_full:
                            metric.update(full, recon)
            progress.update(len(batch) + len(skipped))
            done = len(clip_rows)
            if done // TRIM_EVERY > (done - len(batch) - len(skipped)) // TRIM_EVERY:
                release_free_heap()  # else glibc keeps freed clip buffers: RSS creeps up
    progress.close()
    keeper.write()
    if distributed.context().active:  # first collective after the local work
        clip_rows, evaluated, nonfinite = distributed.merge_clip_rows(
            clip_rows, clip_ids, nonfinite
        )

    n = len(evaluated)
    unusable = len(clip_rows) - n - nonfinite
    notes = [f"{unusable} clips skipped"] if unusable else []
    if nonfinite:
        notes.append(f"{nonfinite} clips with non-finite reconstructions excluded")
    notes += caveats
    message = "; ".join(notes)
    data_protocol = dataset.evaluation_protocol(settings["max_clips"])
    results, frames = [], []
    with clock.stage("metrics"):
        for metric in [*metrics, *whole_set]:
            row = {**base, "protocol": f"{data_protocol};{metric.protocol}", "n": n,
                   "metric": metric.name, "unit": metric.unit, "message": message}  # fmt: skip
            if n == 0:
                reason = "; ".join(["no clip could be evaluated", *notes])
                results.append({**row, "value": math.nan, "status": "error", "message": reason})
                continue
            if metric is rfvd:
                results.append(_rfvd_row(rfvd, row, plan, nonfinite))
                continue
            if metric is rfid:
                try:  # every rank takes part in compute's sync
                    value = float(rfid.compute())
                except RuntimeError as error:  # fewer than two frames per set
                    results.append({**row, "value": math.nan, "status": "skipped",
                                    "message": f"rFID: {error}"})  # fmt: skip
                    continue
                results.append({**row, "value": value, "status": "ok"})
                continue
            per_clip = metric.per_clip().double().cpu().numpy()
            for clip_row, value in zip(evaluated, per_clip, strict=True):
                clip_row[metric.name] = float(value)
            low, high = mean_ci(per_clip)
            results.append({**row, "value": float(metric.compute()), "ci_low": low,
                            "ci_high": high, "status": "ok"})  # fmt: skip
            for index, value in enumerate(metric.per_frame().double().cpu().tolist()):
                if math.isnan(value):  # e.g. no frame transition into frame 0
                    continue
                position = group_position(index, vae.spec)
                frames.append({**clip_base, "metric": metric.name, "frame": index,
                               "group_position": position, "value": value,
                               "n": n})  # fmt: skip
    if vs_full is not None and seam_skip:
        results += [skipped_row(base, data_protocol, m, seam_skip) for m in SEAM_METRICS]
    if plan.lpips_skip_reason and "lpips" in plan.sweep.quality.metrics:
        results.append(skipped_row(base, data_protocol, "lpips", plan.lpips_skip_reason))
    if "rfvd" in plan.sweep.quality.metrics and (plan.fvd.skip_reason or rfvd_skip):
        reason = plan.fvd.skip_reason or rfvd_skip
        results.append(skipped_row(base, data_protocol, "rfvd", reason))
    results += _time_rows(clock, base, plan.workers, len(clip_ids))
    return results, clip_rows, frames


def _time_rows(
    clock: Stopwatch, base: dict[str, Any], workers: int, clips: int
) -> list[dict[str, Any]]:
    """Where the cell's wall time went (kind ``timing``): waiting for data (loading not
    hidden behind the model, plus the copy to the device), the model, the metrics, and
    the whole pass. Under torchrun: the mean over ranks."""
    seconds = {**{name: clock.seconds[stage] for name, stage in TIME_METRICS.items()},
               "time_total_s": clock.total()}  # fmt: skip
    per_rank = distributed.gather(seconds)
    ranks = len(per_rank)
    timer = "perf_counter+cuda-sync" if clock.device.type == "cuda" else "perf_counter"
    protocol = f"timing:workers={workers};timer={timer}"
    message = f"mean over {ranks} ranks" if ranks > 1 else ""
    return [
        {**base, "kind": "timing", "protocol": protocol, "metric": name, "unit": "s",
         "value": sum(r[name] for r in per_rank) / ranks, "n": clips, "status": "ok",
         "message": message}  # fmt: skip
        for name in seconds
    ]


def _rfvd_row(rfvd: Any, row: dict[str, Any], plan: Plan, nonfinite: int) -> dict[str, Any]:
    """The set-level rFVD row; the originals' statistics are cached for the next model."""
    import warnings

    from vae_bench.fvd import StatsCache

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(rfvd.compute())
    notes = [row["message"], plan.fvd.note, *(str(w.message) for w in caught)]
    if rfvd.real_key is not None and nonfinite == 0:  # cache only a complete original set
        real = rfvd.real_feature_stats()  # on every rank: it gathers the states
        if distributed.context().is_main:
            StatsCache().save(rfvd.real_key, rfvd.protocol, rfvd.extractor.name, real)
    return {**row, "value": value, "n": rfvd.n, "status": "ok",
            "message": "; ".join(note for note in notes if note)}  # fmt: skip

