"""Quality metrics against independent references: numpy/OpenCV official loops,
scikit-image, the lpips package, analytic identities, and torchmetrics state merging."""

from __future__ import annotations

import math
from pathlib import Path

import lpips
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.metrics import structural_similarity

from tests import official_reference as official
from tests.distributed_helpers import spawn_gloo
from vae_bench.metrics import (
    LPIPS,
    PSNR,
    SSIM,
    ClipPSNR,
    MetricUnavailable,
    VideoMetric,
    build_metrics,
)

# the lpips package passes torchvision's deprecated `pretrained=` argument
pytestmark = pytest.mark.filterwarnings("ignore:.*(pretrained|weight enum).*:UserWarning")


def make_pair(
    seed: int, shape: tuple[int, ...] = (2, 3, 4, 24, 28), noise: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth textured target in [-1, 1] and a noisy, slightly shifted reconstruction."""
    gen = torch.Generator().manual_seed(seed)
    batch, channels, frames, height, width = shape
    coarse = torch.rand(batch, channels, frames, 4, 4, generator=gen) * 2 - 1
    target = torch.nn.functional.interpolate(
        coarse.flatten(0, 1), size=(height, width), mode="bilinear", align_corners=False
    ).view(shape)
    target = (target + 0.2 * torch.randn(shape, generator=gen)).clamp(-1, 1)
    preds = (0.95 * target + 0.02 + noise * torch.randn(shape, generator=gen)).clamp(-1, 1)
    return target, preds


def unit(video: torch.Tensor) -> np.ndarray:
    """[-1, 1] tensor -> [0, 1] float64 numpy, the official scripts' input."""
    return ((video.double().numpy() + 1.0) / 2.0).clip(0.0, 1.0)


def run(metric: VideoMetric, *pairs: tuple[torch.Tensor, torch.Tensor]) -> VideoMetric:
    for target, preds in pairs:
        metric.update(target, preds)
    return metric


def random_lpips(**kwargs: object) -> LPIPS:
    return LPIPS(pretrained=False, **kwargs)


# ---------------------------------------------------------------- SSIM


def test_ssim_matches_official_opencv_loop() -> None:
    target, preds = make_pair(0)
    metric = run(SSIM(), (target, preds))
    reference = official.ssim_frames(unit(target), unit(preds))
    np.testing.assert_allclose(metric.per_clip().numpy(), reference.mean(axis=1), atol=1e-5)
    np.testing.assert_allclose(
        metric.per_frame().numpy(),
        official.ssim_per_timestamp(unit(target), unit(preds)),
        atol=1e-5,
    )
    assert float(metric.compute()) == pytest.approx(reference.mean(), abs=1e-5)


def test_ssim_flat_regions_match_official() -> None:
    # flat frames are where uncentred float32 variances lose ~1e-4 of SSIM to cancellation
    shape = (1, 3, 2, 20, 20)
    target = torch.full(shape, 0.86)
    preds = torch.full(shape, 0.90) + 0.004 * torch.randn(shape, generator=torch.manual_seed(3))
    metric = run(SSIM(), (target, preds))
    reference = official.ssim_frames(unit(target), unit(preds))
    np.testing.assert_allclose(metric.per_clip().numpy(), reference.mean(axis=1), atol=1e-5)


def test_ssim_two_tone_planes_match_official() -> None:
    # the worst case for centring on the plane mean: flat areas at both ends of the range
    shape = (1, 3, 2, 48, 48)
    target = torch.ones(shape)
    target[..., :, :24] = -1.0
    faint = 0.002 * torch.randn(shape, generator=torch.manual_seed(4))
    target = (target - faint.abs() * target.sign()).clamp(-1, 1)
    preds = (target + 0.5 * faint).clamp(-1, 1)
    metric = run(SSIM(), (target, preds))
    reference = official.ssim_frames(unit(target), unit(preds))
    np.testing.assert_allclose(metric.per_frame().numpy(), reference[0], atol=1e-6)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    channels=st.sampled_from([1, 3]),
    height=st.integers(11, 30),
    width=st.integers(11, 30),
    noise=st.floats(0.0, 0.5),
)
def test_ssim_matches_scikit_image(
    seed: int, channels: int, height: int, width: int, noise: float
) -> None:
    target, preds = make_pair(seed, (1, channels, 2, height, width), noise)
    metric = run(SSIM(), (target, preds))
    x, y = unit(target)[0], unit(preds)[0]
    expected = [
        structural_similarity(
            x[:, t],
            y[:, t],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=0,
        )
        for t in range(x.shape[1])
    ]
    np.testing.assert_allclose(metric.per_frame().numpy(), expected, atol=1e-5)


