"""Feature statistics that stream and merge, and the Fréchet distance between two Gaussians.

Statistics are float64 running sums (count, sum, sum of outer products): shards from
batches or processes add exactly, so a sharded run gives the one-pass numbers. The
Fréchet distance is

    ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2),

where the last trace equals tr((S1 S2)^1/2) but is taken from a symmetric positive
semi-definite matrix by eigendecomposition (eigenvalues at rounding level, negative
ones included, set to 0). That stays real and finite for the rank-deficient covariances that a few
hundred clips give in 400 dimensions, where a general matrix square root of S1 S2 drifts
into complex values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class FeatureStats:
    """Sufficient statistics of a feature set: n, sum of x, sum of x x^T (float64)."""

    n: int
    total: Array
    outer: Array

    def __post_init__(self) -> None:
        total = np.asarray(self.total, dtype=np.float64)
        outer = np.asarray(self.outer, dtype=np.float64)
        if total.ndim != 1 or outer.shape != (total.shape[0], total.shape[0]):
            raise ValueError(
                f"FeatureStats needs total [D] and outer [D, D], got {total.shape} and "
                f"{outer.shape}"
            )
        if int(self.n) != self.n or self.n < 0:
            raise ValueError(f"FeatureStats.n must be a non-negative integer, got {self.n!r}")
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "total", total)
        object.__setattr__(self, "outer", outer)

    @classmethod
    def zeros(cls, dim: int) -> FeatureStats:
        return cls(0, np.zeros(dim), np.zeros((dim, dim)))

    @classmethod
    def from_features(cls, features: ArrayLike) -> FeatureStats:
        """Statistics of an [N, D] feature matrix."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be [N, D], got shape {x.shape}")
        return cls(x.shape[0], x.sum(axis=0), x.T @ x)

    @property
    def dim(self) -> int:
        return int(self.total.shape[0])

    def __add__(self, other: FeatureStats) -> FeatureStats:
        if not isinstance(other, FeatureStats):
            return NotImplemented
        if other.dim != self.dim:
            raise ValueError(f"cannot merge {self.dim}-d and {other.dim}-d feature statistics")
        return FeatureStats(self.n + other.n, self.total + other.total, self.outer + other.outer)

    def mean(self) -> Array:
        self._need(1)
        return self.total / self.n

    def covariance(self, ddof: int = 0) -> Array:
        """Covariance with divisor n - ddof (0: StyleGAN-V/cd-fvd; 1: numpy's np.cov)."""
        self._need(ddof + 1)
        mean = self.mean()
        cov = (self.outer - self.n * np.outer(mean, mean)) / (self.n - ddof)
        return (cov + cov.T) / 2.0

    def _need(self, count: int) -> None:
        if self.n < count:
            raise ValueError(f"feature statistics of {self.n} clip(s); need at least {count}")

    def save(self, path: str | Path, meta: Mapping[str, str] | None = None) -> Path:
        """Write an .npz (atomically: a temporary file, then a rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(
            tmp,
            n=np.int64(self.n),
            total=self.total,
            outer=self.outer,
            meta=np.array(json.dumps(dict(meta or {}), sort_keys=True)),
        )
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> tuple[FeatureStats, dict[str, str]]:
        """Read an .npz written by ``save``; returns (stats, meta)."""
        with np.load(Path(path), allow_pickle=False) as data:
            missing = {"n", "total", "outer", "meta"} - set(data.files)
            if missing:
                raise ValueError(
                    f"{path}: not a feature-statistics file (missing {sorted(missing)})"
                )
            stats = cls(int(data["n"]), data["total"], data["outer"])
            meta = json.loads(str(data["meta"]))
        return stats, meta


def _symmetric(a: ArrayLike) -> Array:
    m = np.asarray(a, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {m.shape}")
    return (m + m.T) / 2.0


def _psd_eigenvalues(eigenvalues: Array) -> Array:
    """Zero the eigenvalues that are rounding noise of a PSD matrix.

    Below ``dim * eps * max|eigenvalue|`` an eigenvalue is indistinguishable from 0 (and
    may be negative); its square root would add ~sqrt(noise) per null direction, which
    adds up over the hundreds of null directions of a covariance from few clips.
    """
    scale = float(np.abs(eigenvalues).max(initial=0.0))
    cutoff = eigenvalues.size * np.finfo(np.float64).eps * scale
    return np.where(eigenvalues > cutoff, eigenvalues, 0.0)


def sqrtm_psd(a: ArrayLike) -> Array:
    """Principal square root of a symmetric positive semi-definite matrix.

    Eigenvalues at rounding level (including small negative ones) count as zero.
    """
    eigenvalues, vectors = np.linalg.eigh(_symmetric(a))
    return (vectors * np.sqrt(_psd_eigenvalues(eigenvalues))) @ vectors.T


def trace_sqrt_product(s1: ArrayLike, s2: ArrayLike) -> float:
    """tr((S1 S2)^1/2) for PSD S1, S2, via the symmetric S1^1/2 S2 S1^1/2."""
    root = sqrtm_psd(s1)
    eigenvalues = np.linalg.eigvalsh(_symmetric(root @ _symmetric(s2) @ root))
    return float(np.sqrt(_psd_eigenvalues(eigenvalues)).sum())


def frechet_distance(mu1: ArrayLike, s1: ArrayLike, mu2: ArrayLike, s2: ArrayLike) -> float:
    """Fréchet (2-Wasserstein squared) distance between N(mu1, S1) and N(mu2, S2).

    The true value is non-negative; rounding below zero (identical sets) is returned as 0.
    """
    m1, m2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    c1, c2 = _symmetric(s1), _symmetric(s2)
    if m1.shape != m2.shape or c1.shape != c2.shape or c1.shape != (m1.size, m1.size):
        raise ValueError(
            f"mismatched Gaussians: means {m1.shape}, {m2.shape}; covariances {c1.shape}, "
            f"{c2.shape}"
        )
    mean_term = float(np.square(m1 - m2).sum())
    cov_term = float(np.trace(c1) + np.trace(c2)) - 2.0 * trace_sqrt_product(c1, c2)
    value = mean_term + cov_term
    if not np.isfinite(value):
        raise FloatingPointError(f"Fréchet distance is not finite ({value}); check the features")
    return max(value, 0.0)


def frechet_distance_stats(a: FeatureStats, b: FeatureStats, ddof: int = 0) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets."""
    if a.dim != b.dim:
        raise ValueError(f"feature dimensions differ: {a.dim} vs {b.dim}")
    return frechet_distance(a.mean(), a.covariance(ddof), b.mean(), b.covariance(ddof))
