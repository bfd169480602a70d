"""Stable Video Diffusion's VAE: SD's image encoder with a temporal decoder.

diffusers' ``AutoencoderKLTemporalDecoder`` encodes every frame on its own (2D) and decodes
a clip of latent frames together, the decoder's temporal layers told the clip length
(``num_frames``). It is run the way ``StableVideoDiffusionPipeline.decode_latents`` runs
it: the latent frames of one video flattened into a batch and decoded
``decode_chunk_size`` frames at a time (the pipeline's default: all frames in one call),
each call given its own frame count. No temporal compression, any clip length, no tiling.
Loading is the generic adapter's strict directory check.
"""

from __future__ import annotations

import torch

from vae_bench.adapters.base import InferenceMode, Preset
from vae_bench.adapters.diffusers_video import (
    DiffusersVideoVAE,
    VideoFamily,
    _log2_levels,
)
from vae_bench.adapters.sampling import cpu_seeded_sample
from vae_bench.adapters.source import DIFFUSERS_FILES, HUB, Source

SVD_FAMILY = VideoFamily(
    "AutoencoderKLTemporalDecoder", "svd",
    lambda m: _log2_levels(m.config), lambda m: 1, "none", causal=False,
)  # fmt: skip


class SVDVAE(DiffusersVideoVAE):
    """Per-frame encoding, chunked temporal decoding (``decode_chunk_size``; None: whole clip)."""

    families = {SVD_FAMILY.class_name: SVD_FAMILY}
    decode_chunk_size: int | None = None

    def _moments(self, video: torch.Tensor, mode: InferenceMode) -> tuple[torch.Tensor, ...]:
        batch, frames = video.shape[0], video.shape[2]
        images = video.to(self.dtype).transpose(1, 2).flatten(0, 1)  # [B*T, C, H, W]
        posterior = self._vae.encode(images).latent_dist
        moments = (posterior.mean, posterior.logvar)
        return tuple(x.unflatten(0, (batch, frames)).transpose(1, 2) for x in moments)

    def _encode(self, video: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        return self._moments(video, mode)[0]

    def _sample(self, video: torch.Tensor, mode: InferenceMode, seed: int) -> torch.Tensor:
        mean, logvar = self._moments(video, mode)
        return cpu_seeded_sample(mean, logvar, seed)

    def _decode(self, latent: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        self.check_latent(latent)
        chunk = self.decode_chunk_size or latent.shape[2]
        videos = []
        for one in latent.to(self.dtype):  # the pipeline decodes one video's frames together
            frames = one.transpose(0, 1)  # [T, C, h, w]
            parts = [
                self._vae.decode(part, num_frames=part.shape[0]).sample
                for part in frames.split(chunk)
            ]
            videos.append(torch.cat(parts).transpose(0, 1))
        return torch.stack(videos)

    @classmethod
    def from_config(cls, preset: Preset) -> SVDVAE:
        model = super().from_config(preset)
        model.decode_chunk_size = preset.config.get("decode_chunk_size")
        return model  # type: ignore[return-value]

    @classmethod
    def from_pretrained(cls, path, preset: Preset) -> SVDVAE:  # type: ignore[override]
        model = super().from_pretrained(path, preset)
        model.decode_chunk_size = preset.config.get("decode_chunk_size")
        return model  # type: ignore[return-value]


# The SD image VAE's widths (its encoder is SD's); the loader reads the release's config.json.
SVD_CONFIG = {
    "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "layers_per_block": 2, "latent_channels": 4, "sample_size": 768, "scaling_factor": 0.18215,
}  # fmt: skip

PRESETS = (
    Preset(
        "svd-vae",
        SVDVAE,
        config={"class_name": SVD_FAMILY.class_name, "config": SVD_CONFIG,
                "decode_chunk_size": None},  # fmt: skip
        source=Source(
            HUB, "stabilityai/stable-video-diffusion-img2vid", subfolder="vae",
            files=DIFFUSERS_FILES,
            note="file names not checked here (the release also has an fp16 variant)",
        ),  # fmt: skip
        description="Stable Video Diffusion VAE: SD image encoder + temporal decoder, 4ch, 8x8",
    ),
)
