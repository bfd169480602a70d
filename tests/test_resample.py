"""Resampling baselines: the spatio-temporal variant keeps every fourth frame."""

from __future__ import annotations

import torch

from vae_bench.adapters import create_model


def test_bicubic_f8_t4_latent_is_a_causal_4x8x8_latent() -> None:
    model = create_model("bicubic-f8-t4")
    video = torch.rand(2, 3, 9, 32, 48) * 2 - 1
    latent = model.encode(video)
    assert tuple(latent.shape[1:]) == model.spec.latent_shape(9, 32, 48) == (3, 3, 4, 6)
    assert model.spec.frame_rule.is_valid(9) and not model.spec.frame_rule.is_valid(8)
    recon = model.decode(latent)
    assert recon.shape == video.shape and model.weights == "none"


def test_kept_frames_match_the_spatial_baseline_and_in_between_is_linear() -> None:
    spatial, both = create_model("bicubic-f8"), create_model("bicubic-f8-t4")
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    recon, per_frame = both.reconstruct(video), spatial.reconstruct(video)
    torch.testing.assert_close(recon[:, :, ::4], per_frame[:, :, ::4])
    # frame 1 lies a quarter of the way from kept frame 0 to kept frame 4
    between = 0.75 * per_frame[:, :, 0] + 0.25 * per_frame[:, :, 4]
    torch.testing.assert_close(recon[:, :, 1], between)


def test_a_clip_linear_in_time_and_flat_in_space_comes_back_exactly() -> None:
    ramp = torch.linspace(-0.8, 0.8, 13).reshape(1, 1, 13, 1, 1).expand(1, 3, 13, 16, 16)
    torch.testing.assert_close(create_model("bicubic-f8-t4").reconstruct(ramp), ramp)
