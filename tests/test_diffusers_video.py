"""The generic diffusers video adapter: tiny random configs of each class, round trips and
strict directory loading."""

from __future__ import annotations

import pytest
import torch

from vae_bench.adapters import get_preset
from vae_bench.adapters.base import AdapterError, Preset
from vae_bench.adapters.diffusers_video import FAMILIES, PRESETS, DiffusersVideoVAE

TINY: dict[str, dict] = {
    "AutoencoderKLCogVideoX": dict(
        down_block_types=("CogVideoXDownBlock3D",) * 2, up_block_types=("CogVideoXUpBlock3D",) * 2,
        block_out_channels=(8, 16), latent_channels=4, layers_per_block=1, norm_num_groups=4,
        temporal_compression_ratio=2,
    ),
    "AutoencoderKLHunyuanVideo": dict(
        down_block_types=("HunyuanVideoDownBlock3D",) * 3,
        up_block_types=("HunyuanVideoUpBlock3D",) * 3, block_out_channels=(8, 8, 8),
        latent_channels=4, layers_per_block=1, norm_num_groups=4, spatial_compression_ratio=4,
        temporal_compression_ratio=4, mid_block_add_attention=False,
    ),
    "AutoencoderKLLTXVideo": dict(
        block_out_channels=(8, 8), decoder_block_out_channels=(8, 8), latent_channels=4,
        layers_per_block=(1, 1, 1), decoder_layers_per_block=(1, 1, 1),
        spatio_temporal_scaling=(True, True), decoder_spatio_temporal_scaling=(True, True),
        decoder_inject_noise=(False, False, False), upsample_residual=(False, False),
        upsample_factor=(1, 1), patch_size=1, patch_size_t=1,
    ),
    "AutoencoderKLWan": dict(
        base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[True],
        scale_factor_spatial=2, scale_factor_temporal=2,  # diffusers' tiling reads these
    ),
    "AutoencoderKLMochi": dict(
        encoder_block_out_channels=(32, 32), decoder_block_out_channels=(32, 32),
        latent_channels=4,
        layers_per_block=(1, 1, 1), temporal_expansions=(2,), spatial_expansions=(2,),
        add_attention_block=(False, False, False),
    ),
    "AutoencoderKLCosmos": dict(
        encoder_block_out_channels=(8,) * 4, decode_block_out_channels=(8,) * 4,
        latent_channels=4, attention_resolutions=(), resolution=32, num_layers=1, patch_size=2,
        spatial_compression_ratio=4, temporal_compression_ratio=4, latents_mean=None,
        latents_std=None,
    ),
    "AutoencoderKLHunyuanVideo15": dict(
        block_out_channels=(16, 16, 16), latent_channels=4, layers_per_block=1,
        spatial_compression_ratio=4, temporal_compression_ratio=2,
    ),
    "AutoencoderKLLTX2Video": dict(
        block_out_channels=(8, 8), down_block_types=("LTX2VideoDownBlock3D",) * 2,
        decoder_block_out_channels=(8, 8), layers_per_block=(1, 1, 1),
        decoder_layers_per_block=(1, 1, 1), spatio_temporal_scaling=(True, True),
        decoder_spatio_temporal_scaling=(True, True), decoder_inject_noise=(False,) * 3,
        downsample_type=("spatiotemporal",) * 2, upsample_type=("spatiotemporal",) * 2,
        upsample_residual=(False, False), upsample_factor=(1, 1), patch_size=1,
        latent_channels=4, decoder_causal=False,
    ),
    "AutoencoderKLMagvit": dict(
        block_out_channels=(8,) * 4,
        down_block_types=["SpatialDownBlock3D"] + ["SpatialTemporalDownBlock3D"] * 3,
        up_block_types=["SpatialUpBlock3D"] + ["SpatialTemporalUpBlock3D"] * 3,
        latent_channels=4, layers_per_block=1, norm_num_groups=4,
    ),
    "AutoencoderVidTok": dict(ch=8, ch_mult=[1, 1, 1, 1], z_channels=4, num_res_blocks=1),
    "AutoencoderKLKVAEVideo": dict(
        ch=32, ch_mult=(1, 1), num_res_blocks=1, z_channels=4, temporal_compress_times=2,
    ),
}  # fmt: skip
# the factors each tiny config must give (the adapter reads them from the config)
FACTORS = {
    "AutoencoderKLCosmos": (4, 4), "AutoencoderKLHunyuanVideo15": (4, 2),
    "AutoencoderKLLTX2Video": (4, 4), "AutoencoderKLMagvit": (8, 4),
    "AutoencoderVidTok": (8, 4), "AutoencoderKLKVAEVideo": (2, 2),
}  # fmt: skip
CLASSES = [name for name in TINY if name in FAMILIES]


