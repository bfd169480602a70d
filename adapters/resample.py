"""Resampling baselines: what a VAE must beat at the same compression factor.

``bicubic-f8`` keeps a bicubic (antialiased) 8x spatial downsample of each frame as its
"latent" and upsamples it back. It has no weights, runs anywhere, and gives the default
run a lossy reference whose quality numbers mean something (unlike random-weight VAEs).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from adapters.base import FrameRule, InferenceMode, Preset, VAESpec, VideoVAE


class ResampleBaseline(VideoVAE):
    weights = "none"  # nothing to load

    def __init__(self, name: str, factor: int, interpolation: str = "bicubic") -> None:
        self.factor = factor
        self.interpolation = interpolation
        self.spec = VAESpec(
            name=name, family="baseline", latent_channels=3, spatial_factor=factor,
            temporal_factor=1, frame_rule=FrameRule(), modes=("full",),
        )  # fmt: skip
        self._module = torch.nn.Module()

    @property
    def module(self) -> torch.nn.Module:
        return self._module

    def _frames(self, video: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        b, c, t, h, w = video.shape
        images = video.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        antialias = size[0] < h  # antialias only when shrinking
        out = F.interpolate(images, size=size, mode=self.interpolation, align_corners=False,
                            antialias=antialias)  # fmt: skip
        return out.reshape(b, t, c, *size).permute(0, 2, 1, 3, 4)

    def _encode(self, video: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        h, w = video.shape[-2:]
        return self._frames(video, (h // self.factor, w // self.factor))

    def _decode(self, latent: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        h, w = latent.shape[-2:]
        return self._frames(latent, (h * self.factor, w * self.factor)).clamp(-1, 1)

    @classmethod
    def from_config(cls, preset: Preset) -> ResampleBaseline:
        return cls(preset.name, preset.config["factor"], preset.config["interpolation"])

    @classmethod
    def from_pretrained(cls, path: str | Path, preset: Preset) -> ResampleBaseline:
        return cls.from_config(preset)


PRESETS = (
    Preset("bicubic-f8", ResampleBaseline, config={"factor": 8, "interpolation": "bicubic"},
           description="bicubic 8x down/up per frame: the floor a VAE must beat"),
)  # fmt: skip
