"""Models and files that fail on purpose, for the fault-injection tests.

The models are the toy pooling VAE of ``tests/toy_vae.py`` with one fault each, chosen
by the clip they are given, so a sweep can put a failing cell next to working ones.
"""

from __future__ import annotations

import weakref
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import torch

from tests.toy_vae import PoolVAE
from vae_bench.adapters import FrameRule, InferenceMode, Preset, register

# Weak references to the working tensors of failed calls: the runner must have let them
# go before the next cell runs.
FAILED_CALL_TENSORS: list[weakref.ref] = []


class FaultyVAE(PoolVAE):
    """``config["fault"]``: ``cuda_oom`` / ``host_oom`` / ``memory_error`` from height
    ``config["fail_from"]`` up; ``nan`` / ``inf`` in the reconstruction of every clip
    whose mean is above ``config["poison_above"]``; ``load_oom`` when moved to the device;
    ``frame_rule``: only ``8k`` frames."""

    def __init__(self, name: str, factor: int, config: dict) -> None:
        super().__init__(name, factor)
        self.config = config
        if config.get("fault") == "frame_rule":
            self.spec = replace(self.spec, frame_rule=FrameRule(step=8, offset=0))

    def to(self, device=None, dtype=None) -> FaultyVAE:
        if self.config.get("fault") == "load_oom":  # the weights do not fit on the device
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 6.00 GiB")
        return super().to(device, dtype)

    def _encode(self, video: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        fault = self.config.get("fault")
        if fault in ("cuda_oom", "host_oom", "memory_error"):
            if video.shape[-2] >= self.config["fail_from"]:
                work = torch.empty(video.shape, dtype=video.dtype)  # held by this frame
                FAILED_CALL_TENSORS.append(weakref.ref(work))
                if fault == "cuda_oom":
                    raise torch.OutOfMemoryError(
                        "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.10 GiB "
                        "total capacity)"
                    )
                if fault == "memory_error":
                    raise MemoryError()
                torch.empty(1 << 62, dtype=torch.uint8)  # a real host allocation failure
        return super()._encode(video, mode)

    def _decode(self, latent: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        out = super()._decode(latent, mode)
        fault = self.config.get("fault")
        if fault in ("nan", "inf"):
            poisoned = out.flatten(1).mean(dim=1) > self.config["poison_above"]
            out[poisoned, 0, 0, 0, 0] = torch.nan if fault == "nan" else torch.inf
        return out

    @classmethod
    def from_config(cls, preset: Preset) -> FaultyVAE:
        return cls(preset.name, preset.config.get("factor", 2), preset.config)


def faulty_preset(name: str, **config) -> Preset:
    """Register (replacing) a faulty toy model under ``name``."""
    return register(Preset(name, FaultyVAE, config={"factor": 2, **config}), replace=True)


# --------------------------------------------------------------------------- videos


def level(index: int) -> int:
    """The 8-bit grey level of frame ``index`` in the generated videos (steps of 12)."""
    return 10 + 12 * index


def write_video(
    path: Path,
    frames: int,
    size: tuple[int, int] = (32, 32),
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    in_format: str = "rgb24",
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """A small video of uniform frames at ``level(k)`` (16-bit formats scale by 257)."""
    height, width = size
    channels = {"rgb24": 3, "rgba": 4, "gray": 1, "rgb48le": 3, "gray16le": 1}[in_format]
    wide = in_format.endswith("16le") or in_format == "rgb48le"
    opts = {"crf": "0"} if codec == "libx264" and options is None else (options or {})
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=10, options=opts)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for k in range(frames):
            value = level(k) * (257 if wide else 1)
            image = np.full((height, width, channels), value, np.uint16 if wide else np.uint8)
            if in_format == "rgba":
                image[..., 3] = 77  # alpha must not leak into the colour
            image = image[..., 0] if channels == 1 else image
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format=in_format)))
        container.mux(stream.encode())
    return path


def write_audio_only(path: Path) -> Path:
    """An MP4 with one AAC stream and no video."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 44100
        for _ in range(4):
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
