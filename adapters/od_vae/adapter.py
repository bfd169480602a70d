"""OD-VAE (Open-Sora Plan's CausalVideoVAE) behind the suite's protocol, and its presets.

Inference modes, each the release's own, each recorded separately:

- ``full``: the whole clip in one pass.
- ``temporal_chunks(size, overlap)``: the release's temporal tiling (windows sharing their
  boundary frame, no blending; see :mod:`vae_bench.adapters.od_vae.tiling`); frames run whole.
- ``spatial_tiles(size, overlap)``: the release's ``tiled_encode2d``/``tiled_decode2d``
  (tiles of ``size`` pixels every ``size - overlap``, linear cross-fade over ``overlap``);
  the release's settings are ``spatial_tiles(512, 64)`` (overlap factor 0.125). As in the
  release, a clip no larger than one tile runs whole. The clip runs whole in time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
from vae_bench.adapters.od_vae.checkpoint import (
    LoadReport,
    architecture_differences,
    load_model,
    split_config,
)
from vae_bench.adapters.od_vae.model import CausalVAEModel
from vae_bench.adapters.od_vae.tiling import TemporalTiles, decode_chunks, encode_chunks
from vae_bench.adapters.sampling import GaussianVideoVAE, seeded_build
from vae_bench.adapters.source import HUB, Source
from vae_bench.adapters.spatial_tiling import tiled_decode, tiled_encode

FAMILY = "od-vae"
RANDOM_SEED = 0
MODES = ("full", "temporal_chunks", "spatial_tiles")


def _single(values: Sequence[float] | float) -> float:
    """The spec's one latent factor: the per-channel value when all channels share it."""
    items = [float(v) for v in (values if isinstance(values, list | tuple) else [values])]
    return items[0] if items and len(set(items)) == 1 else math.nan


