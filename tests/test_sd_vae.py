"""SD-VAE adapter: frame-by-frame encode/decode against diffusers' AutoencoderKL called
directly, diffusers' tiling, and strict loading of both release layouts (diffusers
directories and original LDM single files) made here from a narrow model."""

from __future__ import annotations

import hashlib
import json
import re
import socket
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file, save_file

from vae_bench import adapters
from vae_bench.adapters import AdapterError, FrameRule, Preset
from vae_bench.adapters.base import count_params
from vae_bench.adapters.sd_vae import SDVAE, sd_config, split_config, tile_overlap_factor

# Four levels (spatial factor 8, as released) at a fraction of the width; the width change
# 16 -> 32 gives the resnets shortcut convs, as the released 128 -> 256 -> 512 does.
TINY = Preset(
    "sd-vae-tiny",
    SDVAE,
    config=sd_config(block_out_channels=(16, 32, 32, 32), norm_num_groups=8, frame_batch=2),
    release="https://example.org/sd-vae-tiny",
)
LEVELS = 4


@pytest.fixture(scope="module")
def vae() -> SDVAE:
    return SDVAE.from_config(TINY)


@pytest.fixture(scope="module")
def video() -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    return torch.rand(1, 3, 3, 32, 32, generator=generator) * 2 - 1


