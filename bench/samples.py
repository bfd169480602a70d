"""Reconstruction samples: a few clips of each quality cell kept as pictures.

People judging a video VAE look at frames first: blur, colour shift, flicker and seams
are seen before they are measured. Each quality cell keeps ``quality.samples`` clips
(default 2; 0 keeps none), the same ones for every model of a dataset: evenly spread over
the dataset's clip order. Each becomes one PNG strip with three rows, the original, the
reconstruction and the error ``|original - reconstruction|`` (mean over channels, 8-bit,
times :data:`ERROR_GAIN`, inferno colour map), and one column per shown frame: frames
spread over the clip plus the two frames on each side of the first temporal chunk seam
where the mode has one. The strips hold the exact 8-bit pixels (no scaling, no text);
``index.json`` beside them says which clip and frames they show. With
``quality.sample_video: true`` an MP4 (H.264 through PyAV) shows original, reconstruction
and error side by side.

Files: ``<run>/samples/<cell key>/clip<i>.png`` (``.mp4``) and ``index.json``.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from PIL import Image

from vae_bench.data import to_uint8_levels

#: Gain of the error row: an error of 1/4 of the range is shown at full brightness.
ERROR_GAIN = 4.0
#: Frames spread over the clip in a strip (before the seam frames are added).
SPREAD_FRAMES = 4
#: Pixels of white between the tiles of a strip.
GAP = 2
ROWS = ("original", "reconstruction", f"|error| x{ERROR_GAIN:g}")
VIDEO_FPS = 8


def choose_clips(clip_ids: Sequence[str], count: int) -> tuple[str, ...]:
    """``count`` clip ids evenly spread over ``clip_ids`` (all of them when fewer)."""
    if count <= 0 or not clip_ids:
        return ()
    picks = np.round(np.linspace(0, len(clip_ids) - 1, min(count, len(clip_ids))))
    return tuple(clip_ids[int(i)] for i in dict.fromkeys(picks.astype(int).tolist()))


def shown_frames(
    frames: int, seams: Sequence[int] = (), spread: int = SPREAD_FRAMES
) -> tuple[int, ...]:
    """Frames of a strip: ``spread`` frames evenly over the clip and, when there is a
    temporal seam, the frame before and the frame at the first one."""
    picks = set(np.round(np.linspace(0, frames - 1, min(spread, frames))).astype(int).tolist())
    if seams:
        picks |= {seams[0] - 1, seams[0]}
    return tuple(sorted(f for f in picks if 0 <= f < frames))


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """``[C, T, H, W]`` in [-1, 1] -> ``[T, H, W, 3]`` uint8 (grey repeated to RGB)."""
    frames = to_uint8_levels(video).permute(1, 2, 3, 0).cpu().numpy()
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames


def error_map(
    original: np.ndarray, reconstruction: np.ndarray, gain: float = ERROR_GAIN
) -> np.ndarray:
    """``|original - reconstruction|`` of 8-bit frames, channel mean, times ``gain``,
    clipped to [0, 1] and coloured with inferno; same shape as the inputs, uint8 RGB."""
    error = np.abs(original.astype(np.float64) - reconstruction.astype(np.float64)).mean(-1)
    level = np.clip(error / 255.0 * gain, 0.0, 1.0)
    rgba = matplotlib.colormaps["inferno"](level, bytes=True)
    return np.ascontiguousarray(rgba[..., :3])


def strip(original: np.ndarray, reconstruction: np.ndarray, frames: Sequence[int]) -> np.ndarray:
    """The rows original / reconstruction / error of ``frames`` (``[T, H, W, 3]`` uint8
    inputs) with :data:`GAP` white pixels between tiles."""
    t, h, w, _ = original.shape
    rows = (original, reconstruction, error_map(original, reconstruction))
    out = np.full((3 * h + 2 * GAP, len(frames) * w + (len(frames) - 1) * GAP, 3), 255, np.uint8)
    for r, images in enumerate(rows):
        for c, frame in enumerate(frames):
            y, x = r * (h + GAP), c * (w + GAP)
            out[y : y + h, x : x + w] = images[frame]
    return out


def _write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a killed run leaves no half picture."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; pictures are for everyone
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _mp4(original: np.ndarray, reconstruction: np.ndarray) -> bytes:
    """Original | reconstruction | error, side by side, H.264 (dimensions padded to even)."""
    import av

    frames = np.concatenate([original, reconstruction, error_map(original, reconstruction)], axis=2)
    t, h, w, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=VIDEO_FPS)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "18"}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


@dataclass
class SampleKeeper:
    """Keeps the chosen clips of one quality cell as the loop passes them, writes them at
    the end. ``out_dir`` None (or no clip chosen) keeps nothing."""

    out_dir: Path | None
    clip_ids: tuple[str, ...]
    frames: tuple[int, ...]
    about: dict[str, Any]
    video: bool = False

    def __post_init__(self) -> None:
        self._kept: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def for_cell(cls, cell: Any, spec: Any, clip_ids: Sequence[str], out_root: Path | None,
                 settings: Any) -> SampleKeeper:  # fmt: skip
        """The keeper of a quality cell: ``settings`` is the sweep's quality settings
        (``samples``, ``sample_video``); ``clip_ids`` the clips this process evaluates.
        Only the writing process (rank 0) keeps any."""
        from vae_bench import distributed
        from vae_bench.seams import seam_layout

        count = getattr(settings, "samples", 0) or 0
        if out_root is None or count <= 0 or not distributed.context().is_main:
            return cls(None, (), (), {})
        seams = seam_layout(cell.mode, spec, cell.frames, cell.height, cell.width)
        about = {
            "cell": cell.key, "model": cell.model, "weights": cell.weights,
            "dataset": cell.dataset, "mode": cell.mode, "dtype": cell.dtype,
            "height": cell.height, "width": cell.width, "frames": cell.frames,
            "seams": list(seams.frames), "rows": list(ROWS), "error_gain": ERROR_GAIN,
        }  # fmt: skip
        return cls(Path(out_root) / cell.key, choose_clips(list(clip_ids), count),
                   shown_frames(cell.frames, seams.frames), about,
                   bool(getattr(settings, "sample_video", False)))  # fmt: skip

    def offer(self, clip_id: str, target: torch.Tensor, recon: torch.Tensor) -> None:
        """One clip the loop evaluated (``[C, T, H, W]`` in [-1, 1]; a quality loop
        observer); a chosen clip is kept as 8-bit frames on the CPU."""
        if self.out_dir is not None and clip_id in self.clip_ids:
            self._kept[clip_id] = (to_uint8(target), to_uint8(recon))

    def write(self) -> list[Path]:
        """Write the strips (and videos) and ``index.json``; return the files written."""
        if self.out_dir is None or not self._kept:
            return []
        self.out_dir.mkdir(parents=True, exist_ok=True)
        written, clips = [], []
        for i, clip in enumerate(c for c in self.clip_ids if c in self._kept):
            original, reconstruction = self._kept[clip]
            path = self.out_dir / f"clip{i}.png"
            _write_bytes(path, _png(strip(original, reconstruction, self.frames)))
            written.append(path)
            entry = {"clip": clip, "png": path.name}
            if self.video:
                video = path.with_suffix(".mp4")
                _write_bytes(video, _mp4(original, reconstruction))
                written.append(video)
                entry["mp4"] = video.name
            clips.append(entry)
        index = {**self.about, "shown_frames": list(self.frames), "clips": clips}
        path = self.out_dir / "index.json"
        _write_bytes(path, json.dumps(index, indent=1).encode())
        return [*written, path]


def read_samples(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every cell's ``index.json`` under ``<run>/samples``, with ``dir`` added, sorted by
    model, mode and size."""
    found = []
    for path in sorted(Path(run_dir, "samples").glob("*/index.json")):
        found.append({**json.loads(path.read_text()), "dir": path.parent})
    return sorted(
        found, key=lambda s: (s["model"], s["mode"], s["frames"], s["height"] * s["width"])
    )


