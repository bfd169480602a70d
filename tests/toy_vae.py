"""A tiny, deterministic lossy "VAE" for runner tests: average pooling down, nearest up.

Cheap enough for a CPU test, lossy enough that PSNR is finite and SSIM below one, and
with a causal 1 + 4k frame rule so the runner's frame-rule handling is exercised.
``toy-pool-fails-on-rank1`` raises while encoding on torchrun rank 1 when
``TOY_VAE_FAIL=1`` is set: a rank-local failure for the distributed tests.

``python -m tests.toy_vae ARGS`` is ``vae-bench ARGS`` with these presets registered.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from vae_bench.adapters import FrameRule, InferenceMode, Preset, VAESpec, VideoVAE, register


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


class RankFailingPoolVAE(PoolVAE):
    """PoolVAE whose encode raises on torchrun rank 1 when ``TOY_VAE_FAIL=1`` is set."""

    def _encode(self, video: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        rank = os.environ.get("RANK")
        if os.environ.get("TOY_VAE_FAIL") == "1" and rank == "1":
            raise RuntimeError(f"toy failure on rank {rank}")
        return super()._encode(video, mode)


class PlantedVAE(PoolVAE):
    """PoolVAE plus a fixed noise pattern of amplitude ``worse`` (in [-1, 1] units), one to
    three times stronger depending on the clip's content: a planted regression that is
    slight on some clips and larger on others, the same clips in every run."""

    def __init__(self, name: str, factor: int, worse: float) -> None:
        super().__init__(name, factor)
        self.worse = worse

    def _decode(self, latent: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        video = super()._decode(latent, mode)
        if not self.worse:
            return video
        pattern = torch.rand(video.shape[1:], generator=torch.Generator().manual_seed(0))
        pattern = (pattern * 2 - 1).to(video)
        weight = torch.tensor([1.0 + int(v.abs().sum().item() * 1e3) % 3 for v in video])
        return video + self.worse * weight.to(video).view(-1, 1, 1, 1, 1) * pattern

    @classmethod
    def from_config(cls, preset: Preset) -> PlantedVAE:
        return cls(preset.name, preset.config["factor"], preset.config["worse"])


def register_planted(worse: float) -> None:
    """(Re)register ``toy-planted`` with this much planted error (0: plain pooling)."""
    register(Preset("toy-planted", PlantedVAE, config={"factor": 2, "worse": worse},
                    description="test model with a planted regression"), replace=True)


TOY = Preset("toy-pool", PoolVAE, config={"factor": 2}, description="test model")
TOY_FAILING = Preset("toy-pool-fails-on-rank1", RankFailingPoolVAE, config={"factor": 2},
                     description="test model that fails on rank 1 when TOY_VAE_FAIL=1")  # fmt: skip


def register_toy() -> None:
    register(TOY, replace=True)
    register(TOY_FAILING, replace=True)


if __name__ == "__main__":
    from vae_bench.cli import main

    register_toy()
    sys.exit(main())
