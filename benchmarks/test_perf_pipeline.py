"""Data pipeline speed (pytest-benchmark, `nox -s perf`): a quality cell against the bare
decode loop, side by side in one run; nothing here is a pass/fail timing.

The clips: real 1280x720 H.264, cut from ``$VAE_BENCH_PERF_VIDEO`` (default: the demo clip
``../shared/data/ivvae_ori.mp4`` next to the checkout) into ``CLIPS`` files of 33 frames
(overlapping when the source is shorter than ``CLIPS x 33`` frames).

- *bare loop*: one thread of PyAV decoding each clip's 33 frames and scaling them in
  libswscale to the covering size (``frame.reformat``), nothing else: the rate a data
  path cannot beat without more cores;
- *quality cell*: ``identity`` at 256x256x33 with PSNR + SSIM through the runner, clips
  loaded by the default number of workers (and by none, for reference), in the default
  8-bit precision and the official float one.

Printed: clips/s of each and the ratio cell / bare loop, plus the cell's own time rows
(waiting for data, model, metrics). The machine's load average is printed too: on shared
machines the ratio moves with it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import av
import pytest
import yaml

from vae_bench.data import covering_size
from vae_bench.loader import default_workers
from vae_bench.results import read_results
from vae_bench.runner import run_sweep
from vae_bench.sweep import parse_sweep

ROOT = Path(__file__).resolve().parent.parent
SOURCE = Path(os.environ.get("VAE_BENCH_PERF_VIDEO",
                             ROOT.parent / "shared" / "data" / "ivvae_ori.mp4"))  # fmt: skip
CLIPS, FRAMES, SIZE = 16, 33, 256


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    """``CLIPS`` H.264 files cut from the source video (re-encoded, same size and rate)."""
    if not SOURCE.is_file():
        pytest.skip(f"{SOURCE} not present (set VAE_BENCH_PERF_VIDEO)")
    root = tmp_path_factory.mktemp("clips")
    with av.open(str(SOURCE)) as source:
        stream = source.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in source.decode(stream)]
        rate, width, height = stream.average_rate, stream.width, stream.height
    step = max(1, (len(frames) - FRAMES) // (CLIPS - 1))
    for index in range(CLIPS):
        with av.open(str(root / f"clip{index:02d}.mp4"), "w") as out:
            video = out.add_stream("libx264", rate=rate)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            for image in frames[index * step : index * step + FRAMES]:
                out.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            out.mux(video.encode())
    return root


def bare_loop(folder: Path) -> float:
    """Clips per second of a single-thread decode + libswscale scale of 33 frames each."""
    start = time.perf_counter()
    for path in sorted(folder.glob("*.mp4")):
        with av.open(str(path)) as container:
            got = 0
            for frame in container.decode(video=0):
                height, width = covering_size(frame.height, frame.width, SIZE, SIZE)
                frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
                got += 1
                if got == FRAMES:
                    break
    return CLIPS / (time.perf_counter() - start)


def quality_cell(folder: Path, out: Path, workers: int, precision: str) -> dict[str, float]:
    """Run the cell; returns its clips/s (over the cell's own wall time) and time rows."""
    datasets = out / "datasets.yaml"
    datasets.parent.mkdir(parents=True, exist_ok=True)
    datasets.write_text(yaml.safe_dump(
        {"clips": {"kind": "folder", "root": str(folder), "precision": precision}}))
    sweep = parse_sweep({
        "name": "perf", "device": "cpu", "datasets": ["clips"], "datasets_file": str(datasets),
        "models": [{"preset": "identity", "efficiency": False}],
        "resolutions": [SIZE], "frames": [FRAMES],
        "quality": {"metrics": ["psnr", "ssim"]}, "data": {"workers": workers},
    })  # fmt: skip
    root = run_sweep(sweep, out, plots=False)
    results = read_results(root)
    seconds = results[results.kind == "timing"].set_index("metric").value.to_dict()
    assert results[results.metric == "psnr"].n.iloc[0] == CLIPS
    return {"clips_per_s": CLIPS / seconds["time_total_s"], **seconds}


@pytest.mark.parametrize("precision", ["uint8", "float"])
@pytest.mark.parametrize("workers", [default_workers(), 0])
def test_quality_cell_vs_bare_decode_loop(benchmark, clip_folder, tmp_path, workers, precision):
    bare = bare_loop(clip_folder)
    cell: dict[str, float] = {}
    runs = iter(range(100))

    def one_cell() -> None:
        cell.update(quality_cell(clip_folder, tmp_path / f"run{next(runs)}", workers, precision))

    benchmark.pedantic(one_cell, rounds=1, iterations=1)
    ratio = cell["clips_per_s"] / bare
    load = os.getloadavg()[0]
    benchmark.extra_info.update({"bare_clips_per_s": bare, "ratio": ratio, "load_1min": load,
                                 **cell})  # fmt: skip
    total = cell["time_total_s"]
    print(
        f"\nquality cell ({workers} workers, {precision}): {cell['clips_per_s']:.2f} clips/s; "
        f"bare loop {bare:.2f} clips/s; ratio {ratio:.2f}x; "
        f"data {cell['time_data_s'] / total:.0%} model {cell['time_model_s'] / total:.0%} "
        f"metrics {cell['time_metrics_s'] / total:.0%} of {total:.1f} s; "
        f"{os.cpu_count()} CPUs, load average {load:.1f}"
    )
