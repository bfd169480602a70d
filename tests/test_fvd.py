"""rFVD: Fréchet distance against closed forms and scipy, streaming statistics, the two
protocols against the official per-batch formula, preprocessing against torchvision, the
I3D's shapes and weight loading.

The metric-level tests use a small convolutional feature network (6-d features at 16x16
pixels) so that they run in milliseconds; the I3D itself runs one 224x224 forward.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torchvision.transforms.functional as TF
from torch import Tensor, nn

from tests.distributed_helpers import spawn_gloo
from vae_bench.fvd import (
    CACHE_ENV,
    MIN_FRAMES,
    MIN_SIZE,
    RFVD,
    FeatureExtractor,
    FeatureStats,
    Preprocess,
    SmallSampleWarning,
    StatsCache,
    build_extractor,
    cache_dir,
    frechet_distance,
    frechet_distance_stats,
    random_i3d,
    sqrtm_psd,
    stats_key,
    trace_sqrt_product,
)
from vae_bench.fvd.i3d import same_padding, trunk_shape
from vae_bench.metrics import MetricUnavailable

# ---------------------------------------------------------------- helpers


def spd(dim: int, seed: int, floor: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((dim, dim))
    return a @ a.T / dim + floor * np.eye(dim)


def tiny_extractor(dim: int = 6, seed: int = 0) -> FeatureExtractor:
    """A real FeatureExtractor around a small seeded conv net (16x16 input, any length)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv3d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(8, dim),
    )
    return FeatureExtractor(
        "tiny", net, "random", preprocess=Preprocess(size=16), feature_dim=dim, min_frames=1
    )


def clips(n: int, seed: int, frames: int = 3, size: int = 20) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    scale = torch.rand(n, 1, 1, 1, 1, generator=gen)
    return (torch.rand(n, 3, frames, size, size, generator=gen) * 2 - 1) * scale


def reconstruct(video: Tensor, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (0.8 * video + 0.1 * torch.randn(video.shape, generator=gen)).clamp(-1, 1)


def official_batch_fvd(real: np.ndarray, fake: np.ndarray) -> float:
    """The official scripts' per-batch formula, written with numpy/scipy directly."""
    if real.shape[0] == 1:
        return float(np.square(real - fake).sum())
    s_fake, s_real = np.cov(fake, rowvar=False), np.cov(real, rowvar=False)
    root = scipy.linalg.sqrtm(s_fake @ s_real)
    mean = np.square(fake.mean(0) - real.mean(0)).sum()
    return float(np.real(mean + np.trace(s_fake + s_real - 2 * root)))


def scipy_fd(real: np.ndarray, fake: np.ndarray) -> float:
    """Whole-set FVD with the StyleGAN-V convention (covariance divisor n), via scipy."""
    s1, s2 = np.cov(real, rowvar=False, bias=True), np.cov(fake, rowvar=False, bias=True)
    root = scipy.linalg.sqrtm(s1 @ s2)
    mean = np.square(real.mean(0) - fake.mean(0)).sum()
    return float(np.real(mean + np.trace(s1 + s2 - 2 * root)))


# ---------------------------------------------------------------- Fréchet distance


def test_identical_feature_sets_give_zero() -> None:
    feats = np.random.default_rng(0).standard_normal((200, 12))
    stats = FeatureStats.from_features(feats)
    assert frechet_distance_stats(stats, stats) == pytest.approx(0.0, abs=1e-10)


def test_diagonal_covariances_match_closed_form() -> None:
    # Commuting covariances: FD = |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2, also after
    # a shared rotation (S = Q diag Q^T).
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.1, 4.0, 8), rng.uniform(0.1, 4.0, 8)
    mu1, mu2 = rng.standard_normal(8), rng.standard_normal(8)
    expected = np.square(mu1 - mu2).sum() + np.square(np.sqrt(a) - np.sqrt(b)).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    rotated = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert rotated == pytest.approx(expected, rel=1e-10)


