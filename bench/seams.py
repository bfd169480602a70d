"""Where chunked or tiled inference joins separately computed pieces, and what it costs
there.

Block-wise inference (WF-VAE's Causal Cache, OD-VAE's temporal tiling) and spatial tiling
are claimed to match full inference; an error they add concentrates where two pieces meet.
The seams are known from the inference mode and the model's spec, so the reconstruction
of a non-full mode is compared with the same model's full-mode reconstruction at the
seams and away from them (both mapped to [0, 1]):

- ``seam_psnr_drop`` (dB): PSNR vs full of the pixels away from seams minus that of the
  pixels at seams (MSE pooled over each set, PSNR capped at :data:`PSNR_CAP` so identical
  outputs give 0 rather than inf - inf). Positive: the mode is worse at its seams.
  ``per_frame()[t]``: the same difference within frame ``t`` for spatial seams; for
  temporal seams, the clip's away-from-seam PSNR minus frame ``t``'s PSNR.
- ``seam_discontinuity`` ([0, 1] units): mean | Δrecon - Δfull | over the steps that cross
  a seam, Δ being the difference between the two sides (consecutive frames for temporal
  seams; adjacent rows/columns through the seam and its blend band for spatial ones).
  0 when the mode's output jumps across the seam exactly as full inference does.
  ``per_frame()[t]``: for temporal seams, the same quantity for every transition
  ``t - 1 -> t`` (index 0 NaN), so seams stand out against ordinary transitions; for
  spatial seams, the value within frame ``t``.

Temporal seams are output frames ``t`` where frame ``t - 1`` and frame ``t`` come from
different chunks; spatial seams are pixel rows/columns ``r`` where ``r - 1`` and ``r`` come
from different tiles, followed by ``blend`` cross-faded pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from vae_bench.adapters.base import InferenceMode, VAESpec
from vae_bench.metrics.base import VideoMetric

#: PSNR cap (dB) used inside the drop: an MSE of 1e-10 in [0, 1] units.
PSNR_CAP = 100.0
SEAM_METRICS = ("seam_psnr_drop", "seam_discontinuity")


@dataclass(frozen=True)
class SeamLayout:
    """The seams of one clip size under one inference mode (all empty: no seam)."""

    frames: tuple[int, ...] = ()
    rows: tuple[int, ...] = ()
    cols: tuple[int, ...] = ()
    blend: int = 0  # pixels after a spatial seam cross-faded between the two tiles

    @property
    def temporal(self) -> bool:
        return bool(self.frames)

    @property
    def empty(self) -> bool:
        return not (self.frames or self.rows or self.cols)

    def describe(self) -> str:
        """Compact form for the protocol column, e.g. ``seams=t5,9`` or
        ``seams=rows24;cols24,48;blend8``."""
        if self.frames:
            return "seams=t" + ",".join(map(str, self.frames))
        rows, cols = ",".join(map(str, self.rows)), ",".join(map(str, self.cols))
        return f"seams=rows{rows};cols{cols};blend{self.blend}"


TemporalRule = Callable[[InferenceMode, VAESpec, int], tuple[int, ...]]


def _od_vae_temporal(mode: InferenceMode, spec: VAESpec, frames: int) -> tuple[int, ...]:
    from vae_bench.adapters.od_vae.tiling import TemporalTiles

    assert mode.size is not None
    return TemporalTiles(mode.size, mode.overlap, spec.temporal_factor).seams(frames)


def _from_frame_zero(mode: InferenceMode, spec: VAESpec, frames: int) -> tuple[int, ...]:
    """Blocks of ``size`` frames from frame 0 although the model is causal (Open-Sora's
    micro-frame blocks: each block's first frame is encoded alone)."""
    assert mode.size is not None
    return tuple(range(mode.size, frames, mode.size))


#: Families whose temporal chunking is not plain blocks (keyed by ``VAESpec.family``).
TEMPORAL_RULES: dict[str, TemporalRule] = {
    "od-vae": _od_vae_temporal,
    "open-sora-vae": _from_frame_zero,
}
#: Families whose spatial tiling runs a frame that fits in one tile whole (no seam).
WHOLE_WHEN_FITS = frozenset({"od-vae", "sd-vae"})
#: Families whose tile grid stops at the first tile that reaches the edge (CV-VAE's).
EDGE_STOPPING = frozenset({"cv-vae"})


def _block_seams(mode: InferenceMode, spec: VAESpec, frames: int) -> tuple[int, ...]:
    """Plain blocks of ``size`` frames: after frame 0 for causal models (frame 0 is
    encoded alone, then blocks), from frame 0 otherwise."""
    assert mode.size is not None
    start = 1 if spec.causal else 0
    return tuple(range(start + mode.size, frames, mode.size))


def seam_layout(
    mode: InferenceMode | str, spec: VAESpec, frames: int, height: int, width: int
) -> SeamLayout:
    """The seams of a ``frames x height x width`` clip under ``mode`` (``full``: none)."""
    mode = InferenceMode.parse(mode)
    if mode.kind == "temporal_chunks":
        rule = TEMPORAL_RULES.get(spec.family, _block_seams)
        return SeamLayout(frames=tuple(s for s in rule(mode, spec, frames) if 0 < s < frames))
    if mode.kind == "spatial_tiles":
        assert mode.size is not None
        if spec.family in WHOLE_WHEN_FITS and height <= mode.size and width <= mode.size:
            return SeamLayout()
        from vae_bench.adapters.spatial_tiling import tile_starts

        stride, stop = mode.size - mode.overlap, spec.family in EDGE_STOPPING
        rows, cols = (tuple(tile_starts(n, mode.size, stride, stop)[1:]) for n in (height, width))
        return SeamLayout(rows=rows, cols=cols, blend=mode.overlap)
    return SeamLayout()


def _capped_psnr(mse: Tensor) -> Tensor:
    return -10.0 * torch.log10(mse.clamp(min=10.0 ** (-PSNR_CAP / 10.0)))


def _error(full: Tensor, preds: Tensor) -> Tensor:
    """preds - full in [0, 1] units, float32."""
    return (preds.float().clamp(-1.0, 1.0) - full.float().clamp(-1.0, 1.0)) / 2.0


def _band(seams: tuple[int, ...], blend: int, size: int) -> Tensor:
    """[size] bool: the pixel on each side of a seam and its blend band."""
    mask = torch.zeros(size, dtype=torch.bool)
    for seam in seams:
        mask[max(seam - 1, 0) : min(seam + blend + 1, size)] = True
    return mask


class _SeamMetric(VideoMetric):
    """Compares a mode's reconstruction (``preds``) with the full-mode one (``target``)."""

    def __init__(self, layout: SeamLayout, **kwargs) -> None:
        super().__init__(**kwargs)
        if layout.empty:
            raise ValueError("a seam metric needs a layout with at least one seam")
        self.layout = layout

    @property
    def protocol(self) -> str:
        reference = "reference=full-mode-reconstruction"
        return f"{self.name}:{reference};range=[0,1];{self.layout.describe()}"


class SeamPSNRDrop(_SeamMetric):
    """PSNR vs full away from seams minus at seams (dB; higher: worse at the seams)."""

    name = "seam_psnr_drop"

    def _score(self, target: Tensor, preds: Tensor) -> tuple[Tensor, Tensor]:
        sq = _error(target, preds).square_().mean(dim=1)  # [B, T, H, W]
        frames = sq.shape[1]
        if self.layout.temporal:
            at = torch.zeros(frames, dtype=torch.bool)
            for seam in self.layout.frames:
                at[seam - 1 : seam + 1] = True
            frame_mse = sq.flatten(2).sum(dim=-1, dtype=torch.float64) / sq[0, 0].numel()
            at = at.to(frame_mse.device)
            away = _capped_psnr(frame_mse[:, ~at].mean(dim=1)) if (~at).any() else None
            seam = _capped_psnr(frame_mse[:, at].mean(dim=1))
            if away is None:  # every frame touches a seam: nothing to compare with
                nan = torch.full_like(seam, math.nan)
                return nan, nan[:, None].expand(-1, frames).clone()
            return away - seam, away[:, None] - _capped_psnr(frame_mse)
        height, width = sq.shape[-2:]
        mask = _band(self.layout.rows, self.layout.blend, height)[:, None] | _band(
            self.layout.cols, self.layout.blend, width
        )[None, :]
        mask = mask.to(sq.device)
        seam_sum = sq[..., mask].sum(dim=-1, dtype=torch.float64)  # [B, T]
        away_sum = sq[..., ~mask].sum(dim=-1, dtype=torch.float64)
        n_seam, n_away = int(mask.sum()), int((~mask).sum())
        if n_away == 0:
            nan = torch.full(seam_sum.shape, math.nan, dtype=torch.float64, device=sq.device)
            return nan[:, 0], nan
        per_frame = _capped_psnr(away_sum / n_away) - _capped_psnr(seam_sum / n_seam)
        clip = _capped_psnr(away_sum.sum(1) / (n_away * frames)) - _capped_psnr(
            seam_sum.sum(1) / (n_seam * frames)
        )
        return clip, per_frame


class SeamDiscontinuity(_SeamMetric):
    """Mean |Δrecon - Δfull| over the steps crossing a seam ([0, 1] units)."""

    name = "seam_discontinuity"

    def _score(self, target: Tensor, preds: Tensor) -> tuple[Tensor, Tensor]:
        error = _error(target, preds)  # Δrecon - Δfull = the step of the error
        if self.layout.temporal:
            steps = (error[:, :, 1:] - error[:, :, :-1]).abs_()
            per_step = steps.transpose(1, 2).flatten(2).mean(dim=-1, dtype=torch.float64)
            index = torch.tensor([s - 1 for s in self.layout.frames], device=per_step.device)
            clip = per_step[:, index].mean(dim=1)
            # transition t-1 -> t at index t; index 0 has none
            nan = torch.full_like(per_step[:, :1], math.nan)
            return clip, torch.cat([nan, per_step], dim=1)
        rows = [r for seam in self.layout.rows for r in self._steps(seam, error.shape[-2])]
        cols = [c for seam in self.layout.cols for c in self._steps(seam, error.shape[-1])]
        sums = torch.zeros(error.shape[0], error.shape[2], dtype=torch.float64, device=error.device)
        count = 0
        for dim, steps in ((-2, rows), (-1, cols)):
            if not steps:
                continue
            index = torch.tensor(steps, device=error.device)
            step = (error.index_select(dim, index) - error.index_select(dim, index - 1)).abs_()
            sums += step.transpose(1, 2).flatten(2).sum(dim=-1, dtype=torch.float64)
            count += step[0, :, 0].numel()
        per_frame = sums / count
        return per_frame.mean(dim=1), per_frame

    def _steps(self, seam: int, size: int) -> list[int]:
        """Indices ``i`` (step ``i - 1 -> i``) from the seam through its blend band."""
        return [i for i in range(seam, seam + self.layout.blend + 1) if 0 < i < size]

    def update(self, target: Tensor, preds: Tensor) -> None:
        """As the base class, but NaN (no transition into frame 0) is not summed."""
        super().update(target, preds)
        if self.layout.temporal:
            self.frame_sum[0] = 0.0
            self.frame_count[0] = 0.0


def build_seam_metrics(
    mode: InferenceMode | str, spec: VAESpec, frames: int, height: int, width: int
) -> tuple[list[VideoMetric], str]:
    """The seam metrics of a cell, or none and the reason (full mode, or no seam fits)."""
    mode = InferenceMode.parse(mode)
    if mode.kind == "full":
        return [], "full inference has no seams"
    layout = seam_layout(mode, spec, frames, height, width)
    if layout.empty:
        return [], f"{mode.label} has no seam inside a {frames}x{height}x{width} clip"
    return [SeamPSNRDrop(layout), SeamDiscontinuity(layout)], ""
