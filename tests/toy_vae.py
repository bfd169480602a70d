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
