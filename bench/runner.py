"""Sweep -> cells -> rows. Validates everything first (planning), then runs the
unfinished cells one at a time.

Each cell is either *quality* (:mod:`vae_bench.quality`: one pass over a dataset's clips
computing every metric at once) or *efficiency* (:mod:`vae_bench.efficiency`: encode,
decode and round trip timed and memory-profiled on a seeded input). Finished cells are
stored by :class:`vae_bench.results.RunStore`, so a rerun of the same run resumes where it
stopped.
"""

from __future__ import annotations

import json
import logging
import math
import traceback
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm.auto import tqdm

from vae_bench import distributed, environment
from vae_bench.adapters import RANDOM_WEIGHTS, AdapterError, InferenceMode, VideoVAE, get_preset
from vae_bench.data import Dataset, DatasetError, load_datasets
from vae_bench.efficiency import run_efficiency
from vae_bench.environment import DTYPES
from vae_bench.fetch import Fetched, FetchError, resolve_weights
from vae_bench.fetch.catalog import MetricNetwork, fvd_network, lpips_network
from vae_bench.loader import default_workers
from vae_bench.metrics import MetricUnavailable, build_metrics
from vae_bench.profile import _is_oom
from vae_bench.quality import run_quality
from vae_bench.recovery import recover
from vae_bench.results import RunStore
from vae_bench.sweep import Cell, Sweep, SweepError, check_run_name

log = logging.getLogger("vae_bench")
T = TypeVar("T")


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
    workers: int = 0  # clip-loading processes of quality cells (vae_bench.loader)
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


def plan(sweep: Sweep, device: str | None = None, workers: int | None = None) -> Plan:
    """Every check that can fail, done before the first cell runs.

    ``device`` and ``workers`` override the sweep's (``--device``, ``--workers``)."""
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
    if workers is None:
        workers = sweep.data.workers if sweep.data.workers is not None else default_workers()
    elif workers < 0:
        raise SweepError(f"--workers: must be an integer >= 0, got {workers}")
    return Plan(
        sweep, tuple(cells.values()), datasets, torch_device, lpips_skip, fvd, requested_frames,
        workers, fetched,
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
    workers: int | None = None,
    plots: bool = True,
) -> Path:
    """Validate, run the unfinished cells, merge CSVs and draw plots; returns the run dir.

    Under torchrun, every rank runs this; rank 0 alone writes (see vae_bench.distributed)."""
    run = sweep.name if run_name is None else check_run_name(run_name, "command line", "--name")
    ctx, device = distributed.setup(device or sweep.device)
    with distributed.agreement("planning"):
        validated = plan(sweep, device, workers)
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
    for line in unusable_clip_lines(store, validated.cells):
        print(line)
    if plots:
        from vae_bench.report.plots import plot_run

        paths = plot_run(
            store.read_parts("results"), store.root / "plots", frames=store.read_parts("frames")
        )
        print(f"{len(paths)} plot files in {store.root / 'plots'}")
    return store.root


def unusable_clip_lines(store: RunStore, cells: tuple[Cell, ...]) -> list[str]:
    """One line per quality cell of the run with clips it could not evaluate: how many,
    of which status, and the file holding each clip's reason."""
    clips = store.read_parts("clips")
    if clips.empty or "status" not in clips.columns:
        return []
    titles = {cell.key: cell.title for cell in cells}
    bad = clips[(clips.status != "ok") & clips.cell.isin(titles)]
    lines = []
    for key, rows in bad.groupby("cell", sort=False):
        total = int((clips.cell == key).sum())
        kinds = ", ".join(f"{n} {status}" for status, n in rows.status.value_counts().items())
        lines.append(f"{titles[key]}: {len(rows)} of {total} clips not evaluated ({kinds}); "
                     f"reasons: {store.root / 'clips.csv'} (cell {key})")  # fmt: skip
    return lines
