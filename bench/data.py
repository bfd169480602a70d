"""Datasets: ``datasets.yaml`` -> clips ready for a model.

A dataset is a deterministic list of clip ids plus a loader that turns one id into a
clip ``[C, T, H, W]`` at the size and length a sweep cell asks for: 8-bit levels
(``uint8``, the compact form that travels from loader workers to the device) or float in
``[-1, 1]``; :func:`to_model_range` turns either into the model's float input.
Clips that cannot be used (too short, unreadable) come back as :class:`SkippedClip` with
the reason, so a run goes on and the reason lands in the per-clip CSV.

Two kinds exist. ``synthetic`` (built in, see :mod:`vae_bench.synthetic`) needs no files.
``folder`` decodes a directory tree of videos with PyAV; with ``media: images`` each image
file is a clip of one frame (the image autoencoders' protocol). Its default spatial protocol is
the official WF-VAE evaluation's (``causalvideovae/dataset/video_dataset.py``,
``ValidVideoDataset``): frames as float in ``[0, 1]``, torchvision ``Resize(short side)``
(bilinear, antialiased, ``align_corners=False``, long side truncated to an integer), then
a centre crop whose offset is ``int(round((size - crop) / 2))``; finally scaled to
``[-1, 1]``. A non-square target scales so that both sides cover the target, then crops.
With ``precision: uint8`` (the default) the same antialiased resize runs on the 8-bit
frames (torch's integer kernel) and its output is rounded to 8-bit levels: at most one
level away from the float result, a quarter level on average on 1280x720 H.264 footage,
and many times cheaper; ``precision: float`` keeps the official float path exactly.

Frame sampling uses a plain stride: frame ``start + i * sample_rate`` for ``i < frames``,
so a clip spans ``(frames - 1) * sample_rate + 1`` source frames. (With sample rate 1 this
equals the official ``linspace`` selection; above 1 the official code spaces the frames by
``linspace(0, frames * rate - 1, frames)`` instead, which is not a constant stride.)
"""

from __future__ import annotations

import abc
import dataclasses
import os
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import get_worker_info
from tqdm import tqdm

ENV_VAR = "VAE_BENCH_DATASETS"
DEFAULT_FILE = "datasets.yaml"

KINDS = ("synthetic", "folder")
START_POLICIES = ("first", "center", "random")
RESIZE_MODES = ("short_side_crop", "stretch")
INTERPOLATIONS = ("bilinear", "bicubic", "area", "nearest-exact")
MEDIA = ("videos", "images")
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff")
PRECISIONS = ("uint8", "float")
#: interpolations whose 8-bit torch kernel matches the float one to within rounding
_UINT8_KERNELS = ("bilinear", "nearest-exact")
VIDEO_EXTENSIONS = (
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "mpg", "mpeg", "ts", "flv", "wmv", "ogv",
    "3gp", "gif",
)  # fmt: skip


class DatasetError(ValueError):
    """A dataset is defined or used wrongly; the message names the file, key and choices."""


@dataclass(frozen=True)
class Clip:
    """One clip: ``video`` is ``[C, T, H, W]``, either ``uint8`` levels ``0..255`` or
    float32 in ``[-1, 1]`` (see :func:`to_model_range`)."""

    clip_id: str
    source: str
    start: int
    video: torch.Tensor

    def pin_memory(self) -> Clip:
        """The clip in page-locked memory (called by a DataLoader with ``pin_memory``)."""
        return dataclasses.replace(self, video=self.video.pin_memory())


def to_model_range(video: torch.Tensor) -> torch.Tensor:
    """A clip batch as float32 in ``[-1, 1]``: 8-bit levels are scaled, floats kept.

    The scaling is the float loader's own ``x / 255 * 2 - 1``, so an unresized uint8 clip
    gives bit-identical values to the float path."""
    if video.dtype == torch.uint8:
        return video.float().div_(255.0).mul_(2.0).sub_(1.0)  # in place: one allocation
    return video.float()