def tiny(class_name: str) -> DiffusersVideoVAE:
    return tiny_preset(class_name).create()


def tiny_preset(class_name: str) -> Preset:
    config = {"class_name": class_name, "config": TINY[class_name]}
    return Preset("tiny", DiffusersVideoVAE, config, release="https://example.org/tiny")


def tiny_clip(model: DiffusersVideoVAE, tiles: int = 4) -> torch.Tensor:
    spec = model.spec
    frames = spec.frame_rule.fit(1 + 2 * spec.temporal_factor)
    size = tiles * spec.spatial_factor
    generator = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, frames, size, size, generator=generator) * 2 - 1


@pytest.mark.parametrize("class_name", CLASSES)
def test_tiny_random_config_round_trips(class_name: str, one_thread) -> None:
    model = tiny(class_name)
    spec = model.spec
    video = tiny_clip(model)
    frames, size = video.shape[2], video.shape[3]
    assert spec.frame_rule.is_valid(frames) and frames == 1 + 2 * spec.temporal_factor
    latent = model.encode(video)
    assert tuple(latent.shape[1:]) == spec.latent_shape(frames, size, size)
    recon = model.decode(latent)
    assert recon.shape == video.shape and torch.isfinite(recon).all()
    assert model.weights == "random"
    if class_name in FACTORS:
        assert (spec.spatial_factor, spec.temporal_factor) == FACTORS[class_name]
    with pytest.raises(AdapterError, match="frames not allowed"):
        model.encode(video[:, :, :2])


@pytest.mark.parametrize("class_name", CLASSES)
def test_save_pretrained_loads_back_strictly_with_identical_outputs(
    class_name: str, tmp_path, one_thread
) -> None:
    model = tiny(class_name)
    model.module.save_pretrained(tmp_path / "vae", safe_serialization=True)
    loaded = tiny_preset(class_name).create(tmp_path)  # a pipeline directory with vae/
    assert len(loaded.weights) == 64 and loaded.spec == model.spec
    video = tiny_clip(model)
    torch.testing.assert_close(loaded.reconstruct(video), model.reconstruct(video), rtol=0, atol=0)


