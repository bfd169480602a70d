"""rFID against an independent Fréchet distance of the same features (numpy + scipy)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from vae_bench.metrics.base import MetricUnavailable
from vae_bench.metrics.rfid import RFID, WEIGHTS_FILE, find_weights, to_uint8_frames


class PoolProject(nn.Module):
    """uint8 frames -> 6 features: 4x4 average-pooled pixels times a fixed projection."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("weight", torch.randn(48, 6, generator=generator,
                                                   dtype=torch.float64))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool2d(images.double() / 255, 4).flatten(1)
        return pooled @ self.weight


def reference_fid(real: np.ndarray, fake: np.ndarray) -> float:
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def test_rfid_equals_the_frechet_distance_of_all_frames():
    rng = torch.Generator().manual_seed(1)
    target = torch.rand(5, 3, 3, 16, 16, generator=rng) * 2 - 1
    preds = (target + 0.3 * torch.randn(target.shape, generator=rng)).clamp(-1, 1)
    metric = RFID(feature=PoolProject())
    metric.update(target[:2], preds[:2])  # batches of different sizes: one set
    metric.update(target[2:], preds[2:])
    net = PoolProject()
    real = net(to_uint8_frames(target)).numpy()
    fake = net(to_uint8_frames(preds)).numpy()
    assert real.shape == (15, 6)  # every frame of every clip
    assert float(metric.compute()) == pytest.approx(reference_fid(real, fake), rel=1e-6)
    assert metric.n == 5
    assert "rfid:extractor=PoolProject" in metric.protocol


def test_frames_are_quantised_as_saved_images():
    video = torch.tensor([-1.0, -0.5, 0.0, 0.999, 1.0]).view(1, 1, 5, 1, 1).expand(1, 3, 5, 1, 1)
    frames = to_uint8_frames(video)
    assert frames.shape == (5, 3, 1, 1)
    assert frames[:, 0, 0, 0].tolist() == [0, 64, 128, 255, 255]  # round((x + 1) * 127.5)


def test_identical_sets_score_zero_and_merge_like_one_pass():
    rng = torch.Generator().manual_seed(2)
    video = torch.rand(6, 3, 2, 8, 8, generator=rng) * 2 - 1
    same = RFID(feature=PoolProject())
    same.update(video, video)
    assert float(same.compute()) == pytest.approx(0.0, abs=1e-6)
    noisy = (video + 0.2).clamp(-1, 1)
    whole, left, right = (RFID(feature=PoolProject()) for _ in range(3))
    whole.update(video, noisy)
    left.update(video[:4], noisy[:4])
    right.update(video[4:], noisy[4:])
    left.merge_state(right)
    assert float(left.compute()) == pytest.approx(float(whole.compute()), rel=1e-9)
    assert left.n == 6


def test_missing_inception_weights_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(MetricUnavailable, match=rf"{WEIGHTS_FILE}.*not found at "
                       rf"{tmp_path}/cache/fid/{WEIGHTS_FILE} or {tmp_path}/hub/checkpoints"):
        RFID()
    path = tmp_path / "hub" / "checkpoints" / WEIGHTS_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    assert find_weights() == path


@pytest.mark.slow
def test_inception_network_loads_a_weights_file(tmp_path, monkeypatch):
    """The real extractor path: torch-fidelity's Inception from a local file (here one of
    random weights in the release's layout), 2048 features per frame."""
    from torch_fidelity import feature_extractor_inceptionv3 as module

    with monkeypatch.context() as patch:  # build one network without any weights file
        patch.setattr(module.torch, "load", lambda *args, **kwargs: None)
        patch.setattr(module.FeatureExtractorInceptionV3, "load_state_dict",
                      lambda self, state: None)
        net = module.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                 feature_extractor_weights_path="unused")
    path = tmp_path / WEIGHTS_FILE
    torch.save(net.state_dict(), path)
    metric = RFID(weights=path)
    video = torch.rand(2, 3, 1, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    metric.update(video, video.flip(-1))
    assert metric.real_features_num_samples == 2 and metric.real_features_sum.shape == (2048,)
    assert np.isfinite(float(metric.compute()))
    assert "torch-fidelity-inception-v3-2015-12-05" in metric.protocol


def test_sweep_on_an_image_folder_scores_rfid(tmp_path, monkeypatch):
    """rfid in a sweep: one set-level row per quality cell, equal to the Fréchet distance
    of the originals' and the reconstructions' features computed here."""
    import pandas as pd
    import yaml
    from PIL import Image

    import vae_bench.metrics.rfid as rfid_module
    from vae_bench.adapters import get_preset
    from vae_bench.adapters.base import InferenceMode
    from vae_bench.data import load_datasets, to_model_range
    from vae_bench.runner import run_sweep
    from vae_bench.sweep import parse_sweep

    rng = np.random.default_rng(0)
    photos = tmp_path / "photos"  # apart from the run's folder, whose samples are PNGs too
    photos.mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
            photos / f"{i}.png")
    (tmp_path / "datasets.yaml").write_text(yaml.safe_dump(
        {"photos": {"kind": "folder", "root": "photos", "media": "images"}}))
    weights = tmp_path / WEIGHTS_FILE
    weights.write_bytes(b"")  # found by planning; the features come from PoolProject
    monkeypatch.setattr(rfid_module, "RFID", lambda weights=None: RFID(feature=PoolProject()))
    sweep = parse_sweep({
        "name": "img", "device": "cpu", "models": ["identity", "bicubic-f8"],
        "datasets": ["photos"], "datasets_file": str(tmp_path / "datasets.yaml"),
        "resolutions": [16], "frames": [1],
        "quality": {"metrics": ["psnr", "rfid"], "fid_weights": str(weights), "batch_size": 3},
        "efficiency": {"warmup": 0, "repeats": 1},
    }, "img.yaml")
    results = pd.read_csv(run_sweep(sweep, tmp_path / "runs", plots=False) / "results.csv")
    rows = results[results.metric == "rfid"].set_index("model")
    assert rows.loc["identity", "value"] == pytest.approx(0.0, abs=1e-6)
    assert (rows.n == 4).all() and (rows.status == "ok").all()
    assert rows.loc["bicubic-f8", "protocol"].endswith("rfid:extractor=PoolProject;"
                                                       "features=pool;input=uint8-frames;"
                                                       "resize=299-bilinear(extractor);"
                                                       "frames=all;set=whole;cov=1/(n-1)")
    dataset = load_datasets(tmp_path / "datasets.yaml")["photos"]
    target = to_model_range(torch.stack([c.video for c in dataset.iter_clips(1, 16, 16)]))
    recon = get_preset("bicubic-f8").create("random").reconstruct(target,
                                                                 InferenceMode.parse("full"))
    net = PoolProject()
    expected = reference_fid(net(to_uint8_frames(target)).numpy(),
                             net(to_uint8_frames(recon.float())).numpy())
    assert rows.loc["bicubic-f8", "value"] == pytest.approx(expected, rel=1e-5)
