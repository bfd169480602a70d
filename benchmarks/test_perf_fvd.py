"""rFVD speed (pytest-benchmark, `nox -s perf`): nothing here is a pass/fail timing.

- I3D feature extraction throughput (clips per second) with the random-initialised
  ``videogpt-i3d`` network on a small batch of 16-frame 256x256 clips (resize and crop to
  224 included), recorded in ``extra_info["clips_per_s"]``;
- the Fréchet distance between two 400-d feature sets (the eigendecomposition path).

With CUDA present the extraction benchmark also runs there.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vae_bench.fvd import FeatureStats, build_extractor, frechet_distance_stats

BATCH_SHAPE = (2, 3, 16, 256, 256)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_i3d_feature_throughput(benchmark, device: str) -> None:
    extractor = build_extractor("videogpt-i3d", weights="random", device=device)
    gen = torch.Generator().manual_seed(0)
    video = (torch.rand(BATCH_SHAPE, generator=gen) * 2 - 1).to(device)

    def extract() -> torch.Tensor:
        features = extractor(video)
        return features.cpu()  # waits for the device

    features = benchmark.pedantic(extract, rounds=3, warmup_rounds=1)
    clips_per_s = BATCH_SHAPE[0] / benchmark.stats.stats.median
    benchmark.extra_info.update(
        {
            "protocol": extractor.protocol,
            "batch_shape": list(BATCH_SHAPE),
            "clips_per_s": clips_per_s,
            "feature_shape": list(features.shape),
        }
    )
    print(f"\nI3D features on {device}: {clips_per_s:.2f} clips/s ({BATCH_SHAPE})")


def test_frechet_distance_400d(benchmark) -> None:
    rng = np.random.default_rng(0)
    real = FeatureStats.from_features(rng.standard_normal((2048, 400)))
    fake = FeatureStats.from_features(rng.standard_normal((2048, 400)) * 1.1 + 0.1)
    value = benchmark.pedantic(frechet_distance_stats, args=(real, fake), rounds=5)
    benchmark.extra_info.update({"value": value, "n": real.n, "dim": real.dim})
