"""CV-VAE adapter: presets and full-size facts, the release's diffusers folders loaded
strictly, the resamplers against hand computation, the release's temporal windows and
spatial tiles. Models are reduced-width builds of the release config (32 channels:
GroupNorm needs 32 groups), on tiny clips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from vae_bench import adapters
from vae_bench.adapters import AdapterError, Preset
from vae_bench.adapters.base import file_sha256
from vae_bench.adapters.cv_vae import CVVAE, CVVAEModel, release_config
from vae_bench.adapters.cv_vae.model import CausalConv3d, Downsample, Upsample
from vae_bench.adapters.od_vae import TemporalTiles
from vae_bench.adapters.spatial_tiling import tiled, tiled_decode, tiled_encode
from vae_bench.seams import seam_layout

PRESET_NAMES = ("cv-vae", "cv-vae-v1.1")
TINY = {"ch": 32, "ch_mult": [1, 1, 1, 1]}
# The bookkeeping keys of the released vae3d/config.json (vae3d_v1-1 adds _name_or_path).
RELEASE_EXTRAS = {"_class_name": "CVVAEModel", "_diffusers_version": "0.26.3"}
WEIGHTS = "diffusion_pytorch_model.safetensors"


def tiny_preset(**overrides) -> Preset:
    return Preset("cv-vae-tiny", CVVAE, config=release_config(**{**TINY, **overrides}))


def clip(frames: int = 9, size: int = 16, seed: int = 0, width: int | None = None) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, frames, size, width or size, generator=generator) * 2 - 1


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def tiny() -> CVVAE:
    return tiny_preset().create()


# --- presets and full-size facts ---------------------------------------------------------
def test_presets_registered_with_release_facts():
    registered = adapters.presets()
    for name, folder in zip(PRESET_NAMES, ("vae3d", "vae3d_v1-1"), strict=True):
        preset = registered[name]
        with torch.device("meta"):
            spec = preset.create().spec
        assert (spec.family, spec.latent_channels, spec.causal) == ("cv-vae", 4, True)
        assert (spec.spatial_factor, spec.temporal_factor, str(spec.frame_rule)) == (8, 4, "1+4k")
        assert (spec.scaling_factor, spec.shift_factor) == (0.18215, 0.0)  # SD's
        assert spec.modes == ("full", "temporal_chunks", "spatial_tiles")
        assert spec.latent_shape(17, 256, 256) == (4, 5, 32, 32)
        source = preset.source
        assert (source.location, source.subfolder) == ("AILab-CVC/CV-VAE", folder)
        assert source.files == ("config.json", WEIGHTS)


def test_factors_and_frame_rule_follow_the_release_config():
    """The config's time_n_compress and spatial_n_compress are what ch_mult builds; a
    config where they disagree is refused, and the frame rule is 1 + time_n_compress * k."""
    config = release_config()
    with torch.device("meta"):
        spec = adapters.get_preset("cv-vae").create().spec
    assert (spec.temporal_factor, spec.spatial_factor) == (
        config["time_n_compress"],
        config["spatial_n_compress"],
    )
    assert config["en_de_n_frames_a_time"] % spec.temporal_factor == 0
    assert [t for t in range(1, 30) if spec.frame_rule.is_valid(t)] == [1, 5, 9, 13, 17, 21, 25, 29]
    with pytest.raises(AdapterError, match="time_n_compress = 4 but ch_mult .* compresses by 2"):
        tiny_preset(ch_mult=[1, 1, 1], spatial_n_compress=4).create()


# Parameters of the authors' CVVAEModel built from the released config (182,446,475;
# encoder 68,748,936, decoder 113,697,539), which are also the released files' sizes:
# vae3d's float32 safetensors is 730 MB, vae3d_v1-1's float16 one 365 MB.
FULL_SIZE = (68_748_936, 113_697_539)
FULL_SIZE_KEYS = 254


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_full_size_parameter_counts(name):
    with torch.device("meta"):
        model = adapters.get_preset(name).create()
    assert (model.spec.encoder_params, model.spec.decoder_params) == FULL_SIZE
    assert model.spec.params == sum(p.numel() for p in model.module.parameters())
    assert round(4 * model.spec.params / 1e6) == 730 and round(2 * model.spec.params / 1e6) == 365
    assert len(model.module.state_dict()) == FULL_SIZE_KEYS


def test_release_state_dict_names_and_shapes():
    """3x3x3 first and per-frame 3x3 second convolutions (half_3d), time resamplers at the
    encoder's even and the decoder's odd levels (the decoder's doubling its channels), the
    decoder's temporal attention, no quant_conv."""
    expected = {
        "encoder.conv_in.weight": (128, 3, 3, 3, 3),
        "encoder.down.0.block.0.conv1.weight": (128, 128, 3, 3, 3),
        "encoder.down.0.block.0.conv2.weight": (128, 128, 3, 3),
        "encoder.down.1.block.0.nin_shortcut.weight": (256, 128, 1, 1, 1),
        "encoder.down.0.downsample.conv.weight": (128, 128, 3, 3, 3),
        "encoder.down.2.downsample.conv.weight": (512, 512, 3, 3, 3),
        "encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
        "encoder.norm_out.weight": (512,),
        "encoder.conv_out.weight": (8, 512, 3, 3, 3),
        "decoder.conv_in.weight": (512, 4, 3, 3, 3),
        "decoder.mid.attn_1.proj_out.weight": (512, 512, 1, 1),
        "decoder.mid.attn_1.q_t.weight": (512, 512),
        "decoder.mid.attn_1.norm_t.bias": (512,),
        "decoder.up.3.upsample.conv.weight": (1024, 512, 3, 3, 3),
        "decoder.up.2.upsample.conv.weight": (512, 512, 3, 3, 3),
        "decoder.up.1.upsample.conv.weight": (512, 256, 3, 3, 3),
        "decoder.up.1.block.0.nin_shortcut.weight": (256, 512, 1, 1, 1),
        "decoder.up.0.block.2.conv2.weight": (128, 128, 3, 3),
        "decoder.conv_out.weight": (3, 128, 3, 3, 3),
    }
    with torch.device("meta"):
        state = adapters.get_preset("cv-vae").create().module.state_dict()
    assert {key: tuple(state[key].shape) for key in expected} == expected
    assert all(key.startswith(("encoder.", "decoder.")) for key in state)
    assert "encoder.down.3.downsample.conv.weight" not in state
    assert "decoder.up.0.upsample.conv.weight" not in state


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("causal_decoder", True),
        ("half_3d", False),
        ("decoder_attn_type", "vanilla"),
        ("attn_resolutions", [16]),
        ("num_video_frames", 17),
    ],
)
def test_unsupported_config_is_named(key, value):
    with pytest.raises(AdapterError, match=f"{key} = .* is not supported"):
        tiny_preset(**{key: value}).create()


