"""Spatial tiling the way the WF-VAE repository tiles its other model (OD-VAE's
``tiled_encode2d`` / ``tiled_decode2d``); the released WF-VAE itself has no spatial tiling.

Tiles of ``tile`` pixels start every ``tile - overlap`` pixels; each is run on the whole
clip; in the output, a tile's first ``blend`` rows/columns are linearly cross-faded with
the tile above/left of it and every tile is cropped to ``tile - overlap`` (output units).
As in the original, blending happens in place, so a tile blends with neighbours that were
already blended themselves, and the cross-fade weights run ``1 - i/blend`` to ``i/blend``
(never reaching 0): seams are softened, not removed. That is the behaviour measured.
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


def tiled(x: torch.Tensor, fn: Fn, tile: int, stride: int, keep: int, blend: int) -> torch.Tensor:
    """Apply ``fn`` on overlapping ``tile x tile`` windows of ``x`` (``[B, C, T, H, W]``).

    ``stride``/``tile`` are in input pixels; ``keep`` (crop) and ``blend`` in output pixels.
    """
    height, width = x.shape[-2:]
    rows = [
        [fn(x[..., i : i + tile, j : j + tile]) for j in range(0, width, stride)]
        for i in range(0, height, stride)
    ]
    out_rows = []
    for i, row in enumerate(rows):
        kept = []
        for j, current in enumerate(row):
            if i > 0:
                current = _blend(rows[i - 1][j], current, blend, dim=-2)
            if j > 0:
                current = _blend(row[j - 1], current, blend, dim=-1)
            kept.append(current[..., :keep, :keep])
        out_rows.append(torch.cat(kept, dim=-1))
    return torch.cat(out_rows, dim=-2)


def check_tiles(size: int, overlap: int, factor: int) -> None:
    if size % factor or overlap % factor:
        raise AdapterError(
            f"spatial_tiles({size}, {overlap}): tile size and overlap must be multiples "
            f"of the spatial factor {factor}"
        )


def tiled_encode(x: torch.Tensor, fn: Fn, size: int, overlap: int, factor: int) -> torch.Tensor:
    """Pixel tiles of ``size`` with ``overlap``; latent tiles blend ``overlap / factor``."""
    check_tiles(size, overlap, factor)
    latent_tile, latent_blend = size // factor, overlap // factor
    return tiled(x, fn, size, size - overlap, latent_tile - latent_blend, latent_blend)


def tiled_decode(z: torch.Tensor, fn: Fn, size: int, overlap: int, factor: int) -> torch.Tensor:
    """Latent tiles of ``size / factor`` (stride ``(size - overlap) / factor``); pixel
    tiles blend ``overlap`` and are cropped to ``size - overlap``."""
    check_tiles(size, overlap, factor)
    latent_tile, latent_overlap = size // factor, overlap // factor
    return tiled(z, fn, latent_tile, latent_tile - latent_overlap, size - overlap, overlap)