#: Keys that make two runs' sample cells comparable (same clips, same frames shown).
MATCH_KEYS = ("model", "dataset", "mode", "dtype", "height", "width", "frames", "shown_frames")


def _rows_of(image: np.ndarray, height: int) -> list[np.ndarray]:
    """The three rows (original, reconstruction, error) of a strip image."""
    return [image[r * (height + GAP) : r * (height + GAP) + height] for r in range(3)]


def compare_strip(base: np.ndarray, candidate: np.ndarray, height: int) -> np.ndarray:
    """Two runs' strips of one clip as one: original, base and candidate reconstruction,
    base and candidate error (rows of ``height`` pixels, :data:`GAP` apart)."""
    if base.shape != candidate.shape:
        raise ValueError(f"strips differ in size: {base.shape} vs {candidate.shape}")
    b, c = _rows_of(base, height), _rows_of(candidate, height)
    if not np.array_equal(b[0], c[0]):
        raise ValueError("the two strips do not show the same original frames")
    rows = [b[0], b[1], c[1], b[2], c[2]]
    gap = np.full((GAP, base.shape[1], 3), 255, np.uint8)
    return np.concatenate([part for row in rows for part in (row, gap)][:-1])


def write_sample_comparison(base_run: str | Path, candidate_run: str | Path,
                            out_dir: str | Path) -> list[Path]:  # fmt: skip
    """Side by side reconstructions of the same clips by two runs (e.g. two checkpoints):
    ``<out_dir>/<model>_<mode>_<T>x<H>x<W>_clip<i>.png`` for every sample cell and clip
    both runs kept (matched on :data:`MATCH_KEYS` and the clip id)."""
    out_dir = Path(out_dir)
    candidates = {tuple(str(s[k]) for k in MATCH_KEYS): s for s in read_samples(candidate_run)}
    written = []
    for base in read_samples(base_run):
        cand = candidates.get(tuple(str(base[k]) for k in MATCH_KEYS))
        if cand is None:
            continue
        theirs = {c["clip"]: c for c in cand["clips"]}
        for i, clip in enumerate(c for c in base["clips"] if c["clip"] in theirs):
            image = compare_strip(np.asarray(Image.open(base["dir"] / clip["png"])),
                                  np.asarray(Image.open(cand["dir"] / theirs[clip["clip"]]["png"])),
                                  int(base["height"]))  # fmt: skip
            size = f"{base['frames']}x{base['height']}x{base['width']}"
            name = re.sub(r"[^A-Za-z0-9_.+-]", "_", f"{base['model']}_{base['mode']}_{size}")
            out_dir.mkdir(parents=True, exist_ok=True)
            path = out_dir / f"{name}_clip{i}.png"
            _write_bytes(path, _png(image))
            written.append(path)
    return written
