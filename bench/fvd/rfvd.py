"""rFVD: the Fréchet Video Distance between original clips and their reconstructions.

Two protocols:

- ``rfvd`` (default): one Gaussian over all original clips, one over all
  reconstructions, covariance with divisor n (StyleGAN-V, cd-fvd). States are float64
  sums, reduced by summation, so shards merge into exactly the one-pass value.
- ``rfvd-legacy-batch``: the official WF-VAE / Open-Sora-Plan evaluation, which scores
  each batch on its own (``np.cov``, divisor n - 1; a batch of one clip scores only the
  squared distance of the two feature vectors) and reports the mean over batches. Each
  ``update`` call is one batch. The value depends on the batch size, so it is for
  reproducing their tables only. (Their code takes ``scipy.linalg.sqrtm(S1 S2)`` of
  rank-deficient products; the symmetric form used here is the exact value that sqrtm
  approximates.)

A covariance of D-dimensional features needs more than D clips to have full rank; below
that the value is biased upwards and depends on the clip count, so compute() warns and
``n`` travels with every value.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from torchmetrics.utilities import dim_zero_cat

from vae_bench.fvd.extractors import FeatureExtractor, ResizeMode, build_extractor
from vae_bench.fvd.frechet import FeatureStats, frechet_distance_stats
from vae_bench.metric_info import known
from vae_bench.metrics.base import RankSafeMetric, synced


class SmallSampleWarning(UserWarning):
    """Too few clips for a full-rank feature covariance."""


def batch_frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """One batch's value in the official per-batch scripts (np.cov, mean term only for n=1)."""
    if real.shape[0] == 1:
        return float(np.square(real[0] - fake[0]).sum())
    return frechet_distance_stats(
        FeatureStats.from_features(fake), FeatureStats.from_features(real), ddof=1
    )