def test_ssim_chunking_does_not_change_values() -> None:
    target, preds = make_pair(1)
    whole = run(SSIM(chunk_pixels=10**9), (target, preds))
    one_plane_at_a_time = run(SSIM(chunk_pixels=1), (target, preds))
    torch.testing.assert_close(one_plane_at_a_time.per_clip(), whole.per_clip(), rtol=0, atol=1e-15)


def test_ssim_rejects_frames_smaller_than_window() -> None:
    target, preds = make_pair(0, (1, 3, 2, 10, 32))
    with pytest.raises(ValueError, match="11x11"):
        SSIM().update(target, preds)


# ---------------------------------------------------------------- PSNR


@pytest.mark.parametrize(
    ("shape", "noise"),
    [((2, 3, 4, 24, 28), 0.3), ((1, 3, 5, 64, 96), 0.3), ((1, 3, 2, 64, 64), 1e-4)],
)
def test_psnr_both_conventions_match_numpy(shape: tuple[int, ...], noise: float) -> None:
    target, preds = make_pair(2, shape, noise=noise)
    x, y = unit(target), unit(preds)
    frame_mse = ((x - y) ** 2).mean(axis=(1, 3, 4))  # [B, T]
    frame_psnr = 10 * np.log10(1.0 / frame_mse)
    clip_psnr = 10 * np.log10(1.0 / ((x - y) ** 2).mean(axis=(1, 2, 3, 4)))

    psnr = run(PSNR(), (target, preds))
    clip = run(ClipPSNR(), (target, preds))
    # float32 inputs are squared and summed over runs of 64 pixels in float32, then summed
    # in float64: ~1e-8 relative on the MSE, less on the PSNR
    rtol = 1e-8
    np.testing.assert_allclose(psnr.per_clip().numpy(), frame_psnr.mean(axis=1), rtol=rtol)
    np.testing.assert_allclose(psnr.per_frame().numpy(), frame_psnr.mean(axis=0), rtol=rtol)
    np.testing.assert_allclose(clip.per_clip().numpy(), clip_psnr, rtol=rtol)
    np.testing.assert_allclose(clip.per_frame().numpy(), frame_psnr.mean(axis=0), rtol=rtol)
    assert float(clip.compute()) == pytest.approx(clip_psnr.mean(), rel=rtol)
    # the two conventions differ (Jensen): the frame mean is never below the pooled one
    assert np.all(psnr.per_clip().numpy() >= clip.per_clip().numpy() - 1e-12)


def test_psnr_matches_official_frame_loop() -> None:
    target, preds = make_pair(4)
    metric = run(PSNR(), (target, preds))
    reference = official.psnr_frames(unit(target), unit(preds))
    np.testing.assert_allclose(metric.per_clip().numpy(), reference.mean(axis=1), rtol=1e-9)
    assert float(metric.compute()) == pytest.approx(
        official.batch_psnr(unit(target), unit(preds)), rel=1e-9
    )


def test_psnr_inf_value_reproduces_official_cap() -> None:
    target, preds = make_pair(5, (1, 3, 3, 16, 16))
    preds[:, :, 1] = target[:, :, 1]  # one identical frame makes the official batch mean inf
    capped = run(PSNR(inf_value=100.0), (target, preds))
    kept = run(PSNR(), (target, preds))
    assert official.batch_psnr(unit(target), unit(preds)) == 100.0
    assert float(capped.compute()) == 100.0
    assert math.isinf(float(kept.compute()))
    assert "inf->100" in capped.protocol and "inf" not in kept.protocol
    assert torch.isinf(kept.per_frame()[1]) and capped.per_frame()[1] == 100.0


