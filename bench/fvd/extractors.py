"""rFVD feature extractors: the two I3D networks papers use, with their input conventions.

- ``styleganv-i3d``: StyleGAN-V's TorchScript ``i3d_torchscript.pt`` (a port of the TF-Hub
  Kinetics-400 I3D that most papers' FVD uses), called with ``rescale=False, resize=False,
  return_features=True`` on clips already resized and scaled here, as the WF-VAE and
  Open-Sora-Plan evaluation scripts do. Features: the 400 pre-softmax logits.
- ``videogpt-i3d``: the pytorch-i3d ``InceptionI3d(400)`` with VideoGPT/TATS'
  ``i3d_pretrained_400.pt`` (as cd-fvd uses). Features: its time-averaged logits.

Preprocessing (both, as the references): frames to 8 bits (every reference reads 8-bit
frames: decoded files, or StyleGAN-V's uint8 generator output), bilinear resize without
antialiasing (``align_corners=False``) so the short side is 224 and a centre 224x224
crop (StyleGAN-V, VideoGPT, WF-VAE), or a plain 224x224 stretch (cd-fvd) on request,
then values scaled to [-1, 1]. Greyscale is repeated to three channels. All frames of a
clip are used; clips shorter than the network's minimum are an error (StyleGAN-V drops
such clips, the others fail), never padded.

Building an extractor never downloads (``vae-bench fetch styleganv-i3d`` or a sweep's
``fvd_missing: fetch`` does): a missing file raises MetricUnavailable naming it, the
directory it belongs in and the fetch command. ``weights="random"`` gives a seeded
random-initialised I3D, labelled ``random``.
"""

from __future__ import annotations

import functools
import hashlib
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vae_bench.fvd.cache import CACHE_ENV, cache_dir
from vae_bench.fvd.i3d import MIN_FRAMES, NUM_CLASSES, InceptionI3d
from vae_bench.metrics import MetricUnavailable

ResizeMode = Literal["short-side-crop", "stretch"]
RESIZE_MODES: tuple[str, ...] = ("short-side-crop", "stretch")


@dataclass(frozen=True)
class ExtractorInfo:
    """What an extractor name stands for: its weights file and where that file comes from."""

    name: str
    filename: str
    source: str
    torchscript: bool


EXTRACTORS: dict[str, ExtractorInfo] = {
    info.name: info
    for info in (
        ExtractorInfo(
            "styleganv-i3d",
            "i3d_torchscript.pt",
            "the TorchScript I3D released with StyleGAN-V (universome/stylegan-v)",
            torchscript=True,
        ),
        ExtractorInfo(
            "videogpt-i3d",
            "i3d_pretrained_400.pt",
            "the pytorch-i3d state dict released with VideoGPT/TATS (songweige/TATS)",
            torchscript=False,
        ),
    )
}

RANDOM = "random"
TORCHSCRIPT_KWARGS: dict[str, bool] = {"rescale": False, "resize": False, "return_features": True}


@dataclass(frozen=True)
class Preprocess:
    """Video [B, C, T, H, W] in [-1, 1] -> the network's input [B, 3, T, size, size]."""

    size: int = 224
    resize: ResizeMode = "short-side-crop"
    quantize: bool = True

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.size < 1:
            raise ValueError(f"size must be positive, got {self.size}")

    @property
    def label(self) -> str:
        how = "short-side-center-crop" if self.resize == "short-side-crop" else "stretch"
        return f"resize={self.size}-bilinear-{how};input={'8bit' if self.quantize else 'float'}"

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """Size after resizing, before the crop (the references' rounding: ceil)."""
        if self.resize == "stretch":
            return (self.size, self.size)
        scale = self.size / min(height, width)
        if height < width:
            return (self.size, math.ceil(width * scale))
        return (math.ceil(height * scale), self.size)

    def __call__(self, video: Tensor) -> Tensor:
        if video.ndim != 5:
            raise ValueError(f"expected a video batch [B, C, T, H, W], got {tuple(video.shape)}")
        b, c, t, h, w = video.shape
        if c == 1:
            video = video.expand(b, 3, t, h, w)
        elif c != 3:
            raise ValueError(f"I3D takes 3-channel (or greyscale) videos, got {c} channels")
        x = ((video.float() + 1.0) / 2.0).clamp(0.0, 1.0)
        if self.quantize:
            x = torch.round(x * 255.0) / 255.0
        frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, 3, h, w)
        size = self.target_size(h, w)
        if size != (h, w):
            frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
        top = (size[0] - self.size) // 2
        left = (size[1] - self.size) // 2
        frames = frames[:, :, top : top + self.size, left : left + self.size]
        frames = (frames - 0.5) * 2.0
        return frames.reshape(b, t, 3, self.size, self.size).permute(0, 2, 1, 3, 4).contiguous()


