"""Reconstruction samples: which clips and frames are kept, and that the strips hold
exactly the original and reconstructed pixels."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_temporal_analysis import DefectVAE
from vae_bench.adapters import InferenceMode, Preset, register
from vae_bench.data import get_dataset
from vae_bench.report.html import write_html_report
from vae_bench.runner import run_sweep
from vae_bench.samples import (
    GAP,
    choose_clips,
    compare_strip,
    error_map,
    shown_frames,
    strip,
    to_uint8,
    write_sample_comparison,
)
from vae_bench.sweep import SweepError, parse_sweep

SIZE, FRAMES, CHUNKED = 16, 9, "temporal_chunks(4)"


def test_clips_are_spread_evenly_and_deterministically() -> None:
    ids = [f"c{i}" for i in range(8)]
    assert choose_clips(ids, 2) == ("c0", "c7")
    assert choose_clips(ids, 3) == ("c0", "c4", "c7")
    assert choose_clips(ids, 20) == tuple(ids)
    assert choose_clips(ids, 0) == () and choose_clips([], 2) == ()


def test_frames_spread_over_the_clip_and_across_the_first_seam() -> None:
    assert shown_frames(9) == (0, 3, 5, 8)
    assert shown_frames(9, (5,)) == (0, 3, 4, 5, 8)
    assert shown_frames(2) == (0, 1)


def test_strip_tiles_are_the_inputs_and_the_error_map() -> None:
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (5, 6, 7, 3), dtype=np.uint8)
    recon = original.copy()
    recon[:, :3] = np.clip(original[:, :3].astype(int) + 100, 0, 255).astype(np.uint8)
    frames = (0, 2, 4)
    out = strip(original, recon, frames)
    h, w = 6, 7
    assert out.shape == (3 * h + 2 * GAP, 3 * w + 2 * GAP, 3)
    inferno = matplotlib.colormaps["inferno"]
    for c, t in enumerate(frames):
        x = c * (w + GAP)
        np.testing.assert_array_equal(out[:h, x : x + w], original[t])
        np.testing.assert_array_equal(out[h + GAP : 2 * h + GAP, x : x + w], recon[t])
        error = out[2 * (h + GAP) :, x : x + w]
        # equal pixels are the map's bottom colour; where every channel is off by >= 64
        # (1/4 of the range, the gain of 4) its top colour
        np.testing.assert_array_equal(error[3:], np.broadcast_to(inferno(0.0, bytes=True)[:3],
                                                                 error[3:].shape))  # fmt: skip
        far = (np.abs(original[t].astype(int) - recon[t].astype(int)) >= 64).all(-1)
        assert far.any()
        assert (error[far] == inferno(1.0, bytes=True)[:3]).all()
    assert (out[h : h + GAP] == 255).all()  # white gap between rows
    assert error_map(original, original).max() == max(inferno(0.0, bytes=True)[:3])


def test_to_uint8_maps_the_range_and_rounds() -> None:
    video = torch.tensor([-1.0, -0.5, 0.0, 1.0, 2.0]).reshape(1, 5, 1, 1)
    assert to_uint8(video).reshape(-1).tolist() == [0, 0, 0, 64, 64, 64, 128, 128, 128,
                                                   255, 255, 255, 255, 255, 255]  # fmt: skip


def test_sample_settings_are_checked() -> None:
    base = {"name": "s", "models": ["identity"]}
    assert parse_sweep(base).quality.samples == 2
    assert parse_sweep({**base, "quality": {"samples": 0}}).quality.samples == 0
    with pytest.raises(SweepError, match=r"quality\.samples: must be an integer >= 0"):
        parse_sweep({**base, "quality": {"samples": -1}})
    with pytest.raises(SweepError, match=r"quality\.sample_video: must be true or false"):
        parse_sweep({**base, "quality": {"sample_video": "yes"}})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    register(Preset("toy-defect", DefectVAE, config={"factor": 2}), replace=True)
    sweep = {
        "name": "samples",
        "device": "cpu",
        "models": [{"preset": "toy-defect", "quality": True, "efficiency": False,
                    "modes": ["full", CHUNKED]}],
        "datasets": ["synthetic"],
        "resolutions": [SIZE],
        "frames": [FRAMES],
        "quality": {"metrics": ["psnr"], "max_clips": 3, "batch_size": 1, "samples": 2,
                    "sample_video": True},
    }  # fmt: skip
    return run_sweep(parse_sweep(sweep), tmp_path_factory.mktemp("runs"), plots=False)


def test_each_quality_cell_keeps_its_chosen_clips_pixel_exact(run_dir: Path) -> None:
    indexes = sorted(run_dir.glob("samples/*/index.json"))
    assert len(indexes) == 2  # one per quality cell (full, chunked)
    dataset = get_dataset("synthetic")
    vae = DefectVAE("toy-defect", 2)
    for path in indexes:
        index = json.loads(path.read_text())
        seams = [5] if index["mode"] == CHUNKED else []
        assert index["seams"] == seams
        assert index["shown_frames"] == ([0, 3, 4, 5, 8] if seams else [0, 3, 5, 8])
        wanted = choose_clips(dataset.clip_ids()[:3], 2)
        assert [c["clip"] for c in index["clips"]] == list(wanted)
        for clip in index["clips"]:
            video = dataset.load(clip["clip"], FRAMES, SIZE, SIZE).video
            recon = vae.reconstruct(video[None], InferenceMode.parse(index["mode"]))[0]
            original = ((video.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0)
            rebuilt = ((recon.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0)
            image = np.asarray(Image.open(path.parent / clip["png"]))
            for c, t in enumerate(index["shown_frames"]):
                x = c * (SIZE + GAP)
                np.testing.assert_array_equal(image[:SIZE, x : x + SIZE], original[t].numpy())
                np.testing.assert_array_equal(image[SIZE + GAP : 2 * SIZE + GAP, x : x + SIZE],
                                              rebuilt[t].numpy())  # fmt: skip
            _check_video(path.parent / clip["mp4"])


def _check_video(path: Path) -> None:
    import av

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == FRAMES
    assert frames[0].shape == (SIZE, 3 * SIZE, 3)  # original | reconstruction | error


def test_the_html_report_shows_each_models_reconstructions(run_dir: Path) -> None:
    text = write_html_report(run_dir, layouts=("quality",)).read_text()
    assert "<h2>Reconstructions</h2>" in text and "<h3>toy-defect</h3>" in text
    assert text.count('alt="toy-defect ') == 4  # 2 clips x 2 modes
    assert "seam before frame 5" in text and "psnr " in text


def test_no_samples_when_the_sweep_says_zero(tmp_path: Path) -> None:
    sweep = {"name": "none", "device": "cpu", "models": ["identity"], "datasets": ["synthetic"],
             "resolutions": [8], "frames": [2],
             "quality": {"metrics": ["psnr"], "max_clips": 1, "samples": 0}}  # fmt: skip
    run = run_sweep(parse_sweep(sweep), tmp_path, plots=False)
    assert not (run / "samples").exists()


def test_two_runs_reconstructions_side_by_side(run_dir: Path, tmp_path: Path) -> None:
    import shutil

    other = tmp_path / "other"
    shutil.copytree(run_dir / "samples", other / "samples")
    # the candidate's reconstruction of one clip differs: its rows must show it
    index_path = sorted((other / "samples").glob("*/index.json"))[0]
    index = json.loads(index_path.read_text())
    strip_path = index_path.parent / index["clips"][0]["png"]
    candidate = np.asarray(Image.open(strip_path)).copy()
    candidate[SIZE + GAP : 2 * SIZE + GAP] = 7
    Image.fromarray(candidate).save(strip_path)

    written = write_sample_comparison(run_dir, other, tmp_path / "pairs")
    assert len(written) == 4  # 2 cells x 2 clips
    name = f"toy-defect_{index['mode']}_{FRAMES}x{SIZE}x{SIZE}_clip0.png".replace("(", "_")
    pair = np.asarray(Image.open(tmp_path / "pairs" / name.replace(")", "_")))
    base = np.asarray(Image.open(run_dir / "samples" / index["cell"] / "clip0.png"))
    rows = [pair[r * (SIZE + GAP) : r * (SIZE + GAP) + SIZE] for r in range(5)]
    np.testing.assert_array_equal(rows[0], base[:SIZE])  # original
    np.testing.assert_array_equal(rows[1], base[SIZE + GAP : 2 * SIZE + GAP])  # baseline
    assert (rows[2] == 7).all()  # candidate
    np.testing.assert_array_equal(rows[3], base[2 * (SIZE + GAP) :])  # baseline error
    with pytest.raises(ValueError, match="differ in size"):
        compare_strip(base, base[:, :-1], SIZE)


def test_compare_of_two_runs_shows_their_reconstructions_side_by_side(
    run_dir: Path, tmp_path: Path
) -> None:
    import shutil

    from vae_bench.report.compare import run_compare

    other = shutil.copytree(run_dir, tmp_path / "other")
    _, paths = run_compare(run_dir, other, out=tmp_path / "cmp")
    pairs = sorted((tmp_path / "cmp" / "samples").glob("*.png"))
    assert len(pairs) == 4 and set(pairs) <= set(paths)  # 2 cells x 2 kept clips
    _, paths = run_compare(run_dir, baseline_select="mode=full", candidate_select="mode=full",
                           out=tmp_path / "one")  # one run: no pictures to pair
    assert not (tmp_path / "one" / "samples").exists()