# ---------------------------------------------------------------- LPIPS


def lpips_reference(
    target: torch.Tensor, preds: torch.Tensor, net: str = "alex", spatial: bool = False
) -> np.ndarray:
    """[B, T] by calling the package directly, frame by frame, on the same seed."""
    torch.manual_seed(0)
    model = lpips.LPIPS(net=net, pnet_rand=True, spatial=spatial, verbose=False).eval()
    out = np.empty(target.shape[0:1] + target.shape[2:3])
    with torch.no_grad():
        for b in range(target.shape[0]):
            for t in range(target.shape[2]):
                first = target[b : b + 1, :, t].expand(-1, 3, -1, -1)
                second = preds[b : b + 1, :, t].expand(-1, 3, -1, -1)
                out[b, t] = float(model(first, second).mean())
    return out


@pytest.mark.parametrize("spatial_map", [False, True])
def test_lpips_matches_package_random_backbone(spatial_map: bool) -> None:
    target, preds = make_pair(6, (2, 3, 3, 64, 64))
    metric = run(random_lpips(spatial_map=spatial_map), (target, preds))
    reference = lpips_reference(target, preds, spatial=spatial_map)
    np.testing.assert_allclose(metric.per_clip().numpy(), reference.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(metric.per_frame().numpy(), reference.mean(axis=0), rtol=1e-5)
    assert "backbone=random" in metric.protocol


def test_lpips_grayscale_and_chunks() -> None:
    target, preds = make_pair(7, (1, 1, 4, 48, 48))
    metric = run(random_lpips(chunk_pixels=1), (target, preds))  # one frame per forward
    reference = lpips_reference(target, preds)
    np.testing.assert_allclose(metric.per_frame().numpy(), reference[0], rtol=1e-5)


def test_lpips_rejects_frames_too_small_for_the_backbone() -> None:
    target, preds = make_pair(17, (1, 3, 2, 30, 64))
    with pytest.raises(ValueError, match=r"net=alex\) needs frames of at least 31x31"):
        random_lpips().update(target, preds)


def test_lpips_pretrained_backbone_loads_from_cache_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a stand-in SqueezeNet file (5 MB) placed where torchvision's cache keeps it
    from torchvision.models import squeezenet1_1

    from vae_bench.metrics.lpips import backbone_weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = backbone_weights_path("squeeze")
    assert path == tmp_path / "hub" / "checkpoints" / "squeezenet1_1-b8a52dc0.pth"
    path.parent.mkdir(parents=True)
    torch.manual_seed(11)
    torch.save(squeezenet1_1().state_dict(), path)

    target, preds = make_pair(8, (1, 3, 2, 48, 48))
    metric = run(LPIPS(net="squeeze", pretrained=True), (target, preds))
    assert "backbone=imagenet" in metric.protocol
    model = lpips.LPIPS(net="squeeze", verbose=False).eval()
    with torch.no_grad():
        expected = model(target[0].transpose(0, 1), preds[0].transpose(0, 1)).flatten()
    np.testing.assert_allclose(metric.per_frame().numpy(), expected.numpy(), rtol=1e-5)


def test_lpips_corrupt_cached_weights_are_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vae_bench.metrics.lpips import backbone_weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = backbone_weights_path("squeeze")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    with pytest.raises(MetricUnavailable, match="could not be loaded"):
        LPIPS(net="squeeze")


@pytest.mark.parametrize(
    ("net", "file_name"), [("alex", "alexnet-owt-7be5be79.pth"), ("vgg", "vgg16-397923af.pth")]
)
def test_missing_lpips_weights_raise_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, net: str, file_name: str
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MetricUnavailable) as error:
        build_metrics(["psnr", "lpips"], lpips_net=net)
    message = str(error.value)
    assert file_name in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert f"`vae-bench fetch lpips-{net}`" in message
    assert not any(tmp_path.rglob("*.pth")), "nothing may be downloaded"