@pytest.fixture
def offline(monkeypatch):
    """Loading must never reach the network (the hub config lookup of from_single_file)."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# --- LDM layout, written independently of diffusers' converter ---------------------------
def _mid(m: re.Match[str]) -> str:
    return f"{m[1]}.mid.block_{int(m[2]) + 1}."


def _up(kind: str):
    # diffusers counts decoder levels from the bottom, the original code from the top
    return lambda m: f"decoder.up.{LEVELS - 1 - int(m[1])}.{kind}"


_LDM_RULES = [
    (r"^(encoder|decoder)\.conv_norm_out\.", r"\1.norm_out."),
    (r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder.down.\1.block.\2."),
    (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample."),
    (r"^(encoder|decoder)\.mid_block\.resnets\.(\d+)\.", _mid),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.group_norm\.", r"\1.mid.attn_1.norm."),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.to_(q|k|v)\.", r"\1.mid.attn_1.\2."),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.to_out\.0\.", r"\1.mid.attn_1.proj_out."),
    (r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.", lambda m: _up(f"block.{m[2]}.")(m)),
    (r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", _up("upsample.")),
]


def ldm_state(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """The original (CompVis) names and shapes: attention projections are 1x1 convs."""
    out = {}
    for key, tensor in state.items():
        name = key
        for pattern, replacement in _LDM_RULES:
            name = re.sub(pattern, replacement, name)
        name = name.replace("conv_shortcut", "nin_shortcut")
        if re.search(r"mid\.attn_1\.(q|k|v|proj_out)\.weight$", name):
            tensor = tensor[:, :, None, None]
        out[prefix + name] = tensor.clone().contiguous()
    return out


def diffusers_state(vae: SDVAE) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in vae.module.state_dict().items()}


# --- construction and spec ---------------------------------------------------------------
def test_random_build_is_deterministic_labelled_and_leaves_global_rng(vae):
    before = torch.random.get_rng_state()
    again = SDVAE.from_config(TINY)
    assert torch.equal(torch.random.get_rng_state(), before)
    first, second = vae.module.state_dict(), again.module.state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert vae.weights == again.weights == "random"


def test_spec(vae):
    spec = vae.spec
    assert (spec.family, spec.latent_channels, spec.spatial_factor, spec.temporal_factor) == (
        "sd-vae", 4, 8, 1,
    )  # fmt: skip
    assert spec.frame_rule == FrameRule() and str(spec.frame_rule) == "any" and not spec.causal
    assert spec.scaling_factor == pytest.approx(0.18215) and spec.modes == ("full", "spatial_tiles")
    module = vae.module
    assert spec.encoder_params == count_params(module.encoder) + count_params(module.quant_conv)
    assert spec.decoder_params == count_params(module.decoder) + count_params(
        module.post_quant_conv
    )
    assert spec.params == count_params(module)


def test_released_size_and_registry():
    preset = adapters.get_preset("sd-vae-ft-mse")
    assert preset.adapter is SDVAE and "stabilityai/sd-vae-ft-mse" in preset.release
    assert {"sd-vae-ft-ema", "sd-vae-kl-f8"} <= set(adapters.presets())
    with torch.device("meta"):  # the full-size network without allocating it
        module = AutoencoderKL(**split_config(preset.config, preset.name)[0])
    full = SDVAE(module, preset.name)
    assert full.spec.params == 83_653_863  # the released SD VAE (83.65M parameters)
    assert full.spec.spatial_factor == 8 and full.frame_batch >= 1


def test_bad_config_and_overrides():
    with pytest.raises(AdapterError, match="unknown config keys blocks; allowed: .*frame_batch"):
        SDVAE.from_config(TINY, blocks=3)
    with pytest.raises(AdapterError, match="frame_batch must be a positive integer"):
        SDVAE.from_config(TINY, frame_batch=0)
    narrow = SDVAE.from_config(TINY, block_out_channels=(8, 16), norm_num_groups=4)
    assert narrow.spec.spatial_factor == 2
    assert len(narrow.module.config.down_block_types) == 2


# --- inference ---------------------------------------------------------------------------
def test_encode_decode_shapes(vae, video):
    latent = vae.encode(video)
    assert latent.shape == (1, 4, 3, 4, 4) == (1, *vae.spec.latent_shape(3, 32, 32))
    assert vae.decode(latent).shape == video.shape
    with pytest.raises(AdapterError, match="width 20 is not divisible by the spatial factor 8"):
        vae.encode(video[..., :20])
    with pytest.raises(AdapterError, match=r"latent must be \[B, 4, T, H, W\]"):
        vae.decode(latent[:, :3])


def test_frame_by_frame_equals_autoencoderkl_per_frame():
    single = SDVAE.from_config(TINY, frame_batch=1)
    clip = torch.rand(2, 3, 2, 16, 24, generator=torch.Generator().manual_seed(3)) * 2 - 1
    latent = single.encode(clip)
    video = single.decode(latent)
    module = single.module
    with torch.no_grad():
        for b in range(2):
            for t in range(2):
                posterior = module.encode(clip[b : b + 1, :, t]).latent_dist
                assert torch.equal(latent[b : b + 1, :, t], posterior.mode())
                assert torch.equal(latent[b : b + 1, :, t], posterior.mean)
                frame = module.decode(latent[b : b + 1, :, t]).sample
                assert torch.equal(video[b : b + 1, :, t], frame)


def test_frame_batch_smaller_than_clip_gives_the_same_output(vae, video):
    whole = SDVAE.from_config(TINY, frame_batch=video.shape[2])
    assert vae.frame_batch < video.shape[2]
    # Same weights and arithmetic; CPU kernels may pick a batch-dependent summation order.
    torch.testing.assert_close(vae.encode(video), whole.encode(video), rtol=1e-5, atol=1e-5)
    latent = whole.encode(video)
    torch.testing.assert_close(vae.decode(latent), whole.decode(latent), rtol=1e-5, atol=1e-5)


def test_sampling_is_seeded_and_differs_from_the_mode(vae, video):
    first = vae.encode(video, seed=11)
    assert torch.equal(first, vae.encode(video, seed=11))
    assert not torch.equal(first, vae.encode(video, seed=12))
    mode = vae.encode(video)
    assert first.shape == mode.shape and (first - mode).abs().max() > 1e-3
    # The noise is drawn for the whole latent at once: the frame batch does not change it.
    whole = SDVAE.from_config(TINY, frame_batch=3)
    torch.testing.assert_close(whole.encode(video, seed=11), first, rtol=1e-5, atol=1e-5)
    # mean + std * N(0, 1): the standardised residual is the seeded draw.
    with torch.no_grad():
        frame = vae.module.encode(video[:, :, 0]).latent_dist
    noise = torch.randn(first.shape, generator=torch.Generator().manual_seed(11))
    torch.testing.assert_close((first[:, :, 0] - frame.mean) / frame.std, noise[:, :, 0])


def test_spatial_tiles_follow_diffusers_tiling(vae):
    frame = torch.rand(1, 3, 1, 64, 64, generator=torch.Generator().manual_seed(5)) * 2 - 1
    latent = vae.encode(frame, "spatial_tiles(32, 8)")
    assert latent.shape == (1, 4, 1, 8, 8)
    assert not vae.module.use_tiling  # the shared module is left as it was
    module = vae.module
    with torch.no_grad():

        def tile_mode(crop: torch.Tensor) -> torch.Tensor:
            return module.quant_conv(module.encoder(crop)).chunk(2, dim=1)[0]

        # 32-pixel tiles every 24 pixels; a tile's first 8 pixels (1 latent) blend with the
        # previous one and each keeps 3 latents: the unblended parts are single tiles.
        first = tile_mode(frame[:, :, 0, :32, :32])
        second = tile_mode(frame[:, :, 0, :32, 24:56])
        torch.testing.assert_close(latent[:, :, 0, :3, :3], first[:, :, :3, :3])
        torch.testing.assert_close(latent[:, :, 0, :3, 4:6], second[:, :, :3, 1:3])
        assert not torch.allclose(latent, vae.encode(frame), atol=1e-4)

        video = vae.decode(latent, "spatial_tiles(32, 8)")
        assert video.shape == frame.shape
        decoded = module.decoder(module.post_quant_conv(latent[:, :, 0, :4, :4]))
        torch.testing.assert_close(video[:, :, 0, :24, :24], decoded[:, :, :24, :24])
    # A tile at least as large as the frame runs it whole, as in diffusers.
    assert torch.equal(vae.encode(frame, "spatial_tiles(64, 16)"), vae.encode(frame))


def test_spatial_tile_sizes_are_checked(vae, video):
    with pytest.raises(AdapterError, match="size 36 must be a multiple of the spatial factor 8"):
        vae.encode(video, "spatial_tiles(36, 8)")
    with pytest.raises(AdapterError, match="overlap 4 must be a multiple"):
        vae.encode(video, "spatial_tiles(32, 4)")
    with pytest.raises(AdapterError, match="does not support inference mode temporal_chunks"):
        vae.encode(video, "temporal_chunks(2)")
    assert tile_overlap_factor(256, 64) == 0.25
    # 48 * (1 - 40 / 48) is 7.99... in floats: the factor is nudged so the grid is exact.
    assert int(48 * (1 - 40 / 48)) == 7
    factor = tile_overlap_factor(48, 40)
    assert int(48 * (1 - factor)) == 8 and int(48 * factor) == 40
    assert int(6 * (1 - factor)) == 1 and int(6 * factor) == 5
    with pytest.raises(AdapterError, match=r"spatial_tiles\(320,216\).*nearest that work"):
        tile_overlap_factor(320, 216)


# --- diffusers directories ---------------------------------------------------------------
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_save_pretrained_reload_is_bit_identical(vae, video, tmp_path, offline):
    vae.module.save_pretrained(tmp_path / "release", safe_serialization=True)
    weights = tmp_path / "release" / "diffusion_pytorch_model.safetensors"
    loaded = TINY.create(tmp_path / "release")
    assert isinstance(loaded, SDVAE) and loaded.weights == _sha256(weights)
    assert torch.equal(loaded.encode(video), vae.encode(video))
    assert torch.equal(loaded.reconstruct(video), vae.reconstruct(video))
    # a pipeline directory (model_index + vae/), and the older .bin weights
    vae.module.save_pretrained(tmp_path / "pipeline" / "vae", safe_serialization=False)
    from_bin = SDVAE.from_pretrained(tmp_path / "pipeline", TINY)
    assert from_bin.weights == _sha256(
        tmp_path / "pipeline" / "vae" / "diffusion_pytorch_model.bin"
    )
    assert torch.equal(from_bin.encode(video), vae.encode(video))


def test_diffusers_directory_with_deprecated_attention_names(vae, video, tmp_path, offline):
    """Older releases name the attention weights query/key/value/proj_attn."""
    vae.module.save_pretrained(tmp_path, safe_serialization=True)
    file = tmp_path / "diffusion_pytorch_model.safetensors"
    old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    state = {}
    for key, tensor in load_file(file).items():
        for new, legacy in old.items():
            key = key.replace(f"attentions.0.{new}.", f"attentions.0.{legacy}.")
        state[key] = tensor
    assert any(".query." in key for key in state)
    save_file(state, file)
    assert torch.equal(SDVAE.from_pretrained(tmp_path, TINY).encode(video), vae.encode(video))


def test_half_precision_files_load_as_float32(video, tmp_path):
    half = SDVAE.from_config(TINY)
    half.module.to(torch.float16).save_pretrained(tmp_path / "dir", safe_serialization=True)
    save_file(ldm_state(diffusers_state(half)), tmp_path / "vae.safetensors")
    for path in (tmp_path / "dir", tmp_path / "vae.safetensors"):
        loaded = SDVAE.from_pretrained(path, TINY)
        assert loaded.dtype == torch.float32
        assert torch.equal(
            loaded.module.encoder.conv_in.weight, half.module.encoder.conv_in.weight.float()
        )


def _edited_release(vae: SDVAE, directory: Path, edit) -> Path:
    vae.module.save_pretrained(directory, safe_serialization=True)
    file = directory / "diffusion_pytorch_model.safetensors"
    state = load_file(file)
    edit(state)
    save_file(state, file)
    return directory


def test_diffusers_directory_strictness(vae, tmp_path, offline):
    missing = _edited_release(vae, tmp_path / "missing", lambda s: s.pop("decoder.conv_out.bias"))
    with pytest.raises(AdapterError, match=r"missing 1 of \d+ keys: decoder.conv_out.bias"):
        SDVAE.from_pretrained(missing, TINY)
    extra = _edited_release(
        vae, tmp_path / "extra", lambda s: s.update({"encoder.extra.weight": torch.zeros(2)})
    )
    with pytest.raises(AdapterError, match="unexpected 1 keys: encoder.extra.weight"):
        SDVAE.from_pretrained(extra, TINY)
    shape = _edited_release(
        vae, tmp_path / "shape", lambda s: s.update({"quant_conv.bias": torch.zeros(3)})
    )
    with pytest.raises(AdapterError, match=r"quant_conv.bias \[3\] \(model \[8\]\)"):
        SDVAE.from_pretrained(shape, TINY)


def test_diffusers_directory_wrong_or_broken(vae, tmp_path):
    vae.module.save_pretrained(tmp_path / "ok", safe_serialization=True)
    other = SDVAE.from_config(TINY, block_out_channels=(32, 32, 32, 32))
    other.module.save_pretrained(tmp_path / "wide", safe_serialization=True)
    with pytest.raises(AdapterError, match=r"another architecture: block_out_channels \(32, 32"):
        SDVAE.from_pretrained(tmp_path / "wide", TINY)
    config = json.loads((tmp_path / "ok" / "config.json").read_text())
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(
        json.dumps({**config, "_class_name": "UNet2DModel"})
    )
    with pytest.raises(AdapterError, match="describes 'UNet2DModel', not an AutoencoderKL"):
        SDVAE.from_pretrained(tmp_path / "unet", TINY)
    (tmp_path / "config-only").mkdir()
    (tmp_path / "config-only" / "config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterError, match="has no diffusion_pytorch_model.safetensors or"):
        SDVAE.from_pretrained(tmp_path / "config-only", TINY)
    file = tmp_path / "ok" / "diffusion_pytorch_model.safetensors"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    with pytest.raises(AdapterError, match="cannot read .*truncated"):
        SDVAE.from_pretrained(tmp_path / "ok", TINY)


def test_missing_path_names_path_and_release(tmp_path):
    where = tmp_path / "nowhere"
    for load in (lambda: SDVAE.from_pretrained(where, TINY), lambda: TINY.create(where)):
        with pytest.raises(AdapterError, match="weights not found at .*nowhere.*example.org"):
            load()
    with pytest.raises(AdapterError, match="not found .*huggingface.co/stabilityai/sd-vae-ft-mse"):
        adapters.create_model("sd-vae-ft-mse", str(where))


# --- original single files ---------------------------------------------------------------
def test_ldm_layout_converts_to_the_diffusers_state(vae):
    """Our inverse mapping is right: diffusers' converter turns it back exactly."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    state = diffusers_state(vae)
    ldm = ldm_state(state, "first_stage_model.")
    assert "first_stage_model.encoder.down.1.block.0.nin_shortcut.weight" in ldm
    assert ldm["first_stage_model.decoder.mid.attn_1.q.weight"].ndim == 4
    back = convert_ldm_vae_checkpoint(ldm, vae.module.config)
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)


