"""The memory-growth fit (memory ~ frames**k) on efficiency rows shaped as the runner writes
them: CUDA allocator peak on GPU cells, RSS growth on CPU cells, each row saying which."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vae_bench.cli import print_memory_growth
from vae_bench.report.memory import describe, memory_growth_exponent, memory_growth_table

CPU_NAME = "AMD EPYC 9654"
GPU_NAME = "NVIDIA H100 80GB HBM3"
PROCESS_MB = 900.0  # interpreter, libraries and weights: in the peak RSS of every phase
Memory = Callable[[int], float]


def _cells(model: str, device: str, frames: tuple[int, ...], *, growth: Memory,
           allocated: Memory | None = None, status: str = "ok") -> list[dict]:
    """Efficiency rows of one model at 64x64, one cell per clip length, every phase.

    ``growth`` is the phase's RSS growth; the peak RSS adds the process's fixed memory.
    Without ``allocated`` (a CPU cell) the CUDA metrics are ``unavailable`` rows.
    """
    rows = []
    for t in frames:
        cell = dict(cell=f"{model}-{device}-{t}", kind="efficiency", model=model, height=64,
                    width=64, frames=t, batch_size=1, dtype="float32", mode="full",
                    device=device, status=status, unit="MiB")  # fmt: skip
        for phase in ("encode", "decode", "roundtrip"):
            values = {"latency_s": 0.01 * t, "peak_rss_mb": PROCESS_MB + growth(t),
                      "rss_growth_mb": growth(t),
                      "peak_allocated_mb": allocated(t) if allocated else math.nan}
            for metric, value in values.items():
                unmeasured = metric == "peak_allocated_mb" and allocated is None
                rows.append(dict(cell, phase=phase, metric=metric, value=value,
                                 status="unavailable" if unmeasured else status))
    return rows


FRAMES = (5, 9, 17, 33, 65)


def test_cpu_cells_fit_the_rss_growth_not_the_process_peak() -> None:
    df = pd.DataFrame(_cells("linear", CPU_NAME, FRAMES, growth=lambda t: 2.0 * t)
                      + _cells("sqrt", CPU_NAME, FRAMES, growth=lambda t: 8.0 * t**0.5))
    out = memory_growth_exponent(df, "decode")
    assert out["model"].tolist() == ["linear", "sqrt"]
    np.testing.assert_allclose(out["exponent"], [1.0, 0.5], rtol=1e-9)
    assert set(out["metric"]) == {"rss_growth_mb"}
    assert set(out["n_points"]) == {5}
    assert set(out["frames_min"]) == {5} and set(out["frames_max"]) == {65}


def test_gpu_cells_fit_the_allocator_peak() -> None:
    gpu = _cells("m", GPU_NAME, FRAMES, growth=lambda t: float(t) ** 2,  # a distractor
                 allocated=lambda t: 10.0 * t**0.5)
    cpu = _cells("m", CPU_NAME, FRAMES, growth=lambda t: 3.0 * t)
    out = memory_growth_exponent(pd.DataFrame(gpu + cpu), "encode")
    by_device = out.set_index("device")
    assert by_device.loc[GPU_NAME, "metric"] == "peak_allocated_mb"
    assert by_device.loc[GPU_NAME, "exponent"] == pytest.approx(0.5)
    assert by_device.loc[CPU_NAME, "metric"] == "rss_growth_mb"
    assert by_device.loc[CPU_NAME, "exponent"] == pytest.approx(1.0)


def test_failed_and_zero_growth_rows_are_left_out() -> None:
    ok = _cells("m", CPU_NAME, (5, 9), growth=lambda t: float(t))
    oom = _cells("m", CPU_NAME, (17,), growth=lambda t: 1e9, status="oom")
    flat = _cells("m", CPU_NAME, (33,), growth=lambda t: 0.0)  # nothing measurable to fit
    out = memory_growth_exponent(pd.DataFrame(ok + oom + flat), "roundtrip")
    assert out["exponent"].iloc[0] == pytest.approx(1.0)
    assert out["n_points"].iloc[0] == 2 and out["frames_max"].iloc[0] == 9


def test_one_clip_length_gives_nan_and_no_table_row() -> None:
    df = pd.DataFrame(_cells("m", CPU_NAME, (17,), growth=lambda t: 5.0))
    out = memory_growth_exponent(df, "encode")
    assert len(out) == 1 and math.isnan(out["exponent"].iloc[0])
    assert len(memory_growth_table(df)) == 0


def test_table_has_encode_and_decode() -> None:
    df = pd.DataFrame(_cells("m", CPU_NAME, FRAMES, growth=lambda t: 2.0 * t))
    table = memory_growth_table(df)
    assert table["phase"].tolist() == ["encode", "decode"]
    np.testing.assert_allclose(table["exponent"], 1.0, rtol=1e-9)


@pytest.mark.parametrize(
    ("change", "match"),
    [({"phase": "train"}, "unknown phase 'train'"),
     ({"drop": "frames"}, "lacks column.s. frames")],
)
def test_bad_input_is_named(change: dict, match: str) -> None:
    df = pd.DataFrame(_cells("m", CPU_NAME, FRAMES, growth=lambda t: 1.0))
    if "drop" in change:
        df = df.drop(columns=change["drop"])
    with pytest.raises(ValueError, match=match):
        memory_growth_exponent(df, change.get("phase", "encode"))


def test_console_table_says_which_memory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gpu = _cells("g", GPU_NAME, FRAMES, growth=lambda t: 1.0, allocated=lambda t: 1.0 * t)
    cpu = _cells("c", CPU_NAME, FRAMES, growth=lambda t: 2.0 * t)
    df = pd.DataFrame(gpu + cpu)
    print_memory_growth(df, tmp_path)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == describe(memory_growth_table(df))
    assert lines[0] == (
        "memory ~ frames**k (peak_allocated_mb = CUDA allocator peak (GPU cells); "
        "rss_growth_mb = host RSS growth over the phase's start (CPU cells)):"
    )
    written = pd.read_csv(tmp_path / "memory_growth.csv")
    assert sorted(set(written["metric"])) == ["peak_allocated_mb", "rss_growth_mb"]
    np.testing.assert_allclose(written["exponent"], 1.0, rtol=1e-9)


def test_nothing_printed_without_two_clip_lengths(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    print_memory_growth(pd.DataFrame(_cells("m", CPU_NAME, (9,), growth=lambda t: 1.0)),
                        tmp_path)
    assert capsys.readouterr().out == ""
    assert not (tmp_path / "memory_growth.csv").exists()