def test_official_convention_matches_the_wf_vae_scripts() -> None:
    """Under ``wf-vae-official`` a perfect clip scores 100 dB (the scripts' cap) and LPIPS
    is the mean of the package's upsampled distance map (``spatial=True``)."""
    target, preds = make_pair(5, (1, 3, 2, 48, 48), noise=0.2)
    psnr, clip, lpips_metric = build_metrics(
        ["psnr", "psnr_clip", "lpips"], lpips_pretrained=False, convention="wf-vae-official"
    )
    for metric in (psnr, clip):
        metric.update(target, target.clone())
        assert float(metric.compute()) == 100.0
    lpips_metric.update(target, preds)
    expected = lpips_reference(target, preds, spatial=True)
    assert float(lpips_metric.compute()) == pytest.approx(float(expected.mean()), abs=1e-6)
    with pytest.raises(ValueError, match="allowed: suite, wf-vae-official"):
        build_metrics(["psnr"], convention="paper")


# ---------------------------------------------------------------- shared behaviour


def all_metrics() -> list[VideoMetric]:
    return build_metrics(["psnr", "psnr_clip", "ssim", "lpips"], lpips_pretrained=False)


def test_identity_gives_perfect_scores() -> None:
    target, _ = make_pair(9, (2, 3, 3, 32, 32))
    psnr, psnr_clip, ssim, lp = (run(m, (target, target.clone())) for m in all_metrics())
    assert torch.isposinf(psnr.compute()) and torch.isposinf(psnr_clip.compute())
    assert torch.isposinf(psnr.per_frame()).all()
    assert torch.equal(ssim.per_frame(), torch.ones(3, dtype=torch.float64))
    assert float(ssim.compute()) == 1.0
    assert float(lp.compute()) == 0.0


def test_inputs_are_left_untouched() -> None:
    target, preds = (video.double() * 1.2 for video in make_pair(16, (1, 3, 2, 32, 32)))
    before = (target.clone(), preds.clone())
    for metric in all_metrics():
        metric.update(target, preds)
    assert torch.equal(target, before[0]) and torch.equal(preds, before[1])


