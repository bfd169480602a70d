"""WF-VAE adapter: release layout and strict loading, presets, causal cache, causality,
spatial tiles. Models are reduced-width builds of each preset's config (tiny clips)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from vae_bench import adapters
from vae_bench.adapters import AdapterError, Preset
from vae_bench.adapters.base import file_sha256
from vae_bench.adapters.spatial_tiling import _blend, tiled_decode, tiled_encode
from vae_bench.adapters.wf_vae import WFVAE, WFVAEModel
from vae_bench.adapters.wf_vae.layers import LayerNorm

PRESET_NAMES = ("wf-vae-l-16ch", "wf-vae-s-8ch", "wf-vae-s-4ch", "wf-vae-l-4ch")
TINY = {
    "base_channels": 8,
    "encoder_energy_flow_hidden_size": 8,
    "decoder_energy_flow_hidden_size": 8,
}

GROUPNORM_WIDTHS = dict.fromkeys(TINY, 32)  # GroupNorm(32) needs channels in multiples of 32


def tiny_preset(name: str, **overrides) -> Preset:
    base = adapters.get_preset(name)
    return Preset(f"{name}-tiny", WFVAE, config={**base.config, **TINY, **overrides})


def clip(frames: int = 9, size: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, frames, size, size, generator=generator) * 2 - 1


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module", params=PRESET_NAMES)
def tiny(request) -> WFVAE:
    return tiny_preset(request.param).create()


# --- presets and the released layout ---------------------------------------------------
def test_presets_registered_with_release_facts():
    registered = adapters.presets()
    for name, channels in zip(PRESET_NAMES, (16, 8, 4, 4), strict=True):
        with torch.device("meta"):
            spec = registered[name].create().spec
        assert (spec.family, spec.latent_channels, spec.causal) == ("wf-vae", channels, True)
        assert (spec.spatial_factor, spec.temporal_factor, str(spec.frame_rule)) == (8, 4, "1+4k")
        assert (spec.scaling_factor, spec.shift_factor) == (0.18215, 0.0)
        assert spec.modes == ("full", "temporal_chunks", "spatial_tiles")
        assert spec.latent_shape(33, 256, 256) == (channels, 9, 32, 32)


# Encoder/decoder parameter counts of the authors' WFVAEModel (PKU-YuanGroup/WF-VAE) built
# from the same configs; totals against the published sizes (316M; 146M, whose "38M + 108M"
# in the Open-Sora Plan v1.3 report is rounded from the 4-channel model: 147.3M here).
FULL_SIZE = {
    "wf-vae-l-16ch": (84_587_040, 232_494_332, 316e6, 244),
    "wf-vae-s-8ch": (37_182_352, 110_165_436, 146e6, 260),
    "wf-vae-s-4ch": (38_157_704, 108_339_132, 146e6, 244),
    "wf-vae-l-4ch": (84_089_352, 232_245_500, 316e6, 244),
}
# The paper's Table 3 (encoder and decoder millions, rounded) for its S and L models.
PAPER_TABLE3_MILLIONS = {"wf-vae-s-4ch": (38, 108), "wf-vae-l-4ch": (84, 232)}


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_full_size_parameter_counts(name):
    with torch.device("meta"):
        model = WFVAEModel.from_config(dict(adapters.get_preset(name).config))
    encoder, decoder, published, keys = FULL_SIZE[name]
    assert sum(p.numel() for p in model.encoder.parameters()) == encoder
    assert sum(p.numel() for p in model.decoder.parameters()) == decoder
    assert abs(encoder + decoder - published) / published < 0.01
    assert len(model.state_dict()) == keys


@pytest.mark.parametrize("name", sorted(PAPER_TABLE3_MILLIONS))
def test_unreleased_4_channel_models_match_the_paper_sizes(name):
    encoder, decoder, _, _ = FULL_SIZE[name]
    assert (round(encoder / 1e6), round(decoder / 1e6)) == PAPER_TABLE3_MILLIONS[name]
    preset = adapters.get_preset(name)
    assert preset.source is None and "no release" in preset.description


def test_full_size_key_tensor_shapes():
    """A few tensors of the released state dicts, from the configs (L: base 192, latent 16,
    energy flow 128/128; S: base 128, latent 8, flow 64/128, two connect ResNet blocks)."""
    expected = {
        "wf-vae-l-16ch": {
            "encoder.down1.0.weight": (192, 24, 3, 3),
            "encoder.down2.0.weight": (384, 192 + 128, 3, 3),
            "encoder.connect_l1.weight": (128, 12, 3, 3),
            "encoder.connect_l2.weight": (128, 24, 3, 3),
            "encoder.mid.0.conv1.conv.weight": (768, 384 + 128, 3, 3, 3),
            "encoder.mid.1.q.conv.weight": (768, 768, 1, 1, 1),
            "encoder.mid.2.norm1.norm.weight": (768,),
            "encoder.conv_out.conv.weight": (32, 768, 3, 3, 3),
            "encoder.wavelet_transform_in.h_conv.conv.weight": (1, 1, 2, 2, 2),
            "encoder.wavelet_transform_l1.dd": (1, 1, 2, 2),
            "decoder.conv_in.conv.weight": (768, 16, 3, 3, 3),
            "decoder.mid.2.nin_shortcut.conv.weight": (768 + 128, 768, 1, 1, 1),
            "decoder.up2.2.conv.conv.weight": (768, 768, 3, 3, 3),
            "decoder.up1.2.conv.weight": (384, 384, 3, 3),
            "decoder.connect_l1.1.weight": (12, 128, 3, 3),
            "decoder.connect_l2.1.weight": (24, 128, 3, 3),
            "decoder.conv_out.weight": (24, 192, 3, 3),
            "decoder.inverse_wavelet_transform_out.gh_v": (1, 1, 2, 2, 2),
        },
        "wf-vae-s-8ch": {
            "encoder.connect_l1.weight": (64, 12, 3, 3),
            "encoder.mid.0.nin_shortcut.conv.weight": (512, 256 + 64, 1, 1, 1),
            "encoder.conv_out.conv.weight": (16, 512, 3, 3, 3),
            "decoder.conv_in.conv.weight": (512, 8, 3, 3, 3),
            "decoder.connect_l1.1.conv2.conv.weight": (128, 128, 3, 3, 3),
            "decoder.connect_l1.2.weight": (12, 128, 3, 3),
            "decoder.connect_l2.2.weight": (24, 128, 3, 3),
        },
    }
    for name, shapes in expected.items():
        with torch.device("meta"):
            state = WFVAEModel.from_config(dict(adapters.get_preset(name).config)).state_dict()
        assert {key: tuple(state[key].shape) for key in shapes} == shapes


def test_norm_switch():
    layer = WFVAEModel(**TINY, latent_dim=4, norm_type="layernorm")
    group = WFVAEModel(**GROUPNORM_WIDTHS, latent_dim=4, norm_type="groupnorm")
    assert isinstance(layer.encoder.mid[0].norm1, LayerNorm)
    assert "encoder.norm_out.norm.weight" in layer.state_dict()
    norm = group.encoder.mid[0].norm1
    assert isinstance(norm, nn.GroupNorm) and (norm.num_groups, norm.eps) == (32, 1e-6)
    assert "encoder.norm_out.weight" in group.state_dict()


@pytest.mark.parametrize(
    ("key", "value"),
    [("attention_type", "AttnBlock3D"), ("l1_dowmsample_block", "Spatial2xTime2x3DDownsample"),
     ("norm_type", "batchnorm"), ("t_interpolation", "bicubic")],
)  # fmt: skip
def test_unsupported_config_is_named(key, value):
    with pytest.raises(AdapterError, match=key):
        WFVAEModel(**TINY, **{key: value})


# --- encode / decode ---------------------------------------------------------------------
def test_shapes(tiny):
    latent = tiny.encode(clip())
    channels = tiny.spec.latent_channels
    assert latent.shape == (1, channels, 3, 4, 4) == (1, *tiny.spec.latent_shape(9, 32, 32))
    assert tiny.decode(latent).shape == (1, 3, 9, 32, 32)
    with pytest.raises(AdapterError, match="frames not allowed"):
        tiny.encode(clip(8))
    with pytest.raises(AdapterError, match="latent must be"):
        tiny.decode(torch.zeros(1, 3, 1, 2, 2))


def test_random_weights_are_deterministic_and_labelled():
    first, second = tiny_preset("wf-vae-s-8ch").create(), tiny_preset("wf-vae-s-8ch").create()
    assert first.weights == "random"
    for a, b in zip(
        first.module.state_dict().values(), second.module.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_sampling_needs_a_seed_and_repeats_with_it(tiny):
    video = clip()
    mode = tiny.encode(video)
    sample = tiny.encode(video, seed=3)
    assert torch.equal(sample, tiny.encode(video, seed=3))
    assert not torch.equal(sample, mode) and not torch.equal(sample, tiny.encode(video, seed=4))


def test_causality_later_frames_never_change_earlier_latents(tiny):
    video = clip(13)
    changed = video.clone()
    changed[:, :, 5:] = -changed[:, :, 5:]  # frames 5..12 feed latent frames 2 and 3
    for mode in ("full", "temporal_chunks(4)"):
        before, after = tiny.encode(video, mode), tiny.encode(changed, mode)
        torch.testing.assert_close(after[:, :, :2], before[:, :, :2], rtol=0, atol=1e-6)
        assert (after[:, :, 2:] - before[:, :, 2:]).abs().max() > 1e-3


def test_groupnorm_normalises_over_time():
    """The release's GroupNorm option sees all frames at once: not causal (layernorm is)."""
    model = tiny_preset("wf-vae-s-8ch", **GROUPNORM_WIDTHS, norm_type="groupnorm").create()
    video = clip(5, size=16)
    changed = video.clone()
    changed[:, :, 1:] = 0.0
    assert (model.encode(changed)[:, :, 0] - model.encode(video)[:, :, 0]).abs().max() > 1e-4


