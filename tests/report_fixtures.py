"""Synthetic run directories in the suite's schema, for the compare and gate tests.

Each clip has a difficulty shared by every run (so paired deltas cancel it); each run
adds its own small per-clip noise, each model its offset, and a test its injected change.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from vae_bench.results import CLIP_COLUMNS, RESULT_COLUMNS

MODELS = {"identity": ("identity", "none", 0), "m1": ("fam", "a" * 64, 1_000_000),
          "m2": ("fam", "b" * 64, 2_000_000)}  # fmt: skip
OFFSETS = {"m1": {"psnr": 30.0, "ssim": 0.90, "lpips": 0.080},
           "m2": {"psnr": 28.0, "ssim": 0.85, "lpips": 0.120}}  # fmt: skip
NOISE = {"psnr": 0.02, "ssim": 0.0002, "lpips": 0.0002}
SPREAD = {"psnr": 2.0, "ssim": 0.02, "lpips": 0.01}
LATENCY = {"identity": 0.002, "m1": 0.05, "m2": 0.11}
MEMORY = {"identity": 10.0, "m1": 500.0, "m2": 800.0}


def write_run(
    root: Path,
    name: str,
    *,
    seed: int,
    n_clips: int = 24,
    sizes: tuple[int, ...] = (64, 128),
    shift: Mapping[tuple[str, str], float] | None = None,
    speed: float = 1.0,
    slower: Mapping[str, float] | None = None,
    slower_cells: Mapping[tuple[str, int], float] | None = None,
    heavier: Mapping[str, float] | None = None,
    protocol: str = "synthetic:num_clips=24",
    oom: tuple[tuple[str, int], ...] = (),
    device: str = "cpu",
    weights: Mapping[str, str] | None = None,
) -> Path:
    """A run directory with results.csv, clips.csv and run.json.

    ``shift[(model, metric)]`` adds to every clip's value; ``speed`` multiplies every
    latency (a slower machine); ``slower[model]`` multiplies that model's only,
    ``slower_cells[(model, size)]`` one cell's; ``heavier[model]`` multiplies its memory;
    ``oom`` lists (model, size) efficiency cells that ran out of memory.
    """
    shift = dict(shift or {})
    slower = dict(slower or {})
    slower_cells = dict(slower_cells or {})
    weights = dict(weights or {})
    difficulty = np.random.default_rng(1234)  # the clips: the same in every run
    base = {m: difficulty.standard_normal(n_clips) for m in SPREAD}
    rng = np.random.default_rng(seed)
    meta = dict(run=name, suite_version="0.1.0", git_sha="abc", torch_version="2.5",
                cuda_version="", python_version="3.11", host="h",
                timestamp="2025-01-01T00:00:00", device=device, dtype="float32", mode="full")
    results, clips = [], []
    for model, (family, default_weights, params) in MODELS.items():
        w = weights.get(model, default_weights)
        for size in sizes:
            common = dict(meta, model=model, family=family, weights=w, params=params,
                          height=size, width=size, frames_requested=9, frames=9)
            # quality
            cell = f"q-{model}-{size}"
            per_metric = {}
            for metric in SPREAD:
                if model == "identity":
                    ideal = {"psnr": math.inf, "ssim": 1.0, "lpips": 0.0}[metric]
                    values = np.full(n_clips, ideal)
                else:
                    values = (OFFSETS[model][metric] + SPREAD[metric] * base[metric]
                              + NOISE[metric] * rng.standard_normal(n_clips)
                              + shift.get((model, metric), 0.0))
                per_metric[metric] = values
                finite = values[np.isfinite(values)]
                mean = float(values.mean())
                if len(finite) == len(values) and finite.std() > 0:
                    low, high = stats.t.interval(0.95, len(finite) - 1, loc=mean,
                                                 scale=stats.sem(finite))
                else:
                    low = high = mean if np.isfinite(mean) else math.nan
                results.append(dict(common, cell=cell, kind="quality", dataset="synthetic",
                                    protocol=f"{protocol};{metric}:v1", batch_size=2, phase="",
                                    metric=metric, value=mean, ci_low=low, ci_high=high,
                                    unit="dB" if metric == "psnr" else "", n=n_clips,
                                    status="ok", message=""))
            for i in range(n_clips):
                clip_common = {k: v for k, v in common.items() if k in CLIP_COLUMNS}
                clips.append(dict(clip_common, cell=cell, dataset="synthetic",
                                  clip=f"clip{i:03d}",
                                  source=f"synthetic/{i}", start=0, status="ok", reason="",
                                  **{m: float(v[i]) for m, v in per_metric.items()}))
            # efficiency
            cell = f"e-{model}-{size}"
            eff = dict(common, cell=cell, kind="efficiency", dataset="", batch_size=1,
                       protocol="efficiency:warmup=1;repeats=5", weights="random"
                       if model != "identity" else "none", n=5)
            if (model, size) in oom:
                results.append(dict(eff, phase="", metric="cell", value=math.nan,
                                    status="oom", message="out of memory", protocol=""))
                continue
            for phase, factor in (("encode", 1.0), ("decode", 1.5)):
                latency = (LATENCY[model] * factor * (size / 64) ** 2 * speed
                           * slower.get(model, 1.0) * slower_cells.get((model, size), 1.0)
                           * (1 + 0.01 * rng.standard_normal()))
                results += [
                    dict(eff, phase=phase, metric="latency_s", value=latency, p10=latency * 0.97,
                         p90=latency * 1.03, unit="s", status="ok", message=""),
                    dict(eff, phase=phase, metric="frames_per_s", value=9 / latency,
                         unit="frames/s", status="ok", message=""),
                    dict(eff, phase=phase, metric="peak_rss_mb",
                         value=MEMORY[model] * factor * (size / 64) ** 2
                         * (heavier or {}).get(model, 1.0), unit="MiB",
                         status="ok", message=""),
                ]
    root = Path(root) / name
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(results).reindex(columns=list(RESULT_COLUMNS)).to_csv(
        root / "results.csv", index=False)
    frame = pd.DataFrame(clips)
    extra = [c for c in frame.columns if c not in CLIP_COLUMNS]
    frame.reindex(columns=[*CLIP_COLUMNS, *extra]).to_csv(root / "clips.csv", index=False)
    (root / "run.json").write_text(json.dumps({"run": name, "device_name": device}))
    return root
