"""OD-VAE adapter: presets and full-size facts, both release layouts with strict keys,
causality, the release's temporal and spatial tiling. Models are reduced-width builds of
each preset's config (32 channels: GroupNorm needs 32 groups), on tiny clips."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from skimage.metrics import peak_signal_noise_ratio

from vae_bench import adapters
from vae_bench.adapters import AdapterError, Preset
from vae_bench.adapters.base import file_sha256
from vae_bench.adapters.od_vae import ODVAE, CausalVAEModel, TemporalTiles, tiling_gap
from vae_bench.adapters.od_vae.blocks import TimeDownsample2x, TimeUpsample2x
from vae_bench.adapters.od_vae.tiling import psnr

PRESET_NAMES = (
    "od-vae-4ch", "od-vae-v1.1-4ch", "od-vae-v1.0-4ch", "od-vae-variant1-4ch",
    "od-vae-variant3-4ch",
)  # fmt: skip
TINY = {"hidden_size": 32, "hidden_size_mult": [1, 1, 1, 1]}
# Keys of the released vae/config.json that the class does not take (training settings,
# and resampler options left empty in the release).
RELEASE_EXTRAS = {
    "_class_name": "CausalVAEModel",
    "_diffusers_version": "0.27.2",
    "in_channels": 3,
    "out_channels": 3,
    "loss_params": {"disc_start": 1, "disc_weight": 0.5, "kl_weight": 1e-06, "logvar_init": 0.0},
    "loss_type": "opensora.models.causalvideovae.model.losses.LPIPSWithDiscriminator3D",
    "lr": 1e-05,
    "encoder_spatial_downsample_undown": ["", "", "", ""],
    "decoder_spatial_upsample_unup": ["", "", "", ""],
}


def tiny_preset(name: str = "od-vae-4ch", **overrides) -> Preset:
    base = adapters.get_preset(name)
    return Preset(f"{name}-tiny", ODVAE, config={**base.config, **TINY, **overrides})


def clip(frames: int = 9, size: int = 16, seed: int = 0, width: int | None = None) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, frames, size, width or size, generator=generator) * 2 - 1


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def tiny() -> ODVAE:
    return tiny_preset().create()


# --- presets and full-size facts ---------------------------------------------------------
def test_presets_registered_with_release_facts():
    registered = adapters.presets()
    for name in PRESET_NAMES:
        with torch.device("meta"):
            spec = registered[name].create().spec
        assert (spec.family, spec.latent_channels, spec.causal) == ("od-vae", 4, True)
        assert (spec.spatial_factor, spec.temporal_factor, str(spec.frame_rule)) == (8, 4, "1+4k")
        assert (spec.scaling_factor, spec.shift_factor) == (0.18215, 0.0)
        assert spec.modes == ("full", "temporal_chunks", "spatial_tiles")
        assert spec.latent_shape(33, 256, 256) == (4, 9, 32, 32)


# Parameters of each preset; each equals the authors' CausalVAEModel built from the same
# config. The OD-VAE release, Open-Sora Plan v1.2's vae/checkpoint.ckpt, is 957 MB of
# float32: 239.19M parameters.
FULL_SIZE = {
    "od-vae-4ch": 239_189_991,
    "od-vae-v1.1-4ch": 246_859_499,
    "od-vae-v1.0-4ch": 229_169_895,
    # the paper's variants, counted by hand from the release: Variant 1 adds a third kernel
    # tap in time to the encoder's conv_in and levels 0-1 (6,912 + 1,179,648 + 4,128,768);
    # Variant 3 removes it from the decoder's levels 0-1 and conv_out (2,064,384 +
    # 8,257,536 + 6,912)
    "od-vae-variant1-4ch": 239_189_991 + 6_912 + 1_179_648 + 4_128_768,
    "od-vae-variant3-4ch": 239_189_991 - 2_064_384 - 8_257_536 - 6_912,
}


def test_paper_variants_differ_from_the_release_where_the_paper_says():
    """Variant 4 is the release; Variant 1 is all 3D; Variant 3 keeps Variant 4's encoder
    and makes the decoder's outer levels 2D too (same encoder: the paper's Table 3 gives
    Variants 3 and 4 the same compression speed)."""

    def shapes(name):
        with torch.device("meta"):
            state = adapters.get_preset(name).create().module.state_dict()
        return {key: tuple(value.shape) for key, value in state.items()}

    release, v1, v3 = shapes("od-vae-4ch"), shapes("od-vae-variant1-4ch"), shapes(
        "od-vae-variant3-4ch"
    )
    encoder = {k: v for k, v in release.items() if k.startswith("encoder.")}
    assert {k: v for k, v in v3.items() if k.startswith("encoder.")} == encoder
    assert {k: v for k, v in v1.items() if not k.startswith("encoder.")} == {
        k: v for k, v in release.items() if not k.startswith("encoder.")
    }
    kernels = [v for k, v in v1.items() if k.startswith("encoder.") and len(v) > 1]
    assert kernels and all(len(v) == 5 for v in kernels)  # every encoder kernel is 3D
    assert v1["encoder.conv_in.conv.weight"] == (128, 3, 3, 3, 3)
    assert v1["encoder.down.0.block.0.conv1.conv.weight"] == (128, 128, 3, 3, 3)
    assert v3["decoder.up.0.block.2.conv2.weight"] == (128, 128, 3, 3)
    assert v3["decoder.up.1.upsample.conv.weight"] == (256, 256, 3, 3)
    assert v3["decoder.conv_out.weight"] == (3, 128, 3, 3)
    assert v3["decoder.up.2.block.0.conv1.conv.weight"] == release[
        "decoder.up.2.block.0.conv1.conv.weight"
    ]


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_full_size_parameter_counts(name):
    with torch.device("meta"):
        model = adapters.get_preset(name).create()
    assert model.spec.params == sum(p.numel() for p in model.module.parameters())
    assert model.spec.params == FULL_SIZE[name]
    if name == "od-vae-4ch":
        assert abs(4 * model.spec.params / 1e6 - 957) < 0.5  # MB of the released file


def test_release_state_dict_names_and_shapes():
    """Tensors of the released layout (v1.2): 2D first encoder levels, merged space-time
    resamplers, attention in the mid blocks, quant convs on 2 * 4 channels."""
    expected = {
        "encoder.conv_in.weight": (128, 3, 3, 3),
        "encoder.down.0.block.0.conv1.weight": (128, 128, 3, 3),
        "encoder.down.1.block.0.nin_shortcut.weight": (256, 128, 1, 1),
        "encoder.down.0.downsample.conv.weight": (128, 128, 3, 3),
        "encoder.down.1.downsample.conv.conv.weight": (256, 256, 3, 3, 3),
        "encoder.down.2.block.0.nin_shortcut.conv.weight": (512, 256, 1, 1, 1),
        "encoder.mid.attn_1.q.conv.weight": (512, 512, 1, 1, 1),
        "encoder.norm_out.weight": (512,),
        "encoder.conv_out.conv.weight": (8, 512, 3, 3, 3),
        "quant_conv.conv.weight": (8, 8, 1, 1, 1),
        "post_quant_conv.conv.weight": (4, 4, 1, 1, 1),
        "decoder.conv_in.conv.weight": (512, 4, 3, 3, 3),
        "decoder.up.3.upsample.conv.conv.weight": (512, 512, 3, 3, 3),
        "decoder.up.1.upsample.conv.conv.weight": (256, 256, 1, 3, 3),
        "decoder.up.0.block.2.conv2.conv.weight": (128, 128, 3, 3, 3),
        "decoder.conv_out.conv.weight": (3, 128, 3, 3, 3),
    }
    with torch.device("meta"):
        state = adapters.get_preset("od-vae-4ch").create().module.state_dict()
    assert {key: tuple(state[key].shape) for key in expected} == expected
    assert not any("time_downsample" in key or "time_upsample" in key for key in state)
    with torch.device("meta"):
        v11 = adapters.get_preset("od-vae-v1.1-4ch").create().module.state_dict()
    assert tuple(v11["encoder.down.1.time_downsample.conv.weight"].shape) == (256, 256, 3, 3, 3)
    assert tuple(v11["decoder.up.3.time_upsample.mix_factor"].shape) == (1,)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("encoder_attention", "AttnBlock4D", "encoder_attention 'AttnBlock4D'; allowed"),
        ("decoder_spatial_upsample", ["", "", "", ""], "does not undo"),
        ("encoder_temporal_downsample", ["", ""], "2 entries for 4 levels"),
        ("norm_type", "batchnorm", "norm_type 'batchnorm'; allowed"),
        ("in_channels", 4, "in_channels = 4 is not supported"),
        ("encoder_spatial_downsample_undown", ["Downsample", "", "", ""], "undown"),
    ],
)
def test_unsupported_config_is_named(key, value, message):
    with pytest.raises(AdapterError, match=message):
        tiny_preset(**{key: value}).create()


# --- encode / decode ---------------------------------------------------------------------
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_shapes_for_every_preset(name):
    model = tiny_preset(name).create()
    latent = model.encode(clip())
    assert latent.shape == (1, 4, 3, 2, 2) == (1, *model.spec.latent_shape(9, 16, 16))
    assert model.decode(latent).shape == (1, 3, 9, 16, 16)


def test_input_checks(tiny):
    with pytest.raises(AdapterError, match="frames not allowed"):
        tiny.encode(clip(8))
    with pytest.raises(AdapterError, match="latent must be"):
        tiny.decode(torch.zeros(1, 3, 1, 2, 2))


def test_random_weights_are_deterministic_and_labelled(tiny):
    again = tiny_preset().create()
    assert again.weights == tiny.weights == "random"
    for a, b in zip(
        tiny.module.state_dict().values(), again.module.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_sampling_needs_a_seed_and_repeats_with_it(tiny):
    video = clip()
    sample = tiny.encode(video, seed=3)
    assert torch.equal(sample, tiny.encode(video, seed=3))
    assert not torch.equal(sample, tiny.encode(video)) and not torch.equal(
        sample, tiny.encode(video, seed=4)
    )


def test_causality_later_frames_never_change_earlier_latents():
    """With layernorm every block is causal: latent frame j sees frames up to 4j only."""
    model = tiny_preset(norm_type="layernorm").create()
    video = clip(13)
    changed = video.clone()
    changed[:, :, 5:] = -changed[:, :, 5:]  # frames 5..12 feed latent frames 2 and 3
    before, after = model.encode(video), model.encode(changed)
    assert torch.equal(after[:, :, :2], before[:, :, :2])
    assert (after[:, :, 2:] - before[:, :, 2:]).abs().max() > 1e-3


def test_release_groupnorm_normalises_over_time(tiny):
    """The release's 3D GroupNorm sees the whole clip: a later frame moves latent frame 0."""
    video = clip(9)
    changed = video.clone()
    changed[:, :, 5:] = 0.0
    assert (tiny.encode(changed)[:, :, 0] - tiny.encode(video)[:, :, 0]).abs().max() > 1e-4


