"""The efficiency profiler: timing against a fake clock, per-phase peak RSS, OOM, NVML, and
the CUDA branch over a simulated torch.cuda (events, allocator peaks) on the CPU."""

from __future__ import annotations

import contextlib
import math
import sys
import types
from collections.abc import Callable, Iterator

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


class _FakeClock:
    """A ``time`` module whose ``perf_counter`` moves only when a timed call advances it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_cpu_latency_is_the_time_spent_in_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each timed repeat measures exactly the time its call took (warm-ups excluded)."""
    clock = _FakeClock()
    monkeypatch.setattr(prof, "time", clock)
    durations = iter([4.0, 2.0, 0.5, 0.25, 1.0, 8.0])  # the first two are warm-ups

    def fn() -> None:
        clock.advance(next(durations))

    r = profile_phase("encode", fn, device=CPU, warmup=2, repeats=4, frames=8, clips=2)
    assert r.times_s == (0.5, 0.25, 1.0, 8.0)
    assert r.median_s == 0.75
    # type 7 percentiles of the sorted times 0.25, 0.5, 1, 8: 0.25 + 0.3 * 0.25 and 1 + 0.7 * 7
    assert (r.p10_s, r.p90_s) == pytest.approx((0.325, 5.9), rel=1e-12)
    assert r.frames_per_s == 8 / 0.75 and r.clips_per_s == 2 / 0.75


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


def _fake_pynvml(used: int | Callable[[], int], fail_query: bool = False
                 ) -> types.SimpleNamespace:
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
        now = used() if callable(used) else used
        return types.SimpleNamespace(used=now, total=10 * now)

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


# --------------------------------------------------------------------------- CUDA branch


class _FakeEvent:
    """A CUDA event: its time is known only once a synchronisation has passed its record."""

    def __init__(self, cuda: _FakeCuda, enable_timing: bool = False) -> None:
        self.cuda, self.timing, self.time_ms = cuda, enable_timing, None

    def record(self) -> None:
        self.time_ms = None
        self.cuda.queue.append(self)

    def elapsed_time(self, end: _FakeEvent) -> float:
        if not (self.timing and end.timing):
            raise RuntimeError("Both events must be created with argument 'enable_timing=True'")
        if self.time_ms is None or end.time_ms is None:
            raise RuntimeError("Both events must be completed before calculating elapsed time")
        return end.time_ms - self.time_ms


class _FakeCuda:
    """The parts of ``torch.cuda`` the profiler calls, over a simulated device.

    Kernels are asynchronous: ``launch`` queues work and only ``synchronize`` runs the queue,
    moving the device clock and stamping the events recorded in it. The caching allocator
    keeps freed blocks reserved until ``empty_cache``; peaks count from the last reset.
    """

    OutOfMemoryError = torch.cuda.OutOfMemoryError

    def __init__(self) -> None:
        self.allocated = self.reserved = self.peak_allocated = self.peak_reserved = 0
        self.clock_ms = 0.0
        self.queue: list[float | _FakeEvent] = []

    def malloc(self, nbytes: int) -> None:
        self.allocated += nbytes
        self.reserved = max(self.reserved, self.allocated)
        self.peak_allocated = max(self.peak_allocated, self.allocated)
        self.peak_reserved = max(self.peak_reserved, self.reserved)

    def free(self, nbytes: int) -> None:
        self.allocated -= nbytes

    def launch(self, ms: float) -> None:
        self.queue.append(ms)

    # torch.cuda's API
    def is_available(self) -> bool:
        return True

    def device(self, device: torch.device) -> contextlib.nullcontext:
        return contextlib.nullcontext()

    def synchronize(self, device: torch.device | None = None) -> None:
        for item in self.queue:
            if isinstance(item, _FakeEvent):
                item.time_ms = self.clock_ms
            else:
                self.clock_ms += item
        self.queue.clear()

    def Event(self, enable_timing: bool = False) -> _FakeEvent:  # noqa: N802 (torch's name)
        return _FakeEvent(self, enable_timing)

    def empty_cache(self) -> None:
        self.reserved = self.allocated

    def reset_peak_memory_stats(self, device: torch.device | None = None) -> None:
        self.peak_allocated, self.peak_reserved = self.allocated, self.reserved

    def max_memory_allocated(self, device: torch.device | None = None) -> int:
        return self.peak_allocated

    def max_memory_reserved(self, device: torch.device | None = None) -> int:
        return self.peak_reserved


