"""Spatial tiling the way the WF-VAE repository tiles its other model (OD-VAE's
``tiled_encode2d`` / ``tiled_decode2d``); the released WF-VAE itself has no spatial tiling.

Tiles of ``tile`` pixels start every ``tile - overlap`` pixels; each is run on the whole
clip; in the output, a tile's first ``blend`` rows/columns are linearly cross-faded with
the tile above/left of it and every tile is cropped to ``tile - overlap`` (output units).
As in the original, blending happens in place, so a tile blends with neighbours that were
already blended themselves, and the cross-fade weights run ``1 - i/blend`` to ``i/blend``
(never reaching 0): seams are softened, not removed. That is the behaviour measured.

``stop_at_edge`` is CV-VAE's variant of the same grid: no tile starts after the first one
that reaches the far edge, and the last row and column are kept whole instead of cropped.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from vae_bench.adapters.base import AdapterError

Fn = Callable[[torch.Tensor], torch.Tensor]


def _blend(previous: torch.Tensor, tile: torch.Tensor, extent: int, dim: int) -> torch.Tensor:
    """Cross-fade the first ``extent`` slices of ``tile`` along ``dim`` with the last ones
    of ``previous`` (in place, as the original does)."""
    extent = min(previous.shape[dim], tile.shape[dim], extent)
    if extent <= 0:
        return tile
    shape = [1] * tile.ndim
    shape[dim] = extent
    weight = (torch.arange(extent, dtype=torch.float64) / extent).to(tile.dtype).reshape(shape)
    head = tile.narrow(dim, 0, extent)
    tail = previous.narrow(dim, previous.shape[dim] - extent, extent)
    head.copy_(tail * (1 - weight) + head * weight)
    return tile


def tile_starts(size: int, tile: int, stride: int, stop_at_edge: bool = False) -> list[int]:
    """Where tiles start along one axis of ``size`` pixels."""
    starts = []
    for start in range(0, size, stride):
        starts.append(start)
        if stop_at_edge and start + tile >= size:
            break
    return starts


def tiled(
    x: torch.Tensor,
    fn: Fn,
    tile: int,
    stride: int,
    keep: int,
    blend: int,
    *,
    stop_at_edge: bool = False,
) -> torch.Tensor:
    """Apply ``fn`` on overlapping ``tile x tile`` windows of ``x`` (``[B, C, T, H, W]``).

    ``stride``/``tile`` are in input pixels; ``keep`` (crop) and ``blend`` in output pixels.
    """
    rows_at, cols_at = (tile_starts(size, tile, stride, stop_at_edge) for size in x.shape[-2:])
    rows = [[fn(x[..., i : i + tile, j : j + tile]) for j in cols_at] for i in rows_at]
    edge = None if stop_at_edge else keep  # the crop of the last row and column
    out_rows = []
    for i, row in enumerate(rows):
        kept = []
        for j, current in enumerate(row):
            if i > 0:
                current = _blend(rows[i - 1][j], current, blend, dim=-2)
            if j > 0:
                current = _blend(row[j - 1], current, blend, dim=-1)
            height = keep if i < len(rows) - 1 else edge
            width = keep if j < len(row) - 1 else edge
            kept.append(current[..., :height, :width])
        out_rows.append(torch.cat(kept, dim=-1))
    return torch.cat(out_rows, dim=-2)


def check_tiles(size: int, overlap: int, factor: int) -> None:
    if size % factor or overlap % factor:
        raise AdapterError(
            f"spatial_tiles({size}, {overlap}): tile size and overlap must be multiples "
            f"of the spatial factor {factor}"
        )


def tiled_encode(
    x: torch.Tensor, fn: Fn, size: int, overlap: int, factor: int, *, stop_at_edge: bool = False
) -> torch.Tensor:
    """Pixel tiles of ``size`` with ``overlap``; latent tiles blend ``overlap / factor``."""
    check_tiles(size, overlap, factor)
    latent_tile, latent_blend = size // factor, overlap // factor
    return tiled(
        x, fn, size, size - overlap, latent_tile - latent_blend, latent_blend,
        stop_at_edge=stop_at_edge,
    )  # fmt: skip


def tiled_decode(
    z: torch.Tensor, fn: Fn, size: int, overlap: int, factor: int, *, stop_at_edge: bool = False
) -> torch.Tensor:
    """Latent tiles of ``size / factor`` (stride ``(size - overlap) / factor``); pixel
    tiles blend ``overlap`` and are cropped to ``size - overlap``."""
    check_tiles(size, overlap, factor)
    latent_tile, latent_overlap = size // factor, overlap // factor
    return tiled(
        z, fn, latent_tile, latent_tile - latent_overlap, size - overlap, overlap,
        stop_at_edge=stop_at_edge,
    )  # fmt: skip
