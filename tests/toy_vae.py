"""A tiny, deterministic lossy "VAE" for runner tests: average pooling down, nearest up.

Cheap enough for a CPU test, lossy enough that PSNR is finite and SSIM below one, and
with a causal 1 + 4k frame rule so the runner's frame-rule handling is exercised.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from adapters import FrameRule, InferenceMode, Preset, VAESpec, VideoVAE, register


class PoolVAE(VideoVAE):
    def __init__(self, name: str, factor: int) -> None:
        self.factor = factor
        self.spec = VAESpec(
            name=name, family="toy", latent_channels=3, spatial_factor=factor,
            temporal_factor=1, causal=True, frame_rule=FrameRule(step=4, offset=1),
            modes=("full",),
        )  # fmt: skip
        self._module = torch.nn.Conv3d(3, 3, 1)  # a parameter so dtype/device moves work

    @property
    def module(self) -> torch.nn.Module:
        return self._module

    def _encode(self, video: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        return F.avg_pool3d(video, (1, self.factor, self.factor))

    def _decode(self, latent: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        return F.interpolate(latent, scale_factor=(1, self.factor, self.factor), mode="nearest")

    @classmethod
    def from_config(cls, preset: Preset) -> PoolVAE:
        return cls(preset.name, preset.config["factor"])

    @classmethod
    def from_pretrained(cls, path: str | Path, preset: Preset) -> PoolVAE:
        raise NotImplementedError


TOY = Preset("toy-pool", PoolVAE, config={"factor": 2}, description="test model")


def register_toy() -> None:
    register(TOY, replace=True)
