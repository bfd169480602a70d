"""Where rFVD files live: the weights directory and the cache of real-set statistics.

A model sweep scores many reconstructions of the same originals; their features depend
only on the dataset, the protocol and the extractor, so they are extracted once and kept
as a small .npz keyed by those three.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from vae_bench.fvd.frechet import FeatureStats

CACHE_ENV = "VAE_BENCH_CACHE"


def cache_root() -> Path:
    """The suite's cache: $VAE_BENCH_CACHE, or ~/.cache/vae-bench."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "vae-bench"


def cache_dir() -> Path:
    """rFVD's directory: $VAE_BENCH_CACHE/fvd, or ~/.cache/vae-bench/fvd."""
    return cache_root() / "fvd"


def stats_key(dataset: str, protocol: str, extractor: str) -> str:
    """A file-name-safe key: a readable dataset prefix and a hash of all three parts."""
    for label, value in (("dataset", dataset), ("protocol", protocol), ("extractor", extractor)):
        if not value:
            raise ValueError(f"stats_key: {label} must be a non-empty string")
    text = json.dumps([dataset, protocol, extractor])
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset.split(";")[0])[:40].strip("_.") or "dataset"
    return f"{prefix}-{digest}"


class StatsCache:
    """Real-set feature statistics on disk, one .npz per key (default: cache_dir()/stats)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "stats"

    def path(self, dataset: str, protocol: str, extractor: str) -> Path:
        return self.root / f"{stats_key(dataset, protocol, extractor)}.npz"

    def load(self, dataset: str, protocol: str, extractor: str) -> FeatureStats | None:
        """The cached statistics, or None when absent.

        A file whose recorded key differs (a hash collision or a hand-copied file) is an
        error, never a silent reuse.
        """
        path = self.path(dataset, protocol, extractor)
        if not path.exists():
            return None
        stats, meta = FeatureStats.load(path)
        wanted = {"dataset": dataset, "protocol": protocol, "extractor": extractor}
        recorded = {k: meta.get(k) for k in wanted}
        if recorded != wanted:
            raise ValueError(f"{path}: cached statistics are for {recorded}, not {wanted}")
        return stats

    def save(self, dataset: str, protocol: str, extractor: str, stats: FeatureStats) -> Path:
        meta = {"dataset": dataset, "protocol": protocol, "extractor": extractor}
        return stats.save(self.path(dataset, protocol, extractor), meta)
