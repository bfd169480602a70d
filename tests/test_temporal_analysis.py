"""The temporal analyses end to end: a toy model with known defects is caught exactly there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.toy_vae import PoolVAE
from vae_bench.adapters import FrameRule, InferenceMode, Preset, VAESpec, register
from vae_bench.report.temporal import plot_temporal, position_profile, read_frames
from vae_bench.results import read_results
from vae_bench.runner import run_sweep
from vae_bench.sweep import parse_sweep

DEFECT_POSITION = 2  # frames 2 and 6 of a 9-frame clip (causal, 4x in time)
CHUNK = 4  # temporal_chunks(4): frame 0, then blocks 1-4, 5-8: one seam, at frame 5
FLASH = 0.3


class DefectVAE(PoolVAE):
    """PoolVAE that claims causal 4x time compression, adds noise to the frames at one
    group position, and, chunked, flashes the first frame of every chunk but the first."""

    def __init__(self, name: str, factor: int) -> None:
        super().__init__(name, factor)
        self.spec = VAESpec(
            name=name, family="toy", latent_channels=3, spatial_factor=factor,
            temporal_factor=4, causal=True, frame_rule=FrameRule(step=4, offset=1),
            modes=("full", "temporal_chunks"),
        )  # fmt: skip

    def _decode(self, latent: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        video = super()._decode(latent, mode)
        generator = torch.Generator().manual_seed(0)
        for frame in range(DEFECT_POSITION, video.shape[2], 4):
            noise = torch.randn(video[:, :, frame].shape, generator=generator)
            video[:, :, frame] += 0.2 * noise.to(video)
        if mode.kind == "temporal_chunks":
            assert mode.size is not None
            video[:, :, 1 + mode.size :: mode.size] += FLASH
        return video.clamp(-1, 1)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    register(Preset("toy-defect", DefectVAE, config={"factor": 2}), replace=True)
    sweep = {
        "name": "temporal",
        "device": "cpu",
        "models": [{"preset": "toy-defect", "quality": True, "efficiency": False,
                    "modes": ["full", f"temporal_chunks({CHUNK})"]}],
        "datasets": ["synthetic"],
        "resolutions": [16],
        "frames": [9],
        "quality": {"metrics": ["psnr", "ssim", "flicker"], "max_clips": 2, "batch_size": 2},
    }  # fmt: skip
    out = tmp_path_factory.mktemp("runs")
    return run_sweep(parse_sweep(sweep), out, plots=False)


def test_per_position_analysis_finds_the_defective_group_position(run_dir):
    frames = read_frames(run_dir)
    full = frames[frames["mode"] == "full"]
    profile = position_profile(full).set_index(["metric", "group_position"])["value"]
    for metric in ("psnr", "ssim"):
        by_position = profile.loc[metric]
        assert list(by_position.index) == [0, 1, 2, 3, 4]
        assert by_position.idxmin() == DEFECT_POSITION
    psnr = full[full["metric"] == "psnr"].set_index("frame")["value"]
    assert set(psnr.nsmallest(2).index) == {2, 6}


def test_seam_metrics_find_the_chunk_seam(run_dir):
    results = read_results(run_dir).set_index(["mode", "metric"])
    chunked = f"temporal_chunks({CHUNK})"
    assert ("full", "seam_psnr_drop") not in results.index
    drop = results.loc[(chunked, "seam_psnr_drop")]
    jump = results.loc[(chunked, "seam_discontinuity")]
    assert drop.status == jump.status == "ok" and drop.n == 2
    assert drop.value > 20 and "seams=t5" in drop.protocol
    frames = read_frames(run_dir)
    chunk_frames = frames[frames["mode"] == chunked]
    drop_curve = chunk_frames[chunk_frames.metric == "seam_psnr_drop"].set_index("frame").value
    assert drop_curve.idxmax() == 5 and (drop_curve.drop(5).abs() < 1e-9).all()
    steps = chunk_frames[chunk_frames.metric == "seam_discontinuity"].set_index("frame").value
    # the flash shows at the seam (4 -> 5) and as it ends (5 -> 6), nowhere else
    assert 0 not in steps.index and set(steps[steps > 1e-6].index) == {5, 6}
    assert jump.value == pytest.approx(steps[5])


def test_flicker_is_per_clip_and_higher_with_the_flash(run_dir):
    results = read_results(run_dir).set_index(["mode", "metric"])
    full = results.loc[("full", "flicker")]
    chunked = results.loc[(f"temporal_chunks({CHUNK})", "flicker")]
    assert chunked.value > full.value > 0  # the noise at position 2 flickers too
    clips = pd.read_csv(run_dir / "clips.csv")
    assert clips["flicker"].notna().all() and len(clips) == 4


def test_temporal_figures_are_drawn(run_dir, tmp_path):
    frames = read_frames(run_dir)
    names = {p.name for p in plot_temporal(read_results(run_dir), frames, tmp_path)}
    wanted = {"quality_by_frame", "quality_by_group_position", "flicker", "seams"}
    assert {f"{n}.png" for n in wanted} <= names


def test_position_profile_is_the_mean_at_each_position():
    frames = pd.DataFrame({
        "cell": "c", "model": "m", "weights": "w", "mode": "full", "dtype": "float32",
        "dataset": "d", "height": 8, "width": 8, "frames": 5, "metric": "psnr",
        "frame": range(5), "group_position": [0, 1, 0, 1, 0],
        "value": [10.0, 20.0, 12.0, 22.0, np.inf],
    })  # fmt: skip
    profile = position_profile(frames).set_index("group_position")
    assert profile.loc[0, "value"] == 11.0 and profile.loc[0, "frames_at_position"] == 2
    assert profile.loc[1, "value"] == 21.0
