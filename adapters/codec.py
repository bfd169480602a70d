"""Classical codec baselines: H.264, HEVC and AV1 at the bit budget of a VAE's latent.

A VAE with 16 latent channels, 8x spatial and 4x (causal) temporal compression stored in
fp16 keeps ``16 * (1 + (T-1)/4) * H/8 * W/8 * 16`` bits per clip. A codec preset spends the
same number of bits on the same clip, so its quality numbers say what the VAE must beat.

``encode`` compresses each clip of the batch with PyAV (libx264, libx265, libsvtav1) and
returns the bitstream; ``decode`` decodes it back. The "latent" is a ``uint8`` tensor
``[B, N]``: per clip an 8-byte payload length, then each packet as a 4-byte length and its
bytes, zero-padded to the longest clip. The budget counts the packet bytes only (the
bitstream, in-band parameter sets included), not the length framing, which a container
would replace.

Encoders on a few frames overshoot any average-bitrate target, so the rate is found by
bisection over the encoder's constant-quality factor (CRF, fractional) until the stream is
within ``tolerance`` of the budget; where no factor gets there (a budget above lossless-like
quality or below the coarsest setting) the closest stream is kept and a warning says so.
The search is part of ``encode`` and of its measured latency: a codec needs it to hit a size.

Frames in ``[-1, 1]`` become 8-bit RGB (``round((x + 1) * 127.5)``), then ``yuv420p``
(swscale's BT.601 conversion): the 8-bit quantisation and the 4:2:0 chroma subsampling are
part of the codec, as in every deployed video pipeline.
"""

from __future__ import annotations

import fractions
import os
import struct
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vae_bench.adapters.base import (
    AdapterError,
    FrameRule,
    InferenceMode,
    Preset,
    ResultWarning,
    VAESpec,
    VideoVAE,
)

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration otherwise

FAMILY = "codec"
TOLERANCE = 0.05
MAX_TRIALS = 16
FRAME_RATE = 24  # only sets time stamps; CRF modes do not depend on it
_LENGTH = struct.Struct("<I")
_HEADER = struct.Struct("<Q")


