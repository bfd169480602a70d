"""Quality cells: one pass over a dataset's clips computing every metric at once.

The data path reads top to bottom in :func:`run_quality`: dataset -> batches -> model ->
metrics -> rows (per cell, per clip, per frame position).
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from vae_bench import distributed
from vae_bench.adapters import FULL, InferenceMode, VideoVAE
from vae_bench.adapters.base import ResultWarning
from vae_bench.data import Clip, Dataset, SkippedClip
from vae_bench.environment import DTYPES
from vae_bench.metrics import VideoMetric, build_metrics
from vae_bench.metrics.psnr import PSNRVsFull
from vae_bench.rows import CLIP_KEYS, mean_ci, skipped_row
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


def run_quality(cell: Cell, vae: VideoVAE, dataset: Dataset, plan: Plan, base: dict[str, Any]):
    """One pass over the clips computing every metric; returns (results, clips, frames)."""
    settings = json.loads(cell.settings)
    names = [m for m in settings["metrics"] if m != "rfvd"]
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
    clip_ids = dataset.clip_ids()
    if settings["max_clips"]:
        clip_ids = clip_ids[: settings["max_clips"]]
    local_ids = distributed.shard(clip_ids)  # all of them in a single process
    mode = InferenceMode.parse(cell.mode)
    clip_base = {k: base[k] for k in CLIP_KEYS}
    clip_rows: list[dict[str, Any]] = []
    evaluated: list[dict[str, Any]] = []
    nonfinite = 0
    items = dataset.iter_clips(cell.frames, cell.height, cell.width, clip_ids=local_ids)
    progress = tqdm(total=len(local_ids), desc=f"  clips {cell.model}", unit="clip", leave=False,
                    disable=not distributed.context().is_main)  # fmt: skip
    with collect_result_warnings() as caveats:
        for batch, skipped in _batches(items, cell.batch_size):
            for item in skipped:
                clip_rows.append({**clip_base, "clip": item.clip_id, "source": item.source,
                                  "status": item.status, "reason": item.reason})  # fmt: skip
            if batch:
                target = torch.stack([c.video for c in batch]).to(plan.device)
                recon = vae.reconstruct(target.to(DTYPES[cell.dtype]), mode).float()
                if vs_full is not None:  # what the tiling alone changes, frame by frame
                    full = vae.reconstruct(target.to(DTYPES[cell.dtype]), FULL).float()
                finite = torch.isfinite(recon).flatten(1).all(dim=1)
                for clip, ok in zip(batch, finite.tolist(), strict=True):
                    row = {**clip_base, "clip": clip.clip_id, "source": clip.source,
                           "start": clip.start, "status": "ok" if ok else "nonfinite",
                           "reason": "" if ok else "reconstruction has NaN/Inf values"}  # fmt: skip
                    clip_rows.append(row)
                    if ok:
                        evaluated.append(row)
                nonfinite += int((~finite).sum())
                if finite.any():
                    for metric in [*metrics, *([rfvd] if rfvd is not None else [])]:
                        if not any(metric is m for m in against_full):
                            metric.update(target[finite], recon[finite])
                    for metric in against_full:
                        metric.update(full[finite], recon[finite])
            progress.update(len(batch) + len(skipped))
    progress.close()
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
    results, frames = [], []
    for metric in [*metrics, *([rfvd] if rfvd is not None else [])]:
        row = {**base, "protocol": f"{dataset.protocol};{metric.protocol}",
               "metric": metric.name, "unit": metric.unit, "n": n, "message": message}  # fmt: skip
        if n == 0:
            reason = "; ".join(["no clip could be evaluated", *notes])
            results.append({**row, "value": math.nan, "status": "error", "message": reason})
            continue
        if metric is rfvd:
            results.append(_rfvd_row(rfvd, row, plan, nonfinite))
            continue
        per_clip = metric.per_clip().double().cpu().numpy()
        for clip_row, value in zip(evaluated, per_clip, strict=True):
            clip_row[metric.name] = float(value)
        low, high = mean_ci(per_clip)
        results.append({**row, "value": float(metric.compute()), "ci_low": low, "ci_high": high,
                        "status": "ok"})  # fmt: skip
        for index, value in enumerate(metric.per_frame().double().cpu().tolist()):
            if math.isnan(value):  # e.g. no frame transition into frame 0
                continue
            position = group_position(index, vae.spec)
            frames.append({**clip_base, "metric": metric.name, "frame": index,
                           "group_position": position, "value": value,
                           "n": n})  # fmt: skip
    if vs_full is not None and seam_skip:
        results += [skipped_row(base, dataset.protocol, m, seam_skip) for m in SEAM_METRICS]
    if plan.lpips_skip_reason and "lpips" in plan.sweep.quality.metrics:
        results.append(skipped_row(base, dataset.protocol, "lpips", plan.lpips_skip_reason))
    if "rfvd" in plan.sweep.quality.metrics and (plan.fvd.skip_reason or rfvd_skip):
        reason = plan.fvd.skip_reason or rfvd_skip
        results.append(skipped_row(base, dataset.protocol, "rfvd", reason))
    return results, clip_rows, frames


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

