"""Bad and unusual video files: each becomes a clip row with its reason, the run goes on.

Every file is made here with PyAV. Unusual sources (grey, RGBA, 10- and 16-bit, odd
sizes, extreme aspect ratios) must be converted, and their values are checked.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tests.reliability.faulty import level, write_audio_only, write_video
from vae_bench.data import Clip, FolderConfig, FolderDataset, SkippedClip, to_model_range
from vae_bench.results import read_results
from vae_bench.runner import run_sweep
from vae_bench.sweep import parse_sweep

INVALID = "[Errno 1094995529] Invalid data found when processing input"
HINT = "(corrupt, truncated, or not a video file)"

# name -> (frames, size, codec, pix_fmt, input format); all decode to grey levels level(k)
GOOD = {
    "good.mp4": (12, (32, 32), "libx264", "yuv420p", "rgb24"),
    "gray.mkv": (8, (32, 32), "ffv1", "gray", "gray"),
    "rgba.mov": (8, (32, 32), "png", "rgba", "rgba"),
    "ten_bit.mkv": (8, (32, 32), "ffv1", "yuv420p10le", "rgb24"),
    "sixteen_bit.mov": (8, (32, 32), "png", "rgb48be", "rgb48le"),
    "odd_size.mkv": (8, (17, 45), "ffv1", "yuv444p", "rgb24"),
    "tall.mp4": (8, (64, 16), "libx264", "yuv420p", "rgb24"),
    "wide.mkv": (8, (9, 96), "ffv1", "yuv444p", "rgb24"),
}


def make_good(root: Path, name: str) -> Path:
    frames, size, codec, pix_fmt, in_format = GOOD[name]
    return write_video(root / name, frames, size, codec, pix_fmt, in_format)


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """A folder dataset holding every kind of good and bad file."""
    root = tmp_path_factory.mktemp("library")
    for name in GOOD:
        make_good(root, name)
    data = (root / "good.mp4").read_bytes()
    (root / "half.mp4").write_bytes(data[: len(data) // 2])  # index (moov) at the end: cut
    fast = write_video(root / "fast.mov", 12, container_options={"movflags": "faststart"})
    fast_bytes = fast.read_bytes()
    fast.unlink()
    (root / "cut_stream.mp4").write_bytes(fast_bytes[: len(fast_bytes) // 2])  # frames cut
    (root / "empty.mp4").write_bytes(b"")
    (root / "notes.mp4").write_text("these are not the frames you are looking for\n" * 40)
    (root / "noise.avi").write_bytes(np.random.default_rng(0).bytes(5000))
    write_audio_only(root / "audio.mp4")
    write_video(root / "short.mp4", 3)
    return root


def expected_rows(root: Path) -> dict[str, tuple[str, str]]:
    """clip -> (status, reason) for a 5-frame request; good files have no reason."""
    def unreadable(name: str) -> tuple[str, str]:
        return "error", f"unreadable video: InvalidDataError: {INVALID}: '{root / name}' {HINT}"

    return {
        **{name: ("ok", "") for name in GOOD},
        "half.mp4": unreadable("half.mp4"),
        "notes.mp4": unreadable("notes.mp4"),
        "noise.avi": unreadable("noise.avi"),
        "empty.mp4": ("error", "empty file (0 bytes)"),
        "audio.mp4": ("error", "no video stream in the file"),
        "short.mp4": ("skipped", "too short: 3 frames available, 5 needed (5 frames x stride 1)"),
        "cut_stream.mp4": (
            "error",
            "truncated or corrupt: decoding failed after 0 frames "
            f"(InvalidDataError: {INVALID}: 'avcodec_receive_frame()')",
        ),
    }


def any_ffmpeg_call(rows: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """Rows with the FFmpeg call a decoding error names left out: the decoder reports bad
    data when receiving frames with threads, when sending packets without (as in the
    loader's workers)."""
    call = re.compile(r"avcodec_(send_packet|receive_frame)\(\)")
    return {clip: (status, call.sub("avcodec_*()", why)) for clip, (status, why) in rows.items()}


def test_every_file_gets_one_clip_row_with_its_reason_and_the_run_goes_on(library, tmp_path):
    datasets = tmp_path / "datasets.yaml"
    datasets.write_text(yaml.safe_dump({"lib": {"kind": "folder", "root": str(library)}}))
    sweep = {
        "name": "bad", "device": "cpu", "datasets": ["lib"], "datasets_file": str(datasets),
        "models": [{"preset": "identity", "efficiency": False}],
        "resolutions": [16], "frames": [5], "quality": {"metrics": ["psnr"], "batch_size": 3},
    }  # fmt: skip
    root = run_sweep(parse_sweep(sweep), tmp_path / "out", plots=False)

    clips = pd.read_csv(root / "clips.csv", keep_default_na=False)
    assert not clips["clip"].duplicated().any()
    found = dict(zip(clips["clip"], zip(clips.status, clips.reason, strict=True), strict=True))
    assert any_ffmpeg_call(found) == any_ffmpeg_call(expected_rows(library))
    assert list(clips.source) == [str(library / clip) for clip in clips["clip"]]

    psnr = read_results(root).set_index("metric").loc["psnr"]
    bad = len(found) - len(GOOD)
    assert (psnr.status, psnr.n, psnr.message) == ("ok", len(GOOD), f"{bad} clips skipped")
    assert np.isinf(psnr.value)  # identity on the good clips


@pytest.mark.parametrize("name", sorted(GOOD))
def test_unusual_sources_are_converted_to_rgb_in_range(library, name):
    """Grey to three equal channels, alpha dropped, 10/16 bits to the 8-bit protocol, any
    size and aspect ratio resized and cropped: every frame at its source grey level."""
    clip = FolderDataset("lib", FolderConfig(root=library)).load(name, 5, 16, 24)
    assert isinstance(clip, Clip), clip
    assert clip.video.shape == (3, 5, 16, 24) and clip.video.dtype == torch.uint8
    video = to_model_range(clip.video)
    expected = torch.tensor([level(k) / 255.0 * 2 - 1 for k in range(5)])
    expected = expected[None, :, None, None].expand_as(video)
    # lossless RGB/grey sources come back exactly; YUV ones within the colour conversion's
    # rounding (one 8-bit level, doubled on [-1, 1])
    exact = name in ("gray.mkv", "rgba.mov", "sixteen_bit.mov")
    torch.testing.assert_close(video, expected, rtol=0, atol=1e-6 if exact else 2.5 / 255)


@pytest.mark.parametrize("name", ["ten_bit.mkv", "sixteen_bit.mov"])
def test_deep_sources_are_rounded_to_the_nearest_8_bit_level(library, name):
    """A 10- or 16-bit file equals PyAV's own 16-bit RGB decoding of it rounded to 8 bits
    (FFmpeg's direct 8-bit conversion truncates, up to two levels off)."""
    clip = FolderDataset("lib", FolderConfig(root=library)).load(name, 4, 32, 32)
    with av.open(str(library / name)) as container:
        stream = container.streams.video[0]
        assert max(c.bits for c in stream.codec_context.format.components) > 8
        decoded = itertools.islice(container.decode(stream), 4)
        wide = [frame.to_ndarray(format="rgb48le") for frame in decoded]
    levels = np.rint(np.stack(wide).astype(np.float64) / 257.0)
    reference = torch.from_numpy(levels / 255.0 * 2 - 1).permute(3, 0, 1, 2).float()
    torch.testing.assert_close(to_model_range(clip.video), reference, rtol=0, atol=1e-6)


def test_a_file_that_vanishes_after_the_scan_is_an_error_row(tmp_path):
    write_video(tmp_path / "a.mp4", 6)
    write_video(tmp_path / "b.mp4", 6)
    dataset = FolderDataset("lib", FolderConfig(root=tmp_path))
    assert dataset.clip_ids() == ["a.mp4", "b.mp4"]
    (tmp_path / "a.mp4").unlink()  # e.g. a network share that lost it mid-run
    items = list(dataset.iter_clips(5, 16, 16))
    assert [type(i) for i in items] == [SkippedClip, Clip]
    assert items[0].status == "error"
    assert items[0].reason == (
        f"cannot read file: [Errno 2] No such file or directory: '{tmp_path / 'a.mp4'}'"
    )


def _deny_reading(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Make ``path`` unreadable even to root: opening it fails as PyAV fails when the
    operating system refuses the read (FFmpeg's AVERROR(EACCES), mapped by PyAV)."""
    real_open = av.open

    def open_(file, *args, **kwargs):
        if Path(file) == path:
            av.error.err_check(-errno.EACCES, str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(av, "open", open_)


@pytest.mark.parametrize("how", ["chmod", "refused open"])
def test_a_file_without_read_permission_is_an_error_row(tmp_path, monkeypatch, how):
    locked = write_video(tmp_path / "locked.mp4", 6)
    if how == "chmod":
        if not hasattr(os, "geteuid") or os.geteuid() == 0:
            pytest.skip("root reads any file regardless of its mode")
        locked.chmod(0)
    else:
        _deny_reading(monkeypatch, locked)
    try:
        item = FolderDataset("lib", FolderConfig(root=tmp_path)).load("locked.mp4", 5, 16, 16)
    finally:
        locked.chmod(0o644)
    assert isinstance(item, SkippedClip) and item.status == "error"
    assert item.reason == f"cannot read file: [Errno 13] Permission denied: '{locked}'"


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"sample_rate": 2}, "too short: 8 frames available, 9 needed (5 frames x stride 2)"),
        ({"start": "center"}, "too short: 3 frames available, 5 needed (5 frames x stride 1)"),
        ({"start": "random"}, "too short: 3 frames available, 5 needed (5 frames x stride 1)"),
    ],
)
def test_videos_shorter_than_the_clip_are_skipped_whatever_the_sampling(
    library, options, reason
):
    name = "short.mp4" if "start" in options else "gray.mkv"
    item = FolderDataset("lib", FolderConfig(root=library, **options)).load(name, 5, 16, 16)
    assert isinstance(item, SkippedClip)
    assert (item.status, item.reason) == ("skipped", reason)
