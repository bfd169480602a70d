"""Figures from a synthetic results table."""

from __future__ import annotations

import itertools
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vae_bench.report.plots import plot_run

FIGURES = [f"{kind}_vs_{axis}" for kind in ("quality", "throughput", "memory")
           for axis in ("resolution", "clip_length")] + [
    "time_memory_vs_resolution", "quality_vs_throughput"]
QUALITY = ("psnr", "psnr_clip", "ssim", "lpips")
PHASES = ("encode", "decode", "roundtrip")

MemoryFn = Callable[[str, int, int, int], float]


def _default_memory(model: str, h: int, w: int, frames: int) -> float:
    return 50.0 + 1e-4 * h * w * frames


def make_results(
    models: Sequence[str] = ("wf-vae-l", "sd-vae-ft-mse"),
    sizes: Iterable[tuple[int, int]] = ((128, 128), (256, 256), (512, 512)),
    frames: Iterable[int] = (9, 17, 33),
    *,
    device: str = "cpu",
    dtypes: Iterable[str] = ("float32",),
    memory: MemoryFn = _default_memory,
    status: str = "ok",
    psnr: Callable[[str, int, int, int], float] | None = None,
) -> pd.DataFrame:
    """A tidy results table in the suite's schema, one cell per model x size x frames x dtype."""
    rows = []
    base = dict(run="r1", kind="", family="fam", weights="random", params=1000,
                dataset="synthetic", protocol="default", batch_size=1, mode="full",
                device=device, p10=np.nan, p90=np.nan, ci_low=np.nan, ci_high=np.nan,
                n=4, status=status, message="", suite_version="0.1.0", git_sha="abc",
                torch_version="2", cuda_version="", python_version="3.11", host="h",
                timestamp="2025-01-01T00:00:00")
    for i, (model, (h, w), t, dtype) in enumerate(
            itertools.product(models, sizes, frames, dtypes)):
        cell = dict(base, cell=f"c{i}", model=model, height=h, width=w, frames_requested=t,
                    frames=t, dtype=dtype)
        px = h * w
        k = sorted(set(models)).index(model)  # models differ, so their lines can be told apart
        q = {
            "psnr": psnr(model, h, w, t) if psnr else 30.0 + k + math.log2(px) / 4 - t / 50,
            "psnr_clip": 29.0 + math.log2(px) / 4,
            "ssim": 0.8 + 0.01 * math.log2(px) / 18,
            "lpips": 0.1 - 0.001 * math.log2(px),
        }
        for metric, value in q.items():
            rows.append(dict(cell, kind="quality", phase="", metric=metric, value=value,
                             unit="dB" if "psnr" in metric else ""))
        for phase in PHASES:
            latency = 1e-3 * (1 + k) * px * t / 65536
            eff = {
                "latency_s": latency,
                "frames_per_s": t / latency,
                "clips_per_s": 1 / latency,
                "peak_rss_mb": memory(model, h, w, t),
                "peak_allocated_mb": (
                    memory(model, h, w, t) / 2 if device.startswith("NVIDIA") else np.nan
                ),
            }
            for metric, value in eff.items():
                rows.append(dict(cell, kind="efficiency", phase=phase, metric=metric,
                                 value=value, unit=""))
    return pd.DataFrame(rows)


def _svg_text(path: Path) -> str:
    root = ET.parse(path).getroot()
    return " ".join(t for t in root.itertext())


def _check_files(paths: list[Path], out: Path, names: list[str]) -> None:
    expected = [out / f"{n}.{ext}" for n in names for ext in ("png", "svg")]
    assert sorted(paths) == sorted(expected)
    for p in paths:
        assert p.stat().st_size > 1000
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            assert ET.parse(p).getroot().tag.endswith("svg")


def _only(df: pd.DataFrame, kind: str, metric: str | None = None) -> pd.DataFrame:
    """The rows one family of figures reads; keeps each test to the figures it checks."""
    keep = df["kind"] == kind
    if metric is not None:
        keep &= df["metric"] == metric
    return df[keep]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path, list[Path]]:
    import matplotlib

    backend = matplotlib.get_backend()
    df = make_results()
    out = tmp_path_factory.mktemp("full") / "plots"
    paths = plot_run(df, out)
    assert matplotlib.get_backend() == backend  # no pyplot, no backend switch
    return df, out, paths


