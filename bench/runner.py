"""Sweep -> cells -> rows. Validates everything first, then runs the unfinished cells.

Each cell is either *quality* (one pass over a dataset's clips computing every metric
at once) or *efficiency* (encode, decode and round trip timed and memory-profiled on a
seeded input). Finished cells are stored by :class:`vae_bench.results.RunStore`, so a rerun
of the same run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from scipy import stats
from tqdm.auto import tqdm

from vae_bench import distributed, environment
from vae_bench.adapters import (
    FULL,
    RANDOM_WEIGHTS,
    AdapterError,
    InferenceMode,
    VideoVAE,
    get_preset,
)
from vae_bench.adapters.base import ResultWarning
from vae_bench.data import Clip, Dataset, DatasetError, SkippedClip, load_datasets
from vae_bench.fetch import Fetched, FetchError, resolve_weights
from vae_bench.fetch.catalog import MetricNetwork, fvd_network, lpips_network
from vae_bench.metrics import MetricUnavailable, VideoMetric, build_metrics
from vae_bench.metrics.psnr import PSNRVsFull
from vae_bench.profile import PhaseResult, _is_oom, profile_codec
from vae_bench.recovery import recover
from vae_bench.results import RunStore
from vae_bench.samples import SampleKeeper
from vae_bench.seams import SEAM_METRICS, build_seam_metrics
from vae_bench.sweep import Cell, Sweep, SweepError, check_run_name

log = logging.getLogger("vae_bench")
T = TypeVar("T")

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
EFFICIENCY_METRICS = {
    # metric name -> (PhaseResult attribute, unit, scale)
    "frames_per_s": ("frames_per_s", "frames/s", 1.0),
    "clips_per_s": ("clips_per_s", "clips/s", 1.0),
    "peak_allocated_mb": ("peak_allocated_bytes", "MiB", 2.0**-20),
    "peak_reserved_mb": ("peak_reserved_bytes", "MiB", 2.0**-20),
    "nvml_used_mb": ("nvml_used_bytes", "MiB", 2.0**-20),
    "peak_rss_mb": ("peak_rss_bytes", "MiB", 2.0**-20),
    "rss_growth_mb": ("rss_growth_bytes", "MiB", 2.0**-20),
}


@dataclass(frozen=True)
class Plan:
    """A validated sweep: the cells to run and what they need."""

    sweep: Sweep
    cells: tuple[Cell, ...]
    datasets: dict[str, Dataset]
    device: torch.device
    lpips_skip_reason: str  # "" when LPIPS is computed
    fvd: FvdPlan
    requested: dict[str, int]  # cell key -> frames the sweep asked for (before the frame rule)
    # (preset, weights) -> the local files of weights named by source (official, hf://, URL)
    fetched: dict[tuple[str, str], Fetched] = field(default_factory=dict)
    samples_dir: Path | None = None  # where quality cells keep reconstruction samples


@dataclass(frozen=True)
class FvdPlan:
    """How rFVD is computed in this run (or why it is not)."""

    weights: str | None = None  # what build_extractor gets: None (cache dir), path, "random"
    skip_reason: str = ""  # non-empty: rFVD rows are written as skipped with this reason
    note: str = ""  # e.g. that a missing weights file fell back to random weights


# --- planning -------------------------------------------------------------------------
def missing_policy(value: str) -> tuple[bool, str]:
    """A ``*_missing`` setting as (fetch first?, what to do when still missing): ``fetch`` ->
    (True, "error"), ``fetch-or-skip`` -> (True, "skip"), ``skip`` -> (False, "skip")."""
    if value == "fetch":
        return True, "error"
    if value.startswith("fetch-or-"):
        return True, value[len("fetch-or-") :]
    return False, value


def _build_or_fetch(build: Callable[[], object], network: MetricNetwork | None) -> None:
    """``build()``; when its network file is missing and ``network`` is given, fetch it and
    build again (a failed fetch is reported as the metric being unavailable)."""
    try:
        build()
        return
    except MetricUnavailable:
        if network is None:
            raise
    try:
        network.fetch()
    except FetchError as error:
        raise MetricUnavailable(str(error)) from None
    build()


def _fvd_check(sweep: Sweep) -> FvdPlan:
    """Resolve the I3D weights before any work: fetch, error, fall back to random, or skip."""
    q = sweep.quality
    if "rfvd" not in q.metrics:
        return FvdPlan()
    from vae_bench.fvd import build_extractor

    fetch, otherwise = missing_policy(q.fvd_missing)
    network = fvd_network(q.fvd_extractor) if fetch and q.fvd_weights is None else None
    try:
        _build_or_fetch(lambda: build_extractor(q.fvd_extractor, q.fvd_weights), network)
    except MetricUnavailable as error:
        if otherwise == "random":
            return FvdPlan("random", note=f"weights missing, random I3D used: {error}")
        if otherwise == "skip":
            return FvdPlan(skip_reason=str(error))
        raise SweepError(
            f"{sweep.source}: quality.metrics: {error} (or set `quality.fvd_missing: fetch`, "
            "`quality.fvd_missing: random` or `quality.fvd_missing: skip`)"
        ) from None
    return FvdPlan(q.fvd_weights)


def _quality_settings(sweep: Sweep, metrics: tuple[str, ...], fvd: FvdPlan) -> str:
    q = sweep.quality
    settings = {"metrics": metrics, "lpips_net": q.lpips_net, "max_clips": q.max_clips}
    if q.convention != "suite":  # absent for the default, so earlier runs still resume
        settings["convention"] = q.convention
    if "rfvd" in metrics:
        settings |= {"fvd_extractor": q.fvd_extractor, "fvd_weights": fvd.weights,
                     "fvd_protocol": q.fvd_protocol}  # fmt: skip
    if "rfid" in metrics:
        settings["fid_weights"] = q.fid_weights
    return json.dumps(settings, sort_keys=True)


def _efficiency_settings(sweep: Sweep) -> str:
    e = sweep.efficiency
    return json.dumps({"warmup": e.warmup, "repeats": e.repeats, "seed": e.seed}, sort_keys=True)


def _lpips_check(sweep: Sweep, device: torch.device) -> str:
    """Fail before any work when LPIPS weights are missing (after fetching them when the
    sweep says fetch), unless the sweep says skip."""
    q = sweep.quality
    if "lpips" not in q.metrics:
        return ""
    fetch, otherwise = missing_policy(q.lpips_missing)
    try:
        _build_or_fetch(
            lambda: build_metrics(["lpips"], device="cpu", lpips_net=q.lpips_net),
            lpips_network(q.lpips_net) if fetch else None,
        )
    except MetricUnavailable as error:
        if otherwise == "skip":
            return str(error)
        raise SweepError(
            f"{sweep.source}: quality.metrics: {error} (or set `quality.lpips_missing: fetch` "
            "or `quality.lpips_missing: skip`)"
        ) from None
    return ""


def _fetch_weights(sweep: Sweep) -> dict[tuple[str, str], Fetched]:
    """Download (once, into the caches) the weights the sweep names by source."""
    found: dict[tuple[str, str], Fetched] = {}
    for index, entry in enumerate(sweep.models):
        key = (entry.preset, entry.weights)
        if key in found:
            continue
        try:
            fetched = resolve_weights(get_preset(entry.preset), entry.weights)
        except AdapterError:
            continue  # an unknown preset is reported, with its position, by the model loop
        except FetchError as error:
            raise SweepError(f"{sweep.source}: models[{index}] ({entry.preset}): {error}") from None
        if fetched is not None:
            found[key] = fetched
    return found


def _first_fetches(function: Callable[[], T]) -> T:
    """``function()`` on each machine's first process, then on the others: one download,
    and the other ranks read what it left in the cache."""
    ctx = distributed.context()
    first = not ctx.active or ctx.local_rank == 0
    result = function() if first else None
    if ctx.active:
        distributed.gather(None)  # the others wait here for the downloads
    return function() if not first else result  # type: ignore[return-value]


def plan(sweep: Sweep, device: str | None = None) -> Plan:
    """Every check that can fail, done before the first cell runs."""
    src = sweep.source
    try:
        torch_device = environment.resolve_device(device or sweep.device)
    except (ValueError, RuntimeError) as error:
        raise SweepError(f"{src}: device: {error}; allowed: auto, cpu, cuda, cuda:N") from None
    try:
        all_datasets = load_datasets(sweep.datasets_file)
    except DatasetError as error:
        raise SweepError(str(error)) from None
    unknown = [d for d in sweep.datasets if d not in all_datasets]
    if unknown:
        raise SweepError(f"{src}: datasets: unknown {unknown}; defined: {sorted(all_datasets)}")
    datasets = {name: all_datasets[name] for name in sweep.datasets}
    quality_cells = _any_quality(sweep)
    lpips_skip, fvd, fetched = _first_fetches(
        lambda: (
            _lpips_check(sweep, torch_device) if quality_cells else "",
            _fvd_check(sweep) if quality_cells else FvdPlan(),
            _fetch_weights(sweep),
        )
    )
    if "rfid" in sweep.quality.metrics and quality_cells:
        from vae_bench.metrics.rfid import find_weights

        try:  # rFID's Inception weights: before any work
            find_weights(sweep.quality.fid_weights)
        except MetricUnavailable as error:
            raise SweepError(
                f"{src}: quality.metrics: {error} (or set `quality.fid_weights: <path to the "
                "file>`, or leave rfid out)"
            ) from None
    skipped = {"lpips": bool(lpips_skip), "rfvd": bool(fvd.skip_reason)}
    metrics = tuple(m for m in sweep.quality.metrics if not skipped.get(m))

    cells: dict[str, Cell] = {}
    requested_frames: dict[str, int] = {}

    def add(cell: Cell, requested: int) -> None:
        if cell.key not in cells:  # two requested lengths can fit to the same T
            cells[cell.key] = cell
            requested_frames[cell.key] = requested

    for index, entry in enumerate(sweep.models):
        where = f"{src}: models[{index}] ({entry.preset})"
        try:
            preset = get_preset(entry.preset)
            vae = preset.create(_local_weights(fetched, entry.preset, entry.weights))
        except (AdapterError, NotImplementedError) as error:
            raise SweepError(f"{where}: {error}") from None
        spec = vae.spec
        quality = entry.quality if entry.quality is not None else vae.weights != RANDOM_WEIGHTS
        modes = [InferenceMode.parse(m) for m in (entry.modes or sweep.modes)]
        for mode in modes:
            if mode.kind not in spec.modes:
                raise SweepError(
                    f"{where}: modes: {mode.label} not supported; supported kinds: "
                    f"{', '.join(spec.modes)} (give the model its own `modes` in its "
                    "`models` entry)"
                )
        for dtype in sweep.dtypes:
            for mode in modes:
                for height, width in sweep.resolutions:
                    for requested in sweep.frames:
                        try:
                            frames = spec.frame_rule.fit(requested)
                            spec.check_input(frames, height, width)
                        except AdapterError as error:
                            raise SweepError(f"{where}: frames/resolutions: {error}") from None
                        common = dict(
                            model=entry.preset,
                            weights=entry.weights,
                            height=height,
                            width=width,
                            frames=frames,
                            dtype=dtype,
                            mode=mode.label,
                        )
                        if entry.efficiency:
                            add(
                                Cell(
                                    kind="efficiency",
                                    dataset="",
                                    batch_size=sweep.efficiency.batch_size,
                                    settings=_efficiency_settings(sweep),
                                    **common,
                                ),
                                requested,
                            )
                        if quality:
                            for name in sweep.datasets:
                                add(
                                    Cell(
                                        kind="quality",
                                        dataset=name,
                                        batch_size=sweep.quality.batch_size,
                                        settings=_quality_settings(sweep, metrics, fvd),
                                        **common,
                                    ),
                                    requested,
                                )
                        if requested != frames:
                            log.info(
                                "%s: %d frames requested, %d used (T = %s)",
                                entry.preset,
                                requested,
                                frames,
                                spec.frame_rule,
                            )
        del vae
    missing = []
    for name in sorted({cell.dataset for cell in cells.values() if cell.kind == "quality"}):
        try:  # a folder root is checked where it is used: here, before any work
            datasets[name].clip_ids()
        except DatasetError as error:
            missing.append(str(error))  # every missing dataset named at once
        longest = datasets[name].max_frames
        asked = sorted({c.frames for c in cells.values() if c.dataset == name})
        if longest is not None and asked[-1] > longest:
            missing.append(f"dataset {name!r} gives clips of at most {longest} frame(s) "
                           f"(an image folder); frames {asked} requested: use frames: [1]")
    if missing:
        raise SweepError(f"{src}: datasets: {' | '.join(missing)}")
    return Plan(
        sweep, tuple(cells.values()), datasets, torch_device, lpips_skip, fvd, requested_frames,
        fetched,
    )  # fmt: skip


def _local_weights(fetched: Mapping[tuple[str, str], Fetched], model: str, weights: str) -> str:
    """What the adapter loads: the fetched files of a source, else the sweep's value."""
    found = fetched.get((model, weights))
    return str(found.path) if found is not None else weights


