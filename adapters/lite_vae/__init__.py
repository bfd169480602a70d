"""LiteVAE (wavelet encoder, SMC decoder), written to load open-litevae's released weights.

``dwt``: the multi-level Haar transform; ``model``: the network (the release's state-dict
names); ``checkpoint``: strict reading and writing of the release's files; ``adapter``: the
suite's ``VideoVAE`` (frame by frame) and the presets.
"""

from vae_bench.adapters.lite_vae.adapter import PRESETS, LiteVAE, lite_vae_config
from vae_bench.adapters.lite_vae.checkpoint import save_state_dict
from vae_bench.adapters.lite_vae.model import LiteAutoencoder, LiteVAEConfig

__all__ = [
    "PRESETS",
    "LiteAutoencoder",
    "LiteVAE",
    "LiteVAEConfig",
    "lite_vae_config",
    "save_state_dict",
]
