"""Stable Video Diffusion's VAE: per-frame encoding, the pipeline's chunked temporal decoding
and strict loading of a diffusers folder."""

from __future__ import annotations

import pytest
import torch

from vae_bench.adapters import get_preset
from vae_bench.adapters.base import AdapterError, Preset
from vae_bench.adapters.svd_vae import SVD_FAMILY, SVDVAE

TINY = dict(
    block_out_channels=[32, 32], down_block_types=["DownEncoderBlock2D"] * 2, layers_per_block=1,
    latent_channels=4,
)  # fmt: skip


def tiny_preset(chunk: int | None = None) -> Preset:
    config = {"class_name": SVD_FAMILY.class_name, "config": TINY, "decode_chunk_size": chunk}
    return Preset("tiny-svd", SVDVAE, config)


def clip(frames: int = 5, size: int = 16) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, frames, size, size, generator=generator) * 2 - 1


def test_any_clip_length_round_trips_with_the_config_factors(one_thread) -> None:
    model = tiny_preset().create()
    spec = model.spec
    assert (spec.spatial_factor, spec.temporal_factor, spec.causal) == (2, 1, False)
    assert str(spec.frame_rule) == "any" and spec.modes == ("full",)
    assert model.weights == "random"
    for frames in (1, 3, 4):
        video = clip(frames)
        latent = model.encode(video)
        assert tuple(latent.shape[1:]) == spec.latent_shape(frames, 16, 16)
        recon = model.decode(latent)
        assert recon.shape == video.shape and torch.isfinite(recon).all()


def test_frames_are_encoded_one_by_one(one_thread) -> None:
    model = tiny_preset().create()
    video = clip(3)
    latent = model.encode(video)
    with torch.no_grad():
        for t in range(3):
            alone = model.module.encode(video[:, :, t]).latent_dist.mode()
            torch.testing.assert_close(latent[:, :, t], alone)


def pipeline_decode(vae: torch.nn.Module, latent: torch.Tensor, chunk: int) -> torch.Tensor:
    """StableVideoDiffusionPipeline.decode_latents' steps (one video): latent frames
    flattened into a batch, decoded ``chunk`` at a time with ``num_frames`` set to each
    chunk's length, then back to [B, C, T, H, W]."""
    frames = latent.transpose(1, 2).flatten(0, 1)
    with torch.no_grad():
        decoded = [
            vae.decode(frames[i : i + chunk], num_frames=frames[i : i + chunk].shape[0]).sample
            for i in range(0, frames.shape[0], chunk)
        ]
    video = torch.cat(decoded).reshape(-1, latent.shape[2], 3, *decoded[0].shape[-2:])
    return video.transpose(1, 2)


@pytest.mark.parametrize("chunk", [None, 2])
def test_decoding_is_the_pipelines_decode_latents(chunk: int | None, one_thread) -> None:
    model = tiny_preset(chunk).create()
    latent = model.encode(clip(5))
    expected = pipeline_decode(model.module, latent, chunk or 5)
    torch.testing.assert_close(model.decode(latent), expected, rtol=0, atol=0)


def test_chunks_change_the_temporal_decoding(one_thread) -> None:
    latent = tiny_preset().create().encode(clip(4))
    whole, chunked = tiny_preset().create().decode(latent), tiny_preset(2).create().decode(latent)
    assert whole.shape == chunked.shape and not torch.allclose(whole, chunked)


def test_saved_folder_loads_strictly_and_foreign_files_fail(tmp_path, one_thread) -> None:
    model = tiny_preset().create()
    model.module.save_pretrained(tmp_path / "vae", safe_serialization=True)
    loaded = tiny_preset().create(tmp_path)
    assert len(loaded.weights) == 64 and loaded.spec == model.spec
    video = clip(3)
    torch.testing.assert_close(loaded.reconstruct(video), model.reconstruct(video), rtol=0, atol=0)
    weights = tmp_path / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(AdapterError, match="not safetensors"):
        tiny_preset().create(tmp_path)
    config = tmp_path / "vae" / "config.json"
    config.write_text(config.read_text().replace("AutoencoderKLTemporalDecoder", "AutoencoderKL"))
    with pytest.raises(AdapterError, match="'AutoencoderKL', not AutoencoderKLTemporalDecoder"):
        tiny_preset().create(tmp_path)


def test_the_release_preset() -> None:
    preset = get_preset("svd-vae")
    assert str(preset.source) == "hf://stabilityai/stable-video-diffusion-img2vid/vae"
    with torch.device("meta"):
        vae = SVD_FAMILY.cls(**preset.config["config"])
    spec = SVDVAE(vae, preset.name).spec
    assert (spec.latent_channels, spec.spatial_factor, spec.temporal_factor) == (4, 8, 1)