def _any_quality(sweep: Sweep) -> bool:
    """Whether any model gets quality cells (so LPIPS/rFVD weights must be checked)."""
    for entry in sweep.models:
        if entry.quality is not None:
            if entry.quality:
                return True
            continue
        if entry.weights != RANDOM_WEIGHTS:
            return True
        try:  # weightless adapters (identity, baselines) are evaluated by default
            if get_preset(entry.preset).adapter.weights != RANDOM_WEIGHTS:
                return True
        except AdapterError:
            continue  # reported with its position by the model loop
    return False


# --- executing ------------------------------------------------------------------------
class ModelCache:
    """Holds one model at a time: cells are ordered so each model/dtype loads once."""

    def __init__(
        self, device: torch.device, fetched: Mapping[tuple[str, str], Fetched] | None = None
    ) -> None:
        self.device = device
        self.fetched = dict(fetched or {})
        self._key: tuple[str, str, str] | None = None
        self._vae: VideoVAE | None = None

    def get(self, cell: Cell) -> VideoVAE:
        key = (cell.model, cell.weights, cell.dtype)
        if key != self._key:
            self._key, self._vae = None, None  # nothing cached if this load fails
            _free(self.device)
            weights = _local_weights(self.fetched, cell.model, cell.weights)
            vae = get_preset(cell.model).create(weights)
            self._vae = vae.to(self.device, DTYPES[cell.dtype]).eval()
            self._key = key
        assert self._vae is not None
        return self._vae