def to_uint8_levels(video: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`to_model_range`: ``[-1, 1]`` -> ``uint8`` levels, clamped and
    rounded as an 8-bit file of the video would hold them (any layout)."""
    return ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@dataclass(frozen=True)
class SkippedClip:
    """A clip that could not be used. ``status``: ``skipped`` (it does not fit the request,
    e.g. too short) or ``error`` (the file could not be read)."""

    clip_id: str
    source: str
    reason: str
    status: str = "skipped"


def check_request(frames: int, height: int, width: int) -> None:
    """Reject impossible clip requests early, naming the bad value."""
    for key, value in (("frames", frames), ("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"clip request: {key} must be a positive integer, got {value!r}")


class Dataset(abc.ABC):
    """A named, deterministic list of clips; ranks shard :meth:`clip_ids` among them."""

    name: str
    max_frames: int | None = None  # the longest clip it can give (None: no fixed limit)

    @property
    @abc.abstractmethod
    def protocol(self) -> str:
        """Every sampling convention in one string, recorded next to each result."""

    def evaluation_protocol(self, max_clips: int | None) -> str:
        """:attr:`protocol` of an evaluation limited to the first ``max_clips`` clips."""
        return f"{self.protocol};max_clips={max_clips}" if max_clips else self.protocol

    @abc.abstractmethod
    def clip_ids(self) -> list[str]:
        """All clip ids, always in the same order."""

    @abc.abstractmethod
    def load(self, clip_id: str, frames: int, height: int, width: int) -> Clip | SkippedClip:
        """One clip of ``frames`` frames at ``height x width``, or why it cannot be had."""

    def iter_clips(
        self,
        frames: int,
        height: int,
        width: int,
        clip_ids: Iterable[str] | None = None,
        progress: bool = False,
    ) -> Iterator[Clip | SkippedClip]:
        """Load clips one at a time (streaming: nothing is held), optionally with a bar."""
        check_request(frames, height, width)
        ids = self.clip_ids() if clip_ids is None else list(clip_ids)
        for clip_id in tqdm(ids, desc=self.name, unit="clip", disable=not progress):
            yield self.load(clip_id, frames, height, width)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}: {self.protocol})"


# --------------------------------------------------------------------------- resizing


def covering_size(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int]:
    """The size that scales ``height x width`` to cover ``target_h x target_w``.

    The side with the larger scale factor lands exactly on its target and the other is
    truncated, as torchvision's ``Resize(int)`` does for a square target (short side to
    the target, long side ``int(target * long / short)``). Integer arithmetic keeps the
    truncation exact.
    """
    if target_h * width >= target_w * height:  # height needs the larger factor
        return target_h, max(target_w, (target_h * width) // height)
    return max(target_h, (target_w * height) // width), target_w


def center_crop_offsets(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int]:
    """Top/left offsets of a centre crop, rounded as the official code and torchvision do."""
    return int(round((height - target_h) / 2.0)), int(round((width - target_w) / 2.0))


def resize_frames(
    frames: torch.Tensor,
    height: int,
    width: int,
    mode: str = "short_side_crop",
    interpolation: str = "bilinear",
    antialias: bool = True,
) -> torch.Tensor:
    """Resize float frames ``[N, C, h, w]`` to ``[N, C, height, width]``.

    ``short_side_crop``: cover the target keeping the aspect ratio, then centre crop.
    ``stretch``: straight to the target size (aspect ratio not kept).
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode {mode!r}; allowed: {', '.join(RESIZE_MODES)}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation {interpolation!r}; allowed: {', '.join(INTERPOLATIONS)}")
    h, w = frames.shape[-2:]
    size = covering_size(h, w, height, width) if mode == "short_side_crop" else (height, width)
    if size != (h, w):  # an unchanged size is left untouched, as torchvision does
        smooth = interpolation in ("bilinear", "bicubic")
        frames = F.interpolate(
            frames,
            size=size,
            mode=interpolation,
            align_corners=False if smooth else None,
            antialias=antialias and smooth,
        )
    top, left = center_crop_offsets(size[0], size[1], height, width)
    return frames[..., top : top + height, left : left + width]


