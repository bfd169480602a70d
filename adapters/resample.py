"""Resampling baselines: what a VAE must beat at the same compression factor.

``bicubic-f8`` keeps a bicubic (antialiased) 8x spatial downsample of each frame as its
"latent" and upsamples it back. It has no weights, runs anywhere, and gives the default
run a lossy reference whose quality numbers mean something (unlike random-weight VAEs).

``bicubic-f8-t4`` also keeps one frame in four, as a causal 4x8x8 VAE keeps ``1 + (T-1)/4``
latent frames of a ``1 + 4k`` clip: frames ``0, 4, 8, ...`` are kept and the ones between are
linearly interpolated back, so its latent has the element count of a 3-channel 4x8x8 latent.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from vae_bench.adapters.base import FrameRule, InferenceMode, Preset, VAESpec, VideoVAE


class ResampleBaseline(VideoVAE):
    weights = "none"  # nothing to load

    def __init__(
        self, name: str, factor: int, interpolation: str = "bicubic", temporal_factor: int = 1
    ) -> None:
        self.factor = factor
        self.interpolation = interpolation
        self.temporal_factor = temporal_factor
        causal = temporal_factor > 1
        self.spec = VAESpec(
            name=name, family="baseline", latent_channels=3, spatial_factor=factor,
            temporal_factor=temporal_factor, causal=causal,
            frame_rule=FrameRule(temporal_factor, 1) if causal else FrameRule(), modes=("full",),
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

    def _times(self, video: torch.Tensor, frames: int) -> torch.Tensor:
        """Linear resampling along time with the end frames fixed (``align_corners``), so
        ``1 + 4k`` frames map onto ``1 + k`` exactly at every fourth frame and back."""
        if frames == video.shape[2]:
            return video
        b, c, t, h, w = video.shape
        lines = video.permute(0, 1, 3, 4, 2).reshape(b, c * h * w, t)
        if frames < t:  # keep every temporal_factor-th frame
            out = lines[..., :: self.temporal_factor]
        else:
            out = F.interpolate(lines, size=frames, mode="linear", align_corners=True)
        return out.reshape(b, c, h, w, frames).permute(0, 1, 4, 2, 3)

    def _encode(self, video: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        h, w = video.shape[-2:]
        kept = self._times(video, 1 + (video.shape[2] - 1) // self.temporal_factor)
        return self._frames(kept, (h // self.factor, w // self.factor))

    def _decode(self, latent: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        h, w = latent.shape[-2:]
        frames = (latent.shape[2] - 1) * self.temporal_factor + 1
        up = self._frames(latent, (h * self.factor, w * self.factor)).clamp(-1, 1)
        return self._times(up, frames)

    @classmethod
    def from_config(cls, preset: Preset) -> ResampleBaseline:
        config = preset.config
        return cls(preset.name, config["factor"], config["interpolation"],
                   config.get("temporal_factor", 1))  # fmt: skip

    @classmethod
    def from_pretrained(cls, path: str | Path, preset: Preset) -> ResampleBaseline:
        return cls.from_config(preset)


PRESETS = (
    Preset("bicubic-f8", ResampleBaseline, config={"factor": 8, "interpolation": "bicubic"},
           description="bicubic 8x down/up per frame: the floor a VAE must beat"),
    Preset("bicubic-f8-t4", ResampleBaseline,
           config={"factor": 8, "interpolation": "bicubic", "temporal_factor": 4},
           description="bicubic 8x down/up per frame and 1 frame in 4 kept, linear in time: "
                       "the floor for a causal 4x8x8 VAE"),
)  # fmt: skip
