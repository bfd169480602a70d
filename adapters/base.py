"""The adapter protocol: one small interface that every video VAE hides behind.

The suite only ever sees a :class:`VideoVAE`: a frozen :class:`VAESpec` that says what
the model is (factors, frame rule, latent channels, sizes) and ``encode``/``decode`` on
float videos ``[B, C, T, H, W]`` in ``[-1, 1]``. Everything model-specific (layer code,
checkpoint layouts, tiling) lives in the adapter module.
"""

from __future__ import annotations

import abc
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:
    from vae_bench.adapters.source import Source

RANDOM_WEIGHTS = "random"


class AdapterError(ValueError):
    """A model cannot be built or loaded as asked; the message says why and what to do."""


class ResultWarning(UserWarning):
    """A caveat about the numbers an adapter produced (e.g. a codec that could not hit its
    bit budget): the runner writes it into the message of the cell's rows."""


@dataclass(frozen=True)
class FrameRule:
    """Valid clip lengths ``T = offset + step * k`` (``k >= 0``, ``T >= 1``).

    Causal video VAEs with 4x temporal compression take ``T = 1 + 4k``; image VAEs run
    per frame take any ``T`` (``step=1, offset=0``).
    """

    step: int = 1
    offset: int = 0

    def is_valid(self, frames: int) -> bool:
        return frames >= max(1, self.offset) and (frames - self.offset) % self.step == 0

    def fit(self, frames: int) -> int:
        """The largest valid length not above ``frames`` (raises if there is none)."""
        if frames < max(1, self.offset):
            raise AdapterError(f"{frames} frames: fewer than the minimum {max(1, self.offset)}")
        fitted = self.offset + ((frames - self.offset) // self.step) * self.step
        if fitted < 1:
            fitted += self.step
        if fitted > frames:
            raise AdapterError(f"no clip length of the form {self} fits in {frames} frames")
        return fitted

    def __str__(self) -> str:
        if self.step == 1 and self.offset == 0:
            return "any"
        return f"{self.offset}+{self.step}k" if self.offset else f"{self.step}k"


@dataclass(frozen=True)
class InferenceMode:
    """How a model is run over a clip; one cell of a sweep uses exactly one mode.

    ``full``: the whole clip at once. ``temporal_chunks``: blocks of ``size`` frames
    (with ``overlap``, or a causal cache where the model keeps its own state).
    ``spatial_tiles``: tiles of ``size`` pixels with ``overlap``. Each adapter lists the
    kinds its model's release supports in ``VAESpec.modes``.
    """

    kind: str = "full"
    size: int | None = None
    overlap: int = 0

    KINDS: ClassVar[tuple[str, ...]] = ("full", "temporal_chunks", "spatial_tiles")
    _PATTERN: ClassVar[re.Pattern[str]] = re.compile(
        r"^\s*(\w+)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*$"
    )

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise AdapterError(
                f"unknown inference mode {self.kind!r}; allowed: {', '.join(self.KINDS)}"
            )
        if self.kind != "full" and (self.size is None or self.size <= 0):
            raise AdapterError(
                f"inference mode {self.kind} needs a positive size, e.g. {self.kind}(16)"
            )
        if self.overlap < 0 or (self.size is not None and self.overlap >= self.size):
            raise AdapterError(
                f"inference mode {self.kind}: overlap {self.overlap} must be in [0, size)"
            )

    @classmethod
    def parse(cls, text: str | InferenceMode) -> InferenceMode:
        """Parse ``"full"``, ``"temporal_chunks(16)"``, ``"spatial_tiles(256, 32)"``."""
        if isinstance(text, InferenceMode):
            return text
        match = cls._PATTERN.match(str(text))
        if not match:
            raise AdapterError(
                f"cannot parse inference mode {text!r}; write e.g. `full`, "
                "`temporal_chunks(16)`, `spatial_tiles(256, 32)`"
            )
        kind, size, overlap = match.groups()
        return cls(kind, int(size) if size else None, int(overlap) if overlap else 0)

    @property
    def label(self) -> str:
        if self.kind == "full":
            return "full"
        return (
            f"{self.kind}({self.size},{self.overlap})"
            if self.overlap
            else f"{self.kind}({self.size})"
        )

    def __str__(self) -> str:
        return self.label


FULL = InferenceMode()


@dataclass(frozen=True)
class VAESpec:
    """What a video VAE is, independent of its weights."""

    name: str
    family: str
    latent_channels: int
    spatial_factor: int = 8
    temporal_factor: int = 1
    causal: bool = False
    frame_rule: FrameRule = field(default_factory=FrameRule)
    input_range: tuple[float, float] = (-1.0, 1.0)
    scaling_factor: float = 1.0
    shift_factor: float = 0.0
    encoder_params: int = 0
    decoder_params: int = 0
    modes: tuple[str, ...] = ("full",)

    @property
    def params(self) -> int:
        return self.encoder_params + self.decoder_params

    def check_input(self, frames: int, height: int, width: int) -> None:
        """Raise an :class:`AdapterError` naming the allowed values for an impossible clip."""
        if not self.frame_rule.is_valid(frames):
            raise AdapterError(
                f"{self.name}: {frames} frames not allowed; T must be {self.frame_rule}"
            )
        for what, size in (("height", height), ("width", width)):
            if size % self.spatial_factor:
                raise AdapterError(
                    f"{self.name}: {what} {size} is not divisible by the spatial factor "
                    f"{self.spatial_factor}"
                )

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(C, T', H', W')`` of the latent of one clip."""
        if self.causal:
            t = 1 + (frames - 1) // self.temporal_factor
        else:
            t = frames // self.temporal_factor
        return (
            self.latent_channels,
            t,
            height // self.spatial_factor,
            width // self.spatial_factor,
        )


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """The sha256 of one file, or of every weights file under a directory (sorted names)."""
    path = Path(path)
    files = (
        [path]
        if path.is_file()
        else sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and p.suffix in {".safetensors", ".bin", ".ckpt", ".pt", ".pth"}
        )
    )
    if not files:
        raise AdapterError(f"no weights file found at {path}")
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Preset:
    """A named, registered model configuration (like a timm pretrained config).

    ``config`` holds the architecture hyper-parameters the adapter understands;
    ``source`` is where the official files are published (``vae_bench.adapters.source``;
    what ``weights: official`` fetches), ``release`` the same in words for messages
    (derived from ``source`` when not given).
    """

    name: str
    adapter: type[VideoVAE]
    config: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    release: str = ""
    description: str = ""
    source: Source | None = None  # None: no public weights to fetch

    def __post_init__(self) -> None:
        if self.source is not None and not self.release:
            hub_files = self.source.files if self.source.kind == "hf" else ()  # a URL names it
            files = f" ({', '.join(hub_files)})" if hub_files else ""
            object.__setattr__(self, "release", f"{self.source.web_url}{files}")

    def create(self, weights: str | Path = RANDOM_WEIGHTS) -> VideoVAE:
        """Random weights (``"random"``) or the official files at a path."""
        if str(weights) == RANDOM_WEIGHTS:
            return self.adapter.from_config(self)
        path = Path(weights).expanduser()
        if not path.exists():
            hint = f" (official release: {self.release})" if self.release else ""
            raise AdapterError(f"{self.name}: weights not found at {path}{hint}")
        return self.adapter.from_pretrained(path, self)


class VideoVAE(abc.ABC):
    """Base class of every adapter.

    Subclasses set ``spec`` and ``weights`` (``"random"`` or the sha256 of the loaded
    files), implement ``_encode``/``_decode`` for ``full`` mode and, where the model's
    release supports them, the other inference modes. Videos are ``[B, C, T, H, W]`` in
    ``[-1, 1]``; latents are the model's raw posterior mode (unscaled), so that
    reconstruction equals ``decode(encode(x))``.
    """

    spec: VAESpec
    weights: str = RANDOM_WEIGHTS

    # --- what adapters implement -------------------------------------------------
    @abc.abstractmethod
    def _encode(self, video: torch.Tensor, mode: InferenceMode) -> torch.Tensor: ...

    @abc.abstractmethod
    def _decode(self, latent: torch.Tensor, mode: InferenceMode) -> torch.Tensor: ...

    @property
    @abc.abstractmethod
    def module(self) -> torch.nn.Module:
        """The underlying ``nn.Module`` (used to move, cast and count parameters)."""

    # --- the protocol the suite calls ---------------------------------------------
    def check_mode(self, mode: InferenceMode) -> None:
        if mode.kind not in self.spec.modes:
            raise AdapterError(
                f"{self.spec.name} does not support inference mode {mode.kind}; "
                f"supported: {', '.join(self.spec.modes)}"
            )

    @torch.inference_mode()
    def encode(
        self, video: torch.Tensor, mode: InferenceMode | str = FULL, *, seed: int | None = None
    ) -> torch.Tensor:
        """Posterior mode of the latent; a sample only when ``seed`` is given."""
        mode = InferenceMode.parse(mode)
        self.check_mode(mode)
        if video.ndim != 5:
            raise AdapterError(f"video must be [B, C, T, H, W], got shape {tuple(video.shape)}")
        self.spec.check_input(video.shape[2], video.shape[3], video.shape[4])
        if seed is not None:
            return self._sample(video, mode, seed)
        return self._encode(video, mode)

    @torch.inference_mode()
    def decode(self, latent: torch.Tensor, mode: InferenceMode | str = FULL) -> torch.Tensor:
        mode = InferenceMode.parse(mode)
        self.check_mode(mode)
        return self._decode(latent, mode)

    def reconstruct(self, video: torch.Tensor, mode: InferenceMode | str = FULL) -> torch.Tensor:
        return self.decode(self.encode(video, mode), mode)

    def check_latent(self, latent: torch.Tensor) -> None:
        """Refuse a latent of the wrong layout with the shape this model takes (it would
        otherwise fail deep inside a convolution, naming weights instead)."""
        channels = self.spec.latent_channels
        if latent.ndim != 5 or latent.shape[1] != channels or latent.shape[2] < 1:
            raise AdapterError(
                f"{self.spec.name}: latent must be [B, {channels}, T, H, W], "
                f"got shape {tuple(latent.shape)}"
            )

    # --- construction (adapters override) -----------------------------------------
    @classmethod
    def from_config(cls, preset: Preset) -> VideoVAE:
        """A model with the preset's architecture and random (seeded by the caller) weights."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from a config")

    @classmethod
    def from_pretrained(cls, path: str | Path, preset: Preset) -> VideoVAE:
        """The official released files at ``path``, loaded with a strict key match."""
        raise NotImplementedError(f"{cls.__name__} cannot load pretrained files")

    def _sample(self, video: torch.Tensor, mode: InferenceMode, seed: int) -> torch.Tensor:
        raise AdapterError(f"{self.spec.name} does not support sampling the posterior")

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> VideoVAE:
        """Move and cast the model. A module that keeps no layers in float32 is cast by
        torch's own ``Module.to``: diffusers' override would warn on every cast that
        layers are kept in float32 even when it keeps none, and cast the same way."""
        if getattr(self.module, "_keep_in_fp32_modules", None):
            self.module.to(device=device, dtype=dtype)
        else:
            torch.nn.Module.to(self.module, device=device, dtype=dtype)
        return self

    def eval(self) -> VideoVAE:
        self.module.eval()
        return self

    @property
    def device(self) -> torch.device:
        return next(iter(self.module.parameters()), torch.empty(0)).device

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.module.parameters()), torch.empty(0)).dtype