def test_time_resamplers_against_hand_computation():
    frames = torch.arange(5.0).reshape(1, 1, 5, 1, 1) ** 2  # 0, 1, 4, 9, 16
    down = TimeDownsample2x(1, 1)(frames).flatten().tolist()
    assert down == pytest.approx([0.0, (0 + 1 + 4) / 3, (4 + 9 + 16) / 3])
    up = TimeUpsample2x(1, 1)(torch.tensor([0.0, 4.0, 8.0]).reshape(1, 1, 3, 1, 1))
    # frame 0 kept; frames 1..2 doubled by linear interpolation at half-pixel centres
    assert up.flatten().tolist() == pytest.approx([0.0, 4.0, 5.0, 7.0, 8.0])


# --- the release's files -------------------------------------------------------------------
def release_config(model: ODVAE) -> dict:
    """A release-style config.json: the class's arguments without the ones the v1.2
    release lacks (their defaults apply), plus the release's extra keys."""
    config = {k: v for k, v in model.module.config.items() if not k.startswith("_")}
    for key in ("scale", "shift", "norm_type"):
        del config[key]
    return {**RELEASE_EXTRAS, **config}


def assert_same_outputs(a: ODVAE, b: ODVAE) -> None:
    video = clip()
    latent = a.encode(video)
    assert torch.equal(latent, b.encode(video))
    assert torch.equal(a.decode(latent), b.decode(latent))