@pytest.mark.parametrize("layout", ["sd-ckpt", "sd-safetensors", "vae-pt"])
def test_original_single_file_loads_identically(vae, video, tmp_path, offline, layout):
    state = diffusers_state(vae)
    unet = {"model.diffusion_model.input_blocks.0.0.weight": torch.ones(2, 2)}
    if layout == "sd-ckpt":  # a full SD v1 checkpoint
        file = tmp_path / "sd-v1.ckpt"
        torch.save({"state_dict": {**unet, **ldm_state(state, "first_stage_model.")}}, file)
    elif layout == "sd-safetensors":
        file = tmp_path / "sd-v1.safetensors"
        save_file({**unet, **ldm_state(state, "first_stage_model.")}, file)
    else:  # a standalone kl-f8 VAE: bare keys under state_dict
        file = tmp_path / "vae.pt"
        torch.save({"state_dict": ldm_state(state), "global_step": 5}, file)
    loaded = SDVAE.from_pretrained(file, TINY)
    assert loaded.weights == _sha256(file)
    reloaded = loaded.module.state_dict()
    assert reloaded.keys() == state.keys()
    assert all(torch.equal(reloaded[k], state[k]) for k in state)
    assert torch.equal(loaded.encode(video), vae.encode(video))
    assert torch.equal(loaded.reconstruct(video), vae.reconstruct(video))