class RFVD(RankSafeMetric):
    """Reconstruction FVD; ``update(target, preds)`` takes [B, C, T, H, W] videos in [-1, 1].

    ``extractor``: a name (``styleganv-i3d``, ``videogpt-i3d``) built with ``weights``
    (None: the cache dir; a path; ``"random"``), or a ready FeatureExtractor.
    ``real_stats``: precomputed statistics of the originals (targets are then not
    extracted). ``keep_features``: keep per-clip features for ``bootstrap_ci``.
    ``resize``, ``seed`` (of random weights) and ``batch_size`` (clips per forward) apply
    to an extractor built by name.
    """

    name: ClassVar[str] = "rfvd"
    unit: ClassVar[str] = known("rfvd").unit
    higher_is_better: ClassVar[bool] = bool(known("rfvd").higher_is_better)
    is_differentiable: ClassVar[bool] = False
    full_state_update: ClassVar[bool] = False

    real_n: Tensor
    real_total: Tensor
    real_outer: Tensor
    fake_n: Tensor
    fake_total: Tensor
    fake_outer: Tensor
    batch_values: list[Tensor]
    real_features: list[Tensor]
    fake_features: list[Tensor]

    def __init__(
        self,
        extractor: str | FeatureExtractor = "styleganv-i3d",
        weights: str | Path | None = None,
        legacy_batch: bool = False,
        real_stats: FeatureStats | None = None,
        *,
        keep_features: bool = False,
        resize: ResizeMode = "short-side-crop",
        seed: int = 0,
        batch_size: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(extractor, FeatureExtractor):
            if weights is not None:
                raise ValueError("weights applies to an extractor name, not a built extractor")
            self.extractor = extractor
        else:
            self.extractor = build_extractor(
                extractor, weights, resize=resize, seed=seed, batch_size=batch_size
            )
        dim = self.extractor.feature_dim
        if real_stats is not None:
            if legacy_batch:
                raise ValueError(
                    "rfvd-legacy-batch scores each batch's own originals; it cannot use "
                    "precomputed real_stats"
                )
            if real_stats.dim != dim:
                raise ValueError(
                    f"real_stats are {real_stats.dim}-d, the extractor gives {dim}-d features"
                )
            if real_stats.n < 1:
                raise ValueError("real_stats hold no clips")
        self.legacy_batch = legacy_batch
        self.real_stats = real_stats
        self.keep_features = keep_features
        f64 = torch.float64
        for side in ("real", "fake"):
            self.add_state(f"{side}_n", torch.zeros((), dtype=f64), dist_reduce_fx="sum")
            self.add_state(f"{side}_total", torch.zeros(dim, dtype=f64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(dim, dim, dtype=f64), dist_reduce_fx="sum")
        self.add_state("batch_values", default=[], dist_reduce_fx="cat")
        self.add_state("real_features", default=[], dist_reduce_fx="cat")
        self.add_state("fake_features", default=[], dist_reduce_fx="cat")

    @property
    def protocol(self) -> str:
        if self.legacy_batch:
            head, tail = "rfvd-legacy-batch", "cov=1/(n-1);set=per-batch-mean"
        else:
            head, tail = "rfvd", "cov=1/n;set=whole"
        return f"{head}:{self.extractor.protocol};{tail}"

    @staticmethod
    def _check(target: Tensor, preds: Tensor) -> None:
        for label, video in (("target", target), ("preds", preds)):
            if not isinstance(video, Tensor) or video.ndim != 5 or not video.is_floating_point():
                raise ValueError(f"{label} must be a float video batch [B, C, T, H, W] in [-1, 1]")
        if target.shape != preds.shape:
            raise ValueError(
                f"target and preds shapes differ: {tuple(target.shape)} vs {tuple(preds.shape)}"
            )
        if target.shape[0] == 0:
            raise ValueError("empty video batch")
        for label, video in (("target", target), ("preds", preds)):
            if not bool(torch.isfinite(video).all()):
                raise ValueError(f"{label} has NaN or Inf values")

    def _accumulate(self, side: str, features: Tensor) -> None:
        setattr(self, f"{side}_n", getattr(self, f"{side}_n") + features.shape[0])
        setattr(self, f"{side}_total", getattr(self, f"{side}_total") + features.sum(dim=0))
        setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + features.T @ features)
        if self.keep_features:  # flat, so that a rank without clips syncs an empty 1-D state
            getattr(self, f"{side}_features").append(features.reshape(-1).double())

    def update(self, target: Tensor, preds: Tensor) -> None:
        self._check(target, preds)
        device = self.fake_total.device
        fake = self.extractor(preds).to(device)
        self._accumulate("fake", fake)
        if self.real_stats is not None:
            return
        real = self.extractor(target).to(device)
        self._accumulate("real", real)
        if self.legacy_batch:
            value = batch_frechet_distance(real.cpu().numpy(), fake.cpu().numpy())
            self.batch_values.append(torch.tensor([value], dtype=torch.float64, device=device))

    def _stats(self, side: str) -> FeatureStats:
        return FeatureStats(
            int(getattr(self, f"{side}_n").item()),
            getattr(self, f"{side}_total").cpu().numpy(),
            getattr(self, f"{side}_outer").cpu().numpy(),
        )

    def _list(self, name: str) -> Tensor:
        value = getattr(self, name)
        if isinstance(value, Tensor):  # after a distributed sync
            return value
        if not value:
            return torch.zeros(0, dtype=torch.float64)
        return dim_zero_cat(value)

    def _features(self, side: str) -> np.ndarray:
        flat = self._list(f"{side}_features").to("cpu", torch.float64).numpy()
        return flat.reshape(-1, self.extractor.feature_dim)

    def _real(self) -> FeatureStats:
        return self.real_stats if self.real_stats is not None else self._stats("real")

    def real_feature_stats(self) -> FeatureStats:
        """Statistics of the originals (precomputed or accumulated), e.g. to cache them."""
        with synced(self):
            return self._real()

    def fake_feature_stats(self) -> FeatureStats:
        with synced(self):
            return self._stats("fake")

    @property
    def n(self) -> int:
        """Reconstructed clips seen (all processes)."""
        with synced(self):
            return int(self.fake_n.item())

    @property
    def n_real(self) -> int:
        """Original clips behind the real statistics (precomputed or seen)."""
        with synced(self):
            return self._real().n

    def _warn_small(self, n: int, what: str) -> None:
        dim = self.extractor.feature_dim
        if n <= dim:
            warnings.warn(
                f"rFVD from {what} of {n} clip(s): {dim}-d features need more than {dim} "
                "clips for a full-rank covariance; the value is biased and depends on the "
                "clip count",
                SmallSampleWarning,
                stacklevel=3,
            )

    def compute(self) -> Tensor:
        fake = self._stats("fake")
        if fake.n == 0:
            raise ValueError("rFVD: no clips were scored")
        if self.legacy_batch:
            values = self._list("batch_values")
            self._warn_small(fake.n // max(values.numel(), 1), "batches averaging")
            return values.mean()
        real = self._real()
        self._warn_small(min(real.n, fake.n), "sets")
        value = frechet_distance_stats(real, fake, ddof=0)
        return torch.tensor(value, dtype=torch.float64, device=self.fake_total.device)

    def bootstrap_ci(
        self, resamples: int = 200, level: float = 0.95, seed: int = 0
    ) -> tuple[float, float]:
        """Percentile bootstrap interval, resampling clips (batches for the legacy protocol).

        Original and reconstructed clips are resampled as pairs; with precomputed
        real_stats only the reconstructions are resampled (the interval is conditional
        on the real set).
        """
        if resamples < 1 or not 0.0 < level < 1.0:
            raise ValueError(f"need resamples >= 1 and 0 < level < 1, got {resamples}, {level}")
        rng = np.random.default_rng(seed)
        with synced(self):
            if self.legacy_batch:
                values = self._list("batch_values").cpu().numpy()
                if values.size == 0:
                    raise ValueError("rFVD: no batches were scored")
                draws = [
                    float(values[rng.integers(0, values.size, values.size)].mean())
                    for _ in range(resamples)
                ]
            else:
                draws = self._bootstrap_sets(rng, resamples)
        alpha = (1.0 - level) / 2.0
        low, high = np.quantile(np.asarray(draws), [alpha, 1.0 - alpha])
        return float(low), float(high)

    def _bootstrap_sets(self, rng: np.random.Generator, resamples: int) -> list[float]:
        if not self.keep_features:
            raise ValueError(
                "bootstrap_ci needs per-clip features: build `RFVD(keep_features=True)`"
            )
        fake = self._features("fake")
        if fake.shape[0] == 0:
            raise ValueError("rFVD: no clips were scored")
        real = None if self.real_stats is not None else self._features("real")
        draws = []
        for _ in range(resamples):
            index = rng.integers(0, fake.shape[0], fake.shape[0])
            real_stats = (
                self.real_stats if real is None else FeatureStats.from_features(real[index])
            )
            draws.append(
                frechet_distance_stats(real_stats, FeatureStats.from_features(fake[index]))
            )
        return draws
