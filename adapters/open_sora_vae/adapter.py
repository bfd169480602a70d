"""Open-Sora VAE v1.2 behind the suite's protocol, and its preset.

A clip runs as the release's ``VideoAutoencoderPipeline`` runs it: each frame through the
image VAE (``frame_batch`` frames per call, the release's ``micro_batch_size`` 4), its
posterior mode times 0.18215, then the temporal VAE over time; decoding reverses both.
The latent is the temporal posterior's mode before the pipeline's per-channel
normalisation ``(z - shift) / scale`` (``latent_scale``/``latent_shift`` here; the spec's
single factors are NaN as the channels differ). A seeded sample draws both stages'
posteriors, as the release's ``encode`` does (seed for the image stage, seed + 1 for the
temporal one).

Frame rule ``T = 1 + 4k``: the release encodes any length (each block zero-padded in front
to a multiple of 4) but its decoder is told the length; on ``1 + 4k`` the latent fixes it
(see :mod:`vae_bench.adapters.open_sora_vae.micro`). Other lengths, such as the release's
102-frame "4s" clips, are fitted down by the suite.

Inference modes, each the release's own:

- ``full``: the temporal VAE over the whole clip at once (``micro_frame_size=None``, the
  release's VAE evaluation config ``configs/vae/inference/video.py``);
- ``temporal_chunks(size)``: micro-frame blocks of ``size = 1 + 4k`` frames encoded and
  decoded independently (``micro_frame_size``; the generation configs use 17). A last,
  shorter block is padded in front to a multiple of 4 and decoded to its own length. No
  overlap, as released. For clips of at most ``size`` frames it equals ``full``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from vae_bench.adapters.base import (
    RANDOM_WEIGHTS,
    AdapterError,
    FrameRule,
    InferenceMode,
    Preset,
    VAESpec,
    VideoVAE,
    count_params,
    file_sha256,
)
from vae_bench.adapters.checkpoints import LoadReport
from vae_bench.adapters.open_sora_vae.checkpoint import load_model
from vae_bench.adapters.open_sora_vae.config import PipelineConfig, release_config
from vae_bench.adapters.open_sora_vae.micro import check_micro, decode_blocks, encode_blocks
from vae_bench.adapters.open_sora_vae.model import (
    SPATIAL_SCALE,
    TEMPORAL_FACTOR,
    VideoAutoencoderPipeline,
)
from vae_bench.adapters.sampling import DiagonalGaussian, cpu_seeded_sample, seeded_build
from vae_bench.adapters.sd_vae import SDVAE
from vae_bench.adapters.source import HUB, Source

FAMILY = "open-sora-vae"
RANDOM_SEED = 0
MODES = ("full", "temporal_chunks")


def _single(values: tuple[float, ...]) -> float:
    return values[0] if len(set(values)) == 1 else math.nan


def _values(buffer: torch.Tensor) -> tuple[float, ...]:
    """A per-channel buffer's values (NaN for a model built on the meta device)."""
    return (math.nan,) * buffer.numel() if buffer.is_meta else tuple(buffer.flatten().tolist())


class OpenSoraVAE(VideoVAE):
    """A :class:`VideoAutoencoderPipeline` with the suite's encode/decode and modes."""

    def __init__(
        self,
        model: VideoAutoencoderPipeline,
        name: str,
        *,
        weights: str = RANDOM_WEIGHTS,
        frame_batch: int = 4,
        report: LoadReport | None = None,
    ) -> None:
        self._model = model.eval()
        self.weights = weights
        self.report = report
        image = model.spatial_vae.module
        self._spatial = SDVAE(
            image, f"{name} (image VAE)", weights=weights, frame_batch=frame_batch
        )
        temporal = model.temporal_vae
        self.latent_scale = _values(model.scale)
        self.latent_shift = _values(model.shift)
        self.spec = VAESpec(
            name=name,
            family=FAMILY,
            latent_channels=temporal.config.embed_dim,
            spatial_factor=self._spatial.spec.spatial_factor,
            temporal_factor=TEMPORAL_FACTOR,
            causal=True,
            frame_rule=FrameRule(step=TEMPORAL_FACTOR, offset=1),
            scaling_factor=1.0 / _single(self.latent_scale),  # diffusion: (z - shift) / scale
            shift_factor=_single(self.latent_shift),
            encoder_params=self._spatial.spec.encoder_params
            + count_params(temporal.encoder)
            + count_params(temporal.quant_conv),
            decoder_params=self._spatial.spec.decoder_params
            + count_params(temporal.decoder)
            + count_params(temporal.post_quant_conv),
            modes=MODES,
        )

    @property
    def module(self) -> VideoAutoencoderPipeline:
        return self._model

    # --- inference ------------------------------------------------------------------
    def _micro(self, mode: InferenceMode) -> int | None:
        if mode.kind != "temporal_chunks":
            return None
        if mode.overlap:
            raise AdapterError(
                f"{self.spec.name}: temporal_chunks takes no overlap (the release's "
                f"micro-frame blocks do not overlap); got {mode.label}"
            )
        check_micro(mode.size)
        return mode.size

    def _moments(self, image_latent: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        x = (image_latent * SPATIAL_SCALE).to(self.dtype)
        return encode_blocks(x, self._model.temporal_vae.moments, self._micro(mode))

    def _encode(self, video: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        moments = self._moments(self._spatial.encode(video.to(self.device)), mode)
        return DiagonalGaussian.from_moments(moments).mode()

    def _sample(self, video: torch.Tensor, mode: InferenceMode, seed: int) -> torch.Tensor:
        moments = self._moments(self._spatial.encode(video.to(self.device), seed=seed), mode)
        posterior = DiagonalGaussian.from_moments(moments)
        return cpu_seeded_sample(posterior.mean, posterior.logvar, seed + 1)

    def _decode(self, latent: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        self.check_latent(latent)
        z = latent.to(device=self.device, dtype=self.dtype)
        image_latent = decode_blocks(z, self._model.temporal_vae.decode, self._micro(mode))
        return self._spatial.decode(image_latent / SPATIAL_SCALE)

    # --- construction ---------------------------------------------------------------
    @classmethod
    def from_config(cls, preset: Preset) -> OpenSoraVAE:
        """Random weights, the same for every call (seed ``RANDOM_SEED``)."""
        config = PipelineConfig.from_preset(preset.config, preset.name)
        model = seeded_build(RANDOM_SEED, config.build)
        return cls(model, preset.name, frame_batch=config.frame_batch)

    @classmethod
    def from_pretrained(cls, path: str | Path, preset: Preset) -> OpenSoraVAE:
        """The release's ``config.json`` + ``model.safetensors`` at ``path`` (a folder or
        the weights file), matched strictly against the preset's architecture."""
        config = PipelineConfig.from_preset(preset.config, preset.name)
        hint = f" (official release: {preset.release})" if preset.release else ""
        try:
            loaded = load_model(Path(path).expanduser(), config, hint)
        except AdapterError as error:
            raise AdapterError(f"{preset.name}: {error}") from None
        return cls(
            loaded.model,
            preset.name,
            weights=file_sha256(loaded.report.weights_file),
            frame_batch=config.frame_batch,
            report=loaded.report,
        )


PRESETS = (
    Preset(
        "open-sora-vae-v1.2",
        OpenSoraVAE,
        config=release_config(),
        source=Source(
            HUB, "hpcai-tech/OpenSora-VAE-v1.2", files=("config.json", "model.safetensors")
        ),
        description="Open-Sora v1.2 VAE: SDXL image VAE per frame + temporal VAE, 4 channels, "
        "8x8x4 (393M)",
    ),
)
