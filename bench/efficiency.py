"""Efficiency cells: encode, decode and round trip timed and memory-profiled on a seeded
input; one row per (phase, metric)."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import torch

from vae_bench.adapters import InferenceMode, VideoVAE
from vae_bench.environment import DTYPES
from vae_bench.profile import PhaseResult, profile_codec
from vae_bench.sweep import Cell

if TYPE_CHECKING:
    from vae_bench.runner import Plan

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


def run_efficiency(cell: Cell, vae: VideoVAE, plan: Plan, base: dict[str, Any]):
    """Time and profile one efficiency cell; returns (results, clips, frames) rows."""
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
    """Latency (median, p10, p90) and every memory/throughput figure of one phase."""
    common = {**base, "protocol": protocol, "phase": phase.phase, "n": len(phase.times_s)}
    latency = {**common, "metric": "latency_s", "unit": "s"}
    if phase.status != "ok":
        return [{**latency, "value": math.nan, "status": phase.status, "message": phase.message}]
    rows = [{**latency, "value": phase.median_s, "p10": phase.p10_s, "p90": phase.p90_s,
             "status": "ok", "message": ""}]  # fmt: skip
    for name, (attribute, unit, scale) in EFFICIENCY_METRICS.items():
        value = getattr(phase, attribute)
        row = {**common, "metric": name, "unit": unit}
        if value is None:
            rows.append({**row, "value": math.nan, "status": "unavailable",
                         "message": f"{name} not available on this device"})  # fmt: skip
        else:
            rows.append({**row, "value": float(value) * scale, "status": "ok", "message": ""})
    return rows
