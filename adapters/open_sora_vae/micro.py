"""The release's micro-frame inference and the frame counts it implies.

The pipeline cuts the spatial latents of a clip into blocks of ``micro`` frames (17 in
the release's generation configs), encodes each block alone and concatenates the latents;
decoding cuts the latent into blocks of ``ceil(micro / 4)`` frames and decodes each with
its own frame count. Each block, the last (shorter) one included, is zero-padded in front
to a multiple of 4 frames by the temporal VAE, which drops as many decoded frames. With
no ``micro`` (the release's VAE evaluation config) the clip is one block.

The decoder must be told the clip length; the latent length alone fixes it only on a
frame rule. With ``T = 1 + 4k`` and ``micro = 1 + 4m`` it does: a block of ``micro``
frames is padded by 3 and gives ``m + 1`` latent frames, and the last block of ``r``
frames after ``q`` full ones has ``r = 1 - q*micro (mod 4)``, so its padding is
``(q*micro - 1) mod 4`` and ``r = 4j - padding`` for its ``j`` latent frames.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from vae_bench.adapters.base import AdapterError
from vae_bench.adapters.open_sora_vae.model import TEMPORAL_FACTOR

Fn = Callable[[torch.Tensor], torch.Tensor]


def check_micro(micro: int | None) -> None:
    if micro is not None and (micro < 1 or (micro - 1) % TEMPORAL_FACTOR):
        raise AdapterError(
            f"micro-frame blocks of {micro} frames: the block must be 1 + "
            f"{TEMPORAL_FACTOR}k frames (the release's is 17)"
        )


def _latents_per_block(micro: int) -> int:
    return -(-micro // TEMPORAL_FACTOR)


def latent_frames(frames: int, micro: int | None = None) -> int:
    """Latent frames of a ``frames``-long clip (the release's ``get_latent_size``)."""
    if micro is None:
        return -(-frames // TEMPORAL_FACTOR)
    full, rest = divmod(frames, micro)
    return full * _latents_per_block(micro) + -(-rest // TEMPORAL_FACTOR)


def clip_frames(latents: int, micro: int | None = None) -> int:
    """The ``T = 1 + 4k`` clip length whose latent has ``latents`` frames."""
    if latents < 1:
        raise AdapterError(f"a latent needs at least one frame, got {latents}")
    if micro is None:
        return TEMPORAL_FACTOR * latents - (TEMPORAL_FACTOR - 1)
    full, last = divmod(latents, _latents_per_block(micro))
    if last == 0:
        return full * micro
    padding = (full * micro - 1) % TEMPORAL_FACTOR
    return full * micro + TEMPORAL_FACTOR * last - padding


def encode_blocks(x: torch.Tensor, moments: Fn, micro: int | None) -> torch.Tensor:
    """Moments of the spatial latents ``x`` ``[B, C, T, h, w]``, block by block."""
    if micro is None:
        return moments(x)
    return torch.cat([moments(block) for block in x.split(micro, dim=2)], dim=2)


def decode_blocks(
    z: torch.Tensor, decode: Callable[[torch.Tensor, int], torch.Tensor], micro: int | None
) -> torch.Tensor:
    """Spatial latents of the ``T = 1 + 4k`` clip that ``z`` encodes, block by block,
    each block's decoder told its frame count as the release tells it."""
    frames = clip_frames(z.shape[2], micro)
    if micro is None:
        return decode(z, frames)
    parts = []
    for block in z.split(_latents_per_block(micro), dim=2):
        parts.append(decode(block, min(micro, frames)))
        frames -= micro
    return torch.cat(parts, dim=2)
