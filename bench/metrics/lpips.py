"""LPIPS from the `lpips` package, per frame then mean over frames and clips.

Inputs stay in [-1, 1] (clamped), the range the package expects; grayscale clips are
repeated to three channels as the official WF-VAE script does. The package's linear
heads ship inside the package; the ImageNet backbone comes from torchvision's cache.
Building the metric never downloads it (``vae-bench fetch lpips-alex`` or a sweep's
``lpips_missing: fetch`` does): a missing file raises ``MetricUnavailable`` naming the
file, the folder it belongs in and the fetch command.

``pretrained=False`` keeps the shipped linear heads on a randomly initialised backbone
(seeded, so reproducible), recorded as ``backbone=random`` in the protocol: useful for
tests and pipelines, not comparable with published LPIPS numbers.

The official WF-VAE script builds LPIPS with ``spatial=True`` and averages the upsampled
distance map; ``spatial_map=True`` reproduces that (it differs from the package's
default spatial average by the bilinear upsampling's border weighting).
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vae_bench.metrics.base import MetricUnavailable, VideoMetric

NETS = ("alex", "vgg", "squeeze")
# smallest frame side each backbone's pooling stack accepts
MIN_SIDE = {"alex": 31, "vgg": 16, "squeeze": 17}
CPU_CHUNK_PIXELS = 2**21
RANDOM_BACKBONE_SEED = 0


def backbone_weights_url(net: str) -> str:
    """The torchvision ImageNet weights the package loads for ``net``."""
    from torchvision import models

    weights = {
        "alex": models.AlexNet_Weights.IMAGENET1K_V1,
        "vgg": models.VGG16_Weights.IMAGENET1K_V1,
        "squeeze": models.SqueezeNet1_1_Weights.IMAGENET1K_V1,
    }[net]
    return weights.url


def backbone_weights_path(net: str) -> Path:
    """Where torchvision looks for the backbone file (follows TORCH_HOME)."""
    file_name = backbone_weights_url(net).rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def linear_heads_path(net: str) -> Path:
    import lpips

    return Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"


def build_lpips_module(net: str, *, pretrained: bool, spatial: bool) -> torch.nn.Module:
    """Construct ``lpips.LPIPS`` without any download attempt."""
    import lpips

    if net not in NETS:
        raise ValueError(f"unknown LPIPS net {net!r}; allowed: {', '.join(NETS)}")
    heads = linear_heads_path(net)
    if not heads.is_file():
        raise MetricUnavailable(
            f"LPIPS linear heads {heads} are missing from the lpips package; reinstall lpips"
        )
    if pretrained:
        path = backbone_weights_path(net)
        if not path.is_file():
            raise MetricUnavailable(
                f"LPIPS (net={net}) needs the ImageNet backbone weights file {path.name!r} "
                f"in {str(path.parent)!r} (torchvision's cache; TORCH_HOME moves it): run "
                f"`vae-bench fetch lpips-{net}` (it downloads {backbone_weights_url(net)}), "
                "or set `quality.lpips_missing: skip` in the sweep."
            )
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        # the package still passes torchvision's deprecated `pretrained=` argument
        warnings.filterwarnings("ignore", message=".*(pretrained|weight enum).*")
        torch.manual_seed(RANDOM_BACKBONE_SEED)
        try:
            module = lpips.LPIPS(
                pretrained=True,
                net=net,
                version="0.1",
                spatial=spatial,
                pnet_rand=not pretrained,
                verbose=False,
            )
        except (RuntimeError, ValueError, EOFError, OSError, pickle.UnpicklingError) as error:
            # e.g. a truncated or corrupt cached file
            if not pretrained:
                raise
            raise MetricUnavailable(
                f"LPIPS (net={net}) backbone weights {backbone_weights_path(net)} could not "
                f"be loaded: {error}"
            ) from error
    return module.eval().requires_grad_(False)


class LPIPS(VideoMetric):
    """Per-frame LPIPS distance, mean over frames per clip."""

    name = "lpips"

    def __init__(
        self,
        *,
        net: str = "alex",
        pretrained: bool = True,
        spatial_map: bool = False,
        chunk_pixels: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if chunk_pixels is not None and chunk_pixels < 1:
            raise ValueError(f"chunk_pixels must be >= 1, got {chunk_pixels}")
        self.net = net
        self.pretrained = pretrained
        self.spatial_map = spatial_map
        self.chunk_pixels = chunk_pixels
        self.model = build_lpips_module(net, pretrained=pretrained, spatial=spatial_map)

    @property
    def protocol(self) -> str:
        backbone = "imagenet" if self.pretrained else f"random(seed={RANDOM_BACKBONE_SEED})"
        reduce = "upsampled-map-mean" if self.spatial_map else "spatial-average"
        return (
            f"lpips:net={self.net};version=0.1;backbone={backbone};range=[-1,1];{reduce};frame-mean"
        )

    def _score(self, target: Tensor, preds: Tensor) -> tuple[Tensor, Tensor]:
        batch, channels, frames, height, width = target.shape
        if channels not in (1, 3):
            raise ValueError(f"LPIPS needs 1 or 3 channels, got {channels}")
        if min(height, width) < MIN_SIDE[self.net]:
            side = MIN_SIDE[self.net]
            raise ValueError(
                f"LPIPS (net={self.net}) needs frames of at least {side}x{side} pixels, "
                f"got {height}x{width}"
            )
        dtype = next(self.model.parameters()).dtype
        chunk = self.chunk_pixels
        if chunk is None:
            chunk = CPU_CHUNK_PIXELS if target.device.type == "cpu" else 8 * CPU_CHUNK_PIXELS
        per_forward = max(1, chunk // (height * width))
        # [B, C, T, H, W] -> [B*T, 3, H, W]
        first = _frames(target, dtype)
        second = _frames(preds, dtype)
        scores = [
            self.model(first[start : start + per_forward], second[start : start + per_forward])
            .flatten(1)
            .mean(dim=1)
            for start in range(0, first.shape[0], per_forward)
        ]
        per_frame = torch.cat(scores).to(torch.float64).view(batch, frames)
        return per_frame.mean(dim=1), per_frame


def _frames(video: Tensor, dtype: torch.dtype) -> Tensor:
    frames = video.to(dtype).clamp(-1.0, 1.0).transpose(1, 2).flatten(0, 1)
    if frames.shape[1] == 1:
        frames = frames.expand(-1, 3, -1, -1)
    return frames
