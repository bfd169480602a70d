"""CV-VAE behind the suite's protocol, and its presets.

Inference modes, each the release's own, each recorded separately (the release's default,
from its ``config.json``, combines the first two: ``temporal_chunks(16)`` with every window
spatially tiled as ``spatial_tiles(576, 128)``; on frames no larger than 576 pixels that
is ``temporal_chunks(16)`` alone):

- ``full``: the whole clip in one pass (the release with ``en_de_n_frames_a_time`` and
  ``tile_spatial_size`` set to null).
- ``temporal_chunks(size)``: the release's ``en_de_n_frames_a_time = size`` (a multiple of
  4; 16 in the release): windows of ``size + 1`` frames sharing their boundary frame, each
  encoded alone, the shared frame's latent dropped from every window but the first;
  decoding cuts the latent into windows of ``size / 4 + 1`` latent frames the same way.
  Nothing is blended; ``overlap`` must be 0. Frames run whole.
- ``spatial_tiles(size, overlap)``: the release's ``tile_spatial_size = size`` with
  ``tile_overlap_ratio = overlap / size`` (576 and 0.2222: ``spatial_tiles(576, 128)``):
  tiles every ``size - overlap`` pixels until one reaches the far edge, linear cross-fades
  over the overlap, the last row and column kept whole. A frame no larger than one tile
  runs whole. The clip runs whole in time.
"""

from __future__ import annotations

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
from vae_bench.adapters.checkpoints import LoadReport
from vae_bench.adapters.cv_vae.checkpoint import (
    architecture_differences,
    load_model,
    split_config,
)
from vae_bench.adapters.cv_vae.model import CVVAEModel
from vae_bench.adapters.od_vae.tiling import TemporalTiles, decode_chunks, encode_chunks
from vae_bench.adapters.sampling import GaussianVideoVAE, seeded_build
from vae_bench.adapters.source import DIFFUSERS_FILES, HUB, Source
from vae_bench.adapters.spatial_tiling import tiled_decode, tiled_encode

FAMILY = "cv-vae"
RANDOM_SEED = 0
MODES = ("full", "temporal_chunks", "spatial_tiles")


class CVVAE(GaussianVideoVAE):
    """A :class:`CVVAEModel` with the suite's encode/decode and inference modes."""

    def __init__(
        self,
        model: CVVAEModel,
        name: str,
        weights: str = RANDOM_WEIGHTS,
        report: LoadReport | None = None,
    ) -> None:
        self._model = model.eval()
        self.weights = weights
        self.report = report
        self.spec = VAESpec(
            name=name,
            family=FAMILY,
            latent_channels=model.latent_channels,
            spatial_factor=model.spatial_factor,
            temporal_factor=model.temporal_factor,
            causal=True,
            frame_rule=FrameRule(step=model.temporal_factor, offset=1),
            scaling_factor=float(model.config.scaling_factor),
            encoder_params=count_params(model.encoder),
            decoder_params=count_params(model.decoder),
            modes=MODES,
        )

    @property
    def module(self) -> CVVAEModel:
        return self._model

    # --- inference ------------------------------------------------------------------
    def _tiles(self, mode: InferenceMode) -> TemporalTiles:
        assert mode.size is not None  # InferenceMode guarantees it for this kind
        factor = self.spec.temporal_factor
        if mode.overlap or mode.size % factor:
            raise AdapterError(
                f"{self.spec.name}: {mode.label}: the window must be a multiple of {factor} "
                "frames with no overlap (the release's en_de_n_frames_a_time)"
            )
        return TemporalTiles(mode.size + 1, 0, factor, decode_size=mode.size // factor + 1)

    def _moments(self, video: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        video = video.to(device=self.device, dtype=self.dtype)
        run = self._model.encode_moments
        if mode.kind == "temporal_chunks":
            return encode_chunks(video, run, self._tiles(mode))
        if mode.kind == "spatial_tiles":
            assert mode.size is not None
            factor = self.spec.spatial_factor
            return tiled_encode(video, run, mode.size, mode.overlap, factor, stop_at_edge=True)
        return run(video)

    def _decode(self, latent: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        self.check_latent(latent)
        latent = latent.to(device=self.device, dtype=self.dtype)
        run = self._model.decode_latent
        if mode.kind == "temporal_chunks":
            return decode_chunks(latent, run, self._tiles(mode))
        if mode.kind == "spatial_tiles":
            assert mode.size is not None
            factor = self.spec.spatial_factor
            return tiled_decode(latent, run, mode.size, mode.overlap, factor, stop_at_edge=True)
        return run(latent)

    # --- construction ---------------------------------------------------------------
    @classmethod
    def from_config(cls, preset: Preset) -> CVVAE:
        """Random weights, the same for every call (seed ``RANDOM_SEED``)."""
        config, _ = split_config(preset.config, f"preset {preset.name}")
        model = seeded_build(RANDOM_SEED, lambda: CVVAEModel.from_config(config))
        return cls(model, preset.name)

    @classmethod
    def from_pretrained(cls, path: str | Path, preset: Preset) -> CVVAE:
        """The release's files at ``path`` (see :mod:`vae_bench.adapters.cv_vae.checkpoint`),
        which must describe the preset's architecture (another one is named, not relabelled)."""
        model, report = load_model(Path(path), preset.config)
        differences = architecture_differences(model.config, preset.config)
        if differences:
            raise AdapterError(
                f"{preset.name}: {path} holds another architecture than the preset: "
                + "; ".join(differences)
            )
        return cls(model, preset.name, weights=file_sha256(report.weights_file), report=report)


def release_config(**overrides: Any) -> dict[str, Any]:
    """The released ``vae3d/config.json`` (the same in ``vae3d_v1-1``), without the
    ``_``-prefixed bookkeeping keys."""
    config: dict[str, Any] = {
        "attn_resolutions": [],
        "causal_decoder": False,
        "causal_encoder": True,
        "ch": 128,
        "ch_mult": [1, 2, 4, 4],
        "decoder_attn_type": "spatial-temporal-xformer",
        "double_z": True,
        "dropout": 0.0,
        "en_de_n_frames_a_time": 16,
        "encoder_attn_type": "vanilla-xformers",
        "force_upcast": True,
        "half_3d": True,
        "in_channels": 3,
        "num_res_blocks": 2,
        "num_video_frames": None,
        "out_ch": 3,
        "reshape_x_dim_to_4": False,
        "reshape_z_dim_to_4": False,
        "scaling_factor": 0.18215,
        "spatial_n_compress": 8,
        "tile_overlap_ratio": 0.2222,
        "tile_spatial_size": 576,
        "time_n_compress": 4,
        "use_3d_conv": True,
        "z_channels": 4,
    }
    config.update(overrides)
    return config


PRESETS = (
    Preset(
        "cv-vae",
        CVVAE,
        config=release_config(),
        source=Source(HUB, "AILab-CVC/CV-VAE", subfolder="vae3d", files=DIFFUSERS_FILES),
        description="CV-VAE (NeurIPS 2024), SD-compatible latent, 4 channels, 8x8x4 (182M)",
    ),
    Preset(
        "cv-vae-v1.1",
        CVVAE,
        config=release_config(),
        source=Source(HUB, "AILab-CVC/CV-VAE", subfolder="vae3d_v1-1", files=DIFFUSERS_FILES),
        description="CV-VAE v1.1 (the authors' updated weights, stored float16), 4 channels, 8x8x4 "
        "(182M)",
    ),
)