def test_scalar_gaussians_closed_form() -> None:
    # N(0, 4) vs N(3, 1): 9 + (2 - 1)^2 = 10.
    assert frechet_distance([0.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(10.0)


@pytest.mark.parametrize("dim", [5, 100])
def test_sqrtm_matches_scipy_on_well_conditioned_spd(dim: int) -> None:
    s1, s2 = spd(dim, seed=dim), spd(dim, seed=dim + 1, floor=0.5)
    reference = np.real(scipy.linalg.sqrtm(s1))
    ours = sqrtm_psd(s1)
    assert np.abs(ours - reference).max() <= 1e-6 * np.abs(reference).max()
    np.testing.assert_allclose(ours @ ours, s1, rtol=0, atol=1e-9 * np.abs(s1).max())
    product_root = np.trace(np.real(scipy.linalg.sqrtm(s1 @ s2)))
    assert trace_sqrt_product(s1, s2) == pytest.approx(product_root, rel=1e-6)


def test_fd_matches_scipy_reference_on_features() -> None:
    rng = np.random.default_rng(2)
    real = rng.standard_normal((300, 10))
    fake = 0.7 * real + rng.standard_normal((300, 10)) * 0.5 + 0.3
    ours = frechet_distance_stats(
        FeatureStats.from_features(real), FeatureStats.from_features(fake)
    )
    assert ours == pytest.approx(scipy_fd(real, fake), rel=1e-6)


def test_rank_deficient_covariances_are_finite_and_non_negative() -> None:
    rng = np.random.default_rng(3)
    for n, dim in [(2, 50), (30, 400)]:
        real = rng.standard_normal((n, dim)) * 3.0 + 10.0
        fake = real + 1e-6 * rng.standard_normal((n, dim))
        a, b = FeatureStats.from_features(real), FeatureStats.from_features(fake)
        # n <= dim clips: the covariances have rank n - 1 < dim.
        for value in (frechet_distance_stats(a, b), frechet_distance_stats(b, a)):
            assert math.isfinite(value) and value >= 0.0
        assert frechet_distance_stats(a, a) == pytest.approx(
            0.0, abs=1e-8 * np.trace(a.covariance())
        )
    zero = np.zeros((4, 4))
    assert frechet_distance(np.ones(4), zero, np.zeros(4), zero) == pytest.approx(4.0)
    # A PSD matrix with rounding-level negative eigenvalues.
    v = rng.standard_normal((6, 2))
    noisy = v @ v.T - 1e-13 * np.eye(6)
    assert np.isfinite(sqrtm_psd(noisy)).all()
    assert frechet_distance(np.zeros(6), noisy, np.zeros(6), noisy) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("n", [2, 8, 40])
def test_rank_deficient_trace_matches_the_small_gram_form(n: int) -> None:
    # With S1 = A^T A and S2 = B^T B from n centred samples, the non-zero eigenvalues of
    # S1 S2 are those of the n x n matrix A B^T B A^T: an exact reference that needs no
    # 400 x 400 square root. Rounding noise in the ~400 null directions must not leak in.
    rng = np.random.default_rng(n)
    real = rng.standard_normal((n, 400)) * 2 + 1
    fake = 0.9 * real + 0.3 * rng.standard_normal((n, 400))
    a = (fake - fake.mean(0)) / math.sqrt(n - 1)
    b = (real - real.mean(0)) / math.sqrt(n - 1)
    small = np.linalg.eigvals(a @ b.T @ b @ a.T).real
    expected = np.sqrt(np.clip(small, 0, None)).sum()
    ours = trace_sqrt_product(np.cov(fake, rowvar=False), np.cov(real, rowvar=False))
    assert ours == pytest.approx(expected, rel=1e-8)


def test_fd_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# ---------------------------------------------------------------- streaming statistics


def test_feature_stats_moments_match_numpy() -> None:
    feats = np.random.default_rng(4).standard_normal((40, 7)) + 5.0
    stats = FeatureStats.from_features(feats)
    np.testing.assert_allclose(stats.mean(), feats.mean(0), rtol=1e-12)
    np.testing.assert_allclose(
        stats.covariance(), np.cov(feats, rowvar=False, bias=True), atol=1e-12
    )
    np.testing.assert_allclose(stats.covariance(ddof=1), np.cov(feats, rowvar=False), atol=1e-12)


def test_feature_stats_shards_merge_to_one_pass() -> None:
    feats = np.random.default_rng(5).standard_normal((25, 4))
    merged = FeatureStats.zeros(4)
    for shard in np.array_split(feats, [3, 10, 11]):
        merged = merged + FeatureStats.from_features(shard)
    whole = FeatureStats.from_features(feats)
    assert merged.n == whole.n == 25
    np.testing.assert_allclose(merged.total, whole.total, rtol=1e-13)
    np.testing.assert_allclose(merged.outer, whole.outer, rtol=1e-13)
    with pytest.raises(ValueError, match="merge"):
        merged + FeatureStats.zeros(5)


def test_stats_cache_round_trip_and_key(tmp_path: Path) -> None:
    stats = FeatureStats.from_features(np.random.default_rng(6).standard_normal((9, 3)))
    cache = StatsCache(tmp_path)
    assert cache.load("ucf;256px", "rfvd:x", "videogpt-i3d") is None
    path = cache.save("ucf;256px", "rfvd:x", "videogpt-i3d", stats)
    assert path.name.startswith("ucf-") and path.suffix == ".npz"
    loaded = cache.load("ucf;256px", "rfvd:x", "videogpt-i3d")
    assert loaded is not None and loaded.n == 9
    np.testing.assert_array_equal(loaded.outer, stats.outer)
    keys = {stats_key(*parts) for parts in [("a", "p", "e"), ("a", "p", "f"), ("b", "p", "e")]}
    assert len(keys) == 3
    # A file whose recorded key differs is refused, not reused.
    other = cache.path("ucf;256px", "rfvd:y", "videogpt-i3d")
    path.rename(other)
    with pytest.raises(ValueError, match="cached statistics are for"):
        cache.load("ucf;256px", "rfvd:y", "videogpt-i3d")


def test_cache_dir_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert cache_dir() == tmp_path / "fvd"
    monkeypatch.delenv(CACHE_ENV)
    assert cache_dir() == Path.home() / ".cache" / "vae-bench" / "fvd"


# ---------------------------------------------------------------- the metric


def features_of(extractor: FeatureExtractor, video: Tensor) -> np.ndarray:
    return extractor(video).numpy()


def test_rfvd_matches_scipy_on_extracted_features() -> None:
    extractor = tiny_extractor()
    target = clips(24, seed=0)
    preds = reconstruct(target, seed=1)
    metric = RFVD(extractor)
    for start in range(0, 24, 5):
        metric.update(target[start : start + 5], preds[start : start + 5])
    expected = scipy_fd(features_of(extractor, target), features_of(extractor, preds))
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-6)
    assert metric.n == metric.n_real == 24
    assert metric.protocol.startswith("rfvd:extractor=tiny;weights=random;")


def test_shard_states_merge_to_one_pass() -> None:
    extractor = tiny_extractor()
    target, preds = clips(20, seed=2), reconstruct(clips(20, seed=2), seed=3)
    whole = RFVD(extractor)
    whole.update(target, preds)
    shard_a, shard_b = RFVD(extractor), RFVD(extractor)
    shard_a.update(target[:7], preds[:7])
    shard_b.update(target[7:12], preds[7:12])
    shard_b.update(target[12:], preds[12:])
    shard_a.merge_state(shard_b)
    assert shard_a.n == 20
    for name in ("real_total", "real_outer", "fake_total", "fake_outer"):
        torch.testing.assert_close(
            getattr(shard_a, name), getattr(whole, name), rtol=1e-12, atol=1e-12
        )
    assert float(shard_a.compute()) == pytest.approx(float(whole.compute()), rel=1e-10)


def test_precomputed_real_stats_give_the_same_value() -> None:
    extractor = tiny_extractor()
    target, preds = clips(16, seed=4), reconstruct(clips(16, seed=4), seed=5)
    both = RFVD(extractor)
    both.update(target, preds)
    cached = RFVD(extractor, real_stats=both.real_feature_stats())
    cached.update(target, preds)
    assert cached.real_outer.abs().sum() == 0  # the originals were not extracted again
    assert float(cached.compute()) == pytest.approx(float(both.compute()), rel=1e-12)
    with pytest.raises(ValueError, match="legacy"):
        RFVD(extractor, legacy_batch=True, real_stats=both.real_feature_stats())
    with pytest.raises(ValueError, match="6-d"):
        RFVD(extractor, real_stats=FeatureStats.from_features(np.ones((2, 3))))


def test_legacy_batch_is_the_mean_of_official_per_batch_values() -> None:
    extractor = tiny_extractor()
    target, preds = clips(24, seed=6), reconstruct(clips(24, seed=6), seed=7)
    legacy = RFVD(extractor, legacy_batch=True)
    expected = []
    for start in range(0, 24, 8):
        legacy.update(target[start : start + 8], preds[start : start + 8])
        expected.append(
            official_batch_fvd(
                features_of(extractor, target[start : start + 8]),
                features_of(extractor, preds[start : start + 8]),
            )
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        assert float(legacy.compute()) == pytest.approx(float(np.mean(expected)), rel=1e-6)
    assert legacy.protocol.startswith("rfvd-legacy-batch:") and "cov=1/(n-1)" in legacy.protocol


def test_legacy_batch_of_one_bounds_the_whole_set_value() -> None:
    # With one clip per batch the official script scores |f_real - f_fake|^2; its mean is
    # E|r - f|^2 under the clips' own pairing, never below the Fréchet (optimal-coupling)
    # distance of the whole sets. The whole-set value ignores batching; legacy does not.
    extractor = tiny_extractor()
    target, preds = clips(12, seed=8), reconstruct(clips(12, seed=8), seed=9)
    real, fake = features_of(extractor, target), features_of(extractor, preds)
    per_clip, whole, by_four = (
        RFVD(extractor, legacy_batch=True),
        RFVD(extractor),
        RFVD(extractor, legacy_batch=True),
    )
    for i in range(12):
        per_clip.update(target[i : i + 1], preds[i : i + 1])
        whole.update(target[i : i + 1], preds[i : i + 1])
    for start in range(0, 12, 4):
        by_four.update(target[start : start + 4], preds[start : start + 4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        legacy_value, whole_value = float(per_clip.compute()), float(whole.compute())
        by_four_value = float(by_four.compute())
    assert legacy_value == pytest.approx(float(np.square(real - fake).sum(1).mean()), rel=1e-5)
    assert legacy_value >= whole_value > 0
    assert whole_value == pytest.approx(scipy_fd(real, fake), rel=1e-6)
    assert abs(by_four_value - legacy_value) > 1e-3 * legacy_value


def test_small_sample_warning_and_n() -> None:
    metric = RFVD(tiny_extractor(dim=6))
    target = clips(4, seed=10)
    metric.update(target, reconstruct(target, seed=11))
    with pytest.warns(SmallSampleWarning, match="4 clip"):
        value = float(metric.compute())
    assert math.isfinite(value) and value >= 0 and metric.n == 4
    big = RFVD(tiny_extractor(dim=6))
    target = clips(10, seed=12)
    big.update(target, reconstruct(target, seed=13))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallSampleWarning)
        big.compute()


def test_bootstrap_ci_is_seeded_and_brackets_the_spread() -> None:
    extractor = tiny_extractor()
    target, preds = clips(30, seed=14), reconstruct(clips(30, seed=14), seed=15)
    metric = RFVD(extractor, keep_features=True)
    metric.update(target, preds)
    low, high = metric.bootstrap_ci(resamples=60, seed=1)
    assert (low, high) == metric.bootstrap_ci(resamples=60, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        value = float(metric.compute())
    assert 0 <= low < value < high  # the interval is around the value it qualifies
    assert (low, high) != metric.bootstrap_ci(resamples=60, seed=2)
    with pytest.raises(ValueError, match="keep_features"):
        plain = RFVD(extractor)
        plain.update(target, preds)
        plain.bootstrap_ci()
    legacy = RFVD(extractor, legacy_batch=True)
    for start in range(0, 30, 10):
        legacy.update(target[start : start + 10], preds[start : start + 10])
    values = legacy.batch_values
    low, high = legacy.bootstrap_ci(resamples=50)
    assert min(float(v) for v in values) <= low <= high <= max(float(v) for v in values)


def test_update_rejects_bad_input() -> None:
    metric = RFVD(tiny_extractor())
    video = clips(2, seed=16)
    with pytest.raises(ValueError, match="shapes differ"):
        metric.update(video, video[:1])
    with pytest.raises(ValueError, match="NaN"):
        metric.update(video, torch.full_like(video, float("nan")))
    with pytest.raises(ValueError, match=r"\[B, C, T, H, W\]"):
        metric.update(video[0], video[0])
    with pytest.raises(ValueError, match="no clips"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchmetrics: compute before update
        RFVD(tiny_extractor()).compute()
    i3d_sized = build_extractor("videogpt-i3d", "random")
    short = torch.zeros(1, 3, MIN_FRAMES - 1, 8, 8)
    with pytest.raises(ValueError, match=f"at least {MIN_FRAMES} frames"):
        RFVD(i3d_sized).update(short, short)


# ---------------------------------------------------------------- preprocessing


def test_preprocess_short_side_resize_and_center_crop_match_torchvision() -> None:
    gen = torch.Generator().manual_seed(18)
    video = torch.rand(2, 3, 2, 112, 160, generator=gen) * 2 - 1
    out = Preprocess(quantize=False)(video)
    assert out.shape == (2, 3, 2, 224, 224)
    frames = ((video + 1) / 2).permute(0, 2, 1, 3, 4).reshape(4, 3, 112, 160)
    resized = TF.resize(frames, [224, 320], antialias=False)  # bilinear, short side 224
    expected = TF.center_crop(resized, [224, 224]) * 2 - 1
    torch.testing.assert_close(
        out.permute(0, 2, 1, 3, 4).reshape(4, 3, 224, 224), expected, atol=1e-6, rtol=0
    )
    stretched = Preprocess(resize="stretch", quantize=False)(video)
    expected = TF.resize(frames, [224, 224], antialias=False) * 2 - 1
    torch.testing.assert_close(
        stretched.permute(0, 2, 1, 3, 4).reshape(4, 3, 224, 224), expected, atol=1e-6, rtol=0
    )


def test_preprocess_range_quantisation_and_channels() -> None:
    video = torch.linspace(-1.3, 1.3, 2 * 224 * 224).reshape(1, 1, 2, 224, 224)
    out = Preprocess()(video)
    assert out.shape == (1, 3, 2, 224, 224)
    assert out.min() == -1.0 and out.max() == 1.0  # out-of-range values clamped
    levels = (out + 1) / 2 * 255
    torch.testing.assert_close(levels, levels.round(), atol=1e-4, rtol=0)  # 8-bit frames
    assert torch.equal(out[:, 0], out[:, 2])  # greyscale repeated
    assert Preprocess().target_size(256, 341) == (224, math.ceil(341 * 224 / 256))
    assert Preprocess().label == "resize=224-bilinear-short-side-center-crop;input=8bit"
    with pytest.raises(ValueError, match="2 channels"):
        Preprocess()(torch.zeros(1, 2, 1, 8, 8))
    with pytest.raises(ValueError, match="resize must be one of"):
        Preprocess(resize="area")  # type: ignore[arg-type]


# ---------------------------------------------------------------- the I3D network


def test_same_padding_gives_ceil_output_sizes() -> None:
    for size in range(1, 20):
        for kernel, stride in [(7, 2), (3, 1), (3, 2), (2, 2), (1, 1)]:
            pad = same_padding((size,), (kernel,), (stride,))
            out = (size + sum(pad) - kernel) // stride + 1
            assert out == math.ceil(size / stride), (size, kernel, stride)
            assert pad[0] <= pad[1] <= pad[0] + 1  # the extra pixel goes at the end


def test_i3d_trunk_shape_at_small_size() -> None:
    net = random_i3d(seed=0)
    with torch.no_grad():
        out = net.trunk(torch.zeros(1, 3, 9, 64, 64))
    assert out.shape == (1, 1024, *trunk_shape(9, 64, 64)) == (1, 1024, 2, 2, 2)
    with pytest.raises(ValueError, match=f"at least {MIN_FRAMES} frames and {MIN_SIZE}x"):
        net(torch.zeros(1, 3, MIN_FRAMES - 1, 224, 224))
    with pytest.raises(ValueError, match=f"{MIN_SIZE}x{MIN_SIZE}"):
        net(torch.zeros(1, 3, 16, MIN_SIZE - 1, 224))
    assert trunk_shape(MIN_FRAMES, MIN_SIZE, MIN_SIZE) == (2, 7, 7)
    assert trunk_shape(MIN_FRAMES - 1, MIN_SIZE - 1, MIN_SIZE) == (1, 6, 7)


@pytest.mark.slow
def test_random_i3d_extractor_gives_400_features_from_a_small_clip() -> None:
    # The one 224x224 forward: a 64x80 clip is resized and cropped, then I3D gives [B, 400].
    extractor = build_extractor("videogpt-i3d", weights="random")
    video = torch.rand(1, 3, MIN_FRAMES, 64, 80, generator=torch.Generator().manual_seed(19))
    video = video * 2 - 1
    features = extractor(video)
    assert features.shape == (1, 400) and features.dtype == torch.float64
    assert torch.isfinite(features).all() and features.std() > 0


def test_random_i3d_is_seeded_and_keeps_global_rng() -> None:
    state = torch.random.get_rng_state()
    a, b, c = random_i3d(0), random_i3d(0), random_i3d(1)
    assert torch.equal(torch.random.get_rng_state(), state)
    weight = "Mixed_4c.b1b.conv3d.weight"
    assert torch.equal(a.state_dict()[weight], b.state_dict()[weight])
    assert not torch.equal(a.state_dict()[weight], c.state_dict()[weight])
    assert sum(p.numel() for p in a.parameters()) == 12_697_264  # pytorch-i3d InceptionI3d(400)


# ---------------------------------------------------------------- weights


def test_missing_weights_name_the_file_and_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    for name, filename in [
        ("styleganv-i3d", "i3d_torchscript.pt"),
        ("videogpt-i3d", "i3d_pretrained_400.pt"),
    ]:
        with pytest.raises(MetricUnavailable) as info:
            build_extractor(name)
        message = str(info.value)
        assert filename in message and str(tmp_path / "cache" / "fvd") in message
        assert "`quality.fvd_weights: <path to the file>`" in message
        with pytest.raises(MetricUnavailable, match=filename):
            RFVD(name, weights=tmp_path / "elsewhere" / filename)
    with pytest.raises(ValueError, match="allowed: styleganv-i3d, videogpt-i3d"):
        build_extractor("i3d")


def test_videogpt_weights_load_strictly_and_are_hashed(tmp_path: Path) -> None:
    state = random_i3d(seed=3).state_dict()
    path = tmp_path / "i3d_pretrained_400.pt"
    torch.save(state, path)
    extractor = build_extractor("videogpt-i3d", weights=tmp_path)  # a directory works too
    assert extractor.weights_label == hashlib.sha256(path.read_bytes()).hexdigest()
    assert f"weights={extractor.weights_label}" in extractor.protocol
    loaded = extractor.net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    broken = dict(state)
    broken.pop("logits.conv3d.bias")
    broken["module.extra"] = torch.zeros(1)
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match=r"logits\.conv3d\.bias.*module\.extra"):
        build_extractor("videogpt-i3d", weights=tmp_path / "broken.pt")


class _ScriptedI3dStandIn(nn.Module):
    """Has the TorchScript I3D's call signature; refuses the flags the protocol never uses."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 400)

    def forward(
        self, x: Tensor, rescale: bool = True, resize: bool = True, return_features: bool = False
    ) -> Tensor:
        if rescale or resize or not return_features:
            raise RuntimeError("expected rescale=False, resize=False, return_features=True")
        if x.shape[-1] != 224 or x.shape[-2] != 224:
            raise RuntimeError("expected 224x224 input")
        return self.head(x.mean(dim=(2, 3, 4)))


def test_styleganv_torchscript_is_loaded_and_called_with_the_protocol_flags(
    tmp_path: Path,
) -> None:
    path = tmp_path / "i3d_torchscript.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; the file is not
        torch.jit.save(torch.jit.script(_ScriptedI3dStandIn()), str(path))
        extractor = build_extractor("styleganv-i3d", weights=path)
    video = clips(2, seed=20, frames=MIN_FRAMES, size=32)
    features = extractor(video)
    assert features.shape == (2, 400)
    assert extractor.weights_label == hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "i3d_torchscript.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="TorchScript"):
        build_extractor("styleganv-i3d", weights=tmp_path / "junk")


def _rfvd_results(batches: list[slice]) -> dict:
    """Whole-set and legacy rFVD, sample count and bootstrap interval over ``batches`` of
    one fixed clip set (under a process group: this rank's share, synced on compute)."""
    extractor = tiny_extractor()
    target, preds = clips(9, seed=21), reconstruct(clips(9, seed=21), seed=22)
    whole = RFVD(extractor, keep_features=True)
    legacy = RFVD(extractor, legacy_batch=True)
    for batch in batches:
        whole.update(target[batch], preds[batch])
        legacy.update(target[batch], preds[batch])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        return {
            "whole": float(whole.compute()),
            "legacy": float(legacy.compute()),
            "n": whole.n,
            "ci": whole.bootstrap_ci(resamples=20, seed=3),
        }


def _distributed_worker(rank: int, out_dir: str) -> None:
    batches = [slice(0, 4), slice(4, 6)] if rank == 0 else [slice(6, 9)]
    torch.save(_rfvd_results(batches), Path(out_dir) / f"rank{rank}.pt")


def test_distributed_sync_equals_one_process(tmp_path: Path) -> None:
    """Two gloo ranks with uneven shards, synced by torchmetrics, equal one process."""
    spawn_gloo(_distributed_worker, 2, tmp_path, str(tmp_path))
    # torchmetrics gathers rank 0's states first: the same clip order as one pass.
    expected = _rfvd_results([slice(0, 4), slice(4, 6), slice(6, 9)])
    for rank in range(2):
        results = torch.load(tmp_path / f"rank{rank}.pt")
        assert results["n"] == 9
        assert results["whole"] == pytest.approx(expected["whole"], rel=1e-9)
        assert results["legacy"] == pytest.approx(expected["legacy"], rel=1e-9)
        assert results["ci"] == pytest.approx(expected["ci"], rel=1e-9)
