"""Quality metrics: streaming, mergeable torchmetrics metrics over video batches.

``build_metrics(["psnr", "ssim", "lpips"])`` gives ready metrics whose ``update(target,
preds)`` takes float videos [B, C, T, H, W] in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from vae_bench.metrics.base import MetricUnavailable, VideoMetric
from vae_bench.metrics.flicker import Flicker
from vae_bench.metrics.lpips import LPIPS
from vae_bench.metrics.psnr import PSNR, ClipPSNR
from vae_bench.metrics.ssim import SSIM

__all__ = [
    "Flicker",
    "LPIPS",
    "METRIC_NAMES",
    "PSNR",
    "SSIM",
    "ClipPSNR",
    "MetricUnavailable",
    "VideoMetric",
    "CONVENTIONS",
    "build_metrics",
]

METRIC_NAMES = ("psnr", "psnr_clip", "ssim", "lpips", "flicker")

#: How metrics treat the cases where published evaluations differ.
#: ``suite``: identical frames give PSNR +inf (kept, so a perfect reconstruction is visible);
#: LPIPS is the package's spatial average. ``wf-vae-official``: the WF-VAE evaluation
#: scripts' choices: an infinite PSNR is reported as 100 dB, and LPIPS averages the
#: bilinearly upsampled distance map.
CONVENTIONS = ("suite", "wf-vae-official")
OFFICIAL_INF_PSNR = 100.0


def build_metrics(
    names: Sequence[str],
    *,
    device: torch.device | str = "cpu",
    lpips_net: str = "alex",
    lpips_pretrained: bool = True,
    convention: str = "suite",
) -> list[VideoMetric]:
    """Metrics in the order named, on ``device``, under one of :data:`CONVENTIONS`.

    Raises ValueError for unknown or repeated names or an unknown convention, and
    MetricUnavailable when LPIPS backbone weights are not on this machine.
    """
    if isinstance(names, str):
        raise TypeError(f"names must be a sequence of metric names, got the string {names!r}")
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; allowed: {', '.join(CONVENTIONS)}")
    official = convention == "wf-vae-official"
    inf_value = OFFICIAL_INF_PSNR if official else None
    factories: dict[str, Callable[[], VideoMetric]] = {
        "psnr": lambda: PSNR(inf_value=inf_value),
        "psnr_clip": lambda: ClipPSNR(inf_value=inf_value),
        "ssim": SSIM,
        "lpips": lambda: LPIPS(net=lpips_net, pretrained=lpips_pretrained, spatial_map=official),
        "flicker": Flicker,
    }
    unknown = [name for name in names if name not in factories]
    if unknown:
        raise ValueError(
            f"unknown metric(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(METRIC_NAMES)}"
        )
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        raise ValueError(f"metric(s) named more than once: {', '.join(repeated)}")
    return [factories[name]().to(torch.device(device)) for name in names]
