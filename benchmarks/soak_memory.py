"""Memory over a long quality cell: host RSS (this process and its loader workers) and, on
CUDA, the allocator's peak must not grow with the number of clips.

    python benchmarks/soak_memory.py --clips 500 --size 64 --frames 17 --workers 2

Runs one synthetic quality cell (``identity``, PSNR + SSIM + flicker) through the quality
loop with an observer that samples memory after every clip, then prints the samples at
10% steps and the growth between the first tenth and the end. Per-clip metric values (a
few floats per clip) are kept by design; everything else must stay flat.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from vae_bench.quality import run_quality
from vae_bench.runner import ModelCache, _cell_columns, plan
from vae_bench.sweep import parse_sweep

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib(pid: int) -> float:
    """Resident set size of one process, from /proc (0 when it has ended)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20
    except (OSError, IndexError):
        return 0.0


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=500)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    datasets = Path(os.environ.get("TMPDIR", "/tmp")) / f"soak-{os.getpid()}.yaml"
    datasets.write_text(f"soak: {{kind: synthetic, num_clips: {args.clips}}}\n")
    sweep = parse_sweep({
        "name": "soak", "device": args.device, "datasets": ["soak"],
        "datasets_file": str(datasets), "models": [{"preset": "identity", "efficiency": False}],
        "resolutions": [args.size], "frames": [args.frames],
        "quality": {"metrics": ["psnr", "ssim", "flicker"], "batch_size": 1},
    })  # fmt: skip
    validated = plan(sweep, workers=args.workers)
    (cell,) = validated.cells
    model = ModelCache(validated.device).get(cell)
    base = {"run": "soak", **_cell_columns(cell, model, cell.frames, validated.device)}
    on_cuda = validated.device.type == "cuda"
    samples: list[tuple[int, float, float, float]] = []

    def sample(clip_id: str, original: torch.Tensor, reconstruction: torch.Tensor) -> None:
        me = os.getpid()
        workers = sum(rss_mib(pid) for pid in children(me))
        peak = torch.cuda.max_memory_allocated(validated.device) / 2**20 if on_cuda else 0.0
        samples.append((len(samples) + 1, rss_mib(me), workers, peak))

    results, _, _ = run_quality(cell, model, validated.datasets["soak"], validated, base,
                                observers=[sample])  # fmt: skip
    datasets.unlink()
    print(f"{args.clips} clips {args.size}x{args.size}x{args.frames}, {validated.workers} "
          f"workers, {validated.device}")
    print("clip   main RSS MiB   workers RSS MiB   CUDA peak MiB")
    step = max(1, len(samples) // 10)
    for n, main_rss, workers, peak in samples[::step] + samples[-1:]:
        print(f"{n:5d}   {main_rss:12.1f}   {workers:15.1f}   {peak:13.1f}")
    tenth = samples[len(samples) // 10]
    last = samples[-1]
    print(f"growth from clip {tenth[0]} to {last[0]}: main {last[1] - tenth[1]:+.1f} MiB, "
          f"workers {last[2] - tenth[2]:+.1f} MiB, CUDA peak {last[3] - tenth[3]:+.1f} MiB")
    timing = {r["metric"]: r["value"] for r in results if r.get("kind") == "timing"}
    print("time: " + ", ".join(f"{k} {v:.1f}" for k, v in timing.items()))


if __name__ == "__main__":
    main()
