"""IV-VAE (Improved Video VAE, CVPR 2025), written to load the authors' released files.

``layers``: split (keyframe/temporal) convolutions, group causal convolution, blocks;
``model``: the network (``IVVAEModel``, the release's state-dict names); ``checkpoint``:
the released ``.pth`` files and strict loading; ``adapter``: the suite's ``VideoVAE`` and
the presets of the four released models.
"""

from vae_bench.adapters.iv_vae.adapter import IVVAE, PRESETS
from vae_bench.adapters.iv_vae.checkpoint import save_state_dict
from vae_bench.adapters.iv_vae.model import IVVAEConfig, IVVAEModel

__all__ = ["IVVAE", "PRESETS", "IVVAEConfig", "IVVAEModel", "save_state_dict"]