class ODVAE(GaussianVideoVAE):
    """A :class:`CausalVAEModel` with the suite's encode/decode and inference modes."""

    def __init__(
        self,
        model: CausalVAEModel,
        name: str,
        weights: str = RANDOM_WEIGHTS,
        report: LoadReport | None = None,
    ) -> None:
        self._model = model.eval()
        self.weights = weights
        self.report = report
        config = model.config
        encoder_params = count_params(model.encoder)
        decoder_params = count_params(model.decoder)
        if model.use_quant_layer:
            encoder_params += count_params(model.quant_conv)
            decoder_params += count_params(model.post_quant_conv)
        self.spec = VAESpec(
            name=name,
            family=FAMILY,
            latent_channels=model.latent_channels,
            spatial_factor=model.spatial_factor,
            temporal_factor=model.temporal_factor,
            causal=True,
            frame_rule=FrameRule(step=model.temporal_factor, offset=1),
            scaling_factor=_single(config.scale),
            shift_factor=_single(config.shift),
            encoder_params=encoder_params,
            decoder_params=decoder_params,
            modes=MODES,
        )

    @property
    def module(self) -> CausalVAEModel:
        return self._model

    # --- inference ------------------------------------------------------------------
    def _tiles(self, mode: InferenceMode) -> TemporalTiles:
        assert mode.size is not None  # InferenceMode guarantees it for this kind
        return TemporalTiles(mode.size, mode.overlap, self.spec.temporal_factor)

    def _fits(self, mode: InferenceMode, height: int, width: int, scale: int) -> bool:
        """Whether a frame fits one spatial tile (the release then runs it whole)."""
        assert mode.size is not None
        factor = self.spec.spatial_factor
        if mode.size % factor or mode.overlap % factor:
            raise AdapterError(
                f"{self.spec.name}: {mode.label}: tile size and overlap must be multiples of "
                f"the spatial factor {factor}"
            )
        return height * scale <= mode.size and width * scale <= mode.size

    def _moments(self, video: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        video = video.to(device=self.device, dtype=self.dtype)
        run = self._model.encode_moments
        if mode.kind == "temporal_chunks":
            return encode_chunks(video, run, self._tiles(mode))
        if mode.kind == "spatial_tiles" and not self._fits(mode, *video.shape[-2:], 1):
            assert mode.size is not None
            return tiled_encode(video, run, mode.size, mode.overlap, self.spec.spatial_factor)
        return run(video)

    def _decode(self, latent: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        self.check_latent(latent)
        latent = latent.to(device=self.device, dtype=self.dtype)
        run = self._model.decode_latent
        factor = self.spec.spatial_factor
        if mode.kind == "temporal_chunks":
            return decode_chunks(latent, run, self._tiles(mode))
        if mode.kind == "spatial_tiles" and not self._fits(mode, *latent.shape[-2:], factor):
            assert mode.size is not None
            return tiled_decode(latent, run, mode.size, mode.overlap, factor)
        return run(latent)

    # --- construction ---------------------------------------------------------------
    @classmethod
    def from_config(cls, preset: Preset) -> ODVAE:
        """Random weights, the same for every call (seed ``RANDOM_SEED``)."""
        config, _ = split_config(preset.config, f"preset {preset.name}")
        model = seeded_build(RANDOM_SEED, lambda: CausalVAEModel.from_config(config))
        return cls(model, preset.name)

    @classmethod
    def from_pretrained(cls, path: str | Path, preset: Preset, use_ema: bool = True) -> ODVAE:
        """The release's files at ``path`` (see :mod:`vae_bench.adapters.od_vae.checkpoint`), which
        must describe the preset's architecture (a different one is named, not relabelled).

        ``use_ema=False`` reads a training checkpoint's ``state_dict`` instead of its EMA
        weights (the release's ``NOT_USE_EMA_MODEL``).
        """
        model, report = load_model(Path(path), preset.config, use_ema=use_ema)
        differences = architecture_differences(model.config, preset.config)
        if differences:
            raise AdapterError(
                f"{preset.name}: {path} holds another architecture than the preset: "
                + "; ".join(differences)
                + " (use the preset of that release, or one with this config)"
            )
        return cls(model, preset.name, weights=file_sha256(report.weights_file), report=report)


def release_config(**overrides: Any) -> dict[str, Any]:
    """Open-Sora Plan v1.2's ``vae/config.json`` (the OD-VAE release), architecture keys:
    2D ResNet blocks at the encoder's first two levels, space /2 at level 0 and space and
    time /2 together at levels 1-2; the decoder all 3D, mirroring it."""
    config: dict[str, Any] = {
        "hidden_size": 128,
        "z_channels": 4,
        "hidden_size_mult": [1, 2, 4, 4],
        "attn_resolutions": [],
        "dropout": 0.0,
        "resolution": 256,
        "double_z": True,
        "embed_dim": 4,
        "num_res_blocks": 2,
        "q_conv": "CausalConv3d",
        "encoder_conv_in": "Conv2d",
        "encoder_conv_out": "CausalConv3d",
        "encoder_attention": "AttnBlock3DFix",
        "encoder_resnet_blocks": ["ResnetBlock2D"] * 2 + ["ResnetBlock3D"] * 2,
        "encoder_spatial_downsample": [
            "Downsample", "Spatial2xTime2x3DDownsample", "Spatial2xTime2x3DDownsample", "",
        ],
        "encoder_temporal_downsample": ["", "", "", ""],
        "encoder_mid_resnet": "ResnetBlock3D",
        "decoder_conv_in": "CausalConv3d",
        "decoder_conv_out": "CausalConv3d",
        "decoder_attention": "AttnBlock3DFix",
        "decoder_resnet_blocks": ["ResnetBlock3D"] * 4,
        "decoder_spatial_upsample": [
            "", "SpatialUpsample2x", "Spatial2xTime2x3DUpsample", "Spatial2xTime2x3DUpsample",
        ],
        "decoder_temporal_upsample": ["", "", "", ""],
        "decoder_mid_resnet": "ResnetBlock3D",
        "use_quant_layer": True,
        "norm_type": "groupnorm",
        "scale": [0.18215] * 4,
        "shift": [0.0] * 4,
    }  # fmt: skip
    config.update(overrides)
    return config


# Open-Sora Plan v1.1's CausalVideoVAE: separate resamplers, time /2 by a learned mix of
# average and strided conv (TimeDownsampleRes2x) at levels 1-2.
_V11 = {
    "encoder_spatial_downsample": ["Downsample", "Downsample", "Downsample", ""],
    "encoder_temporal_downsample": ["", "TimeDownsampleRes2x", "TimeDownsampleRes2x", ""],
    "decoder_spatial_upsample": ["", "SpatialUpsample2x", "SpatialUpsample2x", "SpatialUpsample2x"],
    "decoder_temporal_upsample": ["", "", "TimeUpsampleRes2x", "TimeUpsampleRes2x"],
}
# Open-Sora Plan v1.0's: all 3D, parameter-free time averaging at levels 0-1, and the
# original AttnBlock3D.
_V10 = {
    **_V11,
    "encoder_conv_in": "CausalConv3d",
    "encoder_attention": "AttnBlock3D",
    "decoder_attention": "AttnBlock3D",
    "encoder_resnet_blocks": ["ResnetBlock3D"] * 4,
    "encoder_spatial_downsample": ["SpatialDownsample2x"] * 3 + [""],
    "encoder_temporal_downsample": ["TimeDownsample2x", "TimeDownsample2x", "", ""],
    "decoder_temporal_upsample": ["", "", "TimeUpsample2x", "TimeUpsample2x"],
}

# The OD-VAE paper's ablation variants (arXiv 2409.01199, section 3.2, Table 3), as
# overrides of the release, which is its Variant 4 (2D blocks at the encoder's outer
# levels 0-1, decoder all 3D). Every variant compresses time where the release does
# (levels 1-2); the paper fixes only the overall rates, so that placement is assumed.
# Variant 2 ("half of the 3D convolutions" made 2D, which half unstated) has no preset:
# its layout cannot be read off the paper.
#
# Variant 1: SD-VAE inflated to 3D throughout (the encoder's level-0 resampler becomes the
# causal (1, 3, 3) SpatialDownsample2x).
_VARIANT1 = {
    "encoder_conv_in": "CausalConv3d",
    "encoder_resnet_blocks": ["ResnetBlock3D"] * 4,
    "encoder_spatial_downsample": [
        "SpatialDownsample2x", "Spatial2xTime2x3DDownsample", "Spatial2xTime2x3DDownsample", "",
    ],
}  # fmt: skip
# Variant 3: Variant 4's encoder and a decoder whose outer levels 0-1 are 2D as well.
_VARIANT3 = {
    "decoder_resnet_blocks": ["ResnetBlock2D"] * 2 + ["ResnetBlock3D"] * 2,
    "decoder_spatial_upsample": [
        "", "Upsample", "Spatial2xTime2x3DUpsample", "Spatial2xTime2x3DUpsample",
    ],
    "decoder_conv_out": "Conv2d",
}  # fmt: skip

PRESETS = (
    Preset(
        "od-vae-4ch",
        ODVAE,
        config=release_config(),
        source=Source(
            HUB, "LanguageBind/Open-Sora-Plan-v1.2.0", subfolder="vae",
            files=("config.json", "checkpoint.ckpt"),
        ),  # fmt: skip
        description="OD-VAE (paper Variant 4), Open-Sora Plan v1.2 CausalVideoVAE, 4 channels, "
        "8x8x4 (239M)",
    ),
    Preset(
        "od-vae-variant1-4ch",
        ODVAE,
        config=release_config(**_VARIANT1),
        description="OD-VAE paper Variant 1: all 3D, 4 channels, 8x8x4 (245M; no release)",
    ),
    Preset(
        "od-vae-variant3-4ch",
        ODVAE,
        config=release_config(**_VARIANT3),
        description="OD-VAE paper Variant 3: 2D outer levels in encoder and decoder, 4 channels, "
        "8x8x4 (229M; no release)",
    ),
    Preset(
        "od-vae-v1.1-4ch",
        ODVAE,
        config=release_config(**_V11),
        source=Source(
            HUB, "LanguageBind/Open-Sora-Plan-v1.1.0", subfolder="vae",
            note="file names not checked here: the whole vae/ folder is fetched",
        ),  # fmt: skip
        description="Open-Sora Plan v1.1 CausalVideoVAE, 4 channels, 8x8x4 (247M)",
    ),
    Preset(
        "od-vae-v1.0-4ch",
        ODVAE,
        config=release_config(**_V10),
        source=Source(
            HUB, "LanguageBind/Open-Sora-Plan-v1.0.0", subfolder="vae",
            note="file names not checked here: the whole vae/ folder is fetched",
        ),  # fmt: skip
        description="Open-Sora Plan v1.0 CausalVideoVAE, all 3D, 4 channels, 8x8x4 (229M)",
    ),
)
