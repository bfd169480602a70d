"""LiteVAE adapter: the Haar DWT against a matrix formulation, the network's release layout
(keys, strict loading, both file formats), parameter counts against the published sizes,
the SMC against its closed form, and frame batching against per-frame runs of the model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from safetensors.torch import load_file, save_file

from vae_bench import adapters
from vae_bench.adapters import AdapterError, FrameRule, Preset
from vae_bench.adapters.lite_vae import LiteAutoencoder, LiteVAE, lite_vae_config, save_state_dict
from vae_bench.adapters.lite_vae.adapter import split_config
from vae_bench.adapters.lite_vae.dwt import (
    haar_dwt2,
    haar_dwt2_levels,
    haar_idwt2,
    haar_idwt2_levels,
)
from vae_bench.adapters.lite_vae.model import SMC
from vae_bench.adapters.sd_vae import sd_config

# Three DWT levels and four decoder levels (spatial factor 8, as released) at a sliver of the
# width; the 8 -> 16 widths give the decoder's nin_shortcut convs as 128 -> 256 -> 512 does.
TINY_CONFIG = lite_vae_config(
    extractor_channels=8, extractor_mult=(1, 2), extractor_blocks=1,
    aggregator_channels=8, aggregator_mult=(1, 2), aggregator_blocks=1,
    decoder_channels=8, decoder_mult=(1, 2, 2, 2), decoder_blocks=1, frame_batch=2,
)  # fmt: skip
TINY = Preset("lite-vae-tiny", LiteVAE, config=TINY_CONFIG, release="https://example.org/tiny")


@pytest.fixture(scope="module")
def vae() -> LiteVAE:
    return LiteVAE.from_config(TINY)


@pytest.fixture(scope="module")
def video() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 3, 16, 24, generator=generator) * 2 - 1


# --- DWT -------------------------------------------------------------------------------
def _haar_matrices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal 1D Haar analysis as two ``[n/2, n]`` matrices (low, high)."""
    low, high = np.zeros((n // 2, n)), np.zeros((n // 2, n))
    for i in range(n // 2):
        low[i, 2 * i : 2 * i + 2] = (1, 1)
        high[i, 2 * i : 2 * i + 2] = (1, -1)
    return low / np.sqrt(2), high / np.sqrt(2)


def test_one_level_equals_separable_haar_matrices() -> None:
    image = np.random.default_rng(0).standard_normal((2, 3, 8, 12))
    rows_low, rows_high = _haar_matrices(8)
    cols_low, cols_high = _haar_matrices(12)
    expected = [
        rows_low @ image @ cols_low.T,  # ll
        rows_low @ image @ cols_high.T,  # lh: difference across the width
        rows_high @ image @ cols_low.T,  # hl: difference across the height
        rows_high @ image @ cols_high.T,  # hh
    ]
    coeffs = haar_dwt2(torch.from_numpy(image)).numpy()
    np.testing.assert_allclose(coeffs, np.concatenate(expected, axis=1), atol=1e-12)


def test_one_level_on_a_single_block() -> None:
    a, b, c, d = 1.0, 2.0, 4.0, 8.0
    coeffs = haar_dwt2(torch.tensor([[[[a, b], [c, d]]]], dtype=torch.float64)).flatten()
    expected = [(a + b + c + d) / 2, (a - b + c - d) / 2, (a + b - c - d) / 2, (a - b - c + d) / 2]
    assert coeffs.tolist() == expected


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_multi_level_reconstructs_perfectly_and_keeps_energy(levels: int) -> None:
    image = torch.randn(
        2, 3, 32, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    coefficients = haar_dwt2_levels(image, levels)
    torch.testing.assert_close(haar_idwt2_levels(coefficients), image, rtol=0, atol=1e-12)
    # Orthonormal: the coarsest level's four bands plus every finer level's details hold the
    # image's energy exactly.
    energy = coefficients[-1].square().sum() + sum(
        c[:, 3:].square().sum() for c in coefficients[:-1]
    )
    torch.testing.assert_close(energy, image.square().sum())


def test_multi_level_sub_band_shapes_and_chaining() -> None:
    image = torch.randn(2, 3, 32, 48)
    coefficients = haar_dwt2_levels(image, 3)
    assert [tuple(c.shape) for c in coefficients] == [
        (2, 12, 16, 24),
        (2, 12, 8, 12),
        (2, 12, 4, 6),
    ]
    for finer, coarser in zip(coefficients[:-1], coefficients[1:], strict=True):
        torch.testing.assert_close(coarser, haar_dwt2(finer[:, :3]), rtol=0, atol=0)
    torch.testing.assert_close(haar_idwt2(haar_dwt2(image)), image, rtol=0, atol=1e-6)


def test_dwt_refuses_sizes_it_cannot_halve() -> None:
    with pytest.raises(ValueError, match="even height and width"):
        haar_dwt2(torch.zeros(1, 3, 6, 5))
    with pytest.raises(ValueError, match="divisible by 8"):
        haar_dwt2_levels(torch.zeros(1, 3, 12, 16), 3)


# --- network layout and loading -----------------------------------------------------------
def test_state_dict_has_the_release_names_and_shapes(vae: LiteVAE) -> None:
    state = vae.module.state_dict()
    expected = {
        "encoder.extractors.0.init_conv.weight": (8, 12, 3, 3),
        "encoder.extractors.2.down_blocks.0.0.norm1.weight": (8,),
        "encoder.extractors.2.down_blocks.0.1.weight": (16, 8, 1, 1),  # widen after 1 block
        "encoder.extractors.1.mid_block.0.conv2.weight": (16, 16, 3, 3),
        "encoder.extractors.1.up_blocks.0.0.weight": (8, 16, 1, 1),  # narrow first
        "encoder.extractors.1.up_blocks.0.1.residual_conv.weight": (8, 16, 1, 1),
        "encoder.extractors.0.conv_out.weight": (12, 8, 1, 1),
        "encoder.aggregator.init_conv.weight": (8, 36, 3, 3),  # 3 levels x 4 bands x RGB
        "encoder.aggregator.conv_out.weight": (24, 8, 1, 1),  # mean and log variance
        "decoder.conv_in.weight": (16, 12, 3, 3),
        "decoder.mid.1.conv1.scales": (16,),
        "decoder.mid.1.conv1.gain": (1,),
        "decoder.up.0.block.0.nin_shortcut.weight": (8, 16, 1, 1),
        "decoder.up.3.upsample.conv.weight": (16, 16, 3, 3),
        "decoder.conv_norm.conv.bias": (8,),
        "decoder.conv_out.weight": (3, 8, 3, 3),
    }
    assert {k: tuple(state[k].shape) for k in expected} == expected
    assert not any(k.startswith(("quantizer.", "decoder.up.0.upsample")) for k in state)
    assert not any("attn" in k for k in state)
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in vae.module.decoder.modules())
    assert len([k for k in state if k.startswith("decoder.mid.")]) == 2 * 2 * 4  # 2 SMC each


def test_use_quant_adds_the_release_quant_convs() -> None:
    quant = LiteVAE.from_config(TINY, use_quant=True)
    state = quant.module.state_dict()
    assert tuple(state["quantizer.quant_conv.weight"].shape) == (24, 12, 1, 1)
    assert tuple(state["quantizer.post_quant_conv.weight"].shape) == (12, 12, 1, 1)
    assert tuple(state["encoder.aggregator.conv_out.weight"].shape) == (12, 8, 1, 1)
    plain = LiteVAE.from_config(TINY)
    extra = (24 * 12 + 24) + (12 * 12 + 12) - (12 * 8 + 12)  # quant convs, narrower conv_out
    assert quant.spec.params == plain.spec.params + extra


def _outputs(vae: LiteVAE, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    latent = vae.encode(video)
    return latent, vae.decode(latent)


def test_save_and_reload_safetensors_gives_identical_outputs(
    vae: LiteVAE, video: torch.Tensor, tmp_path: Path
) -> None:
    path = save_state_dict(vae.module, tmp_path / "lite.safetensors")
    assert set(load_file(str(path))) == set(vae.module.state_dict())
    loaded = TINY.create(path)
    assert loaded.weights == hashlib.sha256(path.read_bytes()).hexdigest()
    for ours, theirs in zip(_outputs(vae, video), _outputs(loaded, video), strict=True):
        assert torch.equal(ours, theirs)
    assert TINY.create(tmp_path).weights == loaded.weights  # a directory with one file


def test_lightning_checkpoint_with_training_state_loads(
    vae: LiteVAE, video: torch.Tensor, tmp_path: Path
) -> None:
    state = dict(vae.module.state_dict())
    state["loss.discriminator.conv.weight"] = torch.zeros(2, 2)
    state["decoder_ema.decay"] = torch.tensor(0.999)
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": state, "epoch": 3, "global_step": 1200}, path)
    with pytest.warns(UserWarning, match="ignored 2 training-only entries"):
        loaded = LiteVAE.from_pretrained(path, TINY)
    assert loaded.weights == hashlib.sha256(path.read_bytes()).hexdigest()
    for ours, theirs in zip(_outputs(vae, video), _outputs(loaded, video), strict=True):
        assert torch.equal(ours, theirs)


def _saved_with(vae: LiteVAE, tmp_path: Path, edit) -> Path:
    state = {k: v.clone() for k, v in vae.module.state_dict().items()}
    edit(state)
    path = tmp_path / "edited.safetensors"
    save_file(state, str(path))
    return path


def test_strict_loading_names_missing_unexpected_and_misshaped_keys(
    vae: LiteVAE, tmp_path: Path
) -> None:
    gone = "decoder.conv_norm.scales"
    path = _saved_with(vae, tmp_path, lambda s: s.pop(gone))
    with pytest.raises(AdapterError, match=rf"missing 1 of \d+ keys: {gone}.*example.org"):
        TINY.create(path)
    path = _saved_with(vae, tmp_path, lambda s: s.update({"encoder.extra.weight": torch.ones(1)}))
    with pytest.raises(AdapterError, match=r"unexpected 1 keys: encoder\.extra\.weight"):
        TINY.create(path)
    wide = "decoder.conv_out.bias"
    path = _saved_with(vae, tmp_path, lambda s: s.update({wide: torch.zeros(4)}))
    with pytest.raises(AdapterError, match=rf"1 shape mismatches: {wide} \[4\] \(model \[3\]\)"):
        TINY.create(path)
    with pytest.raises(AdapterError, match="missing .* unexpected"):  # another architecture
        LiteVAE.from_pretrained(tmp_path / "edited.safetensors", TINY, extractor_blocks=2)


class _Config:  # stands for a training config pickled into a checkpoint
    value = 1


def test_unreadable_or_ambiguous_files_are_clear_errors(vae: LiteVAE, tmp_path: Path) -> None:
    pickled = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": vae.module.state_dict(), "config": _Config()}, pickled)
    with pytest.raises(AdapterError, match=r"weights_only=True"):
        TINY.create(pickled)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(AdapterError, match="cannot read"):
        TINY.create(broken)
    with pytest.raises(AdapterError, match="2 weights files"):
        TINY.create(tmp_path)
    with pytest.raises(AdapterError, match="not found.*example.org"):
        TINY.create(tmp_path / "absent.safetensors")


# --- the self-modulated convolution ------------------------------------------------------------
def test_smc_equals_a_convolution_with_unit_norm_modulated_filters() -> None:
    torch.manual_seed(0)
    smc = SMC(6, 5)
    with torch.no_grad():
        smc.scales.uniform_(0.5, 2.0)
        smc.gain.fill_(1.7)
    x = torch.randn(2, 6, 9, 7)
    modulated = smc.conv.weight * smc.scales.view(1, -1, 1, 1)
    filters = modulated / modulated.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    expected = F.conv2d(x, 1.7 * filters, smc.conv.bias, padding=1)
    torch.testing.assert_close(smc(x), expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # invariant to the scale of the weights and of the style
        smc.conv.weight.mul_(3.0)
        smc.scales.mul_(0.25)
    torch.testing.assert_close(smc(x), expected, rtol=1e-5, atol=1e-5)


# --- sizes --------------------------------------------------------------------------------
def _conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


def _feature_unet(c_in: int, channels: int, mult: tuple[int, ...], blocks: int, c_out: int) -> int:
    """Parameters of one feature UNet, from the architecture's description."""

    def resblock(i: int, o: int) -> int:
        return _conv(i, o, 3) + _conv(o, o, 3) + 4 * o + (_conv(i, o, 1) if i != o else 0)

    widths = [channels * m for m in mult]
    total = _conv(c_in, widths[0], 3) + _conv(widths[0], c_out, 1)
    for width, wider in zip(widths[:-1], widths[1:], strict=True):
        total += blocks * resblock(width, width) + _conv(width, wider, 1)  # down
        total += _conv(wider, width, 1) + blocks * resblock(2 * width, width)  # up
    return total + blocks * resblock(widths[-1], widths[-1])  # middle


# Encoder sizes at 12 latent channels: open-litevae's README ("Ours") and the paper's.
PUBLISHED_ENCODERS = {
    "lite-vae-s": (0.97e6, 1.03e6),
    "lite-vae-b": (6.60e6, 6.75e6),
    "lite-vae-m": (34.00e6, 32.75e6),
    "lite-vae-l": (41.15e6, 41.42e6),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_ENCODERS))
def test_preset_encoder_sizes_are_the_published_ones(name: str) -> None:
    config, _ = split_config(adapters.get_preset(name).config, name)
    with torch.device("meta"):
        model = LiteAutoencoder(config)
    encoder = sum(p.numel() for p in model.encoder.parameters())
    analytic = config.levels * _feature_unet(
        12, config.extractor_channels, config.extractor_mult, config.extractor_blocks, 12
    ) + _feature_unet(
        36, config.aggregator_channels, config.aggregator_mult, config.aggregator_blocks, 24
    )
    assert encoder == analytic
    release, paper = PUBLISHED_ENCODERS[name]
    assert encoder == pytest.approx(release, rel=0.01)
    assert encoder == pytest.approx(paper, rel=0.06)
    decoder = sum(p.numel() for p in model.decoder.parameters())
    assert decoder == pytest.approx(53.33e6, abs=0.005e6)  # open-litevae README


def test_lite_vae_b_encoder_is_about_five_to_six_times_smaller_than_sd_vae() -> None:
    config, _ = split_config(adapters.get_preset("lite-vae-b").config, "lite-vae-b")
    with torch.device("meta"):
        lite = LiteAutoencoder(config)
        sd = AutoencoderKL(**sd_config())
    lite_encoder = sum(p.numel() for p in lite.encoder.parameters())
    sd_encoder = sum(p.numel() for m in (sd.encoder, sd.quant_conv) for p in m.parameters())
    assert sd_encoder == pytest.approx(34.16e6, abs=0.005e6)
    assert 5.0 < sd_encoder / lite_encoder < 6.5


# --- the adapter ----------------------------------------------------------------------------
def test_spec_and_seeded_random_weights(vae: LiteVAE) -> None:
    spec = vae.spec
    assert (spec.family, spec.spatial_factor, spec.temporal_factor) == ("lite-vae", 8, 1)
    assert (spec.latent_channels, spec.causal, spec.frame_rule) == (12, False, FrameRule())
    assert spec.encoder_params == sum(p.numel() for p in vae.module.encoder.parameters())
    assert spec.decoder_params == sum(p.numel() for p in vae.module.decoder.parameters())
    assert vae.weights == "random"
    before = torch.random.get_rng_state()
    again = LiteVAE.from_config(TINY)
    assert torch.equal(torch.random.get_rng_state(), before)
    for (key, ours), theirs in zip(
        vae.module.state_dict().items(), again.module.state_dict().values(), strict=True
    ):
        assert torch.equal(ours, theirs), key


def test_registered_presets() -> None:
    names = [name for name in adapters.presets() if name.startswith("lite-vae")]
    assert names == ["lite-vae-b", "lite-vae-l", "lite-vae-m", "lite-vae-s"]
    assert "olitevaeB_im_f8c12" in adapters.get_preset("lite-vae-b").release


def test_frame_batches_and_per_frame_runs_agree(vae: LiteVAE, video: torch.Tensor) -> None:
    assert vae.frame_batch < video.shape[0] * video.shape[2]
    latent, recon = _outputs(vae, video)
    assert latent.shape == (2, 12, 3, 2, 3)
    assert recon.shape == video.shape
    whole = LiteVAE(vae.module, "whole", frame_batch=64)
    torch.testing.assert_close(whole.encode(video), latent, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(whole.decode(latent), recon, rtol=1e-5, atol=1e-5)
    with torch.inference_mode():
        for t in range(video.shape[2]):
            frame_latent = vae.module.encode(video[:, :, t])
            torch.testing.assert_close(latent[:, :, t], frame_latent, rtol=1e-5, atol=1e-5)
            frame = vae.module.decode(latent[:, :, t])
            torch.testing.assert_close(recon[:, :, t], frame, rtol=1e-5, atol=1e-5)


def test_seeded_sample_is_reproducible_and_independent_of_frame_batch(
    vae: LiteVAE, video: torch.Tensor
) -> None:
    sample = vae.encode(video, seed=3)
    whole = LiteVAE(vae.module, "whole", frame_batch=64)
    torch.testing.assert_close(whole.encode(video, seed=3), sample, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(sample, vae.encode(video))
    assert not torch.allclose(sample, vae.encode(video, seed=4))


def test_bad_configs_and_inputs_are_clear_errors(vae: LiteVAE, video: torch.Tensor) -> None:
    with pytest.raises(AdapterError, match="unknown config keys tile.*allowed: latent_channels"):
        LiteVAE.from_config(TINY, tile=4)
    with pytest.raises(AdapterError, match="frame_batch must be a positive integer"):
        LiteVAE.from_config(TINY, frame_batch=0)
    with pytest.raises(AdapterError, match="multiples of 8"):
        LiteVAE.from_config(TINY, extractor_channels=6)
    with pytest.raises(AdapterError, match="decoder upsamples 16x.*encoder downsamples 8x"):
        LiteVAE.from_config(TINY, decoder_mult=(1, 2, 2, 2, 2))
    with pytest.raises(AdapterError, match="not divisible by the spatial factor 8"):
        vae.encode(video[..., :12])
    with pytest.raises(AdapterError, match=r"latent must be \[B, 12, T, H, W\]"):
        vae.decode(torch.zeros(1, 4, 1, 2, 2))
    with pytest.raises(AdapterError, match="does not support inference mode spatial_tiles"):
        vae.encode(video, "spatial_tiles(8)")
