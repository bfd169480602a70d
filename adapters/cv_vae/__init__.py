"""CV-VAE (AILab-CVC, NeurIPS 2024), written to load the authors' released files.

``model``: the network (``CVVAEModel``, the release's config keys and state-dict names);
``checkpoint``: strict loading of the release's diffusers folders; ``adapter``: the
suite's ``VideoVAE`` and the presets (temporal windows from
:mod:`vae_bench.adapters.od_vae.tiling`, spatial tiles from
:mod:`vae_bench.adapters.spatial_tiling`, in the release's variants).
"""

from vae_bench.adapters.cv_vae.adapter import CVVAE, PRESETS, release_config
from vae_bench.adapters.cv_vae.model import CVVAEModel

__all__ = ["CVVAE", "PRESETS", "CVVAEModel", "release_config"]
