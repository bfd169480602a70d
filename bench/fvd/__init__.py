"""rFVD: I3D feature extractors, streaming feature statistics and the Fréchet distance.

``RFVD(extractor="styleganv-i3d", weights=...)`` is a torchmetrics metric over
(target, preds) video batches; ``build_extractor`` gives the feature networks with their
preprocessing; ``StatsCache`` keeps the originals' statistics between runs.
"""

from __future__ import annotations

from vae_bench.fvd.cache import CACHE_ENV, StatsCache, cache_dir, stats_key
from vae_bench.fvd.extractors import (
    EXTRACTORS,
    RANDOM,
    FeatureExtractor,
    Preprocess,
    build_extractor,
    random_i3d,
    resolve_weights,
)
from vae_bench.fvd.frechet import (
    FeatureStats,
    frechet_distance,
    frechet_distance_stats,
    sqrtm_psd,
    trace_sqrt_product,
)
from vae_bench.fvd.i3d import MIN_FRAMES, MIN_SIZE, InceptionI3d
from vae_bench.fvd.rfvd import RFVD, SmallSampleWarning, batch_frechet_distance

__all__ = [
    "CACHE_ENV",
    "EXTRACTORS",
    "MIN_FRAMES",
    "MIN_SIZE",
    "RANDOM",
    "RFVD",
    "FeatureExtractor",
    "FeatureStats",
    "InceptionI3d",
    "Preprocess",
    "SmallSampleWarning",
    "StatsCache",
    "batch_frechet_distance",
    "build_extractor",
    "cache_dir",
    "frechet_distance",
    "frechet_distance_stats",
    "random_i3d",
    "resolve_weights",
    "sqrtm_psd",
    "stats_key",
    "trace_sqrt_product",
]