# --- the layers against hand computation ---------------------------------------------------
def frames(values: list[float]) -> torch.Tensor:
    """A one-channel 2x2 clip whose frame t is the constant ``values[t]``."""
    return torch.tensor(values).reshape(1, 1, -1, 1, 1).expand(1, 1, -1, 2, 2).contiguous()


def tap(conv: torch.nn.Conv3d, time_tap: int, gains: list[float]) -> None:
    """Weights that read one temporal tap at the spatial centre, output channel n * gains[n]."""
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for n, gain in enumerate(gains):
            conv.weight[n, 0, time_tap, 1, 1] = gain


def test_upsample_interleaves_two_channel_groups_in_time():
    """T latent frames -> 2T - 1: frames (2t, 2t + 1) come from channel groups 0 and 1, and
    the first is dropped; edge frames are replicated, not zero padded."""
    up = Upsample(1, time=True)
    tap(up.conv, 1, [1.0, 10.0])
    out = up(frames([1.0, 2.0, 3.0]))
    assert out.shape == (1, 1, 5, 4, 4)
    assert out[0, 0, :, 1, 1].tolist() == [10.0, 2.0, 20.0, 3.0, 30.0]
    tap(up.conv, 0, [1.0, 1.0])  # the frame before each: frame 0 replicated in front
    assert up(frames([1.0, 2.0, 3.0]))[0, 0, :, 1, 1].tolist() == [1.0, 1.0, 1.0, 2.0, 2.0]
    tap(up.conv, 2, [1.0, 1.0])  # the frame after each: the last replicated behind
    assert up(frames([1.0, 2.0, 3.0]))[0, 0, :, 1, 1].tolist() == [2.0, 3.0, 3.0, 3.0, 3.0]