@dataclass(frozen=True)
class LatentBudget:
    """The latent of a reference VAE, whose size in bits the codec spends per clip."""

    channels: int = 16
    spatial_factor: int = 8
    temporal_factor: int = 4
    causal: bool = True
    bits_per_value: int = 16

    def __post_init__(self) -> None:
        for key in ("channels", "spatial_factor", "temporal_factor", "bits_per_value"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise AdapterError(
                    f"latent budget: {key} must be a positive integer, got {value!r}"
                )

    @property
    def frame_rule(self) -> FrameRule:
        if self.temporal_factor == 1:
            return FrameRule()
        return FrameRule(self.temporal_factor, 1 if self.causal else 0)

    def spec(self, name: str) -> VAESpec:
        """The reference VAE's factors and frame rule, so both run on the same clips."""
        return VAESpec(
            name=name, family=FAMILY, latent_channels=self.channels,
            spatial_factor=self.spatial_factor, temporal_factor=self.temporal_factor,
            causal=self.causal, frame_rule=self.frame_rule, modes=("full",),
        )  # fmt: skip

    def bits(self, frames: int, height: int, width: int) -> int:
        c, t, h, w = self.spec("budget").latent_shape(frames, height, width)
        return c * t * h * w * self.bits_per_value

    def __str__(self) -> str:
        kind = "causal " if self.causal else ""
        return (
            f"{self.channels}ch f{self.spatial_factor} {kind}t{self.temporal_factor} "
            f"{self.bits_per_value}-bit"
        )


@dataclass(frozen=True)
class Codec:
    """One encoder/decoder pair and its constant-quality knob (lower = more bits)."""

    name: str
    encoder: str
    decoder: str
    quality_range: tuple[float, float]
    quality_options: Callable[[float], dict[str, str]]
    options: Mapping[str, str] = field(default_factory=dict)

    def check_available(self) -> None:
        """Raise naming the missing encoder/decoder and what this PyAV build has."""
        import av

        available = av.codecs_available
        for role, codec in (("encoder", self.encoder), ("decoder", self.decoder)):
            try:
                usable = codec in available and av.Codec(codec, "w" if role == "encoder" else "r")
            except (ValueError, av.error.FFmpegError):  # type: ignore[attr-defined]
                usable = False
            if not usable:
                known = {c.encoder for c in CODECS.values()} | {c.decoder for c in CODECS.values()}
                present = sorted(known & set(available)) or ["none"]
                raise AdapterError(
                    f"codec {self.name}: the installed PyAV {av.__version__} has no {role} "
                    f"{codec!r} (of the suite's codecs it has {', '.join(present)}); choose "
                    "another codec preset or install a PyAV build with it"
                )


def _svt_crf(value: float) -> dict[str, str]:
    # The ``crf`` AVOption of ffmpeg's libsvtav1 wrapper is an integer; SVT-AV1 itself
    # takes fractional CRF (quarter steps) through its own parameter string.
    return {"svtav1-params": f"crf={value:.2f}"}


CODECS: dict[str, Codec] = {
    "h264": Codec("h264", "libx264", "h264", (0.0, 51.0), lambda q: {"crf": f"{q:.3f}"},
                  {"preset": "medium"}),
    "hevc": Codec("hevc", "libx265", "hevc", (0.0, 51.0), lambda q: {"crf": f"{q:.3f}"},
                  {"preset": "medium", "x265-params": "log-level=error:info=0"}),
    "av1": Codec("av1", "libsvtav1", "libdav1d", (1.0, 63.0), _svt_crf, {"preset": "8"}),
}  # fmt: skip


def available_codecs() -> list[str]:
    """The codec names of :data:`CODECS` whose encoder and decoder this PyAV build has."""
    names = []
    for name, codec in CODECS.items():
        try:
            codec.check_available()
        except AdapterError:
            continue
        names.append(name)
    return names


@dataclass(frozen=True)
class RateResult:
    """Where the rate search ended for one clip."""

    target_bits: int
    bits: int
    quality: float
    trials: int

    @property
    def error(self) -> float:
        """Relative size error ``bits / target - 1``."""
        return self.bits / self.target_bits - 1.0


# --- pixels <-> frames ------------------------------------------------------------------
def to_rgb24(video: torch.Tensor) -> np.ndarray:
    """``[C, T, H, W]`` in ``[-1, 1]`` to ``uint8`` ``[T, H, W, 3]``."""
    if video.shape[0] != 3:
        raise AdapterError(f"codec baselines take RGB clips, got {video.shape[0]} channels")
    pixels = ((video.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    return pixels.to(torch.uint8).permute(1, 2, 3, 0).contiguous().numpy()


def from_rgb24(frames: list[np.ndarray]) -> torch.Tensor:
    """``uint8`` ``[H, W, 3]`` frames to ``[3, T, H, W]`` in ``[-1, 1]``."""
    pixels = torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2).float()
    return pixels / 127.5 - 1.0


def encode_frames(codec: Codec, frames: np.ndarray, quality: float) -> list[bytes]:
    """The packets of ``frames`` (uint8 ``[T, H, W, 3]``) encoded at one quality setting."""
    import av
    from av.video.frame import VideoFrame

    height, width = frames.shape[1:3]
    context = av.CodecContext.create(codec.encoder, "w")
    context.width, context.height, context.pix_fmt = width, height, "yuv420p"
    context.time_base = fractions.Fraction(1, FRAME_RATE)
    context.framerate = fractions.Fraction(FRAME_RATE, 1)
    context.options = {**codec.options, **codec.quality_options(quality)}
    context.open()
    packets: list[bytes] = []
    for index, rgb in enumerate(frames):
        frame = VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        packets.extend(bytes(p) for p in context.encode(frame))
    packets.extend(bytes(p) for p in context.encode(None))
    return packets


def decode_packets(codec: Codec, packets: list[bytes]) -> list[np.ndarray]:
    import av

    context = av.CodecContext.create(codec.decoder, "r")
    frames: list[np.ndarray] = []
    for data in packets:
        frames.extend(f.to_ndarray(format="rgb24") for f in context.decode(av.Packet(data)))
    frames.extend(f.to_ndarray(format="rgb24") for f in context.decode(None))
    return frames


def match_rate(
    codec: Codec,
    frames: np.ndarray,
    target_bits: int,
    tolerance: float = TOLERANCE,
    max_trials: int = MAX_TRIALS,
) -> tuple[list[bytes], RateResult]:
    """Packets whose size is within ``tolerance`` of ``target_bits``, by bisection over the
    codec's quality factor (size falls as it rises); else the closest stream found."""
    tried: dict[float, list[bytes]] = {}

    def size(quality: float) -> int:
        if quality not in tried:
            tried[quality] = encode_frames(codec, frames, quality)
        return 8 * sum(map(len, tried[quality]))

    def result(quality: float) -> tuple[list[bytes], RateResult]:
        return tried[quality], RateResult(target_bits, size(quality), quality, len(tried))

    def close(quality: float) -> bool:
        return abs(size(quality) / target_bits - 1.0) <= tolerance

    low, high = codec.quality_range  # low: most bits
    if size(low) <= target_bits or size(high) >= target_bits:  # the budget is out of reach
        edge = min((low, high), key=lambda q: abs(size(q) - target_bits))
        return result(edge)
    while len(tried) < max_trials:
        middle = (low + high) / 2
        if close(middle):
            return result(middle)
        if size(middle) > target_bits:
            low = middle
        else:
            high = middle
    return result(min(tried, key=lambda q: abs(size(q) - target_bits)))


# --- the latent: length-framed packets --------------------------------------------------
def pack(streams: list[list[bytes]]) -> torch.Tensor:
    """Each clip's packets framed by lengths, one zero-padded ``uint8`` row per clip."""
    rows = []
    for packets in streams:
        body = b"".join(_LENGTH.pack(len(p)) + p for p in packets)
        rows.append(_HEADER.pack(len(body)) + body)
    width = max(map(len, rows))
    data = bytearray(b"".join(row.ljust(width, b"\0") for row in rows))
    return torch.frombuffer(data, dtype=torch.uint8).reshape(len(rows), width).clone()


def unpack(latent: torch.Tensor) -> list[list[bytes]]:
    if latent.ndim != 2 or latent.dtype != torch.uint8:
        raise AdapterError(
            f"a codec latent is a uint8 [B, N] tensor of packets, got {latent.dtype} "
            f"{tuple(latent.shape)}"
        )
    streams = []
    for row in latent.cpu().numpy():
        data = row.tobytes()
        (length,) = _HEADER.unpack_from(data)
        if length > len(data) - _HEADER.size:
            raise AdapterError(f"codec latent: payload of {length} bytes in a {len(data)}-byte row")
        offset, end, packets = _HEADER.size, _HEADER.size + length, []
        while offset < end:
            (size,) = _LENGTH.unpack_from(data, offset)
            offset += _LENGTH.size
            packets.append(data[offset : offset + size])
            offset += size
        if offset != end:
            raise AdapterError("codec latent: packet lengths overrun the payload (corrupt row)")
        streams.append(packets)
    return streams


class CodecBaseline(VideoVAE):
    """A classical codec given exactly the bits of a reference VAE latent, per clip."""

    weights = "none"  # nothing to load

    def __init__(
        self, name: str, codec: Codec, budget: LatentBudget, tolerance: float = TOLERANCE
    ) -> None:
        codec.check_available()
        if not 0 < tolerance < 1:
            raise AdapterError(f"{name}: tolerance must be in (0, 1), got {tolerance}")
        self.codec = codec
        self.budget = budget
        self.tolerance = tolerance
        self.spec = budget.spec(name)
        self.last_rates: tuple[RateResult, ...] = ()
        self._module = torch.nn.Module()
        self._dtype = torch.float32

    @property
    def module(self) -> torch.nn.Module:
        return self._module

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> CodecBaseline:
        if dtype is not None:
            self._dtype = dtype  # the codec runs on 8-bit frames; outputs come back as this
        return self

    def _encode(self, video: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        frames, height, width = video.shape[2:]
        target = self.budget.bits(frames, height, width)
        streams, rates = [], []
        for clip in video:
            packets, rate = match_rate(self.codec, to_rgb24(clip), target, self.tolerance)
            streams.append(packets)
            rates.append(rate)
            if abs(rate.error) > self.tolerance:
                warnings.warn(
                    f"{self.spec.name}: the {self.codec.encoder} stream closest to the "
                    f"{target}-bit budget ({self.budget}) has {rate.bits} bits "
                    f"({rate.error:+.1%}) at quality {rate.quality:.2f}",
                    ResultWarning,
                    stacklevel=3,
                )
        self.last_rates = tuple(rates)
        return pack(streams).to(video.device)

    def _decode(self, latent: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        clips = [from_rgb24(decode_packets(self.codec, p)) for p in unpack(latent)]
        return torch.stack(clips).to(device=latent.device, dtype=self._dtype)

    @classmethod
    def from_config(cls, preset: Preset) -> CodecBaseline:
        config = dict(preset.config)
        name = config.pop("codec", None)
        if name not in CODECS:
            raise AdapterError(
                f"{preset.name}: config key 'codec' must be one of {', '.join(CODECS)}, "
                f"got {name!r}"
            )
        tolerance = float(config.pop("tolerance", TOLERANCE))
        fields = set(LatentBudget.__dataclass_fields__)
        unknown = sorted(set(config) - fields)
        if unknown:
            raise AdapterError(
                f"{preset.name}: unknown config keys {', '.join(unknown)}; allowed: codec, "
                f"tolerance, {', '.join(sorted(fields))}"
            )
        return cls(preset.name, CODECS[name], LatentBudget(**config), tolerance)

    @classmethod
    def from_pretrained(cls, path: str | Path, preset: Preset) -> CodecBaseline:
        raise AdapterError(f"{preset.name}: a codec has no weights; use `weights: none` or omit it")


def _preset(codec: str, channels: int = 16) -> Preset:
    budget = LatentBudget(channels=channels)
    config: dict[str, Any] = {"codec": codec, "channels": channels}
    return Preset(
        f"{codec}-match-{channels}ch",
        CodecBaseline,
        config=config,
        description=(
            f"{CODECS[codec].encoder} (yuv420p, CRF searched) at the bits of a {budget} latent"
        ),
    )


PRESETS = tuple(_preset(codec) for codec in CODECS)
