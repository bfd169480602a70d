"""Throughput and peak memory of a video VAE's encode, decode and round trip.

Each phase is timed on its own so that a slow decoder is not hidden behind a fast encoder:
warm-up calls first (kernel selection, allocator growth, lazy initialisation), then timed
repeats. On CUDA the repeats are timed with CUDA events between device synchronisations
(host clocks would time the kernel launches, not the kernels); on the CPU with
``time.perf_counter``.

Peak memory is taken per phase, over its warm-up and repeats:

* CUDA allocator: ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` after
  ``reset_peak_memory_stats`` (the cache is emptied first, so *reserved* is the phase's own).
* NVML: device memory in use as the driver sees it, sampled after every call. The caching
  allocator keeps its blocks until ``empty_cache``, so the largest sample covers the phase's
  reserved peak plus the CUDA context and anything else on the device.
* Host: the process's peak resident set size (``VmHWM``), reset before the phase by writing
  ``5`` to ``/proc/self/clear_refs``. Where that is not possible, ``getrusage``'s lifetime
  maximum is used only when the phase raised it (then it *is* the phase's peak), else
  ``None``; :attr:`PhaseResult.rss_method` says which. The peak includes everything the
  process already holds (interpreter, libraries, weights), so the RSS at the phase's start
  is kept too: their difference, the phase's *growth*, is what the phase itself needed.
  Before the reset, glibc is asked to return freed heap pages (``malloc_trim``): otherwise
  memory a bigger earlier cell freed stays resident, inflates the baseline and hides the
  growth of the next phase, which reuses it.

Running out of memory is a result, not a crash: the phase gets status ``oom`` with a
message naming the phase, device and input, and the memory is released before returning.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

PHASES: tuple[str, ...] = ("encode", "decode", "roundtrip")
STATUSES: tuple[str, ...] = ("ok", "oom", "error", "skipped")

#: numpy.percentile method for p10/p90 (linear interpolation between order statistics,
#: Hyndman & Fan type 7, numpy's default).
PERCENTILE_METHOD = "linear"

#: Values of :attr:`PhaseResult.rss_method`.
RSS_VMHWM = "vmhwm"  # /proc/self/status VmHWM after a reset through /proc/self/clear_refs
RSS_GETRUSAGE = "getrusage"  # lifetime maximum, reported only when the phase raised it
RSS_NONE = "none"  # no way to measure the phase's own peak on this platform

_CLEAR_REFS = "/proc/self/clear_refs"
_PROC_STATUS = "/proc/self/status"
_HOST_OOM_MARKERS = ("out of memory", "DefaultCPUAllocator: can't allocate memory")


@dataclass(frozen=True)
class PhaseResult:
    """Timing and memory of one phase; times in seconds, memory in bytes.

    ``status`` is ``ok``, ``oom`` (ran out of device or host memory), ``error`` or
    ``skipped`` (not run because an earlier phase it depends on did not finish; the
    message says which). The statistics are ``nan`` unless ``ok``; the memory peaks of an
    ``oom`` phase are those reached before it failed.
    """

    phase: str
    status: str
    message: str
    times_s: tuple[float, ...]
    median_s: float
    p10_s: float
    p90_s: float
    frames_per_s: float
    clips_per_s: float
    peak_allocated_bytes: int | None
    peak_reserved_bytes: int | None
    nvml_used_bytes: int | None
    peak_rss_bytes: int | None
    rss_method: str = RSS_NONE
    start_rss_bytes: int | None = None

    @property
    def rss_growth_bytes(self) -> int | None:
        """Peak RSS above the RSS at the phase's start: the phase's own host memory."""
        if self.peak_rss_bytes is None or self.start_rss_bytes is None:
            return None
        return max(0, self.peak_rss_bytes - self.start_rss_bytes)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# --------------------------------------------------------------------------- host RSS


def _read_status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` in bytes, or None without procfs."""
    try:
        with open(_PROC_STATUS, encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _ru_maxrss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kibibytes, macOS bytes.
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (``VmHWM``) of this process; False if impossible."""
    try:
        with open(_CLEAR_REFS, "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    return _read_status_kib("VmHWM") is not None


def release_free_heap() -> bool:
    """Give freed heap pages back to the OS (glibc ``malloc_trim(0)``); False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True


class _RssPeak:
    """The process's peak RSS over a stretch of code, by the best method available."""

    def __init__(self) -> None:
        self.method = RSS_NONE
        self._rusage_before: int | None = None
        self.start_bytes: int | None = None

    def start(self) -> None:
        release_free_heap()
        if reset_peak_rss():
            self.method = RSS_VMHWM
            self.start_bytes = _read_status_kib("VmRSS")
            return
        self._rusage_before = _ru_maxrss_bytes()
        self.method = RSS_GETRUSAGE if self._rusage_before is not None else RSS_NONE

    def peak(self) -> int | None:
        if self.method == RSS_VMHWM:
            return _read_status_kib("VmHWM")
        if self.method == RSS_GETRUSAGE:
            after = _ru_maxrss_bytes()
            before = self._rusage_before
            # A lifetime maximum that grew was reached during the phase; one that did not
            # only bounds the phase's peak from above, which is not what is reported.
            if after is not None and before is not None and after > before:
                return after
        return None


# --------------------------------------------------------------------------- NVML


class _Nvml:
    """Device memory in use according to NVML; every call is a no-op without NVML or a GPU."""

    def __init__(self, device: torch.device) -> None:
        self._nvml: Any = None
        self._handle: Any = None
        if device.type != "cuda":
            return
        try:
            import pynvml
        except ImportError:
            return
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError:
            return
        self._nvml = pynvml
        try:
            self._handle = _nvml_handle(pynvml, device)
        except (pynvml.NVMLError, RuntimeError, AssertionError, ValueError):
            self.close()

    def memory(self) -> tuple[int, int] | None:
        """(used, total) bytes of the device, or None."""
        if self._handle is None:
            return None
        try:
            info = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
        except self._nvml.NVMLError:
            return None
        return int(info.used), int(info.total)

    def used(self) -> int | None:
        mem = self.memory()
        return None if mem is None else mem[0]

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass
        self._nvml = None
        self._handle = None


def _nvml_handle(pynvml: Any, device: torch.device) -> Any:
    """NVML handle of a torch CUDA device, matched by UUID so CUDA_VISIBLE_DEVICES is honoured."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    try:
        uuid = str(torch.cuda.get_device_properties(index).uuid)
    except Exception:  # no driver, a build without CUDA, an old torch without .uuid
        uuid = ""
    if uuid:
        prefixed = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(prefixed)
        except pynvml.NVMLError:
            pass
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if visible:
        entries = [e.strip() for e in visible.split(",") if e.strip()]
        if index < len(entries) and entries[index].isdigit():
            index = int(entries[index])
    return pynvml.nvmlDeviceGetHandleByIndex(index)


# --------------------------------------------------------------------------- helpers


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _HOST_OOM_MARKERS)


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def describe_tensor(x: Tensor) -> str:
    """``[1, 3, 17, 64, 64] float32 on cuda:0``: how a phase's input is named in messages."""
    dtype = str(x.dtype).removeprefix("torch.")
    return f"{list(x.shape)} {dtype} on {x.device}"


def _check_device(device: torch.device) -> None:
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} asked for, but CUDA is not available")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device type {device.type!r}; allowed: cpu, cuda")


