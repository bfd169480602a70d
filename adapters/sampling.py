"""Seeded randomness shared by the adapters: random builds and posterior samples."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

from vae_bench.adapters.base import InferenceMode, VideoVAE

Built = TypeVar("Built")


def seeded_build(seed: int, build: Callable[[], Built]) -> Built:
    """``build()`` under a fixed seed, so two random builds of one preset are identical,
    without disturbing the caller's global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def cpu_seeded_sample(mean: torch.Tensor, logvar: torch.Tensor, seed: int) -> torch.Tensor:
    """``mean + exp(logvar / 2) * noise``, the noise one float32 draw from a seeded CPU
    generator, so a sample depends on neither the device nor how the latent was batched."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(mean.shape, generator=generator, dtype=torch.float32)
    return mean + torch.exp(0.5 * logvar) * noise.to(device=mean.device, dtype=mean.dtype)


@dataclass(frozen=True)
class DiagonalGaussian:
    """The posterior ``N(mean, exp(logvar))`` from the encoder's ``2 * latent`` channels."""

    mean: torch.Tensor
    logvar: torch.Tensor

    @classmethod
    def from_moments(cls, moments: torch.Tensor) -> DiagonalGaussian:
        mean, logvar = torch.chunk(moments, 2, dim=1)
        return cls(mean, torch.clamp(logvar, -30.0, 20.0))

    def mode(self) -> torch.Tensor:
        return self.mean

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(
            self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        return self.mean + torch.exp(0.5 * self.logvar) * noise


class GaussianVideoVAE(VideoVAE):
    """A video VAE whose encoder gives :class:`DiagonalGaussian` moments: ``encode`` is the
    posterior mode, a sample draws its noise on the model's device (the releases' way)."""

    @abc.abstractmethod
    def _moments(self, video: torch.Tensor, mode: InferenceMode) -> torch.Tensor: ...

    def _encode(self, video: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        return DiagonalGaussian.from_moments(self._moments(video, mode)).mode()

    def _sample(self, video: torch.Tensor, mode: InferenceMode, seed: int) -> torch.Tensor:
        generator = torch.Generator(device=self.device).manual_seed(seed)
        return DiagonalGaussian.from_moments(self._moments(video, mode)).sample(generator)