def test_single_file_in_a_directory_and_training_keys(vae, video, tmp_path, offline):
    ldm = ldm_state(diffusers_state(vae))
    ldm["loss.logvar"] = torch.zeros(())  # the LPIPS/discriminator state of a training run
    save_file(ldm, tmp_path / "kl-f8.safetensors")
    with pytest.warns(UserWarning, match="ignored 1 training-only entries"):
        loaded = SDVAE.from_pretrained(tmp_path, TINY)
    assert torch.equal(loaded.encode(video), vae.encode(video))


def test_original_single_file_strictness(vae, tmp_path, offline):
    ldm = ldm_state(diffusers_state(vae), "first_stage_model.")
    missing = dict(ldm)
    del missing["first_stage_model.encoder.down.0.block.1.conv2.weight"]
    torch.save({"state_dict": missing}, tmp_path / "missing.ckpt")
    with pytest.raises(
        AdapterError, match=r"missing 1 of \d+ keys: encoder.down_blocks.0.resnets.1"
    ):
        SDVAE.from_pretrained(tmp_path / "missing.ckpt", TINY)
    # the original code keeps each resampling conv's weight and bias together
    for key, needle in [
        ("decoder.up.1.upsample.conv.bias", "missing key decoder.up.1.upsample.conv.bias"),
        ("encoder.down.2.downsample.conv.bias", "encoder.down_blocks.2.downsamplers.0.conv.bias"),
    ]:
        torch.save({k: v for k, v in ldm.items() if not k.endswith(key)}, tmp_path / "cut.pt")
        with pytest.raises(AdapterError, match=f"not match the model strictly .*{needle}"):
            SDVAE.from_pretrained(tmp_path / "cut.pt", TINY)
    extra = {**ldm, "first_stage_model.encoder.extra.weight": torch.zeros(1)}
    save_file(extra, tmp_path / "extra.safetensors")
    with pytest.raises(AdapterError, match="unexpected 1 keys: encoder.extra.weight"):
        SDVAE.from_pretrained(tmp_path / "extra.safetensors", TINY)


