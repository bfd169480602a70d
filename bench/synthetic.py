"""The built-in ``synthetic`` dataset: real photographs under camera motion, no download.

Every clip is rendered on demand from scikit-image's bundled sample images (shipped
inside the package, read without any network access), at any size and length:

* *photo* clips: a virtual camera looks at one photograph and moves along a smooth path
  (pan, zoom and rotation, each a sum of two slow sinusoids). The view window is sized
  so that it never leaves the photograph, whatever the target aspect ratio.
* *shapes* clips (every fourth clip): anti-aliased discs and rotating boxes bounce over a
  tinted, slowly panning texture (brick, grass, gravel).

Rendering samples the source through ``torch.nn.functional.grid_sample`` (bicubic, after
an antialiased prefilter when the view is reduced), so sizes are free and no pixel is
visited in Python. Each clip draws its parameters from its own generator seeded by
``(seed, clip index)`` before any size is known: the same clip id, size and length give
bit-identical tensors, a shorter clip is a prefix of a longer one, and every size shows
the same scene.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import skimage.data
import torch
import torch.nn.functional as F

from vae_bench.data import Clip, Dataset, DatasetError, SkippedClip, check_request

VERSION = 1
PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
    "camera",
)  # fmt: skip
TEXTURES = ("brick", "grass", "gravel")
SHAPES_EVERY = 4  # clip indices 3, 7, 11, ... are shapes over texture


@dataclass(frozen=True)
class Motion:
    """Largest camera excursions: ``shift`` per axis as a fraction of the image side,
    ``zoom`` as |log scale|, ``rotate`` in radians; periods in frames."""

    shift: float
    zoom: float
    rotate: float
    periods: tuple[float, float] = (48.0, 192.0)


PHOTO_MOTION = Motion(shift=0.07, zoom=0.12, rotate=math.radians(6.0))
TEXTURE_MOTION = Motion(shift=0.2, zoom=0.0, rotate=0.0, periods=(96.0, 256.0))


@functools.lru_cache(maxsize=len(PHOTOS) + len(TEXTURES))
def sample_image(name: str) -> torch.Tensor:
    """A bundled scikit-image sample as float ``[3, H, W]`` in ``[0, 1]`` (gray repeated).

    The tensor is cached and shared: callers must not modify it in place.
    """
    try:
        array = np.ascontiguousarray(getattr(skimage.data, name)())
    except Exception as error:  # a stripped install: say which file and how to fix it
        raise DatasetError(
            f"synthetic: scikit-image sample image {name!r} is not available ({error}); "
            "reinstall scikit-image with its bundled data"
        ) from error
    image = torch.from_numpy(array).float() / 255.0
    if image.ndim == 2:
        return image.expand(3, *image.shape).contiguous()
    return image.permute(2, 0, 1)[:3].contiguous()


def _waves(rng: np.random.Generator, motion: Motion) -> np.ndarray:
    """Parameters of four smooth signals (x, y, log zoom, angle), two sinusoids each.

    Rows: (weight, period, phase) x 2. The weights of one signal sum to at most 1, so a
    signal scaled by its amplitude never exceeds that amplitude.
    """
    strength = rng.uniform(0.5, 1.0, size=4)
    share = rng.uniform(0.2, 0.8, size=4)
    weights = np.stack([strength * share, strength * (1.0 - share)], axis=1)
    periods = rng.uniform(*motion.periods, size=(4, 2))
    phases = rng.uniform(0.0, 2.0 * math.pi, size=(4, 2))
    return np.stack([weights, periods, phases], axis=-1)  # [4 signals, 2 waves, 3]


def _signals(waves: np.ndarray, frames: int, motion: Motion) -> np.ndarray:
    """The four signals at frames ``0..frames-1``, scaled by their amplitudes: ``[4, T]``."""
    t = np.arange(frames, dtype=np.float64)
    w, p, phi = waves[..., 0:1], waves[..., 1:2], waves[..., 2:3]
    unit = (w * np.sin(2.0 * math.pi * t / p + phi)).sum(axis=1)
    amplitude = np.array([motion.shift, motion.shift, motion.zoom, motion.rotate])
    return unit * amplitude[:, None]


def _window(src_h: int, src_w: int, aspect: float, motion: Motion) -> float:
    """Height (source pixels) of the base view window of aspect ``width / height``.

    The largest window whose rotated, zoomed-out, shifted footprint stays inside the
    image: at scale ``s <= e^zoom`` and angle ``|a| <= rotate`` the window's half extent
    along x is at most ``s (w/2 + sin(rotate) h/2)``, and likewise along y.
    """
    s_max, sin_max = math.exp(motion.zoom), math.sin(motion.rotate)
    free_x = src_w * (0.5 - motion.shift)
    free_y = src_h * (0.5 - motion.shift)
    h_x = free_x / (s_max * (aspect + sin_max) / 2.0)
    h_y = free_y / (s_max * (1.0 + sin_max * aspect) / 2.0)
    return 0.999 * min(h_x, h_y)


def render_camera(
    image: torch.Tensor,
    waves: np.ndarray,
    motion: Motion,
    frames: int,
    height: int,
    width: int,
) -> torch.Tensor:
    """Film ``image`` ``[3, h, w]`` in ``[0, 1]`` along a camera path: ``[3, T, H, W]``."""
    src_h, src_w = image.shape[-2:]
    window_h = _window(src_h, src_w, width / height, motion)
    window_w = window_h * width / height
    # Reduce the source first (antialiased) so a small output is not aliased; geometry is
    # in normalised coordinates and does not change.
    factor = min(1.0, height / (window_h * math.exp(-motion.zoom)))
    source = image[None]
    if factor < 1.0:
        size = (max(1, round(src_h * factor)), max(1, round(src_w * factor)))
        source = F.interpolate(
            source, size=size, mode="bicubic", align_corners=False, antialias=True
        )
    dx, dy, log_zoom, angle = _signals(waves, frames, motion)
    scale, cos, sin = np.exp(log_zoom), np.cos(angle), np.sin(angle)
    theta = np.zeros((frames, 2, 3))
    theta[:, 0, 0] = scale * cos * window_w / src_w
    theta[:, 0, 1] = -scale * sin * window_h / src_w
    theta[:, 0, 2] = 2.0 * dx
    theta[:, 1, 0] = scale * sin * window_w / src_h
    theta[:, 1, 1] = scale * cos * window_h / src_h
    theta[:, 1, 2] = 2.0 * dy
    theta_t = torch.from_numpy(theta).float()
    out = torch.empty(3, frames, height, width)
    for t in range(frames):  # one frame at a time: memory stays at one frame
        grid = F.affine_grid(theta_t[t : t + 1], [1, 3, height, width], align_corners=False)
        out[:, t] = F.grid_sample(
            source, grid, mode="bicubic", padding_mode="reflection", align_corners=False
        )[0]
    return out.clamp_(0.0, 1.0)


def _bounce(x: float, low: float, high: float) -> float:
    """Position of a point moving freely, reflected between two walls."""
    if high <= low:
        return (low + high) / 2.0
    span = high - low
    u = (x - low) % (2.0 * span)
    return low + span - abs(u - span)


@dataclass(frozen=True)
class _Shape:
    box: bool
    half: tuple[float, float]  # half sizes (world units; the view's short side spans 2)
    colour: tuple[float, float, float]
    start: tuple[float, float]  # in [-1, 1], relative to the free range of each axis
    velocity: tuple[float, float]  # world units per frame
    angle: float
    spin: float  # radians per frame


def _draw_shapes(rng: np.random.Generator) -> list[_Shape]:
    shapes = []
    for _ in range(int(rng.integers(3, 7))):
        box = bool(rng.integers(0, 2))
        r = float(rng.uniform(0.1, 0.3))
        speed, direction = rng.uniform(0.01, 0.04), rng.uniform(0.0, 2.0 * math.pi)
        shapes.append(
            _Shape(
                box=box,
                half=(r, r * float(rng.uniform(0.4, 1.0))) if box else (r, r),
                colour=tuple(float(c) for c in rng.uniform(0.0, 1.0, size=3)),
                start=tuple(float(c) for c in rng.uniform(-1.0, 1.0, size=2)),
                velocity=(speed * math.cos(direction), speed * math.sin(direction)),
                angle=float(rng.uniform(0.0, math.pi)),
                spin=float(rng.uniform(-0.06, 0.06)),
            )
        )
    return shapes


def _signed_distance(shape: _Shape, x: torch.Tensor, y: torch.Tensor, t: int) -> torch.Tensor:
    """Signed distance (world units) from each pixel centre to the shape at frame ``t``."""
    if not shape.box:
        return torch.sqrt(x * x + y * y) - shape.half[0]
    a = shape.angle + shape.spin * t
    u = (x * math.cos(a) + y * math.sin(a)).abs() - shape.half[0]
    v = (-x * math.sin(a) + y * math.cos(a)).abs() - shape.half[1]
    outside = torch.sqrt(u.clamp(min=0) ** 2 + v.clamp(min=0) ** 2)
    return outside + torch.maximum(u, v).clamp(max=0)


def render_shapes(
    rng: np.random.Generator, texture: str, frames: int, height: int, width: int
) -> torch.Tensor:
    """Shapes bouncing over a tinted, panning texture: ``[3, T, H, W]`` in ``[0, 1]``."""
    dark = torch.from_numpy(rng.uniform(0.0, 0.45, size=3)).float()[:, None, None]
    light = torch.from_numpy(rng.uniform(0.55, 1.0, size=3)).float()[:, None, None]
    gray = sample_image(texture)[:1]
    tinted = dark + gray * (light - dark)
    background = render_camera(tinted, _waves(rng, TEXTURE_MOTION), TEXTURE_MOTION, frames,
                               height, width)  # fmt: skip
    shapes = _draw_shapes(rng)
    short = min(height, width)
    extent = (width / short, height / short)  # visible half extents in world units
    xs = ((2.0 * torch.arange(width) + 1.0) / width - 1.0) * extent[0]
    ys = ((2.0 * torch.arange(height) + 1.0) / height - 1.0) * extent[1]
    y_grid, x_grid = torch.meshgrid(ys, xs, indexing="ij")
    pixel = 2.0 / short
    colours = [torch.tensor(shape.colour)[:, None, None] for shape in shapes]
    out = background
    for t in range(frames):
        frame = out[:, t]
        for shape, colour in zip(shapes, colours, strict=True):
            centre = []
            for axis in range(2):
                reach = max(shape.half) if shape.box else shape.half[0]
                free = extent[axis] - reach
                x0 = shape.start[axis] * max(free, 0.0)
                centre.append(_bounce(x0 + shape.velocity[axis] * t, -free, free))
            distance = _signed_distance(shape, x_grid - centre[0], y_grid - centre[1], t)
            alpha = (0.5 - distance / pixel).clamp(0.0, 1.0)  # anti-aliased edge
            frame.mul_(1.0 - alpha).add_(alpha * colour)
    return out.clamp_(0.0, 1.0)


def clip_layout(index: int) -> tuple[str, str]:
    """(kind, sample image) of clip ``index``: shapes every fourth clip, photos otherwise."""
    if index % SHAPES_EVERY == SHAPES_EVERY - 1:
        return "shapes", TEXTURES[(index // SHAPES_EVERY) % len(TEXTURES)]
    photo_index = index - (index + 1) // SHAPES_EVERY
    return "photo", PHOTOS[photo_index % len(PHOTOS)]


class SyntheticDataset(Dataset):
    """``num_clips`` deterministic clips; clip ids look like ``0000-photo-astronaut``."""

    def __init__(self, name: str = "synthetic", num_clips: int = 8, seed: int = 0) -> None:
        for key, value, low in (("num_clips", num_clips, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise DatasetError(
                    f"dataset {name!r}: key {key!r}: must be an integer >= {low}, got {value!r}"
                )
        self.name = name
        self.num_clips = num_clips
        self.seed = seed
        self._ids = [
            f"{i:04d}-{kind}-{image}"
            for i, (kind, image) in enumerate(map(clip_layout, range(num_clips)))
        ]
        self._index = {clip_id: i for i, clip_id in enumerate(self._ids)}

    @property
    def protocol(self) -> str:
        return (
            f"synthetic-v{VERSION}(clips={self.num_clips},seed={self.seed},"
            "skimage photos under pan/zoom/rotation + shapes over texture,"
            "grid_sample=bicubic,range=[-1,1])"
        )

    def clip_ids(self) -> list[str]:
        return list(self._ids)

    def load(self, clip_id: str, frames: int, height: int, width: int) -> Clip | SkippedClip:
        check_request(frames, height, width)
        if clip_id not in self._index:
            raise DatasetError(
                f"dataset {self.name!r}: unknown clip id {clip_id!r} "
                f"(ids run from {self._ids[0]} to {self._ids[-1]})"
            )
        index = self._index[clip_id]
        kind, image = clip_layout(index)
        rng = np.random.default_rng([self.seed, index])
        if kind == "photo":
            waves = _waves(rng, PHOTO_MOTION)
            video = render_camera(sample_image(image), waves, PHOTO_MOTION, frames, height, width)
            source = f"skimage.data.{image}"
        else:
            video = render_shapes(rng, image, frames, height, width)
            source = f"shapes over skimage.data.{image}"
        return Clip(clip_id, source, 0, video.mul_(2.0).sub_(1.0))