# --------------------------------------------------------------------------- folder


@dataclass(frozen=True)
class FolderConfig:
    """How clips are cut from the videos under ``root`` (see the module docstring)."""

    root: Path
    sample_rate: int = 1
    start: str = "first"
    seed: int = 0
    resize: str = "short_side_crop"
    interpolation: str = "bilinear"
    antialias: bool = True
    max_clips: int | None = None
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS
    media: str = "videos"  # images: each file is a clip of one frame
    precision: str = "uint8"

    def __post_init__(self) -> None:
        for key, allowed in (
            ("media", MEDIA),
            ("start", START_POLICIES),
            ("resize", RESIZE_MODES),
            ("interpolation", INTERPOLATIONS),
            ("precision", PRECISIONS),
        ):
            if getattr(self, key) not in allowed:
                raise DatasetError(
                    f"folder dataset: {key} {getattr(self, key)!r}; allowed: {', '.join(allowed)}"
                )
        if self.sample_rate < 1 or self.seed < 0 or (self.max_clips or 1) < 1:
            raise DatasetError(
                f"folder dataset: sample_rate >= 1, seed >= 0 and max_clips >= 1 (or None) "
                f"needed, got {self.sample_rate}, {self.seed}, {self.max_clips}"
            )
        if not self.extensions:
            raise DatasetError("folder dataset: extensions must not be empty")