def test_diffusers_layout_round_trip(tiny, tmp_path):
    tiny.module.save_pretrained(tmp_path, safe_serialization=True)
    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    assert json.loads((tmp_path / "config.json").read_text())["_class_name"] == "CausalVAEModel"
    assert set(load_file(weights)) == set(tiny.module.state_dict())
    loaded = ODVAE.from_pretrained(tmp_path, tiny_preset())
    assert loaded.weights == file_sha256(weights) != "random"
    assert_same_outputs(tiny, loaded)


def write_checkpoint(directory: Path, config: dict, payload: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    torch.save(payload, directory / "checkpoint.ckpt")
    return directory / "checkpoint.ckpt"


def test_training_checkpoint_layout(tiny, tmp_path):
    """``ema_state_dict`` (DDP prefixes) first, as the release reads it; ``state_dict``
    with ``use_ema=False``; the loss's tensors left out and reported."""
    state = tiny.module.state_dict()
    other = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    payload = {
        "ema_state_dict": {f"module.{k}": v for k, v in state.items()},
        "state_dict": {"gen_model": {**other, "loss.logvar": torch.zeros(())}},
        "step": 1000,
    }
    ckpt = write_checkpoint(tmp_path, release_config(tiny), payload)
    loaded = ODVAE.from_pretrained(tmp_path, tiny_preset())
    assert loaded.weights == file_sha256(ckpt)
    assert loaded.report.source == "ema_state_dict"
    assert "loss_params" in loaded.report.notes[0] and "lr" in loaded.report.notes[0]
    assert_same_outputs(tiny, loaded)
    plain = ODVAE.from_pretrained(tmp_path, tiny_preset(), use_ema=False)
    assert plain.report.source == "state_dict.gen_model"
    assert any("1 training-only loss.* tensors" in note for note in plain.report.notes)
    for key, value in plain.module.state_dict().items():
        assert torch.equal(value, other[key])


def test_strict_keys_name_what_is_wrong(tiny, tmp_path):
    state = dict(tiny.module.state_dict())
    del state["encoder.conv_in.weight"]
    state["encoder.extra.weight"] = torch.zeros(1)
    state["quant_conv.conv.bias"] = torch.zeros(3)
    write_checkpoint(tmp_path, release_config(tiny), {"state_dict": state})
    with pytest.raises(AdapterError) as error:
        ODVAE.from_pretrained(tmp_path, tiny_preset())
    message = str(error.value)
    assert "missing keys (1): encoder.conv_in.weight" in message
    assert "unexpected keys (1): encoder.extra.weight" in message
    assert "quant_conv.conv.bias (3,) != (8,)" in message


def test_files_of_another_release_are_not_relabelled(tmp_path):
    tiny_preset("od-vae-v1.1-4ch").create().module.save_pretrained(tmp_path)
    with pytest.raises(AdapterError, match="another architecture") as error:
        ODVAE.from_pretrained(tmp_path, tiny_preset())
    assert "encoder_temporal_downsample" in str(error.value)


class NotATensor:
    pass


def test_checkpoints_are_read_with_weights_only(tiny, tmp_path):
    payload = {"state_dict": dict(tiny.module.state_dict()), "extra": NotATensor()}
    write_checkpoint(tmp_path, release_config(tiny), payload)
    with pytest.raises(AdapterError, match="weights_only=True"):
        ODVAE.from_pretrained(tmp_path, tiny_preset())


def test_release_directory_problems(tiny, tmp_path):
    with pytest.raises(AdapterError, match="no config.json"):
        ODVAE.from_pretrained(tmp_path, tiny_preset())
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "WFVAEModel"}))
    with pytest.raises(AdapterError, match="expected 'CausalVAEModel'"):
        ODVAE.from_pretrained(tmp_path, tiny_preset())
    (tmp_path / "config.json").write_text(json.dumps(release_config(tiny)))
    with pytest.raises(AdapterError, match="no CausalVAEModel weights"):
        ODVAE.from_pretrained(tmp_path, tiny_preset())


