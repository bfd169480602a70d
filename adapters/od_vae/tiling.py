"""The release's temporal tiling ("temporal rollback tiled convolution") and a measure of
what tiling changes.

A causal VAE treats the first frame of any window as an image. So the release cuts a clip
into windows that share their boundary frame, encodes each window alone and drops, in
every window but the first, the latent frame of that shared frame (it was encoded as an
image); decoding cuts the latent the same way and drops the one decoded frame of the
shared latent frame. Nothing is blended in time. Windows and latents stay aligned because
every window starts on a multiple of the temporal factor ``f``.

``temporal_chunks(size, overlap)`` here: encode windows of ``size = 1 + f*k`` frames;
``overlap`` extra frames (a multiple of ``f``) re-encoded at each boundary and dropped
with the shared frame (0, the release's Open-Sora Plan v1.2 default; ``f`` is the WF-VAE
repository's ``tile_overlap_t = 2``). Decode windows hold half the latent frames of encode
windows, rounded up: 33 frames (9 latent frames) to encode, 17 (5) to decode, the pair the
release's code names; a model whose release sizes its decode windows otherwise passes
``decode_size`` (CV-VAE: as many latent frames as its encode windows give). Memory is
bounded by the window, whatever the clip length.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from vae_bench.adapters.base import AdapterError

Fn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TemporalTiles:
    """The window grid of one ``temporal_chunks(size, overlap)`` mode for factor ``f``."""

    size: int
    overlap: int
    factor: int
    decode_size: int = 0  # latent frames per decode window; 0: the release's half, above

    def __post_init__(self) -> None:
        f, label = self.factor, f"temporal_chunks({self.size}, {self.overlap})"
        if self.overlap < 0 or self.overlap % f:
            raise AdapterError(f"{label}: the overlap must be a multiple of {f} frames")
        smallest = 1 + 2 * f * (1 + self.overlap // f)  # each decode window must advance
        if self.decode_size:
            smallest = 1 + f * (1 + self.overlap // f)
        if (self.size - 1) % f or self.size < smallest or self.decode_stride < 1:
            raise AdapterError(
                f"{label}: the window must be 1 + {f}k frames and at least {smallest} "
                f"with this overlap"
            )

    @property
    def latent_overlap(self) -> int:
        return self.overlap // self.factor

    @property
    def encode_stride(self) -> int:
        """Frames between window starts (the shared frame and the overlap are re-read)."""
        return self.size - 1 - self.overlap

    @property
    def decode_latents(self) -> int:
        return self.decode_size or (1 + (self.size - 1) // self.factor + 1) // 2

    @property
    def decode_stride(self) -> int:
        return self.decode_latents - 1 - self.latent_overlap

    def encode_spans(self, frames: int) -> list[tuple[int, int]]:
        return spans(frames, self.size, self.encode_stride)

    def decode_spans(self, latent_frames: int) -> list[tuple[int, int]]:
        return spans(latent_frames, self.decode_latents, self.decode_stride)

    def seams(self, frames: int) -> tuple[int, ...]:
        """Frames of a reconstructed clip where a later window's kept output starts: after
        an encode window boundary or a decode window boundary."""
        f = self.factor
        encode = [start + self.overlap + 1 for start, _ in self.encode_spans(frames)[1:]]
        latent_frames = 1 + (frames - 1) // f
        decode = [
            f * (start + self.latent_overlap) + 1
            for start, _ in self.decode_spans(latent_frames)[1:]
        ]
        return tuple(sorted(set(encode + decode)))


def spans(length: int, window: int, stride: int) -> list[tuple[int, int]]:
    """Windows ``[start, end)`` every ``stride``, the last one cut at ``length``."""
    result, start = [], 0
    while True:
        end = min(start + window, length)
        result.append((start, end))
        if end >= length:
            return result
        start += stride


def _run(
    x: torch.Tensor,
    fn: Fn,
    windows: Sequence[tuple[int, int]],
    drop: int,
    total: int,
) -> torch.Tensor:
    """``fn`` on each window of ``x`` (time axis 2), later windows' first ``drop`` outputs
    dropped, written into one preallocated result of ``total`` frames."""
    out: torch.Tensor | None = None
    position = 0
    for index, (start, end) in enumerate(windows):
        result = fn(x[:, :, start:end])
        if index:
            result = result[:, :, drop:]
        if out is None:
            out = result.new_empty((*result.shape[:2], total, *result.shape[3:]))
        out[:, :, position : position + result.shape[2]] = result
        position += result.shape[2]
    if out is None or position != total:
        raise AdapterError(f"temporal tiling produced {position} frames, expected {total}")
    return out


def encode_chunks(x: torch.Tensor, fn: Fn, tiles: TemporalTiles) -> torch.Tensor:
    """Encoder output of a clip ``[B, C, 1 + f*k, H, W]`` window by window."""
    latent_frames = 1 + (x.shape[2] - 1) // tiles.factor
    return _run(x, fn, tiles.encode_spans(x.shape[2]), 1 + tiles.latent_overlap, latent_frames)


def decode_chunks(z: torch.Tensor, fn: Fn, tiles: TemporalTiles) -> torch.Tensor:
    """Decoder output of a latent ``[B, C, T', H, W]`` window by window."""
    frames = 1 + tiles.factor * (z.shape[2] - 1)
    return _run(z, fn, tiles.decode_spans(z.shape[2]), 1 + tiles.overlap, frames)


# --- what tiling changes ---------------------------------------------------------------
def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> float:
    """PSNR in dB over all elements (``inf`` when equal); ``data_range`` 2 for [-1, 1]."""
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)


@dataclass(frozen=True)
class TilingGap:
    """How far a tiled output is from the one-pass output, overall and at the seams."""

    psnr: float
    seam_psnr: float
    max_abs: float
    seams: tuple[int, ...]


def tiling_gap(
    tiled: torch.Tensor,
    full: torch.Tensor,
    seams: Sequence[int],
    dim: int = 2,
    radius: int = 0,
    data_range: float = 2.0,
) -> TilingGap:
    """PSNR of ``tiled`` against ``full`` over everything and over the slices within
    ``radius`` of each seam along ``dim`` (``seam_psnr`` is ``nan`` without seams)."""
    if tiled.shape != full.shape:
        raise AdapterError(f"tiled {tuple(tiled.shape)} and full {tuple(full.shape)} differ")
    length = full.shape[dim]
    near = sorted({i for s in seams for i in range(s - radius, s + radius + 1) if 0 <= i < length})
    if near:
        index = torch.tensor(near, device=full.device)
        seam = psnr(tiled.index_select(dim, index), full.index_select(dim, index), data_range)
    else:
        seam = math.nan
    return TilingGap(
        psnr=psnr(tiled, full, data_range),
        seam_psnr=seam,
        max_abs=(tiled.double() - full.double()).abs().max().item(),
        seams=tuple(near),
    )