# --- the release's causal cache ---------------------------------------------------------
@pytest.mark.parametrize("frames", [9, 17, 21, 33])
def test_causal_cache_encoder_equals_full(tiny, frames):
    video = clip(frames, size=16)
    full = tiny.module.encode_moments(video)
    for size in (4, 8, 12, 16):
        chunked = tiny.module.encode_moments(video, chunk=size)
        torch.testing.assert_close(chunked, full, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    ("latent_frames", "chunks"), [(3, (2, 3, 4)), (5, (2, 4, 5)), (8, (4, 5, 7))]
)
def test_causal_cache_decoder_equals_full(tiny, latent_frames, chunks):
    generator = torch.Generator().manual_seed(latent_frames)
    latent = torch.randn(1, tiny.spec.latent_channels, latent_frames, 2, 2, generator=generator)
    full = tiny.module.decode_latent(latent)
    for chunk in chunks:
        torch.testing.assert_close(
            tiny.module.decode_latent(latent, chunk=chunk), full, rtol=0, atol=1e-4
        )


@pytest.mark.parametrize(("frames", "size"), [(1, 8), (9, 8), (17, 16), (25, 8), (33, 12)])
def test_temporal_chunks_mode_reconstructs_like_full(tiny, frames, size):
    video = clip(frames, size=16)
    torch.testing.assert_close(
        tiny.reconstruct(video, f"temporal_chunks({size})"),
        tiny.reconstruct(video),
        rtol=0,
        atol=1e-4,
    )


