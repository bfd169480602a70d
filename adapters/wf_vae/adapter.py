"""WF-VAE behind the suite's protocol, and its presets.

Inference modes:

- ``full``: one pass over the clip (the README's efficiency protocol: no block-wise
  inference).
- ``temporal_chunks(size)``: the release's block-wise "Causal Cache": frame 0 alone, then
  blocks of ``size`` frames (a multiple of 4); the decoder takes ``size / 4`` latent
  frames per block plus one look-ahead frame. Equal to ``full`` where the release can run
  it; where it cannot (a last decoder block of one latent frame: the frame counts of the
  README's tiling warning) the mode fails with a clear error, as the release fails.
  ``overlap`` must be 0: the cache replaces overlap.
- ``spatial_tiles(size, overlap)``: the released WF-VAE has none; this is the tiling of
  the same repository's OD-VAE (see :mod:`vae_bench.adapters.spatial_tiling`), seams included.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vae_bench.adapters.base import (
    RANDOM_WEIGHTS,
    AdapterError,
    FrameRule,
    InferenceMode,
    Preset,
    VAESpec,
    count_params,
    file_sha256,
)
from vae_bench.adapters.sampling import GaussianVideoVAE, seeded_build
from vae_bench.adapters.source import DIFFUSERS_FILES, HUB, Source
from vae_bench.adapters.spatial_tiling import tiled_decode, tiled_encode
from vae_bench.adapters.wf_vae.checkpoint import LoadReport, load_model
from vae_bench.adapters.wf_vae.model import SPATIAL_FACTOR, TEMPORAL_FACTOR, WFVAEModel

RANDOM_SEED = 0
MODES = ("full", "temporal_chunks", "spatial_tiles")


def _uniform(values: Any, name: str) -> tuple[float, tuple[float, ...]]:
    """One factor when every channel shares it (the spec holds one number), and the list."""
    per_channel = tuple(
        float(v) for v in (values if isinstance(values, list | tuple) else [values])
    )
    if not per_channel:
        raise AdapterError(f"WF-VAE config: {name} is empty")
    return (per_channel[0] if len(set(per_channel)) == 1 else float("nan")), per_channel


class WFVAE(GaussianVideoVAE):
    """A :class:`WFVAEModel` with the suite's encode/decode and inference modes.

    ``latent_scale``/``latent_shift`` hold the config's per-channel factors (the release
    normalises latents as ``(z - shift) * scale``); the spec carries them as single
    numbers, NaN where channels differ.
    """

    def __init__(
        self,
        model: WFVAEModel,
        name: str,
        weights: str = RANDOM_WEIGHTS,
        report: LoadReport | None = None,
    ) -> None:
        self._model = model.eval()
        self.weights = weights
        self.report = report
        config = model.config
        scale, self.latent_scale = _uniform(config.scale, "scale")
        shift, self.latent_shift = _uniform(config.shift, "shift")
        self.spec = VAESpec(
            name=name,
            family="wf-vae",
            latent_channels=config.latent_dim,
            spatial_factor=SPATIAL_FACTOR,
            temporal_factor=TEMPORAL_FACTOR,
            causal=True,
            frame_rule=FrameRule(step=TEMPORAL_FACTOR, offset=1),
            scaling_factor=scale,
            shift_factor=shift,
            encoder_params=count_params(model.encoder),
            decoder_params=count_params(model.decoder),
            modes=MODES,
        )

    @property
    def module(self) -> WFVAEModel:
        return self._model

    # --- inference ------------------------------------------------------------------
    def _moments(self, video: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        video = video.to(device=self.device, dtype=self.dtype)
        if mode.kind == "temporal_chunks":
            return self._model.encode_moments(video, chunk=self._chunk(mode))
        if mode.kind == "spatial_tiles":
            return tiled_encode(
                video, self._model.encode_moments, mode.size, mode.overlap, SPATIAL_FACTOR
            )
        return self._model.encode_moments(video)

    def _decode(self, latent: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        self.check_latent(latent)
        latent = latent.to(device=self.device, dtype=self.dtype)
        if mode.kind == "temporal_chunks":
            return self._model.decode_latent(latent, chunk=self._chunk(mode) // TEMPORAL_FACTOR)
        if mode.kind == "spatial_tiles":
            return tiled_decode(
                latent, self._model.decode_latent, mode.size, mode.overlap, SPATIAL_FACTOR
            )
        return self._model.decode_latent(latent)

    def _chunk(self, mode: InferenceMode) -> int:
        if mode.overlap:
            raise AdapterError(
                f"{self.spec.name}: temporal_chunks takes no overlap (the causal cache "
                f"carries the context); got {mode.label}"
            )
        assert mode.size is not None  # InferenceMode guarantees it for this kind
        if mode.size % TEMPORAL_FACTOR:
            raise AdapterError(
                f"{self.spec.name}: temporal_chunks({mode.size}): the size must be a "
                f"multiple of {TEMPORAL_FACTOR} frames"
            )
        return mode.size

    # --- construction ---------------------------------------------------------------
    @classmethod
    def from_config(cls, preset: Preset) -> WFVAE:
        """Random weights, the same for every call (seed ``RANDOM_SEED``)."""
        model = seeded_build(RANDOM_SEED, lambda: WFVAEModel.from_config(dict(preset.config)))
        return cls(model, preset.name)

    @classmethod
    def from_pretrained(cls, path: str | Path, preset: Preset, use_ema: bool = True) -> WFVAE:
        """The release's files at ``path`` (see :mod:`vae_bench.adapters.wf_vae.checkpoint`).

        ``use_ema=False`` reads a training checkpoint's ``state_dict`` instead of its
        EMA weights (the release's ``NOT_USE_EMA_MODEL``).
        """
        path = Path(path)
        model, report = load_model(path, preset.config, use_ema=use_ema)
        return cls(model, preset.name, weights=file_sha256(report.weights_file), report=report)


def _release_config(**overrides: Any) -> Mapping[str, Any]:
    config: dict[str, Any] = {
        "attention_type": "AttnBlock3DFix",
        "base_channels": 128,
        "connect_res_layer_num": 1,
        "decoder_energy_flow_hidden_size": 128,
        "decoder_num_resblocks": 2,
        "dropout": 0.0,
        "encoder_energy_flow_hidden_size": 64,
        "encoder_num_resblocks": 2,
        "l1_dowmsample_block": "Downsample",
        "l1_downsample_wavelet": "HaarWaveletTransform2D",
        "l1_upsample_block": "Upsample",
        "l1_upsample_wavelet": "InverseHaarWaveletTransform2D",
        "l2_dowmsample_block": "Spatial2xTime2x3DDownsample",
        "l2_downsample_wavelet": "HaarWaveletTransform3D",
        "l2_upsample_block": "Spatial2xTime2x3DUpsample",
        "l2_upsample_wavelet": "InverseHaarWaveletTransform3D",
        "latent_dim": 8,
        "norm_type": "layernorm",
        "scale": [0.18215] * 4,
        "shift": [0] * 4,
        "t_interpolation": "trilinear",
        "use_attention": True,
    }
    config.update(overrides)
    return config


PRESETS = (
    Preset(
        "wf-vae-l-16ch",
        WFVAE,
        # examples/wfvae-large-16chn.json of PKU-YuanGroup/WF-VAE (its scale/shift lists
        # have 4 entries for 16 channels; the factor is the same for all)
        config=_release_config(
            base_channels=192, encoder_energy_flow_hidden_size=128, latent_dim=16
        ),
        source=Source(HUB, "chestnutlzj/WF-VAE-L-16Chn", files=DIFFUSERS_FILES),
        description="WF-VAE-L, 16 latent channels, 8x8x4 (CVPR 2025 release, 317M)",
    ),
    Preset(
        "wf-vae-s-8ch",
        WFVAE,
        # Open-Sora Plan v1.3's VAE (distilled from OD-VAE): the ae config of its
        # inference examples (mindspeed-mm branch) for formal_8dim/merged.ckpt
        config=_release_config(connect_res_layer_num=2, scale=[0.18215] * 8, shift=[0] * 8),
        source=Source(
            HUB, "LanguageBind/Open-Sora-Plan-v1.3.0", subfolder="vae",
            note="file names not checked here: the whole vae/ folder is fetched",
        ),  # fmt: skip
        description="WF-VAE-S, 8 latent channels, 8x8x4 (Open-Sora Plan v1.3, 147M)",
    ),
    # The paper's 4-channel models (its Table 1 rows) are not released: efficiency only.
    # Widths from the paper's Table 3 (base channels 128 / 192, energy flow 128 as chosen
    # in its Fig. 7c); its encoder/decoder sizes (38M/108M, 84M/232M) fix the rest.
    Preset(
        "wf-vae-s-4ch",
        WFVAE,
        config=_release_config(encoder_energy_flow_hidden_size=128, latent_dim=4),
        description="WF-VAE-S, 4 latent channels, 8x8x4 (paper model, no release; 146M)",
    ),
    Preset(
        "wf-vae-l-4ch",
        WFVAE,
        config=_release_config(
            base_channels=192, encoder_energy_flow_hidden_size=128, latent_dim=4
        ),
        description="WF-VAE-L, 4 latent channels, 8x8x4 (paper model, no release; 316M)",
    ),
)