# --- the release's tiling -------------------------------------------------------------------
def test_temporal_windows_follow_the_release():
    """33-frame encode windows sharing one frame (v1.2: [0, 33], [32, 65], [64, 97]) and
    17-frame (5 latent) decode windows; overlap 4 gives the WF-VAE repository's
    ``tile_overlap_t = 2`` grid ([0, 33+4], [28, 61], ... with stride 28)."""
    tiles = TemporalTiles(33, 0, 4)
    assert tiles.encode_spans(97) == [(0, 33), (32, 65), (64, 97)]
    assert tiles.decode_latents == 5
    assert tiles.decode_spans(25) == [(0, 5), (4, 9), (8, 13), (12, 17), (16, 21), (20, 25)]
    assert tiles.encode_spans(37) == [(0, 33), (32, 37)]
    assert TemporalTiles(37, 4, 4).encode_spans(97) == [(0, 37), (32, 69), (64, 97)]
    assert tiles.seams(97) == (17, 33, 49, 65, 81)
    for size, overlap, message in [(5, 0, "at least 9"), (9, 2, "multiple of 4"), (10, 0, "4k")]:
        with pytest.raises(AdapterError, match=message):
            TemporalTiles(size, overlap, 4)


def test_temporal_chunks_shape_and_gap(tiny):
    video = clip(17)
    latent = tiny.encode(video)
    chunked_latent = tiny.encode(video, "temporal_chunks(9)")
    assert chunked_latent.shape == latent.shape
    full = tiny.decode(latent)
    chunked = tiny.decode(chunked_latent, "temporal_chunks(9)")
    assert chunked.shape == full.shape == video.shape
    seams = TemporalTiles(9, 0, 4).seams(17)
    assert seams == (5, 9, 13)
    gap = tiling_gap(chunked, full, seams)
    assert gap.psnr == pytest.approx(
        peak_signal_noise_ratio(full.double().numpy(), chunked.double().numpy(), data_range=2.0)
    )
    near = full[:, :, list(seams)].double().numpy(), chunked[:, :, list(seams)].double().numpy()
    assert gap.seam_psnr == pytest.approx(peak_signal_noise_ratio(*near, data_range=2.0))
    assert 0 < gap.max_abs and math.isfinite(gap.psnr)