@pytest.mark.parametrize(("frames", "mode", "needle"), [
    (21, "temporal_chunks(16)", "one latent frame"),  # 6 latent frames: blocks 1 + 4 + 1
    (9, "temporal_chunks(4)", "one latent frame"),  # one latent frame per decoder block
    (9, "temporal_chunks(6)", "multiple of 4"),
    (9, "temporal_chunks(8, 4)", "no overlap"),
])  # fmt: skip
def test_chunkings_the_release_cannot_run_fail_clearly(tiny, frames, mode, needle):
    """The release's decoder breaks on a last block of one latent frame (the frame counts
    its README warns about); here those cells fail with a message instead."""
    video = clip(frames, size=16)
    latent = tiny.encode(video)
    with pytest.raises(AdapterError, match=needle):
        tiny.decode(latent, mode)
    if needle == "one latent frame":  # the encoder side of the same chunking runs
        torch.testing.assert_close(tiny.encode(video, mode), latent, rtol=0, atol=1e-4)


# --- spatial tiles ------------------------------------------------------------------------
def test_spatial_tiles_bookkeeping_is_exact_for_local_maps():
    """Tiles of an 8x8 average pool / nearest upsampling reassemble the untiled result."""
    video = clip(3, size=48)

    def pool(x):
        return nn.functional.avg_pool3d(x, (1, 8, 8))

    def up(z):
        return nn.functional.interpolate(z, scale_factor=(1, 8, 8), mode="nearest")

    for size, overlap in ((16, 8), (24, 8), (32, 16), (64, 0)):
        torch.testing.assert_close(tiled_encode(video, pool, size, overlap, 8), pool(video))
        latent = pool(video)
        torch.testing.assert_close(tiled_decode(latent, up, size, overlap, 8), up(latent))