def _free(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _cell_columns(
    cell: Cell, vae: VideoVAE | None, requested: int, device: torch.device
) -> dict[str, Any]:
    """The cell's columns; without ``vae`` (it failed to load) the model's own are blank."""
    family, weights, params = (
        (vae.spec.family, vae.weights, vae.spec.params) if vae else ("", cell.weights, math.nan)
    )
    return {
        "cell": cell.key, "kind": cell.kind, "model": cell.model, "family": family,
        "weights": weights, "params": params, "dataset": cell.dataset,
        "height": cell.height, "width": cell.width, "frames_requested": requested,
        "frames": cell.frames, "batch_size": cell.batch_size, "dtype": cell.dtype,
        "mode": cell.mode, "device": environment.device_name(device),
    }  # fmt: skip


def _mean_ci(values: np.ndarray) -> tuple[float, float]:
    """95% Student-t interval of the mean over clips (nan when undefined)."""
    finite = values[np.isfinite(values)]
    if len(finite) < 2 or len(finite) != len(values):
        return math.nan, math.nan
    sem = stats.sem(finite)
    if sem == 0:
        return float(finite.mean()), float(finite.mean())
    low, high = stats.t.interval(0.95, len(finite) - 1, loc=finite.mean(), scale=sem)
    return float(low), float(high)


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


CLIP_KEYS = ("run", "cell", "model", "weights", "dataset", "height", "width", "frames", "dtype",
             "mode", "device")  # fmt: skip


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


def _skipped_row(base: dict[str, Any], protocol: str, metric: str, reason: str) -> dict[str, Any]:
    return {**base, "protocol": protocol, "metric": metric, "n": 0, "value": math.nan,
            "status": "skipped", "message": reason}  # fmt: skip


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
    keeper = SampleKeeper.for_cell(cell, vae.spec, local_ids, plan.samples_dir, plan.sweep.quality)
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
                keeper.offer([c.clip_id for c in batch], target, recon)
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
                    for metric in [*metrics, *whole_set]:
                        if not any(metric is m for m in against_full):
                            metric.update(target[finite], recon[finite])
                    for metric in against_full:
                        metric.update(full[finite], recon[finite])
            progress.update(len(batch) + len(skipped))
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
    results, frames = [], []
    for metric in [*metrics, *whole_set]:
        row = {**base, "protocol": f"{dataset.protocol};{metric.protocol}",
               "metric": metric.name, "unit": metric.unit, "n": n, "message": message}  # fmt: skip
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
                                "message": f"rFID: {error}"})
                continue
            results.append({**row, "value": value, "status": "ok"})
            continue
        per_clip = metric.per_clip().double().cpu().numpy()
        for clip_row, value in zip(evaluated, per_clip, strict=True):
            clip_row[metric.name] = float(value)
        low, high = _mean_ci(per_clip)
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
        results += [_skipped_row(base, dataset.protocol, m, seam_skip) for m in SEAM_METRICS]
    if plan.lpips_skip_reason and "lpips" in plan.sweep.quality.metrics:
        results.append(_skipped_row(base, dataset.protocol, "lpips", plan.lpips_skip_reason))
    if "rfvd" in plan.sweep.quality.metrics and (plan.fvd.skip_reason or rfvd_skip):
        reason = plan.fvd.skip_reason or rfvd_skip
        results.append(_skipped_row(base, dataset.protocol, "rfvd", reason))
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