class FolderDataset(Dataset):
    """Videos under a directory tree, sorted by relative path, decoded with PyAV.

    The root is checked when the dataset is first used, not when ``datasets.yaml`` is
    read, so one dataset whose files are absent on this machine does not stop the others.
    """

    def __init__(self, name: str, config: FolderConfig, source: str = "") -> None:
        self.name = name
        self.config = config
        self.source = source  # the datasets file that defined it, for error messages
        self._ids: list[str] | None = None
        self._known: frozenset[str] = frozenset()
        self.max_frames = 1 if config.media == "images" else None

    @property
    def protocol(self) -> str:
        return self.evaluation_protocol(None)

    def evaluation_protocol(self, max_clips: int | None) -> str:
        c = self.config
        smooth = c.interpolation in ("bilinear", "bicubic")
        interp = c.interpolation + (",antialias" if c.antialias and smooth else "")
        interp += ",align_corners=False" if smooth else ""
        interp += ",rounded-to-uint8" if c.precision == "uint8" else ""
        start = f"random(seed={c.seed})" if c.start == "random" else c.start
        media = "media=images," if c.media == "images" else ""  # videos: as before
        limits = [n for n in (c.max_clips, max_clips) if n]
        return (
            f"folder({media}decode=pyav-rgb24(deeper:rgb48-rounded),sample_rate={c.sample_rate},start={start},"
            f"resize={c.resize}({interp}),crop=center,range=[-1,1],"
            f"max_clips={min(limits) if limits else 'all'})"
        )

    def clip_ids(self) -> list[str]:
        if self._ids is None:
            self._ids = self._scan()
            self._known = frozenset(self._ids)
        return list(self._ids)

    def _where(self) -> str:
        return f"{self.source}: dataset {self.name!r}" if self.source else f"dataset {self.name!r}"

    def _scan(self) -> list[str]:
        root = self.config.root
        if not root.is_dir():
            what = "is not a directory" if root.exists() else "does not exist"
            raise DatasetError(
                f"{self._where()}: root {root} {what}; set the dataset's `root: <folder of "
                f"its {self.config.media}>` in {self.source or 'the datasets file'} (or name "
                "another datasets file in $VAE_BENCH_DATASETS or the sweep's `datasets_file: "
                "<path>`)"
            )
        extensions = {e.lower().lstrip(".") for e in self.config.extensions}
        ids = sorted(
            path.relative_to(root).as_posix()
            for path in root.rglob("*")
            if path.suffix.lower().lstrip(".") in extensions
            and path.is_file()
            and not any(part.startswith(".") for part in path.relative_to(root).parts)
        )
        if not ids:
            raise DatasetError(
                f"{self._where()}: no {self.config.media[:-1]} files under {root} "
                f"(extensions: {', '.join(sorted(extensions))})"
            )
        return ids[: self.config.max_clips] if self.config.max_clips else ids

    def load(self, clip_id: str, frames: int, height: int, width: int) -> Clip | SkippedClip:
        check_request(frames, height, width)
        if self._ids is None:
            self.clip_ids()
        if clip_id not in self._known:
            raise DatasetError(f"{self._where()}: unknown clip id {clip_id!r}")
        path = self.config.root / clip_id
        source = str(path)
        if self.max_frames is not None and frames > self.max_frames:
            return SkippedClip(clip_id, source, f"an image is one frame; {frames} requested")
        try:
            size = path.stat().st_size
        except OSError as error:
            return SkippedClip(clip_id, source, f"cannot read file: {error}", "error")
        if size == 0:
            return SkippedClip(clip_id, source, "empty file (0 bytes)", "error")
        try:
            return self._decode(clip_id, path, frames, height, width)
        except PermissionError as error:  # PyAV's own error for EACCES is one too
            return SkippedClip(clip_id, source, f"cannot read file: {error}", "error")
        except (av.FFmpegError, OSError, ValueError, EOFError) as error:
            reason = (
                f"unreadable video: {type(error).__name__}: {error} "
                "(corrupt, truncated, or not a video file)"
            )
            return SkippedClip(clip_id, source, reason, "error")

    def _decode(
        self, clip_id: str, path: Path, frames: int, height: int, width: int
    ) -> Clip | SkippedClip:
        c = self.config
        source = str(path)
        span = (frames - 1) * c.sample_rate + 1
        needed = f"{span} needed ({frames} frames x stride {c.sample_rate})"
        start = 0
        if c.start != "first":
            total = count_frames(path)
            if total < span:
                return SkippedClip(
                    clip_id, source, f"too short: {total} frames available, {needed}"
                )
            if c.start == "center":
                start = (total - span) // 2
            else:
                rng = np.random.default_rng([c.seed, zlib.crc32(clip_id.encode())])
                start = int(rng.integers(0, total - span + 1))
        wanted = range(start, start + span, c.sample_rate)
        out = torch.empty(3, frames, height, width, dtype=_DTYPES[c.precision])
        got = decoded = 0
        with av.open(source) as container:
            if not container.streams.video:
                return SkippedClip(clip_id, source, "no video stream in the file", "error")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if get_worker_info() is not None:  # the loader's workers are the parallelism:
                stream.thread_count = 1  # decoder threads would only contend with them
            listed = int(stream.frames)  # 0 where the container does not say
            if 0 < listed < span:
                return SkippedClip(
                    clip_id, source, f"too short: {listed} frames available, {needed}"
                )
            frames_iter = enumerate(container.decode(stream))
            while True:
                try:
                    index, frame = next(frames_iter)
                except StopIteration:
                    break
                except av.FFmpegError as error:
                    return SkippedClip(
                        clip_id,
                        source,
                        f"truncated or corrupt: decoding failed after {decoded} frames "
                        f"({type(error).__name__}: {error})",
                        "error",
                    )
                decoded = index + 1
                if index not in wanted:
                    continue  # decoded (the codec needs it) but not converted
                out[:, got] = self._convert(frame_to_rgb24(frame), height, width)
                got += 1
                if got == frames:  # stop: later frames are never decoded
                    return Clip(clip_id, source, start, out)
        if decoded == 0:
            return SkippedClip(clip_id, source, "no decodable video frames", "error")
        if listed > decoded or start > 0:
            return SkippedClip(
                clip_id,
                source,
                f"truncated or corrupt: decoding stopped after {decoded} frames, the container "
                f"lists {listed or 'more'}; {start + span} needed from start frame {start} "
                f"({frames} frames x stride {c.sample_rate})",
                "error",
            )
        return SkippedClip(clip_id, source, f"too short: {decoded} frames available, {needed}")


    def _convert(self, rgb: np.ndarray, height: int, width: int) -> torch.Tensor:
        """One ``uint8 [H, W, 3]`` frame resized and cropped to ``[3, height, width]``."""
        c = self.config
        image = torch.from_numpy(rgb).permute(2, 0, 1)[None]
        if c.precision == "uint8" and c.interpolation in _UINT8_KERNELS:
            return resize_frames(image, height, width, c.resize, c.interpolation, c.antialias)[0]
        image = resize_frames(
            image.float() / 255.0, height, width, c.resize, c.interpolation, c.antialias
        )[0].clamp(0.0, 1.0)
        if c.precision == "uint8":
            return (image * 255.0).round_().to(torch.uint8)
        return image * 2.0 - 1.0


