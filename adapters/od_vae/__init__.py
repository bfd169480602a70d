"""OD-VAE: Open-Sora Plan's CausalVideoVAE (``CausalVAEModel``), written to load the
authors' released files.

``model``: the config-driven network (release config keys and state-dict names);
``blocks``: the resamplers and attention blocks WF-VAE does not share; ``checkpoint``:
strict loading of both release layouts; ``tiling``: the release's temporal tiling and a
tiled-vs-full measure; ``adapter``: the suite's ``VideoVAE`` and the presets.
"""

from vae_bench.adapters.od_vae.adapter import ODVAE, PRESETS, release_config
from vae_bench.adapters.od_vae.model import CausalVAEModel
from vae_bench.adapters.od_vae.tiling import TemporalTiles, TilingGap, tiling_gap

__all__ = [
    "ODVAE",
    "PRESETS",
    "CausalVAEModel",
    "TemporalTiles",
    "TilingGap",
    "release_config",
    "tiling_gap",
]
