"""Fetching what the suite measures with: official checkpoints and metric networks.

``vae-bench fetch`` and a sweep's ``weights: official`` / ``hf://...`` / ``https://...``
download each file once, verify it and keep it in a cache (hub files in huggingface_hub's
own cache, plain URLs through :mod:`vae_bench.fetch.download`); offline, a missing file is
one clear error naming the command that fetches it.
"""

from vae_bench.fetch.catalog import (
    DEFAULT_METRICS,
    FETCH_COMMAND,
    METRIC_NETWORKS,
    OFFICIAL,
    Fetched,
    fetch_source,
    offline_mode,
    resolve_weights,
)
from vae_bench.fetch.download import FetchError

__all__ = [
    "DEFAULT_METRICS",
    "FETCH_COMMAND",
    "METRIC_NETWORKS",
    "OFFICIAL",
    "FetchError",
    "Fetched",
    "fetch_source",
    "offline_mode",
    "resolve_weights",
]