_DTYPES = {"uint8": torch.uint8, "float": torch.float32}


def frame_to_rgb24(frame: av.VideoFrame) -> np.ndarray:
    """One decoded frame as ``uint8 [H, W, 3]``.

    Sources deeper than 8 bits (10-bit YUV, 16-bit RGB) are converted to 16-bit RGB and
    rounded to the nearest 8-bit level: FFmpeg's direct conversion to 8-bit RGB truncates
    them, which is off by up to two levels.
    """
    if max(component.bits for component in frame.format.components) <= 8:
        return frame.to_ndarray(format="rgb24")
    wide = frame.to_ndarray(format="rgb48le").astype(np.float32)
    return np.rint(wide / 257.0).astype(np.uint8)


def count_frames(path: str | Path) -> int:
    """Frames in the first video stream: the container's count, else a count of packets.

    Counting packets demuxes without decoding, so it costs file reading, not decoding.
    """
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream in the file")
        stream = container.streams.video[0]
        if stream.frames > 0:
            return int(stream.frames)
        return sum(1 for packet in container.demux(stream) if packet.size > 0)


# --------------------------------------------------------------------------- datasets.yaml

_COMMON_KEYS = ("kind", "description")
_SYNTHETIC_KEYS = (*_COMMON_KEYS, "num_clips", "seed")
_FOLDER_KEYS = (
    *_COMMON_KEYS, "root", "sample_rate", "start", "seed", "resize", "interpolation",
    "antialias", "max_clips", "extensions", "media", "precision",
)  # fmt: skip