def test_streaming_batches_equal_one_batch() -> None:
    target, preds = make_pair(10, (5, 3, 3, 32, 32))
    for whole, streamed in zip(all_metrics(), all_metrics(), strict=True):
        run(whole, (target, preds))
        run(streamed, *((target[i : i + 2], preds[i : i + 2]) for i in range(0, 5, 2)))
        torch.testing.assert_close(streamed.per_clip(), whole.per_clip(), rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(streamed.per_frame(), whole.per_frame(), rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(streamed.compute(), whole.compute(), rtol=1e-6, atol=1e-9)
        assert streamed.per_clip().dtype == torch.float64
        assert streamed.per_clip().shape == (5,)


def test_merge_state_equals_one_pass() -> None:
    target, preds = make_pair(11, (4, 3, 3, 32, 32))
    for one_pass, first, second in zip(all_metrics(), all_metrics(), all_metrics(), strict=True):
        run(first, (target[:1], preds[:1]))
        run(second, (target[1:], preds[1:]))
        first.merge_state(second)
        # torchmetrics concatenates the incoming clips first
        run(one_pass, (target[1:], preds[1:]), (target[:1], preds[:1]))
        torch.testing.assert_close(first.per_clip(), one_pass.per_clip(), rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(first.per_frame(), one_pass.per_frame(), rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(first.compute(), one_pass.compute(), rtol=1e-6, atol=1e-9)


def _distributed_worker(rank: int, out_dir: str) -> None:
    target, preds = make_pair(12, (3, 3, 2, 24, 24))
    shard = slice(0, 2) if rank == 0 else slice(2, 3)
    results = {}
    for metric in build_metrics(["psnr", "ssim"]):
        metric.update(target[shard], preds[shard])
        results[metric.name] = (metric.per_clip(), metric.per_frame(), metric.compute())
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")


def test_distributed_sync_equals_one_process(tmp_path: Path) -> None:
    """Two gloo ranks with uneven shards, synced by torchmetrics, equal one process."""
    spawn_gloo(_distributed_worker, 2, tmp_path, str(tmp_path))
    target, preds = make_pair(12, (3, 3, 2, 24, 24))
    for rank in range(2):
        results = torch.load(tmp_path / f"rank{rank}.pt")
        for metric in build_metrics(["psnr", "ssim"]):
            run(metric, (target, preds))
            per_clip, per_frame, value = results[metric.name]
            torch.testing.assert_close(per_clip, metric.per_clip())
            torch.testing.assert_close(per_frame, metric.per_frame())
            torch.testing.assert_close(value, metric.compute())


def test_per_frame_with_clips_of_different_lengths() -> None:
    short_t, short_p = make_pair(13, (2, 3, 2, 24, 24))
    long_t, long_p = make_pair(14, (1, 3, 4, 24, 24))
    metric = run(PSNR(), (short_t, short_p), (long_t, long_p))
    short = official.psnr_frames(unit(short_t), unit(short_p))
    long = official.psnr_frames(unit(long_t), unit(long_p))[0]
    expected = np.concatenate([(short.sum(axis=0) + long[:2]) / 3, long[2:]])
    assert metric.per_frame().shape == (4,)
    np.testing.assert_allclose(metric.per_frame().numpy(), expected, rtol=1e-8)
    np.testing.assert_allclose(
        metric.per_clip().numpy(), [*short.mean(axis=1), long.mean()], rtol=1e-8
    )


def test_empty_metric_reports_no_values() -> None:
    metric = PSNR()
    assert metric.per_clip().shape == (0,)
    assert metric.per_frame().shape == (0,)


# ---------------------------------------------------------------- construction and input errors


def test_build_metrics_names_protocols_and_units() -> None:
    metrics = all_metrics()
    assert [m.name for m in metrics] == ["psnr", "psnr_clip", "ssim", "lpips"]
    assert [m.unit for m in metrics] == ["dB", "dB", "", ""]
    assert [m.higher_is_better for m in metrics] == [True, True, True, False]
    assert metrics[0].protocol == "psnr:range=[0,1];frame-mean"
    assert "clip-mse" in metrics[1].protocol
    assert "gaussian=11x11,sigma=1.5;valid" in metrics[2].protocol
    assert "net=alex" in metrics[3].protocol and "backbone=random" in metrics[3].protocol
    vgg = build_metrics(["lpips"], lpips_net="vgg", lpips_pretrained=False)[0]
    assert "net=vgg" in vgg.protocol


@pytest.mark.parametrize(
    ("names", "message"),
    [(["psnr", "fid"], "unknown metric.*'fid'.*allowed"), (["ssim", "ssim"], "more than once")],
)
def test_build_metrics_rejects_bad_names(names: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_metrics(names)


def test_bad_lpips_net_is_named() -> None:
    with pytest.raises(ValueError, match="unknown LPIPS net 'resnet'.*alex, vgg, squeeze"):
        LPIPS(net="resnet", pretrained=False)


@pytest.mark.parametrize(
    ("target", "preds", "message"),
    [
        (torch.zeros(1, 3, 2, 16, 16), torch.zeros(1, 3, 2, 16, 17), "shapes differ"),
        (torch.zeros(3, 2, 16, 16), torch.zeros(3, 2, 16, 16), r"\[B, C, T, H, W\]"),
        (torch.zeros(1, 3, 2, 16, 16, dtype=torch.uint8),) * 2 + ("float tensor",),
        (torch.zeros(1, 3, 2, 16, 16), torch.full((1, 3, 2, 16, 16), math.nan), "preds has NaN"),
    ],
)
def test_bad_inputs_are_rejected(target: torch.Tensor, preds: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PSNR().update(target, preds)


def test_too_many_frames_name_the_limit() -> None:
    target, preds = make_pair(15, (1, 3, 5, 16, 16))
    with pytest.raises(ValueError, match="max_frames=4"):
        PSNR(max_frames=4).update(target, preds)
