"""LiteVAE (Sadat et al., NeurIPS 2024) as a video VAE: the image model on every frame.

There is no official code; the network here is laid out as the public reimplementation
with weights, open-litevae (``RGenDiff/open-litevae``; weights ``RGenDiff/olitevaeB_im_f8c12``
on the Hugging Face hub), so its checkpoint loads unchanged. Where the paper and that
release differ, this follows the release:

* encoder sizes: the release's S/B/M/L widths give 0.98M / 6.62M / 34.13M / 41.15M encoder
  parameters at 12 latent channels, against the paper's 1.03M / 6.75M / 32.75M / 41.42M
  (the release was written before the paper's appendix pseudocode appeared);
* feature UNets: conv-norm-SiLU resblocks with 8-group norms and 1x1 width changes, and each
  level's features average-pooled to the latent resolution before the aggregator;
* decoder: every conv + group norm pair of SD's decoder replaced by a self-modulated
  convolution (the paper's SMC), and the middle attention replaced by one more resblock
  (three resblocks in the middle and per level, 53.33M parameters).

As a video model: frames are folded into the batch (``[B, C, T, H, W] -> [B*T, C, H, W]``)
and run ``frame_batch`` frames at a time, which bounds memory whatever the clip length;
temporal factor 1, any number of frames. The latent is the raw posterior mean
``[B, 12, T, H/8, W/8]``; open-litevae publishes no latent scaling factor, so the spec keeps 1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
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
    VideoVAE,
    file_sha256,
)
from vae_bench.adapters.checkpoints import TOTALS, check_state_dict, model_shapes, shapes
from vae_bench.adapters.frames import DEFAULT_FRAME_BATCH, frame_batch_of, per_frame
from vae_bench.adapters.lite_vae.checkpoint import read_state_dict, weights_file
from vae_bench.adapters.lite_vae.model import LiteAutoencoder, LiteVAEConfig
from vae_bench.adapters.sampling import cpu_seeded_sample, seeded_build
from vae_bench.adapters.source import HUB, Source

FAMILY = "lite-vae"
RANDOM_SEED = 0  # from_config: two random builds of one preset are identical
MODEL_KEYS = tuple(item.name for item in fields(LiteVAEConfig))
LOGVAR_RANGE = (-30.0, 20.0)  # the release's posterior clamp
RELEASE_B = Source(HUB, "RGenDiff/olitevaeB_im_f8c12", files=("olitevaeB_im_f8c12.safetensors",))


def split_config(config: Mapping[str, Any], name: str) -> tuple[LiteVAEConfig, int]:
    """The architecture and the frame batch of a preset config; unknown keys are errors."""
    frame_batch = frame_batch_of(config, MODEL_KEYS, name)
    try:
        model_config = LiteVAEConfig(**{k: v for k, v in config.items() if k in MODEL_KEYS})
    except (TypeError, ValueError) as error:
        raise AdapterError(f"{name}: invalid config: {error}") from error
    return model_config, frame_batch


def _count(modules: tuple[torch.nn.Module, ...]) -> int:
    return sum(p.numel() for module in modules for p in module.parameters())


class LiteVAE(VideoVAE):
    """A :class:`LiteAutoencoder` applied to each frame of a clip."""

    def __init__(
        self,
        model: LiteAutoencoder,
        name: str,
        *,
        weights: str = RANDOM_WEIGHTS,
        frame_batch: int = DEFAULT_FRAME_BATCH,
    ) -> None:
        if frame_batch < 1:
            raise AdapterError(f"{name}: frame_batch must be positive, got {frame_batch}")
        self._model = model.eval()
        self.weights = weights
        self.frame_batch = frame_batch
        config = model.config
        self.spec = VAESpec(
            name=name,
            family=FAMILY,
            latent_channels=config.latent_channels,
            spatial_factor=config.spatial_factor,
            temporal_factor=1,
            causal=False,
            frame_rule=FrameRule(),
            encoder_params=_count(model.encoder_modules()),
            decoder_params=_count(model.decoder_modules()),
            modes=("full",),
        )

    @property
    def module(self) -> LiteAutoencoder:
        return self._model

    # --- inference ----------------------------------------------------------------
    def _encode(self, video: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        return self._per_frame(video, self._model.encode)

    def _decode(self, latent: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        self.check_latent(latent)
        return self._per_frame(latent, self._model.decode)

    def _sample(self, video: torch.Tensor, mode: InferenceMode, seed: int) -> torch.Tensor:
        """``mean + std * noise`` with one seeded CPU draw for the whole latent, so a sample
        depends on neither the frame batch nor the device."""
        moments = self._per_frame(video, self._model.moments)
        mean, logvar = moments.chunk(2, dim=1)
        return cpu_seeded_sample(mean, logvar.clamp(*LOGVAR_RANGE), seed)

    def _per_frame(
        self, video: torch.Tensor, run: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """``run`` over the frames folded into the batch, ``frame_batch`` frames at a time."""
        return per_frame(video, run, self.frame_batch, self.dtype, self.spec.name)

    # --- construction -------------------------------------------------------------
    @classmethod
    def from_config(cls, preset: Preset, **overrides: Any) -> LiteVAE:
        """Random weights from a fixed seed; ``overrides`` change the preset's config."""
        config, frame_batch = split_config({**preset.config, **overrides}, preset.name)
        model = seeded_build(RANDOM_SEED, lambda: LiteAutoencoder(config))
        return cls(model, preset.name, weights=RANDOM_WEIGHTS, frame_batch=frame_batch)

    @classmethod
    def from_pretrained(cls, path: str | Path, preset: Preset, **overrides: Any) -> LiteVAE:
        """An open-litevae weights file (or a directory holding one), strictly matched."""
        config, frame_batch = split_config({**preset.config, **overrides}, preset.name)
        hint = f" (official release: {preset.release})" if preset.release else ""
        source = weights_file(Path(path).expanduser(), preset.name, preset.release)
        state = read_state_dict(source, preset.name)
        with torch.device("meta"):
            model = LiteAutoencoder(config)
        check_state_dict(
            model_shapes(model),
            shapes(state),
            f"{preset.name}: {source} does not match the model strictly",
            TOTALS,
            hint=hint,
        )
        model.to_empty(device="cpu")
        model.load_state_dict(state, strict=True)  # into float32; cells cast to their dtype
        return cls(model, preset.name, weights=file_sha256(source), frame_batch=frame_batch)


