"""Flicker and the seam metrics against numpy references and analytic cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vae_bench.adapters import FrameRule, InferenceMode, VAESpec
from vae_bench.metrics import build_metrics
from vae_bench.metrics.flicker import Flicker
from vae_bench.seams import (
    SeamDiscontinuity,
    SeamLayout,
    SeamPSNRDrop,
    build_seam_metrics,
    seam_layout,
)


def numpy_flicker(target: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """[B] reference: consecutive-frame differences compared in [0, 1] units."""
    a = (np.clip(target, -1, 1).astype(np.float64) + 1) / 2
    b = (np.clip(preds, -1, 1).astype(np.float64) + 1) / 2
    da, db = np.diff(a, axis=2), np.diff(b, axis=2)
    return np.abs(db - da).mean(axis=(1, 3, 4)).mean(axis=1)


def videos(seed: int = 0, shape=(2, 3, 6, 8, 10)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=g) * 1.8 - 0.9
    preds = (target + 0.1 * torch.randn(shape, generator=g)).clamp(-1, 1)
    return target, preds


def test_flicker_matches_numpy_reference():
    target, preds = videos()
    metric = Flicker()
    metric.update(target, preds)
    expected = numpy_flicker(target.numpy(), preds.numpy())
    np.testing.assert_allclose(metric.per_clip().numpy(), expected, rtol=1e-6)
    assert float(metric.compute()) == pytest.approx(expected.mean(), rel=1e-6)


def test_flicker_is_zero_for_identical_and_constant_offset():
    target, _ = videos()
    for preds in (target.clone(), target + 0.05):  # target stays inside [-0.9, 0.9]
        metric = Flicker()
        metric.update(target, preds)
        assert metric.per_clip().abs().max() < 1e-7


def test_flicker_locates_a_single_flashed_frame():
    target, _ = videos(shape=(1, 3, 7, 8, 8))
    preds = target.clone()
    preds[:, :, 3] += 0.08  # +0.04 in [0, 1] units
    metric = Flicker()
    metric.update(target, preds)
    per_frame = metric.per_frame().numpy()
    assert math.isnan(per_frame[0])  # no transition into frame 0
    # transitions 2->3 and 3->4 see the flash, all others none
    np.testing.assert_allclose(per_frame[1:], [0, 0, 0.04, 0.04, 0, 0], atol=1e-7)
    assert float(metric.compute()) == pytest.approx(2 * 0.04 / 6, rel=1e-5)


def test_flicker_of_one_frame_clips_is_nan_and_registered():
    metric = build_metrics(["flicker"])[0]
    assert isinstance(metric, Flicker)
    target = torch.zeros(2, 3, 1, 4, 4)
    metric.update(target, target)
    assert torch.isnan(metric.per_clip()).all() and len(metric.per_frame()) == 0


CAUSAL4 = VAESpec("c", "toy", 4, temporal_factor=4, causal=True, frame_rule=FrameRule(4, 1))


def test_seam_layouts_from_mode_and_spec():
    image = VAESpec("i", "toy", 4)
    assert seam_layout("temporal_chunks(4)", image, 10, 8, 8).frames == (4, 8)
    assert seam_layout("temporal_chunks(4)", CAUSAL4, 13, 8, 8).frames == (5, 9)
    assert seam_layout("full", CAUSAL4, 13, 8, 8).empty
    tiles = seam_layout("spatial_tiles(32,8)", image, 5, 64, 80)
    assert (tiles.rows, tiles.cols, tiles.blend) == ((24, 48), (24, 48, 72), 8)
    od = VAESpec("o", "od-vae", 4, temporal_factor=4, causal=True)
    # encode windows of 9 frames sharing their boundary frame (the second one's output
    # starts at 9); decode windows of 3 latent frames advancing 2 (outputs from 5 and 13)
    assert seam_layout("temporal_chunks(9)", od, 17, 8, 8).frames == (5, 9, 13)
    assert seam_layout("spatial_tiles(64,8)", od, 5, 64, 64).empty  # fits: runs whole
    metrics, reason = build_seam_metrics("temporal_chunks(16)", CAUSAL4, 9, 8, 8)
    assert metrics == [] and "no seam" in reason


def test_temporal_seam_metrics_find_the_seam():
    full, _ = videos(shape=(1, 3, 9, 8, 8))
    recon = full.clone()
    recon[:, :, 5:] += 0.06  # the second chunk (from frame 5) drifts by 0.03 in [0, 1]
    recon[:, :, 5, :2] += 0.2  # and its first frame is corrupted near the top
    recon.clamp_(-1, 1)
    layout = SeamLayout(frames=(5,))
    jump = SeamDiscontinuity(layout)
    jump.update(full, recon)
    steps = jump.per_frame().numpy()
    a, b = (full.numpy() + 1) / 2, (recon.numpy() + 1) / 2
    expected = np.abs(np.diff(b, axis=2) - np.diff(a, axis=2)).mean(axis=(0, 1, 3, 4))
    np.testing.assert_allclose(steps[1:], expected, rtol=1e-5, atol=1e-7)
    assert float(jump.compute()) == pytest.approx(expected[4], rel=1e-5)
    drop = SeamPSNRDrop(layout)
    drop.update(full, recon)
    per_frame = drop.per_frame().numpy()
    assert int(np.argmax(per_frame)) == 5 and float(drop.compute()) > 0
    mse = ((b - a) ** 2).mean(axis=(0, 1, 3, 4))
    at = np.zeros(9, bool)
    at[4:6] = True
    psnr = lambda e: -10 * np.log10(max(e, 1e-10))  # noqa: E731
    assert float(drop.compute()) == pytest.approx(psnr(mse[~at].mean()) - psnr(mse[at].mean()))


def test_spatial_seam_metrics_find_the_seam_and_zero_for_a_seamless_mode():
    full, _ = videos(shape=(1, 3, 2, 16, 16))
    layout = SeamLayout(rows=(8,), cols=(8,), blend=0)
    for metric_type in (SeamPSNRDrop, SeamDiscontinuity):
        metric = metric_type(layout)
        metric.update(full, full.clone())
        assert float(metric.compute()) == 0.0
    recon = full.clone()
    recon[..., 8:, :] += 0.1  # the lower tiles are brighter: a step at row 8
    jump = SeamDiscontinuity(layout)
    jump.update(full, recon)
    # 16 row steps of 0.05 at row 8, 16 column steps of 0 at column 8
    assert float(jump.compute()) == pytest.approx(0.05 / 2, rel=1e-5)
    recon = full.clone()
    recon[..., 7:9, :] += 0.1  # the rows at the seam are wrong, the rest exact
    drop = SeamPSNRDrop(layout)
    drop.update(full, recon)
    band = np.zeros((16, 16), bool)
    band[7:9, :] = band[:, 7:9] = True
    err = ((recon - full).numpy() / 2) ** 2
    seam_mse = err[..., band].mean()
    assert float(drop.compute()) == pytest.approx(100 + 10 * np.log10(seam_mse), rel=1e-6)


def test_seam_metrics_reject_a_layout_without_seams():
    with pytest.raises(ValueError, match="at least one seam"):
        SeamPSNRDrop(SeamLayout())
    assert InferenceMode.parse("spatial_tiles(8)").size == 8
