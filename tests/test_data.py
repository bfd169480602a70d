"""Datasets: synthetic clips, folder decoding (stride, start, resize, bad files), yaml."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
import skimage.data
import skimage.transform
import torch
import torch.nn.functional as F
import torchvision.transforms as T
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from vae_bench.data import (
    Clip,
    DatasetError,
    FolderConfig,
    FolderDataset,
    SkippedClip,
    count_frames,
    covering_size,
    get_dataset,
    load_datasets,
    resize_frames,
    to_model_range,
)
from vae_bench.synthetic import Motion, SyntheticDataset, _waves, render_camera

REPO = Path(__file__).resolve().parents[1]
IVVAE = REPO.parent / "shared" / "data" / "ivvae_ori.mp4"


# --------------------------------------------------------------------------- helpers


def frame_value(index: int) -> int:
    """Pixel value that encodes a frame index (robust to lossy coding: steps of 12)."""
    return 10 + 12 * index


def decode_index(video: torch.Tensor) -> list[int]:
    """Frame indices back from a clip whose frames are uniform ``frame_value`` images."""
    levels = (to_model_range(video).mean(dim=(0, 2, 3)) + 1.0) / 2.0 * 255.0
    return [round((v - 10.0) / 12.0) for v in levels.tolist()]


def write_video(
    path: Path,
    frames: int | list[np.ndarray],
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    in_format: str = "rgb24",
    size: tuple[int, int] = (24, 32),
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """A tiny video; ``frames`` as a count gives uniform frames with ``frame_value(k)``."""
    height, width = size
    if isinstance(frames, int):
        channels = {"rgb24": 3, "rgba": 4, "gray": 1}[in_format]
        images = []
        for k in range(frames):
            image = np.full((height, width, channels), frame_value(k), np.uint8)
            if in_format == "rgba":
                image[..., 3] = 77  # alpha must not leak into the colour
            images.append(image[..., 0] if in_format == "gray" else image)
    else:
        images = frames
        height, width = images[0].shape[:2]
    opts = {"crf": "0"} if codec == "libx264" and options is None else (options or {})
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=10, options=opts)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for image in images:
            frame = av.VideoFrame.from_ndarray(image, format=in_format)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def folder(root: Path, **options) -> FolderDataset:
    return FolderDataset("test", FolderConfig(root=root, **options), source="test.yaml")


def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


# --------------------------------------------------------------------------- synthetic


def test_synthetic_ids_are_deterministic_and_cover_both_kinds():
    ids = SyntheticDataset(num_clips=8).clip_ids()
    assert ids == SyntheticDataset(num_clips=8).clip_ids() and len(set(ids)) == 8
    assert ids[0] == "0000-photo-astronaut" and ids[3] == "0003-shapes-brick"
    assert sum("-shapes-" in i for i in ids) == 2 and sum("-photo-" in i for i in ids) == 6
    assert SyntheticDataset(num_clips=3).clip_ids() == ids[:3]  # more clips extend the list
    with pytest.raises(DatasetError, match="unknown clip id 'nope'"):
        SyntheticDataset().load("nope", 3, 8, 8)


@pytest.mark.parametrize("clip_index", [0, 3])  # a photo clip and a shapes clip
def test_synthetic_is_bit_identical_across_calls_and_instances(clip_index):
    a = SyntheticDataset(seed=5)
    clip_id = a.clip_ids()[clip_index]
    first = a.load(clip_id, 5, 24, 40).video
    assert torch.equal(first, a.load(clip_id, 5, 24, 40).video)
    assert torch.equal(first, SyntheticDataset(seed=5).load(clip_id, 5, 24, 40).video)
    other_seed = SyntheticDataset(seed=6).load(clip_id, 5, 24, 40).video
    assert not torch.equal(first, other_seed)
    # a shorter clip is the start of a longer one
    assert torch.equal(first, a.load(clip_id, 9, 24, 40).video[:, :5])


@pytest.mark.parametrize(
    ("frames", "height", "width"), [(1, 16, 16), (7, 33, 17), (4, 24, 64), (2, 9, 5)]
)
def test_synthetic_any_size_and_length(frames, height, width):
    dataset = SyntheticDataset(num_clips=4)
    for clip in dataset.iter_clips(frames, height, width):
        assert isinstance(clip, Clip) and clip.start == 0
        assert clip.video.shape == (3, frames, height, width)
        assert clip.video.dtype == torch.float32
        assert clip.video.min() >= -1.0 and clip.video.max() <= 1.0
        assert clip.source.startswith(("skimage.data.", "shapes over skimage.data."))


def test_synthetic_moves_and_has_content():
    dataset = SyntheticDataset(num_clips=8)
    for clip in dataset.iter_clips(9, 32, 48):
        video = clip.video
        steps = (video[:, 1:] - video[:, :-1]).abs().mean(dim=(0, 2, 3))
        assert (steps > 1e-3).all(), f"{clip.clip_id}: a frame repeats its predecessor"
        per_frame_std = video.std(dim=(0, 2, 3))
        assert (per_frame_std > 0.05).all(), f"{clip.clip_id}: flat frame"
        colour_spread = video.mean(dim=(1, 2, 3)).std()
        if "camera" not in clip.clip_id and "hubble" not in clip.clip_id:
            assert colour_spread > 0.01, f"{clip.clip_id}: no colour"


def test_synthetic_sizes_show_the_same_scene():
    dataset = SyntheticDataset()
    for clip_id in dataset.clip_ids()[:4]:
        big = dataset.load(clip_id, 3, 64, 96).video
        small = dataset.load(clip_id, 3, 32, 48).video
        reduced = F.interpolate(big.transpose(0, 1), size=(32, 48), mode="area").transpose(0, 1)
        assert (reduced - small).abs().mean() < 0.06, clip_id


def test_camera_without_motion_matches_skimage_resize():
    """A still camera sees the whole (square) photograph: compare with scikit-image."""
    image_np = skimage.data.astronaut()
    image = torch.from_numpy(image_np).permute(2, 0, 1).float() / 255.0
    still = Motion(shift=0.0, zoom=0.0, rotate=0.0)
    video = render_camera(image, _waves(np.random.default_rng(0), still), still, 2, 64, 64)
    reference = skimage.transform.resize(image_np / 255.0, (64, 64), anti_aliasing=True)
    rendered = video[:, 0].permute(1, 2, 0).numpy()
    assert np.abs(rendered - reference).mean() < 0.02
    assert torch.equal(video[:, 0], video[:, 1])  # no motion: identical frames


# --------------------------------------------------------------------------- folder: sampling


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "a.mp4", 20)  # H.264, the container lists its frame count
    (root / "sub").mkdir()
    write_video(root / "sub" / "b.mkv", 20, "ffv1", "bgra", "rgba")  # mkv: count not listed
    write_video(root / "sub" / "gray.mov", 20, "png", "gray", "gray")
    write_video(root / "sub" / "rgba.mov", 20, "png", "rgba", "rgba")
    (root / "notes.txt").write_text("not a video")
    (root / ".hidden.mp4").write_bytes(b"")
    return root


def test_folder_lists_videos_recursively_sorted(videos):
    ids = folder(videos).clip_ids()
    assert ids == ["a.mp4", "sub/b.mkv", "sub/gray.mov", "sub/rgba.mov"]
    assert folder(videos, max_clips=2).clip_ids() == ids[:2]
    assert folder(videos, extensions=("mov",)).clip_ids() == ids[2:]


@pytest.mark.parametrize("clip_id", ["a.mp4", "sub/b.mkv"])
@pytest.mark.parametrize(
    ("options", "frames", "expected"),
    [
        ({}, 5, [0, 1, 2, 3, 4]),
        ({"sample_rate": 2}, 4, [0, 2, 4, 6]),
        ({"sample_rate": 3, "start": "center"}, 5, [3, 6, 9, 12, 15]),  # span 13 of 20
        ({"start": "center"}, 20, list(range(20))),
    ],
)
def test_folder_stride_and_start(videos, clip_id, options, frames, expected):
    clip = folder(videos, **options).load(clip_id, frames, 24, 32)
    assert isinstance(clip, Clip), clip
    assert decode_index(clip.video) == expected
    assert clip.start == expected[0] and clip.source == str(videos / clip_id)


def test_folder_random_start_is_seeded_and_valid(videos):
    starts = {}
    for seed in range(6):
        dataset = folder(videos, start="random", seed=seed, sample_rate=2)
        clip = dataset.load("a.mp4", 4, 24, 32)
        again = dataset.load("a.mp4", 4, 24, 32)
        assert clip.start == again.start and torch.equal(clip.video, again.video)
        assert 0 <= clip.start <= 20 - 7
        assert decode_index(clip.video) == [clip.start + 2 * i for i in range(4)]
        starts[seed] = clip.start
    assert len(set(starts.values())) > 1  # the seed matters


def test_frame_count_from_container_or_packets(videos):
    assert count_frames(videos / "a.mp4") == 20
    assert count_frames(videos / "sub" / "b.mkv") == 20  # counted from packets


@pytest.mark.parametrize("clip_id", ["sub/gray.mov", "sub/rgba.mov", "sub/b.mkv"])
def test_gray_and_rgba_sources_become_rgb(videos, clip_id):
    clip = folder(videos).load(clip_id, 3, 24, 32)  # source size: no resampling, exact
    assert clip.video.shape == (3, 3, 24, 32) and clip.video.dtype == torch.uint8
    for k in range(3):
        expected = frame_value(k) / 255.0 * 2.0 - 1.0
        torch.testing.assert_close(
            to_model_range(clip.video)[:, k], torch.full((3, 24, 32), expected), atol=1e-6, rtol=0
        )


def test_too_short_is_skipped_with_reason(tmp_path):
    write_video(tmp_path / "short.mp4", 6)
    write_video(tmp_path / "short.mkv", 6, "ffv1", "bgra", "rgba")
    for start in ("first", "center", "random"):
        for name in ("short.mp4", "short.mkv"):
            item = folder(tmp_path, sample_rate=3, start=start).load(name, 3, 8, 8)
            assert isinstance(item, SkippedClip) and item.status == "skipped"
            assert item.reason == "too short: 6 frames available, 7 needed (3 frames x stride 3)"
    exact = folder(tmp_path, sample_rate=1).load("short.mp4", 6, 8, 8)
    assert isinstance(exact, Clip) and decode_index(exact.video) == list(range(6))


# --------------------------------------------------------------------------- folder: resizing


def test_covering_size_examples():
    assert covering_size(720, 1280, 256, 256) == (256, 455)  # int(256 * 1280 / 720)
    assert covering_size(1280, 720, 256, 256) == (455, 256)
    assert covering_size(24, 32, 12, 40) == (30, 40)  # width needs the larger factor
    assert covering_size(24, 32, 30, 20) == (30, 40)
    assert covering_size(24, 32, 24, 32) == (24, 32)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4000), st.integers(1, 4000), st.integers(1, 1024), st.integers(1, 1024))
def test_covering_size_covers_and_keeps_aspect(h, w, th, tw):
    nh, nw = covering_size(h, w, th, tw)
    assert nh >= th and nw >= tw and (nh == th or nw == tw)
    scale = max(th / h, tw / w)
    assert abs(nh - h * scale) < 1.0 + 1e-9 and abs(nw - w * scale) < 1.0 + 1e-9


def test_square_resize_equals_torchvision_official_chain():
    """The official evaluation: torchvision Resize(short side) then centre crop."""
    image = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1)[None].float() / 255.0
    for size in (64, 97, 400):
        reference = T.CenterCrop(size)(T.Resize(size, antialias=True)(image))
        torch.testing.assert_close(resize_frames(image, size, size), reference, atol=0, rtol=0)


@pytest.mark.parametrize("precision", ["float", "uint8"])
@pytest.mark.parametrize(("height", "width"), [(16, 16), (12, 40), (30, 20), (24, 32), (9, 7)])
def test_folder_resize_crop_against_torch_interpolate(tmp_path, height, width, precision):
    """A known photo through an (intra-only, lossless) video: the decoded clip must equal
    bilinear antialiased interpolation to the covering size, then the centre crop; in
    8-bit precision rounded to a level (at most one level off: the integer kernel)."""
    photo = np.ascontiguousarray(skimage.data.chelsea()[::4, ::4])  # 75 x 113
    frames = [photo, np.ascontiguousarray(photo[:, ::-1])]
    write_video(tmp_path / "photo.mov", frames, "png", "rgb24", "rgb24")
    clip = folder(tmp_path, precision=precision).load("photo.mov", 2, height, width)
    assert isinstance(clip, Clip) and clip.video.shape == (3, 2, height, width)

    source = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
    scale = max(height / 75, width / 113)
    new_h, new_w = (height, int(113 * scale)) if height / 75 >= width / 113 else (
        int(75 * scale), width)  # fmt: skip
    new_h, new_w = max(new_h, height), max(new_w, width)
    resized = F.interpolate(
        source, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True
    )
    top, left = int(round((new_h - height) / 2)), int(round((new_w - width) / 2))
    expected = resized[..., top : top + height, left : left + width] * 2.0 - 1.0
    video = to_model_range(clip.video).transpose(0, 1)
    if precision == "float":
        torch.testing.assert_close(video, expected, atol=1e-6, rtol=0)
        return
    assert clip.video.dtype == torch.uint8
    levels = (video - expected).abs() * 127.5
    assert levels.max() <= 1.0 + 1e-4 and levels.mean() <= 0.5


def test_stretch_and_bicubic_options(tmp_path):
    photo = np.ascontiguousarray(skimage.data.coffee()[::8, ::8])  # 50 x 75
    write_video(tmp_path / "p.mov", [photo], "png", "rgb24", "rgb24")
    source = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255.0
    stretched = folder(tmp_path, resize="stretch", precision="float").load("p.mov", 1, 20, 20)
    expected = F.interpolate(source, (20, 20), mode="bilinear", antialias=True) * 2 - 1
    torch.testing.assert_close(stretched.video[:, 0], expected[0], atol=1e-6, rtol=0)
    bicubic = folder(tmp_path, interpolation="bicubic", precision="float").load("p.mov", 1, 40, 40)
    assert bicubic.video.min() >= -1 and bicubic.video.max() <= 1  # overshoot clamped
    assert "bicubic" in folder(tmp_path, interpolation="bicubic").protocol
    # no 8-bit kernel for bicubic: resized in float, then rounded to the nearest level
    rounded = folder(tmp_path, interpolation="bicubic").load("p.mov", 1, 40, 40).video
    assert rounded.dtype == torch.uint8
    torch.testing.assert_close(rounded, ((bicubic.video + 1) * 127.5).round().to(torch.uint8),
                               atol=1, rtol=0)  # fmt: skip


# --------------------------------------------------------------------------- folder: bad files


def test_corrupt_files_become_skipped_clips(tmp_path):
    good = write_video(tmp_path / "0_good.mp4", 10)
    data = good.read_bytes()
    (tmp_path / "1_random.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "2_truncated.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "3_empty.mp4").write_bytes(b"")
    (tmp_path / "4_text.avi").write_text("hello\n" * 100)
    fast = write_video(tmp_path / "x.mp4", 10, container_options={"movflags": "faststart"})
    fast_bytes = fast.read_bytes()
    fast.unlink()
    (tmp_path / "5_cut_stream.mp4").write_bytes(fast_bytes[: len(fast_bytes) - 200])
    items = {item.clip_id: item for item in folder(tmp_path).iter_clips(8, 16, 16)}
    assert isinstance(items["0_good.mp4"], Clip)
    bad = [items[k] for k in sorted(items) if k != "0_good.mp4"]
    assert len(bad) == 5
    for item in bad:
        assert isinstance(item, SkippedClip) and item.status == "error", item
        assert item.reason and item.source.endswith(item.clip_id)
    assert items["3_empty.mp4"].reason == "empty file (0 bytes)"
    assert items["1_random.mp4"].reason.startswith("unreadable video: InvalidDataError")
    assert "truncated or corrupt" in items["5_cut_stream.mp4"].reason


# --------------------------------------------------------------------------- datasets.yaml


def test_repository_datasets_yaml():
    datasets = load_datasets(REPO / "datasets.yaml")
    synthetic = datasets["synthetic"]
    assert isinstance(synthetic, SyntheticDataset)
    assert (synthetic.num_clips, synthetic.seed) == (8, 0)
    shared = datasets["shared-ivvae"]
    assert isinstance(shared, FolderDataset)
    assert shared.config.root == (REPO / "../shared/data").resolve()


def test_without_a_file_the_shipped_datasets_apply(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAE_BENCH_DATASETS", raising=False)
    datasets = load_datasets()
    shipped = yaml.safe_load((REPO / "datasets.yaml").read_text())
    assert list(datasets) == ["synthetic", *(n for n in shipped if n != "synthetic")]
    assert datasets["synthetic"].clip_ids() and "seed=0" in datasets["synthetic"].protocol


def test_env_var_and_cwd_file_and_override(tmp_path, monkeypatch):
    write_yaml(tmp_path / "datasets.yaml", {"synthetic": {"kind": "synthetic", "num_clips": 2}})
    other = write_yaml(tmp_path / "other.yaml", {"tiny": {"kind": "synthetic", "seed": 3}})
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAE_BENCH_DATASETS", raising=False)
    assert len(load_datasets()["synthetic"].clip_ids()) == 2  # ./datasets.yaml overrides
    monkeypatch.setenv("VAE_BENCH_DATASETS", str(other))
    datasets = load_datasets()
    assert set(datasets) == {"synthetic", "tiny"} and datasets["tiny"].seed == 3
    assert len(datasets["synthetic"].clip_ids()) == 8  # built-in default
    assert get_dataset("tiny").name == "tiny"
    with pytest.raises(DatasetError, match="unknown dataset 'nope'; defined: synthetic, tiny"):
        get_dataset("nope")


def test_missing_root_fails_only_when_used(tmp_path, videos):
    file = write_yaml(
        tmp_path / "d.yaml",
        {"gone": {"kind": "folder", "root": "no/such/dir"}, "here": {"kind": "folder",
         "root": str(videos)}},
    )  # fmt: skip
    datasets = load_datasets(file)  # does not fail because of `gone`
    assert len(datasets["here"].clip_ids()) == 4
    missing = tmp_path / "no" / "such" / "dir"  # relative to the yaml file
    with pytest.raises(DatasetError, match=f"root {missing} does not exist"):
        datasets["gone"].clip_ids()


@pytest.mark.parametrize(
    ("entry", "needles"),
    [
        ({"kind": "webdataset"}, ["key 'kind'", "'webdataset'", "synthetic, folder"]),
        ({"num_clips": 3}, ["key 'kind'", "missing", "synthetic, folder"]),
        ({"kind": "folder"}, ["key 'root'", "missing"]),
        ({"kind": "folder", "root": "x", "sample_rate": "2"}, ["key 'sample_rate'", ">= 1"]),
        ({"kind": "folder", "root": "x", "sample_rate": 0}, ["key 'sample_rate'", "got 0"]),
        ({"kind": "folder", "root": "x", "max_clips": -5}, ["key 'max_clips'", "got -5"]),
        ({"kind": "folder", "root": "x", "start": "middle"}, ["key 'start'", "first, center"]),
        ({"kind": "folder", "root": "x", "resize": "crop"}, ["key 'resize'", "short_side_crop"]),
        ({"kind": "folder", "root": "x", "interpolation": "lanczos"}, ["'interpolation'"]),
        ({"kind": "folder", "root": "x", "antialias": "yes"}, ["key 'antialias'", "true or"]),
        ({"kind": "folder", "root": "x", "extensions": "mp4"}, ["key 'extensions'", "list"]),
        ({"kind": "folder", "root": 3}, ["key 'root'", "string"]),
        ({"kind": "folder", "root": "x", "num_frames": 33}, ["key 'num_frames'", "sample_rate"]),
        ({"kind": "synthetic", "seed": -1}, ["key 'seed'", ">= 0", "got -1"]),
        ({"kind": "synthetic", "num_clips": True}, ["key 'num_clips'", "True"]),
        ({"kind": "synthetic", "root": "x"}, ["key 'root'", "unknown key", "num_clips, seed"]),
        ("folder", ["must be a mapping"]),
    ],
)
def test_yaml_errors_name_file_dataset_and_key(tmp_path, entry, needles):
    file = write_yaml(tmp_path / "bad.yaml", {"mine": entry})
    with pytest.raises(DatasetError) as info:
        load_datasets(file)
    message = str(info.value)
    assert message.startswith(f"{file}: dataset 'mine'")
    for needle in needles:
        assert needle in message, (needle, message)


@pytest.mark.parametrize(
    ("text", "needle"),
    [("- a\n- b\n", "must be a mapping of dataset name"), ("a: [\n", "not valid YAML"),
     ("1: {kind: synthetic}\n", "names must be non-empty strings")],
)  # fmt: skip
def test_yaml_file_level_errors(tmp_path, text, needle):
    file = write_yaml(tmp_path / "bad.yaml", text)
    with pytest.raises(DatasetError, match=needle) as info:
        load_datasets(file)
    assert str(info.value).startswith(str(file))


def test_missing_file_and_bad_requests(tmp_path):
    with pytest.raises(DatasetError, match="cannot read datasets file"):
        load_datasets(tmp_path / "absent.yaml")
    with pytest.raises(ValueError, match="frames must be a positive integer"):
        next(SyntheticDataset().iter_clips(0, 8, 8))
    assert load_datasets(write_yaml(tmp_path / "empty.yaml", "")).keys() == {"synthetic"}


# --------------------------------------------------------------------------- real footage


@pytest.mark.skipif(not IVVAE.exists(), reason=f"{IVVAE} not present (CI/dev data only)")
def test_real_footage_matches_official_chain():
    """9 frames of real 1280x720 H.264 at 64x64, against an independent PyAV decode
    through torchvision's Resize + CenterCrop (the official evaluation's transforms)."""
    dataset = folder(IVVAE.parent, extensions=("mp4",), precision="float")
    clip = dataset.load(IVVAE.name, 9, 64, 64)
    assert isinstance(clip, Clip) and clip.video.shape == (3, 9, 64, 64) and clip.start == 0
    with av.open(str(IVVAE)) as container:
        raw = []
        for frame in container.decode(video=0):
            raw.append(frame.to_ndarray(format="rgb24"))
            if len(raw) == 9:
                break
    video = torch.from_numpy(np.stack(raw)).permute(3, 0, 1, 2).float() / 255.0  # C T H W
    reference = T.CenterCrop(64)(T.Resize(64, antialias=True)(video)) * 2.0 - 1.0
    torch.testing.assert_close(clip.video, reference, atol=1e-5, rtol=0)
    steps = (clip.video[:, 1:] - clip.video[:, :-1]).abs().mean(dim=(0, 2, 3))
    assert (steps > 0).all() and clip.video.std() > 0.1
    # the default 8-bit path: the same chain, rounded to levels by the integer kernel
    fast = folder(IVVAE.parent, extensions=("mp4",)).load(IVVAE.name, 9, 64, 64)
    levels = (to_model_range(fast.video) - reference).abs() * 127.5
    assert fast.video.dtype == torch.uint8 and levels.max() <= 1.0 + 1e-4
    assert levels.mean() <= 0.5


def test_relative_root_is_relative_to_the_file(tmp_path, monkeypatch):
    """`shared-ivvae` in the repository file resolves relative to the file, not the cwd."""
    monkeypatch.chdir(tmp_path)
    shared = load_datasets(REPO / "datasets.yaml")["shared-ivvae"]
    if IVVAE.exists():
        assert shared.clip_ids() == ["ivvae_ori.mp4"]
    else:
        with pytest.raises(DatasetError, match="does not exist"):
            shared.clip_ids()


def test_iter_clips_subset_and_progress(videos, capsys):
    dataset = folder(videos)
    items = list(dataset.iter_clips(2, 8, 8, clip_ids=["sub/gray.mov", "a.mp4"], progress=True))
    assert [i.clip_id for i in items] == ["sub/gray.mov", "a.mp4"]
    assert "test" in capsys.readouterr().err  # the bar names the dataset
    with pytest.raises(DatasetError, match="unknown clip id"):
        dataset.load("missing.mp4", 2, 8, 8)
    assert os.path.basename(items[1].source) == "a.mp4"


def test_folder_config_checked_in_code_too(tmp_path):
    with pytest.raises(DatasetError, match="start 'middle'; allowed: first, center, random"):
        FolderConfig(root=tmp_path, start="middle")
    with pytest.raises(DatasetError, match="sample_rate >= 1"):
        FolderConfig(root=tmp_path, sample_rate=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no video files under .*empty"):
        folder(tmp_path / "empty").clip_ids()
    (tmp_path / "file.mp4").write_bytes(b"x")
    with pytest.raises(DatasetError, match="is not a directory"):
        folder(tmp_path / "file.mp4").clip_ids()