def test_downsample_halves_time_causally():
    """``T -> 1 + (T - 1) / 2``: output t reads input frames 2t - 2 .. 2t (frame 0 repeated)."""
    down = Downsample(1, time=True)
    tap(down.conv, 2, [1.0])
    out = down(frames([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert out.shape == (1, 1, 3, 1, 1) and out.flatten().tolist() == [1.0, 3.0, 5.0]
    tap(down.conv, 0, [1.0])
    assert down(frames([1.0, 2.0, 3.0, 4.0, 5.0])).flatten().tolist() == [1.0, 1.0, 3.0]
    space_only = Downsample(1, time=False)
    assert space_only(frames([1.0, 2.0, 3.0])).shape == (1, 1, 3, 1, 1)


def test_causal_conv_never_reads_later_frames():
    conv = CausalConv3d(3, 4, 3, padding=1)
    video = clip(7, 8)
    changed = video.clone()
    changed[:, :, 4:] = 0.0
    before, after = conv(video), conv(changed)
    assert before.shape == video.shape[:1] + (4,) + video.shape[2:]
    assert torch.equal(before[:, :, :4], after[:, :, :4])
    # frame 0's temporal context is two copies of itself
    first = conv(video[:, :, :1].expand(-1, -1, 3, -1, -1).contiguous())
    torch.testing.assert_close(before[:, :, 0], first[:, :, 2])


# --- encode / decode ---------------------------------------------------------------------
def test_shapes_and_input_checks(tiny):
    latent = tiny.encode(clip())
    assert latent.shape == (1, 4, 3, 2, 2) == (1, *tiny.spec.latent_shape(9, 16, 16))
    assert tiny.decode(latent).shape == (1, 3, 9, 16, 16)
    with pytest.raises(AdapterError, match="frames not allowed"):
        tiny.encode(clip(8))
    with pytest.raises(AdapterError, match="not divisible by the spatial factor"):
        tiny.encode(clip(9, 12))
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
    assert not torch.equal(sample, tiny.encode(video))
    assert not torch.equal(sample, tiny.encode(video, seed=4))


def test_groupnorm_spans_the_clip(tiny):
    """The release's GroupNorm sees every frame: a later frame moves latent frame 0."""
    video = clip(9)
    changed = video.clone()
    changed[:, :, 5:] = 0.0
    assert (tiny.encode(changed)[:, :, 0] - tiny.encode(video)[:, :, 0]).abs().max() > 1e-4


# --- the release's files -------------------------------------------------------------------
def write_release(directory: Path, model: CVVAE, dtype: torch.dtype = torch.float32) -> Path:
    """A release folder as on the hub: config.json + diffusion_pytorch_model.safetensors."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {**RELEASE_EXTRAS, **release_config(**TINY)}
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    state = {k: v.to(dtype).contiguous() for k, v in model.module.state_dict().items()}
    save_file(state, str(directory / WEIGHTS))
    return directory / WEIGHTS


def assert_same_outputs(a: CVVAE, b: CVVAE, atol: float = 0.0) -> None:
    video = clip()
    latent = a.encode(video)
    torch.testing.assert_close(b.encode(video), latent, atol=atol, rtol=0)
    torch.testing.assert_close(b.decode(latent), a.decode(latent), atol=atol, rtol=0)


def test_release_folder_loads_strictly(tiny, tmp_path):
    """The folder's safetensors is read, as the release's from_pretrained reads it; the
    cv_vae.ckpt beside it is not."""
    weights = write_release(tmp_path, tiny)
    (tmp_path / "cv_vae.ckpt").write_bytes(b"not read")
    loaded = CVVAE.from_pretrained(tmp_path, tiny_preset())
    assert loaded.weights == file_sha256(weights) != "random"
    assert loaded.report.weights_file == weights and loaded.report.notes == ()
    assert_same_outputs(tiny, loaded)
    by_name = adapters.get_preset("cv-vae")
    with pytest.raises(AdapterError, match="another architecture.*ch 32 \\(preset 128\\)"):
        CVVAE.from_pretrained(tmp_path, by_name)


def test_float16_release_loads_into_the_model_dtype(tiny, tmp_path):
    """vae3d_v1-1 stores float16: loaded exactly (every float16 is a float32), and said."""
    write_release(tmp_path, tiny, torch.float16)
    loaded = CVVAE.from_pretrained(tmp_path, tiny_preset())
    assert loaded.report.notes == ("weights stored as float16, loaded as float32",)
    for key, value in loaded.module.state_dict().items():
        assert torch.equal(value, tiny.module.state_dict()[key].half().float())


def test_weights_file_alone_uses_the_config_beside_it_or_the_preset(tiny, tmp_path):
    weights = write_release(tmp_path / "release", tiny)
    assert_same_outputs(tiny, CVVAE.from_pretrained(weights, tiny_preset()))
    alone = tmp_path / "alone.safetensors"
    alone.write_bytes(weights.read_bytes())
    loaded = CVVAE.from_pretrained(alone, tiny_preset())
    assert "preset config used" in loaded.report.notes[-1]
    assert_same_outputs(tiny, loaded)


def test_strict_keys_name_what_is_wrong(tiny, tmp_path):
    state = {k: v.contiguous() for k, v in tiny.module.state_dict().items()}
    del state["encoder.conv_in.weight"]
    state["first_stage_model.encoder.conv_in.weight"] = torch.zeros(1)
    state["decoder.conv_out.bias"] = torch.zeros(4)
    write_release(tmp_path, tiny)
    save_file(state, str(tmp_path / WEIGHTS))
    with pytest.raises(AdapterError) as error:
        CVVAE.from_pretrained(tmp_path, tiny_preset())
    message = str(error.value)
    assert "missing keys (1): encoder.conv_in.weight" in message
    assert "unexpected keys (1): first_stage_model.encoder.conv_in.weight" in message
    assert "decoder.conv_out.bias (4,) != (3,)" in message


def test_foreign_and_truncated_files_are_clear_errors(tiny, tmp_path):
    weights = write_release(tmp_path, tiny)
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(AdapterError, match="cannot read as safetensors"):
        CVVAE.from_pretrained(tmp_path, tiny_preset())
    weights.unlink()
    with pytest.raises(AdapterError, match="no CVVAEModel weights found .*found config.json"):
        CVVAE.from_pretrained(tmp_path, tiny_preset())
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    with pytest.raises(AdapterError, match="expected 'CVVAEModel'"):
        CVVAE.from_pretrained(tmp_path, tiny_preset())
    (tmp_path / "config.json").unlink()
    with pytest.raises(AdapterError, match="no config.json"):
        CVVAE.from_pretrained(tmp_path, tiny_preset())


def test_config_round_trip_builds_the_same_network(tiny):
    rebuilt = CVVAEModel.from_config(tiny.module.config)
    shapes = {k: v.shape for k, v in rebuilt.state_dict().items()}
    assert shapes == {k: v.shape for k, v in tiny.module.state_dict().items()}


# --- the release's temporal windows and spatial tiles ---------------------------------------
def test_temporal_windows_follow_the_release():
    """en_de_n_frames_a_time = 16: encode windows x[16n : 16(n + 1) + 1], decode windows of
    5 latent frames every 4 (the release's tiled_encode / tiled_decode)."""
    tiles = TemporalTiles(17, 0, 4, decode_size=5)
    assert tiles.encode_spans(49) == [(0, 17), (16, 33), (32, 49)]
    assert tiles.encode_spans(25) == [(0, 17), (16, 25)]
    assert tiles.decode_spans(13) == [(0, 5), (4, 9), (8, 13)]
    assert TemporalTiles(5, 0, 4, decode_size=2).decode_spans(4) == [(0, 2), (1, 3), (2, 4)]


def test_temporal_chunks(tiny):
    video = clip(17, size=8)
    latent = tiny.encode(video, "temporal_chunks(8)")
    assert latent.shape == (1, 4, 5, 1, 1)
    assert torch.equal(latent[:, :, :3], tiny.encode(video[:, :, :9]))  # window 0 alone
    assert not torch.equal(latent, tiny.encode(video))
    assert tiny.decode(latent, "temporal_chunks(8)").shape == video.shape
    whole = clip(9, size=8)  # one window: the whole clip
    assert torch.equal(tiny.encode(whole, "temporal_chunks(8)"), tiny.encode(whole))
    for mode in ("temporal_chunks(6)", "temporal_chunks(8, 4)"):
        with pytest.raises(AdapterError, match="multiple of 4 frames with no overlap"):
            tiny.encode(video, mode)


def test_spatial_tile_grid_stops_at_the_edge():
    """Tiles start every ``size - overlap`` until one reaches the edge; the last row and
    column are kept whole (56 px, tiles of 32 every 24: [0, 32) and [24, 56), not a third
    tile at 48 as in OD-VAE's grid)."""
    seen: list[tuple[int, ...]] = []

    def record(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape[-2:]))
        return x.clone()

    x = torch.arange(56.0 * 56).reshape(1, 1, 1, 56, 56)
    out = tiled(x, record, 32, 24, 24, 8, stop_at_edge=True)
    assert seen == [(32, 32)] * 4 and torch.equal(out, x)
    seen.clear()
    torch.testing.assert_close(tiled(x, record, 32, 24, 24, 8), x)
    assert len(seen) == 9  # the shared grid runs a third, 8-pixel tile per axis


@pytest.mark.parametrize(("height", "width"), [(64, 64), (56, 88), (40, 32)])
def test_spatial_tiles_of_a_local_function_equal_the_function(height, width):
    """Blending equal overlaps changes nothing: tiling a per-pixel function (8x8 average)
    gives its untiled output on any grid."""
    video = clip(3, height, width=width)

    def pool(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool3d(x, (1, 8, 8))

    def unpool(z: torch.Tensor) -> torch.Tensor:
        return F.interpolate(z, scale_factor=(1.0, 8.0, 8.0), mode="nearest")

    encoded = tiled_encode(video, pool, 32, 8, 8, stop_at_edge=True)
    torch.testing.assert_close(encoded, pool(video))
    torch.testing.assert_close(tiled_decode(encoded, unpool, 32, 8, 8, stop_at_edge=True),
                               unpool(encoded))  # fmt: skip


def test_spatial_tiles(tiny):
    video = clip(5, size=16, width=40)
    latent = tiny.encode(video, "spatial_tiles(16, 8)")
    assert latent.shape == tiny.encode(video).shape == (1, 4, 2, 2, 5)
    assert tiny.decode(latent, "spatial_tiles(16, 8)").shape == video.shape
    small = clip(5, size=16)  # no larger than one tile: run whole, as released
    assert torch.equal(tiny.encode(small, "spatial_tiles(16, 8)"), tiny.encode(small))
    with pytest.raises(AdapterError, match="multiples of the spatial factor 8"):
        tiny.encode(video, "spatial_tiles(12, 4)")


def test_seam_layouts_follow_the_release_grids(tiny):
    """Temporal seams where a later window's output starts (frames 16n + 1); spatial seams
    at the tiles' starts, none past the tile that reaches the edge."""
    spec = tiny.spec
    assert seam_layout("temporal_chunks(16)", spec, 49, 8, 8).frames == (17, 33)
    assert TemporalTiles(17, 0, 4, decode_size=5).seams(49) == (17, 33)
    tiles = seam_layout("spatial_tiles(32, 8)", spec, 5, 56, 88)
    assert (tiles.rows, tiles.cols, tiles.blend) == ((24,), (24, 48, 72), 8)
    assert seam_layout("spatial_tiles(64, 8)", spec, 5, 64, 64).empty  # fits: runs whole
