"""The generic diffusers video adapter: tiny random configs of each class, round trips and
strict directory loading."""

from __future__ import annotations

import pytest
import torch

from adapters.base import AdapterError, Preset
from adapters.diffusers_video import FAMILIES, PRESETS, DiffusersVideoVAE

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
    ),
    "AutoencoderKLMochi": dict(
        encoder_block_out_channels=(32, 32), decoder_block_out_channels=(32, 32),
        latent_channels=4,
        layers_per_block=(1, 1, 1), temporal_expansions=(2,), spatial_expansions=(2,),
        add_attention_block=(False, False, False),
    ),
}  # fmt: skip
CLASSES = [name for name in TINY if name in FAMILIES]


def tiny(class_name: str) -> DiffusersVideoVAE:
    preset = Preset("tiny", DiffusersVideoVAE, {"class_name": class_name, "config": TINY[class_name]})
    return preset.create()


@pytest.mark.parametrize("class_name", CLASSES)
def test_tiny_random_config_round_trips(class_name: str, one_thread) -> None:
    model = tiny(class_name)
    spec = model.spec
    frames = spec.frame_rule.fit(1 + 2 * spec.temporal_factor)
    size = 4 * spec.spatial_factor
    video = torch.rand(1, 3, frames, size, size) * 2 - 1
    latent = model.encode(video)
    assert tuple(latent.shape[1:]) == spec.latent_shape(frames, size, size)
    recon = model.decode(latent)
    assert recon.shape == video.shape and torch.isfinite(recon).all()
    assert model.weights == "random"
