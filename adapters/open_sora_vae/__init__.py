"""Open-Sora VAE v1.2: an image VAE run per frame followed by a temporal VAE.

``model``: the network under the release's module names; ``micro``: the release's
micro-frame blocks and the frame counts they imply; ``config``: the preset's config and
the release's ``config.json``; ``checkpoint``: strict loading of the released files;
``adapter``: the suite's ``VideoVAE`` and the preset.
"""

from vae_bench.adapters.open_sora_vae.adapter import PRESETS, OpenSoraVAE
from vae_bench.adapters.open_sora_vae.config import PipelineConfig, release_config
from vae_bench.adapters.open_sora_vae.model import TemporalConfig, VideoAutoencoderPipeline

__all__ = [
    "PRESETS",
    "OpenSoraVAE",
    "PipelineConfig",
    "TemporalConfig",
    "VideoAutoencoderPipeline",
    "release_config",
]