def test_blend_weights_follow_the_release():
    previous, tile = torch.zeros(1, 1, 1, 4, 4), torch.ones(1, 1, 1, 4, 4)
    blended = _blend(previous, tile, 4, dim=-1)
    assert blended is tile
    torch.testing.assert_close(tile[0, 0, 0, 0], torch.tensor([0.0, 0.25, 0.5, 0.75]))


def test_spatial_tiles_mode(tiny):
    video = clip(5, size=32)
    whole = tiny.reconstruct(video)
    torch.testing.assert_close(
        tiny.reconstruct(video, "spatial_tiles(32)"), whole, rtol=0, atol=1e-6
    )
    tiled = tiny.reconstruct(video, "spatial_tiles(16, 8)")
    assert tiled.shape == whole.shape and torch.isfinite(tiled).all()
    assert (tiled - whole).abs().max() > 1e-4  # tiles see less context: seams, as measured
    with pytest.raises(AdapterError, match="multiples of the spatial factor"):
        tiny.encode(video, "spatial_tiles(20, 4)")


# --- the released file layouts ----------------------------------------------------------
def test_save_pretrained_reloads_bit_identical(tiny, tmp_path):
    tiny.module.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert (
        config["_class_name"] == "WFVAEModel" and config["latent_dim"] == tiny.spec.latent_channels
    )
    preset = Preset(tiny.spec.name, WFVAE, config={})
    loaded = preset.create(tmp_path)
    assert loaded.weights == file_sha256(tmp_path / "diffusion_pytorch_model.safetensors")
    video = clip()
    latent = tiny.encode(video)
    assert torch.equal(loaded.encode(video), latent)
    assert torch.equal(loaded.decode(latent), tiny.decode(latent))
    assert loaded.report.source == "safetensors" and loaded.report.notes == ()


def _training_checkpoint(model: WFVAEModel, ema: WFVAEModel) -> dict:
    """The release's checkpoint dict (train_ddp.py): EMA shadow of trainable parameters
    under DDP names, the generator's full state dict, optimizer and sampler states."""
    shadow = {f"module.{k}": v.clone() for k, v in ema.named_parameters() if v.requires_grad}
    return {
        "epoch": 3,
        "current_step": 100,
        "optimizer_state": {
            "gen_optimizer": {"state": {}, "param_groups": [{"lr": 1e-5, "params": [0]}]}
        },
        "state_dict": {
            "gen_model": model.state_dict(),
            "dics_model": {"conv.weight": torch.ones(1)},
        },
        "ema_state_dict": shadow,
        "scaler_state": {"scale": 65536.0},
        "sampler_state": {"epoch": 3, "seed": 0},
    }