def test_original_single_file_wrong_or_broken(tmp_path):
    torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "linear.pt")
    with pytest.raises(
        AdapterError, match=r"missing \d+ of \d+ keys.*unexpected 2 keys: bias, weight"
    ):
        SDVAE.from_pretrained(tmp_path / "linear.pt", TINY)
    good = tmp_path / "vae.ckpt"
    torch.save({"state_dict": ldm_state(diffusers_state(SDVAE.from_config(TINY)))}, good)
    (tmp_path / "cut.ckpt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(AdapterError, match="cannot read .*cut.ckpt as a PyTorch checkpoint"):
        SDVAE.from_pretrained(tmp_path / "cut.ckpt", TINY)
    torch.save({"state_dict": {"encoder.conv_in.weight": Path("x")}}, tmp_path / "pickle.ckpt")
    with pytest.raises(AdapterError, match="torch.load\\(weights_only=True\\) refuses"):
        SDVAE.from_pretrained(tmp_path / "pickle.ckpt", TINY)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(AdapterError, match="is not a checkpoint; expected a diffusers directory"):
        SDVAE.from_pretrained(tmp_path / "notes.txt", TINY)
    with pytest.raises(AdapterError, match="no config.json and 4 checkpoint files"):
        SDVAE.from_pretrained(tmp_path, TINY)
