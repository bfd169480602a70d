"""Fuzzing the front ends that read what users give: sweep files, ``datasets.yaml`` and
video files. Whatever the input, the result is a loaded config or the suite's own error
(never a raw ``KeyError``/``TypeError``), and a video is a clip or a skip reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.faulty import write_video
from vae_bench.data import (
    Clip,
    DatasetError,
    FolderConfig,
    FolderDataset,
    SkippedClip,
    load_datasets,
    to_model_range,
)
from vae_bench.runner import plan
from vae_bench.sweep import SweepError, load_sweep, parse_sweep

FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 40), st.floats(allow_nan=True),
    st.text(max_size=8), st.sampled_from(["", "full", "psnr", "auto", "cpu", "random", "x/y"]),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner, max_size=3),
    ),
    max_leaves=8,
)
# names that steer the fuzzer into the deeper checks (cheap models only)
models = st.one_of(
    st.sampled_from(["identity", "toy-pool", "bicubic-f8", "no-such-model"]),
    st.fixed_dictionaries(
        {"preset": st.sampled_from(["identity", "toy-pool"])},
        optional={k: values for k in ("weights", "quality", "efficiency", "modes", "extra")},
    ),
    values,
)
VALID = {
    "name": "fuzz", "device": "cpu", "models": ["identity"], "resolutions": [8], "frames": [3],
    "quality": {"metrics": ["psnr"]},
}  # fmt: skip


def _mutate(overrides: dict, dropped: list[str]) -> dict:
    """A valid sweep with some keys replaced and some removed: deep checks get reached."""
    return {k: v for k, v in {**VALID, **overrides}.items() if k not in dropped}


changes = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.sampled_from(["fuzz", "a.b-c", "../up"]), values),
        "models": st.one_of(st.lists(models, max_size=2), values),
        "device": st.one_of(st.just("cpu"), values),
        "datasets": st.one_of(st.just(["synthetic"]), values),
        "resolutions": st.one_of(st.lists(st.sampled_from([8, 16, [8, 16], 15, 0]), max_size=2),
                                 values),
        "frames": st.one_of(st.lists(st.integers(-1, 9), max_size=2), values),
        "dtypes": st.one_of(st.just(["float32"]), values),
        "modes": st.one_of(st.sampled_from([["full"], ["spatial_tiles(8, 2)"]]), values),
        "quality": st.one_of(
            st.fixed_dictionaries({}, optional={
                "metrics": st.one_of(st.lists(st.sampled_from(["psnr", "ssim", "fid", 3]),
                                              max_size=2), values),
                "batch_size": values, "max_clips": values, "lpips_net": values,
                "fvd_missing": values, "fvd_weights": values,
            }),
            values,
        ),
        "efficiency": st.one_of(
            st.fixed_dictionaries({}, optional={k: values for k in
                                                ("warmup", "repeats", "seed", "batch_size")}),
            values,
        ),
        "colour": values,
    },
)  # fmt: skip
sweeps = st.builds(_mutate, changes, st.lists(st.sampled_from(sorted(VALID)), max_size=2))


@FUZZ
@given(data=st.one_of(sweeps, values))
def test_sweep_data_loads_or_raises_sweep_error(data, toy_preset):
    try:
        sweep = parse_sweep(data, "fuzz.yaml")
        plan(sweep)
    except SweepError as error:
        assert str(error).startswith(("fuzz.yaml", "sweep file")) or "datasets" in str(error)


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_sweep_text_loads_or_raises_sweep_error(text, tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "fuzz-sweep.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    try:
        load_sweep(path)
    except SweepError as error:
        assert str(error).startswith(str(path))


datasets_entries = st.dictionaries(
    st.one_of(st.sampled_from(["clips", ""]), st.integers(), st.text(max_size=4)),
    st.one_of(
        st.fixed_dictionaries(
            {"kind": st.one_of(st.sampled_from(["synthetic", "folder"]), values)},
            optional={k: values for k in ("root", "sample_rate", "start", "seed", "resize",
                                          "interpolation", "antialias", "max_clips",
                                          "extensions", "num_clips", "description", "fps")},
        ),
        values,
    ),
    max_size=2,
)  # fmt: skip


@FUZZ
@given(data=st.one_of(datasets_entries, values, st.text(max_size=100)))
def test_datasets_file_loads_or_raises_dataset_error(data, tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "fuzz-datasets.yaml"
    text = data if isinstance(data, str) else yaml.safe_dump(data)
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        datasets = load_datasets(path)
    except DatasetError as error:
        assert str(error).startswith(str(path))
        return
    assert "synthetic" in datasets


@pytest.fixture(scope="module")
def valid_video(tmp_path_factory) -> bytes:
    root = tmp_path_factory.mktemp("valid")
    return write_video(root / "v.mp4", 8, (16, 16)).read_bytes()


def _load(root: Path, name: str, data: bytes) -> Clip | SkippedClip:
    (root / name).write_bytes(data)
    item = FolderDataset("fuzz", FolderConfig(root=root)).load(name, 4, 8, 8)
    if isinstance(item, SkippedClip):
        assert item.reason and item.status in ("error", "skipped")
    else:
        assert item.video.shape == (3, 4, 8, 8) and to_model_range(item.video).abs().max() <= 1
    return item


@FUZZ
@given(data=st.binary(max_size=3000), suffix=st.sampled_from(["mp4", "mkv", "avi", "gif"]))
def test_random_bytes_give_a_skip_reason(data, suffix, tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "fuzz-random"
    root.mkdir(exist_ok=True)
    for stale in root.iterdir():
        stale.unlink()
    _load(root, f"clip.{suffix}", data)


@FUZZ
@given(
    cut=st.integers(0, 10_000),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.binary(min_size=1, max_size=16)),
                   max_size=4),
)  # fmt: skip
def test_damaged_videos_decode_or_give_a_skip_reason(valid_video, cut, edits, tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "fuzz-damaged"
    root.mkdir(exist_ok=True)
    data = bytearray(valid_video[: max(1, len(valid_video) - cut % len(valid_video))])
    for offset, patch in edits:
        start = offset % len(data)
        data[start : start + len(patch)] = patch
    _load(root, "clip.mp4", bytes(data))
