"""A folder of images is a dataset of one-frame clips (image autoencoders' protocol)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from vae_bench.data import SkippedClip, load_datasets, to_model_range
from vae_bench.runner import plan
from vae_bench.sweep import SweepError, parse_sweep


@pytest.fixture
def image_folder(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    pixels = {}
    for name in ("b/two.png", "a.png", "c.PNG"):
        array = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
        (tmp_path / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(tmp_path / "images" / name)
        pixels[name] = array
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    datasets = {"photos": {"kind": "folder", "root": "images", "media": "images"}}
    (tmp_path / "datasets.yaml").write_text(yaml.safe_dump(datasets))
    return tmp_path / "datasets.yaml", pixels


def test_each_image_is_a_one_frame_clip(image_folder):
    path, pixels = image_folder
    dataset = load_datasets(path)["photos"]
    assert dataset.clip_ids() == ["a.png", "b/two.png", "c.PNG"]
    assert dataset.max_frames == 1
    assert "media=images" in dataset.protocol
    for clip_id, array in pixels.items():
        clip = dataset.load(clip_id, 1, 24, 32)  # the image's own size: no resampling
        assert tuple(clip.video.shape) == (3, 1, 24, 32)
        expected = array.transpose(2, 0, 1)[:, None].astype(np.float32) / 255.0 * 2 - 1
        np.testing.assert_allclose(to_model_range(clip.video).numpy(), expected, atol=1e-6)


def test_more_than_one_frame_is_a_skipped_clip(image_folder):
    path, _ = image_folder
    clip = load_datasets(path)["photos"].load("a.png", 5, 24, 32)
    assert isinstance(clip, SkippedClip)
    assert clip.reason == "an image is one frame; 5 requested"


def test_sweep_asking_frames_of_an_image_folder_fails_before_work(image_folder):
    path, _ = image_folder
    sweep = parse_sweep({"name": "img", "models": ["identity"], "datasets": ["photos"],
                         "resolutions": [16], "frames": [1, 5], "datasets_file": str(path),
                         "quality": {"metrics": ["psnr"]}}, "img.yaml")
    with pytest.raises(SweepError, match=r"dataset 'photos' gives clips of at most 1 frame\(s\)"
                       r" \(an image folder\); frames \[1, 5\] requested: use frames: \[1\]"):
        plan(sweep, device="cpu")
    one = parse_sweep({"name": "img", "models": ["identity"], "datasets": ["photos"],
                       "resolutions": [16], "frames": [1], "datasets_file": str(path),
                       "quality": {"metrics": ["psnr"]}}, "img.yaml")
    cells = plan(one, device="cpu").cells
    assert {(c.kind, c.frames) for c in cells} == {("quality", 1), ("efficiency", 1)}


def test_media_key_is_checked(tmp_path):
    (tmp_path / "datasets.yaml").write_text(yaml.safe_dump(
        {"x": {"kind": "folder", "root": ".", "media": "audio"}}))
    with pytest.raises(ValueError, match="key 'media': got 'audio'; allowed: videos, images"):
        load_datasets(tmp_path / "datasets.yaml")