def lite_vae_config(**overrides: Any) -> dict[str, Any]:
    """The B-size release config (``configs/olitevaeB_im_f8c12.yaml``) with ``overrides``."""
    defaults = {item.name: item.default for item in fields(LiteVAEConfig)}
    return {**defaults, **overrides}


# Encoder widths of open-litevae's scale table (its README, beside the paper's sizes).
_S = lite_vae_config(
    extractor_channels=16, extractor_mult=(1, 2, 2), extractor_blocks=3,
    aggregator_channels=16, aggregator_mult=(1, 2, 2), aggregator_blocks=3,
)  # fmt: skip
_B = lite_vae_config()
_M = lite_vae_config(extractor_channels=64, extractor_mult=(1, 2, 4), extractor_blocks=5)
_L = lite_vae_config(
    extractor_channels=64, extractor_mult=(1, 2, 4), extractor_blocks=5,
    aggregator_channels=64, aggregator_mult=(1, 2, 4), aggregator_blocks=4,
)  # fmt: skip
_NO_RELEASE = "no public weights at this size; random weights or a user-trained checkpoint"

PRESETS = (
    Preset(
        "lite-vae-s", LiteVAE, config=_S,
        description=f"LiteVAE-S, 12 latent channels, encoder ~1.0M ({_NO_RELEASE})",
    ),
    Preset(
        "lite-vae-b", LiteVAE, config=_B, source=RELEASE_B,
        description="LiteVAE-B, 12 latent channels, encoder ~6.6M (open-litevae release)",
    ),
    Preset(
        "lite-vae-m", LiteVAE, config=_M,
        description=f"LiteVAE-M, 12 latent channels, encoder ~34M ({_NO_RELEASE})",
    ),
    Preset(
        "lite-vae-l", LiteVAE, config=_L,
        description=f"LiteVAE-L, 12 latent channels, encoder ~41M ({_NO_RELEASE})",
    ),
)  # fmt: skip
