"""rFID: the Fréchet Inception Distance between original frames and their reconstructions.

The image autoencoders' papers (SD-VAE, LiteVAE) report rFID over the reconstructed
images of a set; a clip contributes each of its frames, so an image folder (one-frame
clips) gives the image protocol and a video set the per-frame one. The metric is
torchmetrics' ``FrechetInceptionDistance`` on torch-fidelity's port of the TF Inception
(2048-d pool features, the network most FID numbers use), fed 8-bit frames as a saved
reconstruction would be. Its states are float64 sums, so shards merge exactly.

The Inception weights are looked up, never downloaded here (``vae-bench fetch
inception-fid`` does that): ``weights`` if given, else ``$VAE_BENCH_CACHE/fid/``, else
torch.hub's checkpoint cache (where torch-fidelity would have put them).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance

from vae_bench.data import to_uint8_levels
from vae_bench.metrics.base import MetricUnavailable, check_videos

WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_FILE}"
EXTRACTOR = "torch-fidelity-inception-v3-2015-12-05"


def weights_candidates() -> list[Path]:
    """Where the Inception weights are looked for, in order."""
    root = os.environ.get("VAE_BENCH_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "vae-bench"
    return [base / "fid" / WEIGHTS_FILE, Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE]


def find_weights(weights: str | Path | None = None) -> Path:
    """The Inception weights file, or MetricUnavailable naming where it was looked for."""
    places = [Path(weights).expanduser()] if weights is not None else weights_candidates()
    for path in places:
        if path.is_file():
            return path
    raise MetricUnavailable(
        f"rFID needs the Inception weights {WEIGHTS_FILE} ({WEIGHTS_URL}); not found at "
        f"{' or '.join(map(str, places))}; run `vae-bench fetch inception-fid`"
    )


def to_uint8_frames(video: Tensor) -> Tensor:
    """``[B, C, T, H, W]`` in [-1, 1] -> ``[B*T, C, H, W]`` uint8 (as saved to an image)."""
    return to_uint8_levels(video.permute(0, 2, 1, 3, 4).flatten(0, 1))


class RFID(FrechetInceptionDistance):
    """rFID over every frame of every clip: ``update(target, preds)`` with video batches.

    ``feature`` replaces the Inception network (any module mapping uint8 ``[N, 3, H, W]``
    to ``[N, D]`` features), for tests and for other feature spaces.
    """

    name = "rfid"
    unit = ""

    def __init__(self, weights: str | Path | None = None, feature: nn.Module | None = None):
        if feature is None:
            path = find_weights(weights)
            super().__init__(feature=2048, feature_extractor_weights_path=str(path),
                             normalize=False)
            self.extractor = EXTRACTOR
        else:
            super().__init__(feature=feature, normalize=False)
            self.extractor = type(feature).__name__
        self.add_state("clips", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    @property
    def protocol(self) -> str:
        return (f"rfid:extractor={self.extractor};features=pool;input=uint8-frames;"
                "resize=299-bilinear(extractor);frames=all;set=whole;cov=1/(n-1)")

    def update(self, target: Tensor, preds: Tensor) -> None:  # type: ignore[override]
        check_videos(target, preds, max_frames=target.shape[2])
        super().update(to_uint8_frames(target), real=True)
        super().update(to_uint8_frames(preds), real=False)
        self.clips += target.shape[0]

    @property
    def n(self) -> int:
        """Clips scored (each contributes all its frames)."""
        return int(self.clips)