def test_temporal_chunks_handle_long_clips_window_by_window(tiny):
    """A clip many windows long: the result has the full clip's shape, and each window
    only ever sees its own frames (the first window's latents equal a lone encode)."""
    video = clip(33, size=8)
    latent = tiny.encode(video, "temporal_chunks(9)")
    assert latent.shape == (1, 4, 9, 1, 1)
    assert torch.equal(latent[:, :, :3], tiny.encode(video[:, :, :9]))
    assert tiny.decode(latent, "temporal_chunks(9)").shape == video.shape


def test_temporal_chunks_as_long_as_the_clip_equal_full(tiny):
    video = clip(9)
    assert torch.equal(tiny.encode(video, "temporal_chunks(9)"), tiny.encode(video))


def test_spatial_tiles(tiny):
    video = clip(5, size=16, width=40)
    latent = tiny.encode(video, "spatial_tiles(16, 8)")
    assert latent.shape == tiny.encode(video).shape == (1, 4, 2, 2, 5)
    decoded = tiny.decode(latent, "spatial_tiles(16, 8)")
    assert decoded.shape == video.shape
    gap = tiling_gap(decoded, tiny.decode(latent), seams=[8, 16, 24, 32], dim=4, radius=1)
    assert math.isfinite(gap.psnr) and math.isfinite(gap.seam_psnr)
    small = clip(5, size=16)  # no larger than one tile: run whole, as released
    assert torch.equal(tiny.encode(small, "spatial_tiles(16, 8)"), tiny.encode(small))
    with pytest.raises(AdapterError, match="multiples of the spatial factor 8"):
        tiny.encode(video, "spatial_tiles(12, 4)")


def test_tiling_gap_reference_values():
    full = clip(5)
    same = tiling_gap(full.clone(), full, seams=[2])
    assert same.psnr == same.seam_psnr == math.inf and same.max_abs == 0
    shifted = full.clone()
    shifted[:, :, 2] += 0.02
    gap = tiling_gap(shifted, full, seams=[2])
    assert gap.seam_psnr == pytest.approx(10 * math.log10(4 / 0.02**2))
    assert gap.psnr == pytest.approx(psnr(shifted, full)) and gap.psnr > gap.seam_psnr
    assert math.isnan(tiling_gap(shifted, full, seams=[]).seam_psnr)


def test_config_round_trip_builds_the_same_network(tiny):
    rebuilt = CausalVAEModel.from_config(tiny.module.config)
    shapes = {k: v.shape for k, v in rebuilt.state_dict().items()}
    assert shapes == {k: v.shape for k, v in tiny.module.state_dict().items()}