def test_release_checkpoint_prefers_ema_weights(tmp_path):
    preset = tiny_preset("wf-vae-s-8ch")
    plain, ema = preset.create(), Preset("ema", WFVAE, config=preset.config).create()
    with torch.no_grad():
        for parameter in ema.module.parameters():
            if parameter.requires_grad:
                parameter.mul_(0.5)
    plain.module.save_config(tmp_path)
    torch.save(_training_checkpoint(plain.module, ema.module), tmp_path / "checkpoint-100.ckpt")
    video = clip()

    loaded = preset.create(tmp_path)
    assert loaded.report.source == "ema_state_dict"
    assert any("Haar" in note for note in loaded.report.notes)  # EMA holds no frozen filters
    assert loaded.weights == file_sha256(tmp_path / "checkpoint-100.ckpt")
    assert torch.equal(loaded.encode(video), ema.encode(video))

    raw = WFVAE.from_pretrained(tmp_path, preset, use_ema=False)
    assert raw.report.source == "state_dict.gen_model" and raw.report.notes == ()
    assert torch.equal(raw.encode(video), plain.encode(video))


def test_strict_mismatch_names_the_keys(tiny, tmp_path):
    tiny.module.save_pretrained(tmp_path)
    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state.pop("decoder.conv_out.bias")
    state["encoder.extra.weight"] = torch.zeros(2)
    state["encoder.conv_out.conv.bias"] = torch.zeros(3)
    save_file(state, weights)
    with pytest.raises(AdapterError) as error:
        Preset("x", WFVAE).create(tmp_path)
    message = str(error.value)
    assert "missing keys (1): decoder.conv_out.bias" in message
    assert "unexpected keys (1): encoder.extra.weight" in message
    assert "encoder.conv_out.conv.bias (3,) !=" in message


def test_open_sora_plan_names_and_absent_filters(tiny, tmp_path):
    """Open-Sora Plan v1.3 spells the filter modules ``wavelet_tranform_*``; EMA files lack
    them. Both load; the report says so."""
    tiny.module.save_config(tmp_path)
    state = {
        k.replace("wavelet_transform_l", "wavelet_tranform_l"): v
        for k, v in tiny.module.state_dict().items()
        if "transform_in" not in k and "transform_out" not in k
    }
    save_file(state, tmp_path / "diffusion_pytorch_model.safetensors")
    loaded = Preset("x", WFVAE).create(tmp_path)
    assert len(loaded.report.notes) == 2
    video = clip()
    assert torch.equal(loaded.encode(video), tiny.encode(video))


def test_loading_errors(tiny, tmp_path):
    with pytest.raises(AdapterError, match="weights not found"):
        Preset("x", WFVAE).create(tmp_path / "absent")
    tiny.module.save_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(AdapterError, match="no config.json"):
        Preset("x", WFVAE).create(tmp_path)
    # a weights file alone takes the preset's config; stray config keys are reported
    loaded = Preset("x", WFVAE, config=dict(tiny.module.config)).create(
        tmp_path / "diffusion_pytorch_model.safetensors"
    )
    assert "preset config used" in loaded.report.notes[0]
    tiny.module.save_config(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "vae_scale_factor": [4, 8, 8]}))
    assert "vae_scale_factor" in Preset("x", WFVAE).create(tmp_path).report.notes[0]
    for name in ("a.ckpt", "b.ckpt"):
        torch.save({}, tmp_path / name)
    with pytest.raises(AdapterError, match="several checkpoints"):
        Preset("x", WFVAE).create(tmp_path)