def run_efficiency(cell: Cell, vae: VideoVAE, plan: Plan, base: dict[str, Any]):
    settings = json.loads(cell.settings)
    generator = torch.Generator().manual_seed(settings["seed"])
    shape = (cell.batch_size, 3, cell.frames, cell.height, cell.width)
    video = (torch.rand(shape, generator=generator) * 2 - 1).to(plan.device, DTYPES[cell.dtype])
    mode = InferenceMode.parse(cell.mode)
    phases = profile_codec(
        lambda v: vae.encode(v, mode),
        lambda z: vae.decode(z, mode),
        video,
        warmup=settings["warmup"],
        repeats=settings["repeats"],
    )
    timer = "cuda-events" if plan.device.type == "cuda" else "perf_counter"
    protocol = (
        f"efficiency:warmup={settings['warmup']};repeats={settings['repeats']};"
        f"timer={timer};input=uniform[-1,1],seed={settings['seed']}"
    )
    return [row for phase in phases for row in _phase_rows(phase, base, protocol)], [], []


def _phase_rows(phase: PhaseResult, base: dict[str, Any], protocol: str) -> list[dict[str, Any]]:
    common = {**base, "protocol": protocol, "phase": phase.phase, "n": len(phase.times_s)}
    if phase.status != "ok":
        return [
            {
                **common,
                "metric": "latency_s",
                "unit": "s",
                "value": math.nan,
                "status": phase.status,
                "message": phase.message,
            }
        ]
    rows = [
        {
            **common,
            "metric": "latency_s",
            "unit": "s",
            "value": phase.median_s,
            "p10": phase.p10_s,
            "p90": phase.p90_s,
            "status": "ok",
            "message": "",
        }
    ]
    for name, (attribute, unit, scale) in EFFICIENCY_METRICS.items():
        value = getattr(phase, attribute)
        if value is None:
            rows.append(
                {
                    **common,
                    "metric": name,
                    "unit": unit,
                    "value": math.nan,
                    "status": "unavailable",
                    "message": f"{name} not available on this device",
                }
            )
        else:
            rows.append(
                {
                    **common,
                    "metric": name,
                    "unit": unit,
                    "value": float(value) * scale,
                    "status": "ok",
                    "message": "",
                }
            )
    return rows


