"""The pipeline's configuration: the preset's, and the release's ``config.json``.

The release's ``config.json`` is a transformers ``PretrainedConfig`` of
``VideoAutoencoderPipeline``: ``vae_2d`` and ``vae_temporal`` name the two stages by
registry type, beside ``micro_frame_size``, ``scale`` and ``shift``. It does not hold the
image VAE's architecture: the release builds that from the PixArt-Sigma SDXL VAE config
(``PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers``, folder ``vae``), which is SD's KL-f8
layout, so the preset carries it and the strict key match checks it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffusers import AutoencoderKL

from vae_bench.adapters.base import AdapterError
from vae_bench.adapters.frames import DEFAULT_FRAME_BATCH
from vae_bench.adapters.open_sora_vae.micro import check_micro
from vae_bench.adapters.open_sora_vae.model import TemporalConfig, VideoAutoencoderPipeline
from vae_bench.adapters.sd_vae import sd_config, split_config

MODEL_TYPE = "VideoAutoencoderPipeline"
SPATIAL_TYPE = "VideoAutoencoderKL"
# Registry types of the temporal stage: the release's fixed architecture, or explicit args.
TEMPORAL_TYPES = ("VAE_Temporal_SD", "VAE_Temporal")
# The release's normalisation (OpenSoraVAE_V1_2): latents enter diffusion as (z - shift) / scale.
RELEASE_SCALE = (3.85, 2.32, 2.33, 3.06)
RELEASE_SHIFT = (-0.10, 0.34, 0.27, 0.98)
RELEASE_MICRO_FRAMES = 17  # micro_frame_size of the release's generation configs
RELEASE_MICRO_BATCH = 4  # micro_batch_size: frames per image-VAE call
PRESET_KEYS = ("spatial", "temporal", "scale", "shift", "micro_frame_size", "frame_batch")


def release_config(**overrides: Any) -> dict[str, Any]:
    """The released pipeline as a preset config: the SDXL VAE (PixArt-Sigma's copy, KL-f8
    layout) and ``VAE_Temporal_SD``, with ``overrides`` applied."""
    config: dict[str, Any] = {
        "spatial": sd_config(sample_size=1024, scaling_factor=0.13025),
        "temporal": TemporalConfig().to_dict(),
        "scale": list(RELEASE_SCALE),
        "shift": list(RELEASE_SHIFT),
        "micro_frame_size": RELEASE_MICRO_FRAMES,
        "frame_batch": RELEASE_MICRO_BATCH,
    }
    config.update(overrides)
    return config


@dataclass(frozen=True)
class PipelineConfig:
    """A validated preset config."""

    spatial: dict[str, Any]
    temporal: TemporalConfig
    scale: tuple[float, ...]
    shift: tuple[float, ...]
    micro_frame_size: int | None
    frame_batch: int

    @classmethod
    def from_preset(cls, config: Mapping[str, Any], name: str) -> PipelineConfig:
        unknown = sorted(set(config) - set(PRESET_KEYS))
        if unknown:
            raise AdapterError(
                f"{name}: unknown config keys {', '.join(unknown)}; allowed: "
                f"{', '.join(PRESET_KEYS)}"
            )
        spatial, _ = split_config(config.get("spatial", sd_config()), f"{name} (spatial)")
        frame_batch = config.get("frame_batch", DEFAULT_FRAME_BATCH)
        if isinstance(frame_batch, bool) or not isinstance(frame_batch, int) or frame_batch < 1:
            raise AdapterError(
                f"{name}: frame_batch must be a positive integer, got {frame_batch!r}"
            )
        micro = config.get("micro_frame_size", RELEASE_MICRO_FRAMES)
        check_micro(micro)
        return cls(
            spatial=spatial,
            temporal=TemporalConfig.from_mapping(config.get("temporal", {}), name),
            scale=tuple(float(v) for v in config.get("scale", RELEASE_SCALE)),
            shift=tuple(float(v) for v in config.get("shift", RELEASE_SHIFT)),
            micro_frame_size=micro,
            frame_batch=frame_batch,
        )

    def build(self) -> VideoAutoencoderPipeline:
        return VideoAutoencoderPipeline(
            AutoencoderKL(**self.spatial), self.temporal, self.scale, self.shift
        )


@dataclass(frozen=True)
class ReleaseConfig:
    """What the release's ``config.json`` says about the network and its inference."""

    temporal: TemporalConfig
    micro_frame_size: int | None
    micro_batch_size: int | None
    scale: tuple[float, ...] | None
    shift: tuple[float, ...] | None


def _floats(value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    return tuple(float(v) for v in (value if isinstance(value, list | tuple) else [value]))


def read_release_config(path: Path) -> ReleaseConfig:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise AdapterError(f"cannot read {path}: {error}") from error
    if not isinstance(config, dict):
        raise AdapterError(f"{path}: expected a JSON object, got {type(config).__name__}")
    kind = config.get("model_type") or config.get("_class_name") or "nothing"
    if kind != MODEL_TYPE and MODEL_TYPE not in (config.get("architectures") or ()):
        raise AdapterError(f"{path}: describes {kind!r}, not a {MODEL_TYPE}")
    spatial, temporal = config.get("vae_2d") or {}, config.get("vae_temporal") or {}
    if spatial.get("type") != SPATIAL_TYPE:
        raise AdapterError(
            f"{path}: vae_2d type {spatial.get('type')!r}; only {SPATIAL_TYPE!r} is supported"
        )
    if temporal.get("type") not in TEMPORAL_TYPES:
        raise AdapterError(
            f"{path}: vae_temporal type {temporal.get('type')!r}; supported: "
            f"{', '.join(TEMPORAL_TYPES)}"
        )
    arguments = {k: v for k, v in temporal.items() if k not in ("type", "from_pretrained")}
    if temporal["type"] == "VAE_Temporal_SD":  # widths and levels fixed; the rest passed on
        fixed = sorted(set(arguments) - {"num_groups", "activation_fn"})
        if fixed:
            raise AdapterError(f"{path}: VAE_Temporal_SD fixes {', '.join(fixed)}")
        defaults = TemporalConfig().to_dict()
    else:  # VAE_Temporal's own defaults compress time at the first two levels
        defaults = {**TemporalConfig().to_dict(), "temporal_downsample": (True, True, False)}
    return ReleaseConfig(
        temporal=TemporalConfig.from_mapping({**defaults, **arguments}, f"{path} vae_temporal"),
        micro_frame_size=config.get("micro_frame_size"),
        micro_batch_size=spatial.get("micro_batch_size"),
        scale=_floats(config.get("scale")),
        shift=_floats(config.get("shift")),
    )
