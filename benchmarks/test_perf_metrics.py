"""Quality-metric speed (pytest-benchmark, `nox -s perf`): nothing here is a pass/fail timing.

- throughput of each metric on one 17x3x256x256 clip pair (frames per second);
- the suite's batched PSNR + SSIM against the frame-by-frame numpy/OpenCV loops of the
  official evaluation on the same clip: values must agree, the speed ratio is recorded
  in ``extra_info["speedup_vs_official"]`` and printed.

Run on a GPU machine too: with CUDA present each benchmark also runs there.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from tests import official_reference as official
from vae_bench.metrics import build_metrics

CLIP_SHAPE = (1, 3, 17, 256, 256)
OFFICIAL_ROUNDS = 3
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

pytestmark = pytest.mark.filterwarnings("ignore:.*(pretrained|weight enum).*:UserWarning")


@pytest.fixture(scope="module")
def clip_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """A textured clip and a noisy reconstruction, [-1, 1] float32."""
    gen = torch.Generator().manual_seed(0)
    coarse = torch.rand(CLIP_SHAPE[:3] + (16, 16), generator=gen) * 2 - 1
    target = torch.nn.functional.interpolate(
        coarse.flatten(0, 1), size=CLIP_SHAPE[3:], mode="bicubic", align_corners=False
    ).view(CLIP_SHAPE)
    target = (target + 0.1 * torch.randn(CLIP_SHAPE, generator=gen)).clamp(-1, 1)
    preds = (target + 0.05 * torch.randn(CLIP_SHAPE, generator=gen)).clamp(-1, 1)
    return target, preds


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["psnr", "psnr_clip", "ssim", "lpips"])
def test_metric_throughput(benchmark, clip_pair, name: str, device: str) -> None:
    (metric,) = build_metrics([name], device=device, lpips_pretrained=False)
    target, preds = (video.to(device) for video in clip_pair)

    def one_clip() -> float:
        metric.reset()
        metric.update(target, preds)
        return float(metric.compute())  # float() waits for the device

    value = benchmark.pedantic(one_clip, rounds=5, warmup_rounds=1)
    frames_per_s = CLIP_SHAPE[2] / benchmark.stats.stats.median
    benchmark.extra_info.update(
        {"protocol": metric.protocol, "value": value, "frames_per_s": frames_per_s}
    )
    print(f"\n{name} on {device}: {frames_per_s:.1f} frames/s ({metric.protocol})")


@pytest.mark.parametrize("device", DEVICES)
def test_suite_vs_official_psnr_ssim(benchmark, clip_pair, device: str) -> None:
    target, preds = clip_pair
    # the official scripts receive [0, 1] videos from their loader
    first = ((target + 1) / 2).clamp(0, 1).numpy()
    second = ((preds + 1) / 2).clamp(0, 1).numpy()

    def official_pass() -> tuple[float, float]:
        psnr = float(official.psnr_frames(first, second).mean())
        ssim = float(official.ssim_frames(first, second).mean())
        return psnr, ssim

    official_times = []
    for _ in range(OFFICIAL_ROUNDS):
        start = time.perf_counter()
        official_psnr, official_ssim = official_pass()
        official_times.append(time.perf_counter() - start)
    official_s = statistics.median(official_times)

    metrics = build_metrics(["psnr", "ssim"], device=device)
    on_device = [video.to(device) for video in clip_pair]

    def suite_pass() -> tuple[float, float]:
        for metric in metrics:
            metric.reset()
            metric.update(*on_device)
        psnr, ssim = (float(metric.compute()) for metric in metrics)
        return psnr, ssim

    suite_psnr, suite_ssim = benchmark.pedantic(suite_pass, rounds=10, warmup_rounds=2)
    # the official side starts from float32 [0, 1] frames, hence ~1e-10 relative noise
    assert suite_psnr == pytest.approx(official_psnr, rel=1e-7)
    assert suite_ssim == pytest.approx(official_ssim, abs=1e-5)

    suite_s = benchmark.stats.stats.median
    speedup = official_s / suite_s
    benchmark.extra_info.update(
        {
            "official_median_s": official_s,
            "suite_median_s": suite_s,
            "speedup_vs_official": speedup,
            "psnr": suite_psnr,
            "ssim": suite_ssim,
        }
    )
    print(
        f"\nPSNR+SSIM on one {'x'.join(map(str, CLIP_SHAPE[1:]))} clip ({device}): suite "
        f"{suite_s * 1e3:.1f} ms, official frame loops {official_s * 1e3:.1f} ms, "
        f"speedup {speedup:.1f}x"
    )
