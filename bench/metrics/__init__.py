"""Quality metrics: streaming, mergeable torchmetrics metrics over video batches.

``build_metrics(["psnr", "ssim", "lpips"])`` gives ready metrics whose ``update(target,
preds)`` takes float videos [B, C, T, H, W] in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from bench.metrics.base import MetricUnavailable, VideoMetric
from bench.metrics.lpips import LPIPS
from bench.metrics.psnr import PSNR, ClipPSNR
from bench.metrics.ssim import SSIM

__all__ = [
    "LPIPS",
    "METRIC_NAMES",
    "PSNR",
    "SSIM",
    "ClipPSNR",
    "MetricUnavailable",
    "VideoMetric",
    "build_metrics",
]

METRIC_NAMES = ("psnr", "psnr_clip", "ssim", "lpips")


def build_metrics(
    names: Sequence[str],
    *,
    device: torch.device | str = "cpu",
    lpips_net: str = "alex",
    lpips_pretrained: bool = True,
) -> list[VideoMetric]:
    """Metrics in the order named, on ``device``.

    Raises ValueError for unknown or repeated names and MetricUnavailable when LPIPS
    backbone weights are not on this machine.
    """
    if isinstance(names, str):
        raise TypeError(f"names must be a sequence of metric names, got the string {names!r}")
    factories: dict[str, Callable[[], VideoMetric]] = {
        "psnr": PSNR,
        "psnr_clip": ClipPSNR,
        "ssim": SSIM,
        "lpips": lambda: LPIPS(net=lpips_net, pretrained=lpips_pretrained),
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