def _nan_result(phase: str, status: str, message: str, **memory: Any) -> PhaseResult:
    nan = math.nan
    fields = dict(
        peak_allocated_bytes=None, peak_reserved_bytes=None, nvml_used_bytes=None,
        peak_rss_bytes=None, rss_method=RSS_NONE,
    )
    fields.update(memory)
    return PhaseResult(phase, status, message, (), nan, nan, nan, nan, nan, **fields)


# --------------------------------------------------------------------------- profiling


def profile_phase(
    phase: str,
    fn: Callable[[], object],
    *,
    device: torch.device,
    warmup: int,
    repeats: int,
    frames: int,
    clips: int,
    input_desc: str = "",
) -> PhaseResult:
    """Time ``fn`` (``warmup`` untimed calls, then ``repeats`` timed ones) and take its peaks.

    ``frames`` and ``clips`` are the work done by one call (``B*T`` and ``B``); the rates
    are taken from the median time. ``input_desc`` names the input in an OOM message.
    Out-of-memory errors become status ``oom``; any other exception propagates.
    """
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; allowed: {', '.join(PHASES)}")
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, "
                         f"repeats={repeats}")
    if frames < 1 or clips < 1:
        raise ValueError(f"need frames >= 1 and clips >= 1, got frames={frames}, clips={clips}")
    device = torch.device(device)
    _check_device(device)
    cuda = device.type == "cuda"

    _release(device)
    nvml = _Nvml(device)
    rss = _RssPeak()
    nvml_peak: int | None = None
    times: list[float] = []
    failure = ""

    def sample_nvml() -> None:
        nonlocal nvml_peak
        used = nvml.used()
        if used is not None:
            nvml_peak = used if nvml_peak is None else max(nvml_peak, used)

    try:
        with torch.cuda.device(device) if cuda else contextlib.nullcontext():
            if cuda:
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            rss.start()
            try:
                for i in range(warmup + repeats):
                    if cuda:
                        start = torch.cuda.Event(enable_timing=True)
                        end = torch.cuda.Event(enable_timing=True)
                        torch.cuda.synchronize(device)
                        start.record()
                        out = fn()
                        end.record()
                        torch.cuda.synchronize(device)
                        elapsed = start.elapsed_time(end) / 1e3
                        sample_nvml()
                    else:
                        t0 = time.perf_counter()
                        out = fn()
                        elapsed = time.perf_counter() - t0
                    del out
                    if i >= warmup:
                        times.append(elapsed)
            except Exception as exc:  # only running out of memory is a result; re-raise the rest
                if not _is_oom(exc):
                    raise
                where = f" with input {input_desc}" if input_desc else f" on {device}"
                failure = f"{phase}: out of memory{where} ({_first_line(exc)})"
            if cuda:
                sample_nvml()
                peak_alloc: int | None = int(torch.cuda.max_memory_allocated(device))
                peak_res: int | None = int(torch.cuda.max_memory_reserved(device))
            else:
                peak_alloc = peak_res = None
            memory = dict(
                peak_allocated_bytes=peak_alloc, peak_reserved_bytes=peak_res,
                nvml_used_bytes=nvml_peak, peak_rss_bytes=rss.peak(), rss_method=rss.method,
                start_rss_bytes=rss.start_bytes,
            )
    finally:
        nvml.close()

    if failure:
        _release(device)
        return _nan_result(phase, "oom", failure, **memory)

    arr = np.asarray(times, dtype=np.float64)
    median = float(np.median(arr))
    p10, p90 = (float(v) for v in np.percentile(arr, [10, 90], method=PERCENTILE_METHOD))
    # A clock too coarse for a trivial fn can give 0 s; the rate is then unbounded.
    frames_per_s = frames / median if median > 0 else math.inf
    clips_per_s = clips / median if median > 0 else math.inf
    return PhaseResult(
        phase=phase, status="ok", message="", times_s=tuple(float(t) for t in times),
        median_s=median, p10_s=p10, p90_s=p90,
        frames_per_s=frames_per_s, clips_per_s=clips_per_s, **memory,
    )