def test_strict_loading_names_the_extra_key_and_a_wrong_class(tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    model = tiny("AutoencoderKLWan")
    model.module.save_pretrained(tmp_path, safe_serialization=True)
    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    save_file({**state, "stray.weight": torch.zeros(1)}, str(weights))
    with pytest.raises(AdapterError, match="unexpected 1 keys: stray.weight"):
        tiny_preset("AutoencoderKLWan").create(tmp_path)
    with pytest.raises(AdapterError, match="'AutoencoderKLWan', not AutoencoderKLMochi"):
        tiny_preset("AutoencoderKLMochi").create(tmp_path)
    weights.unlink()
    with pytest.raises(AdapterError, match="has no diffusion_pytorch_model.safetensors"):
        tiny_preset("AutoencoderKLWan").create(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdapterError, match="no config.json"):
        tiny_preset("AutoencoderKLWan").create(tmp_path / "empty")

def test_missing_weights_fail_at_once_with_the_release() -> None:
    expected = r"weights not found .*huggingface.co/THUDM/CogVideoX-2b"
    with pytest.raises(AdapterError, match=expected):
        get_preset("cogvideox-2b-vae").create("/nonexistent/cogvideox")


TILED = [
    "AutoencoderKLWan", "AutoencoderKLCogVideoX", "AutoencoderKLHunyuanVideo15",
    "AutoencoderKLLTX2Video", "AutoencoderKLMagvit", "AutoencoderVidTok",
]  # fmt: skip


@pytest.mark.parametrize("class_name", [name for name in TILED if name in FAMILIES])
def test_spatial_tiles_cover_the_frame_and_restore_the_settings(class_name: str) -> None:
    model = tiny(class_name)
    video = tiny_clip(model, tiles=8)
    size = video.shape[-1]
    whole = model.reconstruct(video)
    # one tile as large as the frame is the whole frame (VidTok's tiled path also runs time
    # in cached chunks, which is not bit-identical to its one-pass encoder)
    if class_name != "AutoencoderVidTok":
        torch.testing.assert_close(model.reconstruct(video, f"spatial_tiles({size})"), whole)
    tiled = model.reconstruct(video, f"spatial_tiles({size // 2},{model.spec.spatial_factor * 2})")
    assert tiled.shape == whole.shape and not torch.equal(tiled, whole)
    assert model.module.use_tiling is False
    with pytest.raises(AdapterError, match="multiples of the spatial factor"):
        model.encode(video, f"spatial_tiles({size // 2 + 1})")


def test_presets_are_the_available_classes() -> None:
    names = {p.config["class_name"] for p in PRESETS}
    assert names == set(FAMILIES)
    assert all(get_preset(p.name) is p for p in PRESETS)


# Each release's latent channels, spatial and temporal factors and modes, as its model card
# or diffusers documentation states them; the full architectures are built on the meta
# device, so the factors come from the preset's config exactly as for a loaded release.
RELEASES = {
    "wan2.2-vae": (48, 16, 4, ("full", "spatial_tiles")),
    "cosmos-1.0-vae": (16, 8, 8, ("full",)),
    "hunyuanvideo-1.5-vae": (32, 16, 4, ("full", "spatial_tiles")),
    "ltx-2-vae": (128, 32, 8, ("full", "spatial_tiles")),
    "easyanimate-v5.1-vae": (16, 8, 4, ("full", "spatial_tiles")),
    "vidtok-kl-causal-488-4ch": (4, 8, 4, ("full", "spatial_tiles")),
    "kvae-3d-1.0": (16, 8, 4, ("full",)),
}


@pytest.mark.parametrize("name", sorted(RELEASES))
def test_release_architectures_give_the_published_factors(name: str) -> None:
    preset = get_preset(name)
    if preset.config["class_name"] not in FAMILIES:
        pytest.skip(f"{preset.config['class_name']} not in this diffusers")
    with torch.device("meta"):
        vae = FAMILIES[preset.config["class_name"]].cls(**preset.config["config"])
    spec = DiffusersVideoVAE(vae, name).spec
    channels, spatial, temporal, modes = RELEASES[name]
    assert (spec.latent_channels, spec.spatial_factor, spec.temporal_factor) == (
        channels, spatial, temporal,
    )  # fmt: skip
    assert str(spec.frame_rule) == f"1+{temporal}k" and spec.modes == modes


def test_vidtok_reconstructs_as_its_own_forward_pass(one_thread) -> None:
    """VidTok's causal forward pads the first frame ``temporal - 1`` times before encoding
    and its decode drops them: the adapter's round trip is that forward pass."""
    model = tiny("AutoencoderVidTok")
    video = tiny_clip(model)
    with torch.no_grad():
        expected = model.module(video, sample_posterior=False).sample
    torch.testing.assert_close(model.reconstruct(video), expected, rtol=0, atol=0)


@pytest.mark.parametrize("class_name", ["AutoencoderKLCosmos", "AutoencoderKLKVAEVideo"])
def test_point_encoders_sample_their_latent_and_run_untiled(class_name: str, one_thread) -> None:
    """Cosmos's encoder is deterministic; diffusers' KVAE keeps only the encoder's mean (a
    zero log-variance, unit noise if sampled): a seeded sample of either is the latent."""
    model = tiny(class_name)
    video = tiny_clip(model)
    torch.testing.assert_close(model.encode(video, seed=3), model.encode(video), rtol=0, atol=0)
    with pytest.raises(AdapterError, match="spatial_tiles"):
        model.encode(video, "spatial_tiles(8)")


def test_truncated_weights_are_a_clear_error(tmp_path) -> None:
    model = tiny("AutoencoderKLKVAEVideo")
    model.module.save_pretrained(tmp_path, safe_serialization=True)
    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(AdapterError, match="cannot read .*not safetensors"):
        tiny_preset("AutoencoderKLKVAEVideo").create(tmp_path)


def test_wan22_residual_patchified_structure_round_trips_and_loads(tmp_path, one_thread) -> None:
    """Wan 2.2's layout (patch size 2 on 12 channels, residual down/up-sampling, a wider
    decoder) in miniature: the spatial factor counts the patch."""
    config = dict(
        base_dim=8, decoder_base_dim=16, z_dim=4, dim_mult=[1, 2, 2], num_res_blocks=1,
        temperal_downsample=[False, True], is_residual=True, in_channels=12, out_channels=12,
        patch_size=2, scale_factor_spatial=8, scale_factor_temporal=2,
    )  # fmt: skip
    spec = {"class_name": "AutoencoderKLWan", "config": config}
    preset = Preset("tiny-wan22", DiffusersVideoVAE, spec)
    model = preset.create()
    assert (model.spec.spatial_factor, model.spec.temporal_factor) == (8, 2)
    video = tiny_clip(model)
    recon = model.reconstruct(video)
    assert recon.shape == video.shape and torch.isfinite(recon).all()
    model.module.save_pretrained(tmp_path, safe_serialization=True)
    torch.testing.assert_close(preset.create(tmp_path).reconstruct(video), recon, rtol=0, atol=0)