def execute(cell: Cell, plan: Plan, cache: ModelCache, run: str):
    """Run one cell; an error becomes rows with status ``error`` (retried on resume)."""

    def columns(vae: VideoVAE | None) -> dict[str, Any]:
        return {
            "run": run,
            **_cell_columns(cell, vae, plan.requested[cell.key], plan.device),
            **environment.run_metadata(),
            "timestamp": environment.timestamp(),
        }

    base = columns(None)
    try:
        vae = cache.get(cell)  # loading can fail too, e.g. no device memory left for it
        base = columns(vae)
        if cell.kind == "quality":
            return run_quality(cell, vae, plan.datasets[cell.dataset], plan, base)
        return run_efficiency(cell, vae, plan, base)
    except Exception as error:  # one failing cell must not end a run of many hours
        if distributed.context().active and cell.kind == "quality":
            raise  # the ranks must agree (bench.distributed.agreement)
        if _is_oom(error):  # CUDA allocator or host
            text = str(error).strip()
            first = f"{type(error).__name__}: {text.splitlines()[0] if text else 'no details'}"
            status = "oom"
            message = f"out of memory at {cell.title}, batch {cell.batch_size}: {first}"
        else:
            status, message = "error", f"{type(error).__name__}: {error}"
            log.error("cell %s failed:\n%s", cell.title, traceback.format_exc())
    # freed only here: inside the except blocks the traceback still holds the failed
    # call's frames and so its tensors, which the allocator could not give back
    _free(plan.device)
    return (
        [
            {
                **base,
                "protocol": "",
                "metric": "cell",
                "value": math.nan,
                "status": status,
                "message": message,
            }
        ],
        [],
        [],
    )