FAKE_GPU = torch.device("cuda", 0)
NVML_CONTEXT = 300 * MIB  # what the driver sees besides the allocator's reserve
HELD = 100 * MIB  # allocated before the phases (weights) and held throughout


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> _FakeCuda:
    """``torch.cuda`` on a CPU, with NVML reporting the context plus the allocator's reserve."""
    cuda = _FakeCuda()
    for name in ("is_available", "device", "synchronize", "Event", "empty_cache",
                 "reset_peak_memory_stats", "max_memory_allocated", "max_memory_reserved"):
        monkeypatch.setattr(torch.cuda, name, getattr(cuda, name))
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(lambda: NVML_CONTEXT + cuda.reserved))
    cuda.malloc(HELD)
    return cuda


def _kernel(cuda: _FakeCuda, nbytes: int, ms: Iterator[float] | float) -> Callable[[], None]:
    """A call that allocates ``nbytes`` of scratch, queues one kernel and frees the scratch."""

    def fn() -> None:
        cuda.malloc(nbytes)
        cuda.launch(ms if isinstance(ms, float) else next(ms))
        cuda.free(nbytes)

    return fn


def test_cuda_branch_times_kernels_with_events(fake_cuda: _FakeCuda,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Times come from events around the queued kernels, not from the host clock."""
    monkeypatch.setattr(prof, "time", _FakeClock())  # a host clock that never moves
    kernels_ms = iter([40.0, 3.0, 1.5, 6.0])  # the first is the warm-up
    r = profile_phase("encode", _kernel(fake_cuda, MIB, kernels_ms), device=FAKE_GPU,
                      warmup=1, repeats=3, frames=4, clips=1)
    assert r.status == "ok", r.message
    assert r.times_s == (3.0 / 1e3, 1.5 / 1e3, 6.0 / 1e3)
    assert r.frames_per_s == 4 / (3.0 / 1e3)


def test_cuda_branch_peaks_are_each_phase_own(fake_cuda: _FakeCuda) -> None:
    """A small phase after a big one reports its own peaks: the allocator's peak counters
    are reset and its cache emptied before every phase; NVML sees context plus reserve."""
    kw = dict(device=FAKE_GPU, warmup=1, repeats=2, frames=1, clips=1)
    big = profile_phase("encode", _kernel(fake_cuda, 512 * MIB, 2.0), **kw)
    small = profile_phase("decode", _kernel(fake_cuda, 64 * MIB, 1.0), **kw)
    assert big.status == small.status == "ok"
    assert big.peak_allocated_bytes == big.peak_reserved_bytes == HELD + 512 * MIB
    assert small.peak_allocated_bytes == HELD + 64 * MIB
    assert small.peak_reserved_bytes == HELD + 64 * MIB
    assert big.nvml_used_bytes == NVML_CONTEXT + HELD + 512 * MIB
    assert small.nvml_used_bytes == NVML_CONTEXT + HELD + 64 * MIB


def test_cuda_branch_oom_keeps_the_peaks_and_releases_the_cache(fake_cuda: _FakeCuda) -> None:
    def fn() -> None:
        fake_cuda.malloc(256 * MIB)
        fake_cuda.free(256 * MIB)  # the scratch tensor dies as the exception unwinds
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    r = profile_phase("roundtrip", fn, device=FAKE_GPU, warmup=0, repeats=2, frames=1,
                      clips=1, input_desc="[1, 3, 33, 512, 512] float32 on cuda:0")
    assert r.status == "oom"
    assert r.message.startswith("roundtrip: out of memory with input [1, 3, 33, 512, 512]")
    assert r.peak_allocated_bytes == r.peak_reserved_bytes == HELD + 256 * MIB
    assert fake_cuda.reserved == HELD  # the cache is given back before returning


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_phase_reports_allocator_peaks() -> None:
    """Real allocator peaks, each phase's own: a small phase after a big one is not shown
    the big one's peak (which it would be without the per-phase reset)."""
    dev = torch.device("cuda")
    big, small = 256 * MIB, 16 * MIB

    def scratch(n: int) -> Callable[[], torch.Tensor]:
        return lambda: torch.ones(n, dtype=torch.uint8, device=dev).sum()

    kw = dict(device=dev, warmup=1, repeats=2, frames=1, clips=1)
    torch.cuda.synchronize(dev)
    held = torch.cuda.memory_allocated(dev)
    r_big = profile_phase("encode", scratch(big), **kw)
    r_small = profile_phase("decode", scratch(small), **kw)
    for r, n in ((r_big, big), (r_small, small)):
        assert r.status == "ok" and len(r.times_s) == 2 and min(r.times_s) > 0
        assert r.peak_allocated_bytes is not None and r.peak_allocated_bytes >= held + n
        assert r.peak_reserved_bytes is not None
        assert r.peak_reserved_bytes >= r.peak_allocated_bytes
    assert r_small.peak_allocated_bytes < held + big // 2
    assert r_small.peak_reserved_bytes < torch.cuda.memory_reserved(dev) + big // 2