def profile_codec(
    encode: Callable[[Tensor], Tensor],
    decode: Callable[[Tensor], Tensor],
    video: Tensor,
    *,
    warmup: int = 1,
    repeats: int = 3,
) -> list[PhaseResult]:
    """Profile ``encode(video)``, ``decode(latent)`` and ``decode(encode(video))`` in turn.

    Runs under ``torch.inference_mode`` on ``video``'s device. The latent for the decode
    phase comes from one extra, untimed ``encode`` call. When encoding runs out of memory
    there is no latent, so decode and round trip are reported as ``skipped``.
    """
    if video.ndim != 5:
        raise ValueError(f"video must be [B, C, T, H, W], got shape {list(video.shape)}")
    batch, _, length = video.shape[:3]
    common = dict(device=video.device, warmup=warmup, repeats=repeats,
                  frames=int(batch * length), clips=int(batch))
    results: list[PhaseResult] = []
    with torch.inference_mode():
        enc = profile_phase("encode", lambda: encode(video), input_desc=describe_tensor(video),
                            **common)
        results.append(enc)
        latent: Tensor | None = None
        failure = ""
        if enc.ok:
            try:
                latent = encode(video)
            except Exception as exc:  # only running out of memory is a result
                if not _is_oom(exc):
                    raise
                failure = (f"encode (for the decode input): out of memory with input "
                           f"{describe_tensor(video)} ({_first_line(exc)})")
            if failure:
                _release(video.device)
        else:
            failure = f"encode did not finish ({enc.status})"
        if latent is None:
            why = f"not run: {failure}"
            results.append(_nan_result("decode", "skipped", why))
            results.append(_nan_result("roundtrip", "skipped", why))
            return results
        results.append(profile_phase("decode", lambda z=latent: decode(z),
                                     input_desc=describe_tensor(latent), **common))
        del latent
        _release(video.device)
        results.append(profile_phase("roundtrip", lambda: decode(encode(video)),
                                     input_desc=describe_tensor(video), **common))
    return results


def memory_snapshot(device: torch.device | str | None = None) -> dict[str, int | None]:
    """Memory in use right now (bytes): host RSS and its peak, CUDA allocator, NVML.

    Entries that cannot be measured here are None. ``device`` defaults to the current
    CUDA device when there is one.
    """
    snap: dict[str, int | None] = {
        "rss_bytes": _read_status_kib("VmRSS"),
        "rss_peak_bytes": _read_status_kib("VmHWM"),
        "cuda_allocated_bytes": None,
        "cuda_reserved_bytes": None,
        "nvml_used_bytes": None,
        "nvml_total_bytes": None,
    }
    if device is None:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return snap
    snap["cuda_allocated_bytes"] = int(torch.cuda.memory_allocated(device))
    snap["cuda_reserved_bytes"] = int(torch.cuda.memory_reserved(device))
    nvml = _Nvml(device)
    try:
        mem = nvml.memory()
    finally:
        nvml.close()
    if mem is not None:
        snap["nvml_used_bytes"], snap["nvml_total_bytes"] = mem
    return snap