def _order(cells: tuple[Cell, ...]) -> list[Cell]:
    """Group by model and dtype (one model load each), keep the sweep's order otherwise."""
    first: dict[tuple[str, str, str], int] = {}
    for index, cell in enumerate(cells):
        first.setdefault((cell.model, cell.weights, cell.dtype), index)
    return sorted(cells, key=lambda c: first[(c.model, c.weights, c.dtype)])


def run_sweep(
    sweep: Sweep,
    out_root: str | Path = "reports",
    *,
    run_name: str | None = None,
    device: str | None = None,
    plots: bool = True,
) -> Path:
    """Validate, run the unfinished cells, merge CSVs and draw plots; returns the run dir.

    Under torchrun, every rank runs this; rank 0 alone writes (see vae_bench.distributed)."""
    run = sweep.name if run_name is None else check_run_name(run_name, "command line", "--name")
    ctx, device = distributed.setup(device or sweep.device)
    with distributed.agreement("planning"):
        validated = plan(sweep, device)
    store = RunStore(Path(out_root) / run)
    validated = replace(validated, samples_dir=store.root / "samples")
    if ctx.is_main:
        for note in recover(store):
            print(f"run {run}: {note}")
        store.write_metadata(
            {
                "run": run,
                "sweep": sweep.to_dict(),
                "device": str(validated.device),
                "device_name": environment.device_name(validated.device),
                "world_size": ctx.world_size,
                **environment.run_metadata(),
                "started": environment.timestamp(),
                "cells": [asdict(c) | {"key": c.key} for c in validated.cells],
                "fetched_weights": [
                    {"model": model, "weights": weights, **found.record()}
                    for (model, weights), found in validated.fetched.items()
                ],
            }
        )
    todo = None
    if ctx.is_main:  # rank 0's run directory decides (other nodes may not see it)
        failed = store.cells_with_status("error")
        todo = [c for c in _order(validated.cells) if not store.is_done(c.key) or c.key in failed]
    todo = distributed.broadcast(todo)
    skipped = len(validated.cells) - len(todo)
    if ctx.is_main:
        ranks = f" x {ctx.world_size} ranks ({ctx.backend})" if ctx.active else ""
        print(
            f"run {run}: {len(validated.cells)} cells, {skipped} already done, {len(todo)} to "
            f"run on {validated.device}{ranks} -> {store.root}"
        )
    cache = ModelCache(validated.device, validated.fetched)
    try:
        for cell in tqdm(todo, desc="cells", unit="cell", disable=not ctx.is_main):
            if ctx.is_main:
                tqdm.write(f"  {cell.title}")
            rows = distributed.run_cell(
                cell.kind, cell.title, lambda cell=cell: execute(cell, validated, cache, run)
            )
            if rows is not None:  # rank 0
                store.write_cell(cell.key, *rows)
    except KeyboardInterrupt:
        if not ctx.is_main:
            raise
        store.merge()  # the stop may fall between a cell's files and the merge
        done = len(store.done_cells() & {c.key for c in validated.cells})
        print(
            f"\ninterrupted: {done}/{len(validated.cells)} cells finished and saved; "
            "run the same command again to resume"
        )
        raise
    if not ctx.is_main:
        return store.root
    store.merge()
    if plots:
        from vae_bench.report.plots import plot_run

        paths = plot_run(
            store.read_parts("results"), store.root / "plots", frames=store.read_parts("frames")
        )
        print(f"{len(paths)} plot files in {store.root / 'plots'}")
    return store.root