class FeatureExtractor(nn.Module):
    """A feature network with its preprocessing; ``forward`` gives float64 [B, D] features.

    ``protocol`` names everything that changes the features: extractor, weights (sha256
    or ``random``), resizing, input quantisation, minimum clip length, and ``note`` (e.g.
    the seed of random weights).
    """

    def __init__(
        self,
        name: str,
        net: nn.Module,
        weights_label: str,
        *,
        preprocess: Preprocess | None = None,
        call_kwargs: Mapping[str, Any] | None = None,
        feature_dim: int = NUM_CLASSES,
        min_frames: int = MIN_FRAMES,
        batch_size: int = 8,
        note: str = "",
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.name = name
        self.net = net.eval()
        for parameter in self.net.parameters():  # ScriptModules lack requires_grad_()
            parameter.requires_grad_(False)
        self.weights_label = weights_label
        self.preprocess = preprocess or Preprocess()
        self.call_kwargs = dict(call_kwargs or {})
        self.feature_dim = feature_dim
        self.min_frames = min_frames
        self.batch_size = batch_size
        self.note = note

    @property
    def protocol(self) -> str:
        text = (
            f"extractor={self.name};weights={self.weights_label};{self.preprocess.label};"
            f"min_frames={self.min_frames}"
        )
        return f"{text};{self.note}" if self.note else text

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Always eval: feature extraction never uses dropout or batch statistics."""
        super().train(False)
        return self

    def _device(self) -> torch.device:
        for tensor in self.net.parameters():
            return tensor.device
        for tensor in self.net.buffers():
            return tensor.device
        return torch.device("cpu")

    @torch.no_grad()
    def forward(self, video: Tensor) -> Tensor:
        if video.ndim != 5:
            raise ValueError(f"expected a video batch [B, C, T, H, W], got {tuple(video.shape)}")
        if video.shape[2] < self.min_frames:
            raise ValueError(
                f"{self.name} needs clips of at least {self.min_frames} frames, got "
                f"{video.shape[2]} (the I3D head pools 2 time steps after an 8x reduction)"
            )
        device = self._device()
        chunks = []
        for start in range(0, video.shape[0], self.batch_size):
            clip = self.preprocess(video[start : start + self.batch_size].to(device))
            features = self.net(clip, **self.call_kwargs)
            if features.ndim != 2 or features.shape != (clip.shape[0], self.feature_dim):
                raise ValueError(
                    f"{self.name} returned features of shape {tuple(features.shape)}, expected "
                    f"({clip.shape[0]}, {self.feature_dim})"
                )
            chunks.append(features.double())
        return torch.cat(chunks)


@functools.lru_cache(maxsize=16)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file (memoised on path, mtime and size)."""
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def resolve_weights(name: str, weights: str | Path | None) -> Path:
    """The weights file for ``name``: an explicit file or directory, else the cache dir."""
    info = _info(name)
    if weights is None:
        path = cache_dir() / info.filename
    else:
        path = Path(weights).expanduser()
        if path.is_dir():
            path = path / info.filename
    if not path.is_file():
        raise MetricUnavailable(
            f"rFVD extractor {name!r} needs {info.filename} ({info.source}); no file at "
            f"{path}. Run `vae-bench fetch {name}` (it goes to {cache_dir()}, ${CACHE_ENV}/fvd) "
            "or give its path in the sweep as `quality.fvd_weights: <path to the file>`; "
            "`quality.fvd_weights: random` runs a random-initialised I3D, labelled random."
        )
    return path


def random_i3d(seed: int = 0) -> InceptionI3d:
    """InceptionI3d with seeded He-normal convolutions and zero biases.

    PyTorch's default initialisation shrinks activations through the 20-odd layers until
    the logits barely depend on the input; He-normal keeps them input-dependent, so a
    random extractor still separates different videos. The global RNG is left untouched.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        net = InceptionI3d()
    for module in net.modules():
        if isinstance(module, nn.Conv3d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return net


def load_videogpt_i3d(path: Path) -> InceptionI3d:
    """InceptionI3d(400) with a pytorch-i3d state dict, strict key and shape match."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same message
        raise ValueError(f"{path}: cannot read a state dict ({error})") from error
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    net = InceptionI3d()
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{path}: not an InceptionI3d(400) state dict; missing keys "
            f"{missing[:5]}{'...' if len(missing) > 5 else ''} ({len(missing)}), unexpected "
            f"keys {unexpected[:5]}{'...' if len(unexpected) > 5 else ''} ({len(unexpected)})"
        )
    wrong = [k for k, v in expected.items() if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise ValueError(f"{path}: shape mismatch for {wrong[:5]} ({len(wrong)} tensors)")
    net.load_state_dict(state, strict=True)
    return net


def load_torchscript(path: Path, device: torch.device) -> nn.Module:
    """The released file is TorchScript, whatever torch thinks of that format now."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.load.* is deprecated")
            return torch.jit.load(str(path), map_location=device)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same message
        raise ValueError(f"{path}: cannot load a TorchScript module ({error})") from error


def _info(name: str) -> ExtractorInfo:
    try:
        return EXTRACTORS[name]
    except KeyError:
        raise ValueError(
            f"unknown rFVD extractor {name!r}; allowed: {', '.join(EXTRACTORS)}"
        ) from None


def build_extractor(
    name: str,
    weights: str | Path | None = None,
    device: torch.device | str = "cpu",
    *,
    resize: ResizeMode = "short-side-crop",
    seed: int = 0,
    batch_size: int = 8,
) -> FeatureExtractor:
    """The named extractor on ``device``.

    ``weights``: None (the file in the cache dir), a file or directory path, or
    ``"random"`` (a seeded random InceptionI3d standing in for either network).
    """
    info = _info(name)
    device = torch.device(device)
    preprocess = Preprocess(resize=resize)
    if isinstance(weights, str) and weights == RANDOM:
        net: nn.Module = random_i3d(seed)
        label, note = RANDOM, f"init=he-normal;seed={seed}"
        kwargs: dict[str, Any] = {}
    else:
        path = resolve_weights(name, weights)
        label, note = file_sha256(path), ""
        if info.torchscript:
            net, kwargs = load_torchscript(path, device), dict(TORCHSCRIPT_KWARGS)
        else:
            net, kwargs = load_videogpt_i3d(path), {}
    extractor = FeatureExtractor(
        name,
        net,
        label,
        preprocess=preprocess,
        call_kwargs=kwargs,
        batch_size=batch_size,
        note=note,
    )
    return extractor.to(device)
