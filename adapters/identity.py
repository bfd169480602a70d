"""The identity "VAE": the latent is the video. A sanity check of the whole pipeline:
PSNR must be infinite, SSIM 1 and LPIPS 0, and its timings are the suite's overhead."""

from __future__ import annotations

from pathlib import Path

import torch

from vae_bench.adapters.base import FrameRule, InferenceMode, Preset, VAESpec, VideoVAE


class IdentityVAE(VideoVAE):
    weights = "none"  # nothing to load: rows say so instead of a hash

    def __init__(self, name: str = "identity") -> None:
        self.spec = VAESpec(
            name=name,
            family="identity",
            latent_channels=3,
            spatial_factor=1,
            temporal_factor=1,
            frame_rule=FrameRule(),
            modes=("full", "temporal_chunks", "spatial_tiles"),
        )
        self._module = torch.nn.Module()

    @property
    def module(self) -> torch.nn.Module:
        return self._module

    def _encode(self, video: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        return video.clone()

    def _decode(self, latent: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        return latent.clone()

    @classmethod
    def from_config(cls, preset: Preset) -> IdentityVAE:
        return cls(preset.name)

    @classmethod
    def from_pretrained(cls, path: str | Path, preset: Preset) -> IdentityVAE:
        return cls(preset.name)


PRESETS = (
    Preset("identity", IdentityVAE, description="latent = video; PSNR inf, SSIM 1, LPIPS 0"),
)