def test_full_grid_writes_every_figure(full_run: tuple[pd.DataFrame, Path, list[Path]]) -> None:
    _, out, paths = full_run
    _check_files(paths, out, FIGURES)
    text = _svg_text(out / "quality_vs_resolution.svg")
    for label in ("at 33 frames (largest clip length swept)", "wf-vae-l", "sd-vae-ft-mse",
                  "LPIPS", "SSIM", "128x128", "512x512"):
        assert label in text
    assert "at 512x512" in _svg_text(out / "throughput_vs_clip_length.svg")
    assert "peak RSS" in _svg_text(out / "memory_vs_resolution.svg")


def test_figures_are_deterministic(full_run: tuple[pd.DataFrame, Path, list[Path]],
                                   tmp_path: Path) -> None:
    df, _, first = full_run
    again = plot_run(df, tmp_path)
    for pa, pb in zip(first, again, strict=True):
        assert pa.name == pb.name
        assert pa.read_bytes() == pb.read_bytes(), pa.name


def test_only_ok_rows_are_drawn(tmp_path: Path) -> None:
    ok = make_results(models=("good",))
    oom = make_results(models=("broken",), status="oom")
    rows = _only(pd.concat([ok, oom], ignore_index=True), "efficiency", "frames_per_s")
    paths = plot_run(rows, tmp_path)
    _check_files(paths, tmp_path, ["throughput_vs_resolution", "throughput_vs_clip_length"])
    text = _svg_text(tmp_path / "throughput_vs_resolution.svg")
    assert "good" in text and "broken" not in text


def test_nothing_ok_writes_nothing(tmp_path: Path) -> None:
    assert plot_run(make_results(status="error"), tmp_path) == []


def test_single_point_does_not_crash(tmp_path: Path) -> None:
    df = make_results(models=("only",), sizes=((64, 64),), frames=(17,))
    paths = plot_run(df, tmp_path)
    _check_files(paths, tmp_path, FIGURES)
    text = _svg_text(tmp_path / "memory_vs_clip_length.svg")
    assert "64x64 (largest resolution)" in text and "only" in text


def test_quality_only(tmp_path: Path) -> None:
    df = make_results(models=("m",), sizes=((64, 64), (128, 128)), frames=(5, 9))
    paths = plot_run(_only(df, "quality"), tmp_path)
    _check_files(paths, tmp_path, ["quality_vs_resolution", "quality_vs_clip_length"])


def test_infinite_psnr_is_noted_not_drawn(tmp_path: Path) -> None:
    def psnr(model: str, h: int, w: int, t: int) -> float:
        return math.inf if model == "identity" else 30.0

    df = make_results(models=("identity", "vae"), psnr=psnr)
    plot_run(_only(df, "quality"), tmp_path)
    text = _svg_text(tmp_path / "quality_vs_resolution.svg")
    assert "3 infinite value(s) not drawn" in text  # 3 sizes at the fixed 33 frames


def test_several_dtypes_get_their_own_lines(tmp_path: Path) -> None:
    df = make_results(models=("m",), dtypes=("float32", "bfloat16"))
    plot_run(_only(df, "efficiency", "frames_per_s"), tmp_path)
    text = _svg_text(tmp_path / "throughput_vs_clip_length.svg")
    assert "m (dtype=bfloat16)" in text and "m (dtype=float32)" in text


def test_fixed_axis_prefers_a_swept_setting(tmp_path: Path) -> None:
    # 65 frames only at one resolution: the resolution figure uses 33 frames instead.
    grid = make_results(models=("m",), sizes=((64, 64), (128, 128)), frames=(17, 33))
    extra = make_results(models=("m",), sizes=((64, 64),), frames=(65,))
    rows = _only(pd.concat([grid, extra], ignore_index=True), "efficiency", "peak_rss_mb")
    plot_run(rows, tmp_path)
    assert "at 33 frames (largest clip length swept)" in _svg_text(
        tmp_path / "memory_vs_resolution.svg")
    assert "at 128x128" in _svg_text(tmp_path / "memory_vs_clip_length.svg")


def test_cuda_rows_draw_the_allocator_peak(tmp_path: Path) -> None:
    df = make_results(models=("m",), device="NVIDIA H100 80GB HBM3")
    paths = plot_run(_only(df, "efficiency"), tmp_path)
    assert tmp_path / "memory_vs_resolution.svg" in paths
    assert "CUDA allocator" in _svg_text(tmp_path / "memory_vs_resolution.svg")


def test_missing_column_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lacks column.*status"):
        plot_run(make_results().drop(columns=["status"]), tmp_path)


def test_duplicate_points_warn(tmp_path: Path) -> None:
    df = _only(make_results(models=("m",), sizes=((64, 64),), frames=(5, 9)), "quality")
    with pytest.warns(UserWarning, match="several rows at one"):
        plot_run(pd.concat([df, df], ignore_index=True), tmp_path)
