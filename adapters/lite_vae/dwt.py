"""The multi-level 2D Haar wavelet transform that LiteVAE's encoder reads.

The convention is that of the released checkpoint (open-litevae computes it with
torch-dwt's ``dwt2(x, "haar")``): orthonormal Haar filters, so every 2x2 block
``[[a, b], [c, d]]`` (rows along the height) gives

* ``ll = (a + b + c + d) / 2``   (low-pass both ways)
* ``lh = (a - b + c - d) / 2``   (difference across the width)
* ``hl = (a + b - c - d) / 2``   (difference across the height)
* ``hh = (a - b - c + d) / 2``   (both differences)

laid out band-major, ``channel = band * C + c`` in the order ``ll, lh, hl, hh``: the order in
which the checkpoint's first convolutions were trained. The orthonormal scale keeps the
energy of the image (Parseval), so the inverse is the transpose.

Level ``l`` (from 0) of the multi-level transform is the one-level transform of the ``ll``
band of level ``l - 1`` (of the image for level 0), at ``1 / 2**(l + 1)`` of the resolution;
every level keeps its ``ll`` band, as the encoder feeds all four bands of each level to that
level's feature extractor.
"""

from __future__ import annotations

import torch

BANDS = ("ll", "lh", "hl", "hh")


def _check_even(x: torch.Tensor, what: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{what} needs [N, C, H, W], got shape {tuple(x.shape)}")
    if x.shape[-2] % 2 or x.shape[-1] % 2:
        raise ValueError(f"{what} needs an even height and width, got {x.shape[-2]}x{x.shape[-1]}")


def haar_dwt2(x: torch.Tensor) -> torch.Tensor:
    """One level: ``[N, C, H, W] -> [N, 4C, H/2, W/2]`` (bands ``ll, lh, hl, hh``)."""
    _check_even(x, "haar_dwt2")
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    top_sum, top_diff = a + b, a - b
    bottom_sum, bottom_diff = c + d, c - d
    bands = (
        top_sum + bottom_sum,
        top_diff + bottom_diff,
        top_sum - bottom_sum,
        top_diff - bottom_diff,
    )
    return torch.cat(bands, dim=1) * 0.5


def haar_idwt2(coeffs: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`haar_dwt2`: ``[N, 4C, h, w] -> [N, C, 2h, 2w]``."""
    if coeffs.ndim != 4 or coeffs.shape[1] % 4:
        raise ValueError(
            f"haar_idwt2 needs [N, 4C, h, w] coefficients, got shape {tuple(coeffs.shape)}"
        )
    ll, lh, hl, hh = coeffs.chunk(4, dim=1)
    n, c, h, w = ll.shape
    out = coeffs.new_empty((n, c, 2 * h, 2 * w))
    out[..., 0::2, 0::2] = ll + lh + hl + hh
    out[..., 0::2, 1::2] = ll - lh + hl - hh
    out[..., 1::2, 0::2] = ll + lh - hl - hh
    out[..., 1::2, 1::2] = ll - lh - hl + hh
    return out * 0.5


def haar_dwt2_levels(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """``levels`` levels, finest first: level ``l`` is ``[N, 4C, H/2**(l+1), W/2**(l+1)]``."""
    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}")
    size = 2**levels
    if x.ndim != 4 or x.shape[-2] % size or x.shape[-1] % size:
        raise ValueError(
            f"a {levels}-level transform needs [N, C, H, W] with H and W divisible by {size}, "
            f"got shape {tuple(x.shape)}"
        )
    channels = x.shape[1]
    out = []
    low = x
    for _ in range(levels):
        coeffs = haar_dwt2(low)
        out.append(coeffs)
        low = coeffs[:, :channels]
    return out


def haar_idwt2_levels(levels: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The image from :func:`haar_dwt2_levels`' output: the coarsest level whole, then each
    finer level's detail bands with the ``ll`` band rebuilt from the level below it."""
    if not levels:
        raise ValueError("haar_idwt2_levels needs at least one level")
    image = haar_idwt2(levels[-1])
    for coeffs in reversed(levels[:-1]):
        channels = coeffs.shape[1] // 4
        if image.shape != coeffs[:, :channels].shape:
            raise ValueError(
                f"level shapes do not chain: rebuilt ll {tuple(image.shape)} vs level "
                f"{tuple(coeffs.shape)}"
            )
        image = haar_idwt2(torch.cat([image, coeffs[:, channels:]], dim=1))
    return image
