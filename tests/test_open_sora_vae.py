"""Open-Sora VAE v1.2 adapter: the release's layout (names, shapes, config.json +
model.safetensors) written here and loaded strictly, the micro-frame blocks and frame
counts against hand-computed cases, and a narrow model for the forward passes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vae_bench import adapters
from vae_bench.adapters import AdapterError, FrameRule, Preset
from vae_bench.adapters.base import file_sha256
from vae_bench.adapters.open_sora_vae import OpenSoraVAE, TemporalConfig, release_config
from vae_bench.adapters.open_sora_vae.config import read_release_config
from vae_bench.adapters.open_sora_vae.micro import clip_frames, latent_frames
from vae_bench.adapters.open_sora_vae.model import CausalConv3d, TemporalVAE, depth_to_time
from vae_bench.adapters.sd_vae import sd_config
from vae_bench.seams import seam_layout

NAME = "open-sora-vae-v1.2"
# Four image-VAE levels (8x, as released) and the release's temporal levels, narrow.
TINY_TEMPORAL = TemporalConfig(filters=8, num_res_blocks=1, num_groups=4)
TINY = Preset(
    "open-sora-vae-tiny",
    OpenSoraVAE,
    config=release_config(
        spatial=sd_config(block_out_channels=(8, 16, 16, 16), norm_num_groups=4, sample_size=64),
        temporal=TINY_TEMPORAL.to_dict(),
        frame_batch=3,
    ),
    release="https://example.org/open-sora-vae-tiny",
)


@pytest.fixture(scope="module")
def tiny() -> OpenSoraVAE:
    return TINY.create()


def clip(frames: int = 9, size: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, frames, size, size, generator=generator) * 2 - 1


# --- the release's facts ---------------------------------------------------------------------
def test_preset_factors_and_frame_rule_are_the_release_config():
    """OpenSoraVAE_V1_2 (opensora/models/vae/vae.py, v1.2.0) and the generation configs
    (configs/opensora-v1-2/inference/sample.py: micro_frame_size 17, micro_batch_size 4)."""
    preset = adapters.get_preset(NAME)
    assert preset.adapter is OpenSoraVAE
    assert preset.config["scale"] == [3.85, 2.32, 2.33, 3.06]
    assert preset.config["shift"] == [-0.10, 0.34, 0.27, 0.98]
    assert preset.config["micro_frame_size"] == 17 and preset.config["frame_batch"] == 4
    assert preset.config["temporal"] == {
        "in_out_channels": 4, "latent_embed_dim": 4, "embed_dim": 4, "filters": 128,
        "num_res_blocks": 4, "channel_multipliers": (1, 2, 2, 4),
        "temporal_downsample": (False, True, True), "num_groups": 32, "activation_fn": "swish",
    }  # fmt: skip
    assert str(preset.source) == "hf://hpcai-tech/OpenSora-VAE-v1.2"
    assert preset.source.files == ("config.json", "model.safetensors")
    with torch.device("meta"):
        spec = preset.create().spec
    assert (spec.latent_channels, spec.spatial_factor, spec.temporal_factor) == (4, 8, 4)
    assert spec.frame_rule == FrameRule(4, 1) and str(spec.frame_rule) == "1+4k" and spec.causal
    assert spec.modes == ("full", "temporal_chunks")
    assert math.isnan(spec.scaling_factor) and math.isnan(spec.shift_factor)  # per channel


def test_full_size_parameter_count():
    """393,341,007 parameters: 83,653,863 in the SDXL image VAE (SD's KL-f8 layout) and
    309,687,144 in the temporal VAE. The release's model.safetensors is listed on the hub
    at 1.57 GB, which is these parameters plus the two 4-value buffers in float32; the
    technical report (docs/report_03.md) rounds it to "83M 2D VAE" + "300M" = 384M."""
    with torch.device("meta"):
        model = adapters.get_preset(NAME).create()
    module = model.module
    assert model.spec.params == sum(p.numel() for p in module.parameters()) == 393_341_007
    assert sum(p.numel() for p in module.spatial_vae.parameters()) == 83_653_863
    assert sum(p.numel() for p in module.temporal_vae.parameters()) == 309_687_144
    tensors = sum(v.numel() for v in module.state_dict().values())
    assert tensors == 393_341_007 + 8 and round(4 * tensors / 1e9, 2) == 1.57


def test_release_state_dict_names_and_shapes():
    """Names and shapes read off the release's modules (VideoAutoencoderPipeline ->
    VideoAutoencoderKL.module, VAE_Temporal_SD): bias-free convs in the encoder's first
    conv and every ResBlock, identity (parameter-free) resamplers at the first level."""
    expected = {
        "scale": (1, 4, 1, 1, 1),
        "shift": (1, 4, 1, 1, 1),
        "spatial_vae.module.encoder.conv_in.weight": (128, 3, 3, 3),
        "spatial_vae.module.encoder.mid_block.attentions.0.to_q.weight": (512, 512),
        "spatial_vae.module.quant_conv.weight": (8, 8, 1, 1),
        "spatial_vae.module.decoder.conv_out.weight": (3, 128, 3, 3),
        "temporal_vae.encoder.conv_in.conv.weight": (128, 4, 3, 3, 3),
        "temporal_vae.encoder.block_res_blocks.0.3.conv2.conv.weight": (128, 128, 3, 3, 3),
        "temporal_vae.encoder.block_res_blocks.1.0.conv3.conv.weight": (256, 128, 1, 1, 1),
        "temporal_vae.encoder.block_res_blocks.3.0.norm1.weight": (256,),
        "temporal_vae.encoder.conv_blocks.1.conv.weight": (256, 256, 3, 3, 3),
        "temporal_vae.encoder.conv_blocks.2.conv.bias": (256,),
        "temporal_vae.encoder.res_blocks.3.conv1.conv.weight": (512, 512, 3, 3, 3),
        "temporal_vae.encoder.norm1.weight": (512,),
        "temporal_vae.encoder.conv2.conv.weight": (8, 512, 1, 1, 1),
        "temporal_vae.quant_conv.conv.weight": (8, 8, 1, 1, 1),
        "temporal_vae.post_quant_conv.conv.weight": (4, 4, 1, 1, 1),
        "temporal_vae.decoder.conv1.conv.weight": (512, 4, 3, 3, 3),
        "temporal_vae.decoder.conv1.conv.bias": (512,),
        "temporal_vae.decoder.block_res_blocks.3.0.conv1.conv.weight": (512, 512, 3, 3, 3),
        "temporal_vae.decoder.conv_blocks.2.conv.weight": (1024, 512, 3, 3, 3),
        "temporal_vae.decoder.conv_blocks.1.conv.weight": (512, 256, 3, 3, 3),
        "temporal_vae.decoder.block_res_blocks.2.0.conv3.conv.weight": (256, 512, 1, 1, 1),
        "temporal_vae.decoder.block_res_blocks.0.0.conv3.conv.weight": (128, 256, 1, 1, 1),
        "temporal_vae.decoder.norm1.weight": (128,),
        "temporal_vae.decoder.conv_out.conv.weight": (4, 128, 3, 3, 3),
    }
    with torch.device("meta"):
        state = adapters.get_preset(NAME).create().module.state_dict()
    assert {key: tuple(state[key].shape) for key in expected} == expected
    absent = (
        "temporal_vae.encoder.conv_in.conv.bias",
        "temporal_vae.encoder.block_res_blocks.0.0.conv1.conv.bias",
        "temporal_vae.decoder.res_blocks.0.conv2.conv.bias",
    )
    assert not any(key in state for key in absent)
    assert not any(".conv_blocks.0." in key for key in state)  # identities at level 0
    # 20 ResBlocks of 6 tensors a side (+2 shortcuts), resamplers, norms, in/out convs
    assert sum(k.startswith("temporal_vae.encoder.") for k in state) == 1 + 122 + 4 + 2 + 2
    assert sum(k.startswith("temporal_vae.decoder.") for k in state) == 2 + 24 + 98 + 4 + 2 + 2
    assert len(state) == 2 + 248 + 131 + 4 + 132  # buffers, image VAE, temporal VAE


# --- micro-frame blocks and frame counts ---------------------------------------------------
@pytest.mark.parametrize(
    ("frames", "micro", "latents"),
    [
        (1, None, 1), (17, None, 5), (33, None, 9), (37, None, 10),
        (1, 17, 1), (13, 17, 4), (17, 17, 5), (21, 17, 6),
        (33, 17, 9),  # 17 + 16 frames: 5 + 4, the second block unpadded
        (37, 17, 11),  # 17 + 17 + 3: 5 + 5 + 1
        (53, 17, 16),  # 3 * 17 + 2: 15 + 1
        (9, 5, 3),  # 5 + 4: 2 + 1 (a block of 5 frames gives 2 latent frames)
    ],
)  # fmt: skip
def test_latent_frames_by_hand(frames, micro, latents):
    assert latent_frames(frames, micro) == latents
    assert clip_frames(latents, micro) == frames


@pytest.mark.parametrize("micro", [None, 5, 9, 17, 33])
def test_the_latent_length_fixes_every_1_plus_4k_clip(micro):
    lengths = [latent_frames(1 + 4 * k, micro) for k in range(60)]
    assert len(set(lengths)) == len(lengths)
    assert [clip_frames(n, micro) for n in lengths] == [1 + 4 * k for k in range(60)]


def test_temporal_padding_is_in_front_and_dropped_after_decoding():
    vae = TemporalVAE(TINY_TEMPORAL)
    assert [vae.padding(t) for t in (1, 4, 16, 17, 18)] == [3, 0, 0, 3, 2]
    z = torch.zeros(1, 4, 5, 2, 2)
    assert vae.decode(z, 17).shape[2] == 17 and vae.decode(z, 20).shape[2] == 20


def test_causal_conv_against_hand_computation():
    conv = CausalConv3d(1, 1, (3, 1, 1), bias=False)
    torch.nn.init.ones_(conv.conv.weight)
    x = torch.arange(1.0, 6.0).reshape(1, 1, 5, 1, 1)  # 1..5
    assert conv(x).flatten().tolist() == [1, 3, 6, 9, 12]  # zeros before frame 0
    strided = CausalConv3d(1, 1, (3, 1, 1), time_stride=2, bias=False)
    torch.nn.init.ones_(strided.conv.weight)
    # one zero in front: windows (0, 1, 2), (2, 3, 4)
    assert strided(x[:, :, :4]).flatten().tolist() == [3, 9]


def test_depth_to_time_interleaves_channel_pairs():
    x = torch.arange(8.0).reshape(1, 4, 2, 1, 1)  # channels 0..3, frames 0..1
    out = depth_to_time(x)
    # channel c of the output: frames (t0, ch 2c), (t0, ch 2c+1), (t1, ch 2c), (t1, ch 2c+1)
    assert out.flatten().tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


# --- inference ----------------------------------------------------------------------------
@pytest.mark.parametrize("frames", [1, 21, 37])
def test_shapes_in_both_modes(tiny, frames):
    video = clip(frames)
    for mode, micro in (("full", None), ("temporal_chunks(17)", 17)):
        latent = tiny.encode(video, mode)
        assert latent.shape == (1, 4, latent_frames(frames, micro), 2, 2)
        assert tiny.decode(latent, mode).shape == video.shape
    assert tiny.encode(video).shape == (1, *tiny.spec.latent_shape(frames, 16, 16))


def test_micro_blocks_are_encoded_alone(tiny):
    video = clip(33)
    chunked = tiny.encode(video, "temporal_chunks(17)")
    assert torch.equal(chunked[:, :, :5], tiny.encode(video[:, :, :17]))
    assert not torch.allclose(chunked[:, :, 5:], tiny.encode(video)[:, :, 5:])
    short = clip(17)
    assert torch.equal(tiny.encode(short, "temporal_chunks(17)"), tiny.encode(short))
    latent = tiny.encode(short)
    assert torch.equal(tiny.decode(latent, "temporal_chunks(17)"), tiny.decode(latent))


def test_seams_are_the_block_starts(tiny):
    layout = seam_layout("temporal_chunks(17)", tiny.spec, 37, 16, 16)
    assert layout.frames == (17, 34) and not layout.rows


def test_bad_inputs_and_modes(tiny):
    with pytest.raises(AdapterError, match="frames not allowed"):
        tiny.encode(clip(8))
    with pytest.raises(AdapterError, match="latent must be"):
        tiny.decode(torch.zeros(1, 3, 2, 2, 2))
    with pytest.raises(AdapterError, match="do not overlap"):
        tiny.encode(clip(9), "temporal_chunks(9, 4)")
    with pytest.raises(AdapterError, match="1 \\+ 4k frames"):
        tiny.encode(clip(9), "temporal_chunks(8)")
    with pytest.raises(AdapterError, match="does not support inference mode spatial_tiles"):
        tiny.encode(clip(9), "spatial_tiles(16, 8)")


def test_random_builds_are_labelled_and_repeatable(tiny):
    again = TINY.create()
    assert tiny.weights == again.weights == "random"
    first, second = tiny.module.state_dict(), again.module.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert tiny.latent_scale == pytest.approx((3.85, 2.32, 2.33, 3.06))
    assert tiny.latent_shift == pytest.approx((-0.10, 0.34, 0.27, 0.98))


def test_seeded_samples(tiny):
    video = clip(5)
    sample = tiny.encode(video, seed=3)
    assert torch.equal(sample, tiny.encode(video, seed=3))
    assert not torch.equal(sample, tiny.encode(video, seed=4))
    assert not torch.equal(sample, tiny.encode(video))


# --- the released files ---------------------------------------------------------------------
def release_json(temporal: dict | None = None) -> dict:
    """config.json as transformers writes it for VideoAutoencoderPipelineConfig."""
    return {
        "architectures": ["VideoAutoencoderPipeline"],
        "cal_loss": False,
        "freeze_vae_2d": False,
        "from_pretrained": None,
        "micro_frame_size": 17,
        "model_type": "VideoAutoencoderPipeline",
        "scale": [3.85, 2.32, 2.33, 3.06],
        "shift": [-0.1, 0.34, 0.27, 0.98],
        "torch_dtype": "float32",
        "transformers_version": "4.36.2",
        "vae_2d": {
            "from_pretrained": "PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers",
            "local_files_only": False,
            "micro_batch_size": 4,
            "subfolder": "vae",
            "type": "VideoAutoencoderKL",
        },
        "vae_temporal": temporal or {"from_pretrained": None, "type": "VAE_Temporal_SD"},
    }


def tiny_temporal_json() -> dict:
    return {"type": "VAE_Temporal", "from_pretrained": None, **TINY_TEMPORAL.to_dict()}


def write_release(directory: Path, model: OpenSoraVAE, state: dict | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(release_json(tiny_temporal_json())))
    tensors = state if state is not None else model.module.state_dict()
    weights = directory / "model.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, weights, metadata={"format": "pt"})
    return weights


def test_release_config_json_describes_the_preset(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(release_json()))
    release = read_release_config(tmp_path / "config.json")
    assert release.temporal == TemporalConfig()  # VAE_Temporal_SD's fixed arguments
    assert (release.micro_frame_size, release.micro_batch_size) == (17, 4)
    preset = adapters.get_preset(NAME).config
    assert release.scale == tuple(preset["scale"]) and release.shift == tuple(preset["shift"])


def test_release_layout_loads_strictly_and_gives_the_same_outputs(tiny, tmp_path):
    state = {
        k: v + 0.01 * torch.randn(v.shape) if k not in ("scale", "shift") else v
        for k, v in tiny.module.state_dict().items()
    }
    weights = write_release(tmp_path, tiny, state)
    loaded = OpenSoraVAE.from_pretrained(tmp_path, TINY)
    assert loaded.weights == file_sha256(weights) != "random"
    assert loaded.report.source == "safetensors"
    assert "config.json micro_frame_size 17" in loaded.report.notes
    for key, value in loaded.module.state_dict().items():
        assert torch.equal(value, state[key])
    video = clip(9)
    latent = loaded.encode(video)
    assert not torch.equal(latent, tiny.encode(video))
    again = OpenSoraVAE.from_pretrained(weights, TINY)  # the file alone, config.json beside it
    assert torch.equal(again.encode(video), latent)
    assert torch.equal(again.decode(latent), loaded.decode(latent))


def test_file_buffers_are_the_normalisation_used(tiny, tmp_path):
    state = dict(tiny.module.state_dict())
    state["scale"] = torch.full((1, 4, 1, 1, 1), 2.0)
    write_release(tmp_path, tiny, state)
    assert OpenSoraVAE.from_pretrained(tmp_path, TINY).latent_scale == (2.0,) * 4


def test_strict_keys_name_what_is_wrong(tiny, tmp_path):
    state = dict(tiny.module.state_dict())
    del state["temporal_vae.encoder.conv_in.conv.weight"]
    state["temporal_vae.encoder.conv_in.conv.bias"] = torch.zeros(8)
    state["temporal_vae.quant_conv.conv.bias"] = torch.zeros(3)
    write_release(tmp_path, tiny, state)
    with pytest.raises(AdapterError) as error:
        OpenSoraVAE.from_pretrained(tmp_path, TINY)
    message = str(error.value)
    assert message.startswith("open-sora-vae-tiny: VideoAutoencoderPipeline state dict")
    assert "missing keys (1): temporal_vae.encoder.conv_in.conv.weight" in message
    assert "unexpected keys (1): temporal_vae.encoder.conv_in.conv.bias" in message
    assert "temporal_vae.quant_conv.conv.bias (3,) != (8,)" in message
    assert "official release: https://example.org/open-sora-vae-tiny" in message


def test_truncated_file_is_a_clear_error(tiny, tmp_path):
    weights = write_release(tmp_path, tiny)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(AdapterError, match="cannot read as safetensors \\(truncated"):
        OpenSoraVAE.from_pretrained(tmp_path, TINY)


def test_foreign_files_are_refused(tiny, tmp_path):
    image_vae = tmp_path / "sd"
    tiny.module.spatial_vae.module.save_pretrained(image_vae)  # a diffusers AutoencoderKL
    with pytest.raises(AdapterError, match="describes 'AutoencoderKL', not a VideoAutoencoder"):
        OpenSoraVAE.from_pretrained(image_vae, TINY)
    alone = tmp_path / "alone"
    alone.mkdir()
    (image_vae / "diffusion_pytorch_model.safetensors").rename(alone / "vae.safetensors")
    with pytest.raises(AdapterError) as error:
        OpenSoraVAE.from_pretrained(alone / "vae.safetensors", TINY)
    image_keys = len(tiny.module.spatial_vae.module.state_dict())
    assert f"missing keys ({len(tiny.module.state_dict())}): scale, shift," in str(error.value)
    assert f"unexpected keys ({image_keys}): decoder.conv_in.bias" in str(error.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps(release_json(tiny_temporal_json())))
    with pytest.raises(AdapterError, match="no VideoAutoencoderPipeline weights"):
        OpenSoraVAE.from_pretrained(empty, TINY)
    with pytest.raises(AdapterError, match="no config.json"):
        OpenSoraVAE.from_pretrained(tmp_path / "alone", TINY)


def test_another_temporal_architecture_is_named(tiny, tmp_path):
    write_release(tmp_path, tiny)
    (tmp_path / "config.json").write_text(json.dumps(release_json()))  # full-size temporal
    with pytest.raises(AdapterError, match="another temporal VAE: filters 128 \\(preset 8\\)"):
        OpenSoraVAE.from_pretrained(tmp_path, TINY)
    bad = release_json({"type": "VAE_Temporal_SD", "filters": 64})
    (tmp_path / "config.json").write_text(json.dumps(bad))
    with pytest.raises(AdapterError, match="VAE_Temporal_SD fixes filters"):
        OpenSoraVAE.from_pretrained(tmp_path, TINY)
