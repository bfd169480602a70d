"""The efficiency profiler on the CPU: timing statistics, per-phase peak RSS, OOM, NVML."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
import torch

from vae_bench import profile as prof
from vae_bench.profile import PhaseResult, profile_codec, profile_phase

CPU = torch.device("cpu")
MIB = 1024 * 1024
VMHWM_RESETS = prof.reset_peak_rss()


def _codec() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    enc = torch.nn.Conv3d(3, 4, 3, stride=(1, 2, 2), padding=1)
    dec = torch.nn.ConvTranspose3d(4, 3, (3, 4, 4), stride=(1, 2, 2), padding=1)
    return enc, dec


def test_cpu_timing_statistics() -> None:
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    x = torch.randn(2, 3, 32, 32)
    calls = []

    def fn() -> torch.Tensor:
        calls.append(1)
        with torch.no_grad():
            return conv(x)

    r = profile_phase("encode", fn, device=CPU, warmup=2, repeats=5, frames=6, clips=2)
    assert r.status == "ok" and r.message == ""
    assert len(calls) == 2 + 5
    assert len(r.times_s) == 5 and all(t > 0 for t in r.times_s)
    assert min(r.times_s) <= r.p10_s <= r.median_s <= r.p90_s <= max(r.times_s)
    times = np.asarray(r.times_s)
    assert r.median_s == pytest.approx(float(np.median(times)))
    assert r.p10_s == pytest.approx(float(np.percentile(times, 10, method="linear")))
    assert r.p90_s == pytest.approx(float(np.percentile(times, 90, method="linear")))
    assert r.frames_per_s == pytest.approx(6 / r.median_s)
    assert r.clips_per_s == pytest.approx(2 / r.median_s)
    assert r.peak_allocated_bytes is None and r.peak_reserved_bytes is None
    assert r.nvml_used_bytes is None


def test_profile_codec_phases_and_counts() -> None:
    enc, dec = _codec()
    video = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    results = profile_codec(enc, dec, video, warmup=1, repeats=3)
    assert [r.phase for r in results] == ["encode", "decode", "roundtrip"]
    for r in results:
        assert r.status == "ok", r.message
        assert len(r.times_s) == 3
        assert r.frames_per_s == pytest.approx(2 * 5 / r.median_s)
        assert r.clips_per_s == pytest.approx(2 / r.median_s)


def test_profile_codec_does_not_build_autograd_graphs() -> None:
    enc, dec = _codec()
    seen = []

    def encode(v: torch.Tensor) -> torch.Tensor:
        z = enc(v)
        seen.append(z.requires_grad)
        return z

    profile_codec(encode, dec, torch.zeros(1, 3, 1, 8, 8), warmup=0, repeats=1)
    assert seen and not any(seen)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(phase="train"), "unknown phase 'train'"),
        (dict(repeats=0), "repeats >= 1"),
        (dict(warmup=-1), "warmup >= 0"),
        (dict(frames=0), "frames >= 1"),
        (dict(device=torch.device("meta")), "unsupported device type 'meta'"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, match: str) -> None:
    args = dict(phase="encode", device=CPU, warmup=0, repeats=1, frames=1, clips=1)
    args.update(kwargs)
    phase = args.pop("phase")
    with pytest.raises(ValueError, match=match):
        profile_phase(phase, lambda: None, **args)


def test_profile_codec_rejects_non_video() -> None:
    with pytest.raises(ValueError, match=r"\[B, C, T, H, W\].*\[3, 8, 8\]"):
        profile_codec(lambda v: v, lambda z: z, torch.zeros(3, 8, 8))


# --------------------------------------------------------------------------- peak RSS


@pytest.mark.skipif(not VMHWM_RESETS, reason="/proc/self/clear_refs not writable here")
def test_peak_rss_is_reset_per_phase() -> None:
    size = 200 * MIB

    def big() -> int:
        buf = np.ones(size, dtype=np.uint8)  # np.ones writes every page: all resident
        return int(buf[::4096].sum())

    def tiny() -> int:
        return int(np.ones(16, dtype=np.uint8).sum())

    kw = dict(device=CPU, warmup=0, repeats=1, frames=1, clips=1)
    r_big = profile_phase("encode", big, **kw)
    r_tiny = profile_phase("decode", tiny, **kw)
    assert r_big.rss_method == r_tiny.rss_method == prof.RSS_VMHWM
    assert r_big.peak_rss_bytes is not None and r_tiny.peak_rss_bytes is not None
    # The buffer is freed after the first phase; only a reset peak counter can drop back.
    assert r_big.peak_rss_bytes - r_tiny.peak_rss_bytes >= 0.95 * size
    current = prof.memory_snapshot(CPU)["rss_bytes"]
    assert current is not None and r_tiny.peak_rss_bytes >= current * 0.9


@pytest.mark.skipif(not VMHWM_RESETS, reason="/proc/self/clear_refs not writable here")
def test_rss_growth_is_the_phase_own_memory() -> None:
    """Growth = peak minus the RSS at the phase's start: a phase holding one buffer grows
    by that buffer, whatever the process held before, and a phase that allocates nothing
    grows by (almost) nothing."""
    size = 96 * MIB
    resident = np.ones(3 * size, dtype=np.uint8)  # held by the process through both phases

    def holds_buffer() -> int:
        buf = np.ones(size, dtype=np.uint8)
        return int(buf[::4096].sum())

    kw = dict(device=CPU, warmup=0, repeats=1, frames=1, clips=1)
    grows = profile_phase("encode", holds_buffer, **kw)
    idle = profile_phase("decode", lambda: 0, **kw)
    assert grows.start_rss_bytes is not None and grows.start_rss_bytes >= resident.nbytes
    assert grows.rss_growth_bytes is not None and idle.rss_growth_bytes is not None
    assert 0.95 * size <= grows.rss_growth_bytes <= 1.25 * size
    assert idle.rss_growth_bytes < 0.05 * size
    assert grows.peak_rss_bytes == grows.start_rss_bytes + grows.rss_growth_bytes
    del resident


def test_rss_growth_needs_both_readings() -> None:
    result = prof._nan_result("encode", "skipped", "not run", peak_rss_bytes=5 * MIB)
    assert result.rss_growth_bytes is None


def test_rss_falls_back_to_getrusage_only_when_the_phase_raised_the_maximum(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prof, "_CLEAR_REFS", "/nonexistent/clear_refs")
    readings = iter([100 * MIB, 150 * MIB, 150 * MIB, 150 * MIB])
    monkeypatch.setattr(prof, "_ru_maxrss_bytes", lambda: next(readings))
    kw = dict(device=CPU, warmup=0, repeats=1, frames=1, clips=1)
    grew = profile_phase("encode", lambda: None, **kw)
    assert grew.rss_method == prof.RSS_GETRUSAGE and grew.peak_rss_bytes == 150 * MIB
    flat = profile_phase("encode", lambda: None, **kw)
    assert flat.rss_method == prof.RSS_GETRUSAGE and flat.peak_rss_bytes is None


def test_rss_is_none_without_any_method(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prof, "_CLEAR_REFS", "/nonexistent/clear_refs")
    monkeypatch.setattr(prof, "_ru_maxrss_bytes", lambda: None)
    r = profile_phase("encode", lambda: None, device=CPU, warmup=0, repeats=1, frames=1,
                      clips=1)
    assert r.status == "ok" and r.rss_method == prof.RSS_NONE and r.peak_rss_bytes is None


# --------------------------------------------------------------------------- OOM


def _raiser(exc: BaseException, after: int = 0):
    calls = {"n": 0}

    def fn() -> None:
        calls["n"] += 1
        if calls["n"] > after:
            raise exc

    return fn


@pytest.mark.parametrize(
    "exc",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        MemoryError(),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 bytes"),
        RuntimeError("CUDA error: out of memory"),
    ],
)
@pytest.mark.parametrize("after", [0, 2])  # in the warm-up, or in a timed repeat
def test_injected_oom_is_a_result(exc: BaseException, after: int) -> None:
    r = profile_phase("decode", _raiser(exc, after), device=CPU, warmup=1, repeats=3,
                      frames=4, clips=1, input_desc="[1, 4, 2, 8, 8] float32 on cpu")
    assert isinstance(r, PhaseResult)
    assert r.status == "oom"
    assert r.message.startswith("decode: out of memory with input [1, 4, 2, 8, 8] float32")
    assert type(exc).__name__ in r.message
    assert r.times_s == ()
    assert all(math.isnan(v) for v in (r.median_s, r.p10_s, r.p90_s, r.frames_per_s,
                                       r.clips_per_s))


def test_real_host_allocation_failure_is_oom() -> None:
    def huge() -> torch.Tensor:
        return torch.empty(2**50, dtype=torch.uint8)  # 1 PiB: refused at once

    r = profile_phase("encode", huge, device=CPU, warmup=0, repeats=1, frames=1, clips=1)
    assert r.status == "oom" and "DefaultCPUAllocator" in r.message


@pytest.mark.parametrize("exc", [RuntimeError("shape mismatch"), ValueError("bad")])
def test_other_errors_propagate(exc: Exception) -> None:
    with pytest.raises(type(exc), match=str(exc)):
        profile_phase("encode", _raiser(exc), device=CPU, warmup=0, repeats=1, frames=1,
                      clips=1)


def test_codec_encode_oom_skips_the_rest_with_shapes_named() -> None:
    video = torch.zeros(1, 3, 5, 16, 16)
    results = profile_codec(_raiser_on_input(MemoryError()), lambda z: z, video,
                            warmup=0, repeats=1)
    enc, dec, rt = results
    assert enc.status == "oom"
    assert "encode: out of memory with input [1, 3, 5, 16, 16] float32 on cpu" in enc.message
    assert dec.status == rt.status == "skipped"
    assert "encode did not finish (oom)" in dec.message


def test_codec_decode_oom_names_the_latent() -> None:
    enc, _ = _codec()
    video = torch.zeros(1, 3, 5, 16, 16)
    results = profile_codec(enc, _raiser_on_input(torch.cuda.OutOfMemoryError("boom")), video,
                            warmup=0, repeats=2)
    assert [r.status for r in results] == ["ok", "oom", "oom"]
    assert "decode: out of memory with input [1, 4, 5, 8, 8] float32" in results[1].message
    assert "roundtrip: out of memory with input [1, 3, 5, 16, 16]" in results[2].message


def _raiser_on_input(exc: BaseException):
    def fn(x: torch.Tensor) -> torch.Tensor:
        raise exc

    return fn


# --------------------------------------------------------------------------- NVML


def test_nvml_absent_gives_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    nvml = prof._Nvml(torch.device("cuda", 0))
    assert nvml.used() is None and nvml.memory() is None
    nvml.close()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_nvml_without_driver_gives_none() -> None:
    pytest.importorskip("pynvml")
    nvml = prof._Nvml(torch.device("cuda", 0))
    assert nvml.used() is None
    nvml.close()


def test_nvml_cpu_device_is_not_queried(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_pynvml(used=1)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert prof._Nvml(CPU).used() is None
    assert fake.inits == 0


class _FakeNVMLError(Exception):
    pass


def _fake_pynvml(used: int, fail_query: bool = False) -> types.SimpleNamespace:
    fake = types.SimpleNamespace(NVMLError=_FakeNVMLError, inits=0, shutdowns=0, asked=[])

    def init() -> None:
        fake.inits += 1

    def shutdown() -> None:
        fake.shutdowns += 1

    def by_uuid(uuid: str) -> str:
        raise _FakeNVMLError("not found")

    def by_index(i: int) -> str:
        fake.asked.append(i)
        return f"handle{i}"

    def info(handle: str) -> types.SimpleNamespace:
        if fail_query:
            raise _FakeNVMLError("query failed")
        return types.SimpleNamespace(used=used, total=10 * used)

    fake.nvmlInit, fake.nvmlShutdown = init, shutdown
    fake.nvmlDeviceGetHandleByUUID, fake.nvmlDeviceGetHandleByIndex = by_uuid, by_index
    fake.nvmlDeviceGetMemoryInfo = info
    return fake


def test_nvml_reads_device_memory_and_honours_visible_devices(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_pynvml(used=123 * MIB)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    nvml = prof._Nvml(torch.device("cuda", 1))
    assert nvml.used() == 123 * MIB and nvml.memory() == (123 * MIB, 1230 * MIB)
    assert fake.asked == [3]  # torch's cuda:1 is the driver's device 3
    nvml.close()
    assert fake.inits == fake.shutdowns == 1


def test_nvml_query_error_gives_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(used=1, fail_query=True))
    nvml = prof._Nvml(torch.device("cuda", 0))
    assert nvml.used() is None
    nvml.close()


def test_memory_snapshot_on_cpu() -> None:
    snap = prof.memory_snapshot(CPU)
    assert snap["cuda_allocated_bytes"] is None and snap["nvml_used_bytes"] is None
    if VMHWM_RESETS:
        assert snap["rss_bytes"] is not None and snap["rss_bytes"] > 0
        assert snap["rss_peak_bytes"] >= snap["rss_bytes"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_phase_reports_allocator_peaks() -> None:
    dev = torch.device("cuda")
    n = 64 * MIB

    def fn() -> torch.Tensor:
        return torch.ones(n, dtype=torch.uint8, device=dev).sum()

    r = profile_phase("encode", fn, device=dev, warmup=1, repeats=2, frames=1, clips=1)
    assert r.status == "ok" and len(r.times_s) == 2
    assert r.peak_allocated_bytes is not None and r.peak_allocated_bytes >= n
    assert r.peak_reserved_bytes is not None and r.peak_reserved_bytes >= r.peak_allocated_bytes