class _Entry:
    """Typed reads of one ``datasets.yaml`` entry, each error naming file, dataset, key."""

    def __init__(self, source: str, name: str, data: Mapping[str, Any], allowed: tuple[str, ...]):
        self.source, self.name, self.data = source, name, data
        unknown = sorted(str(k) for k in data if k not in allowed)
        if unknown:
            raise self.error(
                unknown[0],
                f"unknown key; allowed keys for kind {data['kind']!r}: " + ", ".join(allowed),
            )

    def error(self, key: str, problem: str) -> DatasetError:
        return DatasetError(f"{self.source}: dataset {self.name!r}: key {key!r}: {problem}")

    def integer(self, key: str, default: int | None, minimum: int) -> int | None:
        value = self.data.get(key, default)
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(key, f"must be an integer >= {minimum}, got {value!r}")
        return value

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.data.get(key, default)
        if value not in allowed:
            raise self.error(key, f"got {value!r}; allowed: {', '.join(allowed)}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def text(self, key: str, default: str | None = None) -> str:
        if key not in self.data and default is None:
            raise self.error(key, "missing (required)")
        value = self.data.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.error(key, f"must be a non-empty string, got {value!r}")
        return value


def _build(source: str, base_dir: Path, name: str, data: Any) -> Dataset:
    from vae_bench.synthetic import SyntheticDataset

    if not isinstance(data, Mapping):
        raise DatasetError(
            f"{source}: dataset {name!r}: must be a mapping of keys (kind: ...), got {data!r}"
        )
    kind = data.get("kind")
    if kind not in KINDS:
        problem = "missing (required)" if kind is None else f"got {kind!r}"
        raise DatasetError(
            f"{source}: dataset {name!r}: key 'kind': {problem}; allowed: {', '.join(KINDS)}"
        )
    if kind == "synthetic":
        entry = _Entry(source, name, data, _SYNTHETIC_KEYS)
        if "description" in data:
            entry.text("description")
        return SyntheticDataset(
            name, num_clips=entry.integer("num_clips", 8, 1), seed=entry.integer("seed", 0, 0)
        )
    entry = _Entry(source, name, data, _FOLDER_KEYS)
    if "description" in data:
        entry.text("description")
    root = Path(os.path.expanduser(entry.text("root")))
    if "\0" in str(root):
        raise entry.error("root", f"not a valid path: {str(root)!r}")
    media = entry.choice("media", "videos", MEDIA)
    defaults = IMAGE_EXTENSIONS if media == "images" else VIDEO_EXTENSIONS
    extensions = data.get("extensions", list(defaults))
    if (
        not isinstance(extensions, list)
        or not extensions
        or not all(isinstance(e, str) and e.strip(". ") for e in extensions)
    ):
        raise entry.error("extensions", f"must be a non-empty list of strings, got {extensions!r}")
    config = FolderConfig(
        root=(base_dir / root).resolve(),  # an absolute root replaces base_dir
        sample_rate=entry.integer("sample_rate", 1, 1),
        start=entry.choice("start", "first", START_POLICIES),
        seed=entry.integer("seed", 0, 0),
        resize=entry.choice("resize", "short_side_crop", RESIZE_MODES),
        interpolation=entry.choice("interpolation", "bilinear", INTERPOLATIONS),
        antialias=entry.boolean("antialias", True),
        max_clips=entry.integer("max_clips", None, 1),
        extensions=tuple(e.strip(". ").lower() for e in extensions),
        media=media,
        precision=entry.choice("precision", "uint8", PRECISIONS),
    )
    return FolderDataset(name, config, source)


def _resolve_path(path: str | Path | None) -> Path | None:
    if path is not None:
        return Path(path)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    default = Path(DEFAULT_FILE)
    if default.is_file():
        return default
    from vae_bench import sweeps

    return sweeps.datasets_file()


def load_datasets(path: str | Path | None = None) -> dict[str, Dataset]:
    """Every dataset: the built-in ``synthetic`` plus the entries of ``datasets.yaml``.

    ``path`` None means ``$VAE_BENCH_DATASETS``, else ``./datasets.yaml`` if present, else
    the one shipped with the package. Relative ``root`` paths are relative to the file's
    directory. Entries
    are validated here; folder roots only when a dataset is used.
    """
    from vae_bench.synthetic import SyntheticDataset

    datasets: dict[str, Dataset] = {"synthetic": SyntheticDataset()}
    file = _resolve_path(path)
    if file is None:
        return datasets
    source = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{source}: cannot read datasets file: {error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DatasetError(f"{source}: not valid YAML: {error}") from None
    if data is None:
        return datasets
    if not isinstance(data, Mapping):
        raise DatasetError(
            f"{source}: must be a mapping of dataset name -> entry, got {type(data).__name__}"
        )
    base_dir = file.resolve().parent
    for name, entry in data.items():
        if not isinstance(name, str) or not name.strip():
            raise DatasetError(f"{source}: dataset names must be non-empty strings, got {name!r}")
        datasets[name] = _build(source, base_dir, name, entry)
    return datasets


def get_dataset(name: str, path: str | Path | None = None) -> Dataset:
    """One dataset by name (see :func:`load_datasets` for where definitions come from)."""
    datasets = load_datasets(path)
    if name not in datasets:
        raise DatasetError(f"unknown dataset {name!r}; defined: {', '.join(sorted(datasets))}")
    return datasets[name]
