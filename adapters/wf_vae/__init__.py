"""WF-VAE (Wavelet-Flow VAE, CVPR 2025), written to load the authors' released files.

``model``: the network (``WFVAEModel``, the release's config keys and state-dict names);
``wavelet``: Haar transforms; ``layers``: blocks; ``checkpoint``: strict loading;
``adapter``: the suite's ``VideoVAE`` and the presets (spatial tiles come from
:mod:`vae_bench.adapters.spatial_tiling`, shared with OD-VAE).
"""

from vae_bench.adapters.sampling import DiagonalGaussian
from vae_bench.adapters.wf_vae.adapter import PRESETS, WFVAE
from vae_bench.adapters.wf_vae.model import WFVAEModel

__all__ = ["PRESETS", "WFVAE", "DiagonalGaussian", "WFVAEModel"]
