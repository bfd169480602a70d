"""Invalid sweeps, datasets files and settings: one clear error before any work.

Each case goes through the command line (``vae-bench run``): exit code 2, one message
naming the file, the key and the allowed values, and no run directory written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.reliability.faulty import faulty_preset
from vae_bench.cli import main

BASE = {
    "name": "cfg", "device": "cpu", "models": ["toy-pool"], "resolutions": [16], "frames": [5],
    "quality": {"metrics": ["psnr"]},
}  # fmt: skip
METRICS = "['psnr', 'psnr_clip', 'ssim', 'lpips', 'flicker', 'rfvd', 'rfid']"
NAME_RULE = (
    "is not a valid run name; use letters, digits and . _ + - (not starting with . or -), "
    "it names the run's directory"
)


@pytest.fixture(autouse=True)
def _models(toy_preset):
    faulty_preset("toy-8k", fault="frame_rule")


def run(tmp_path: Path, capsys, sweep, *extra: str) -> tuple[int, str]:
    path = tmp_path / "sweep.yaml"
    if isinstance(sweep, bytes):
        path.write_bytes(sweep)
    else:
        path.write_text(sweep if isinstance(sweep, str) else yaml.safe_dump(sweep))
    out = tmp_path / "out"
    code = main(["run", str(path), "--out", str(out), "--no-plots", *extra])
    assert not out.exists(), "no run directory before the sweep is valid"
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"colour": "red"}, "colour: unknown key(s) ['colour']; allowed: ['data', 'datasets', "
         "'datasets_file', 'device', 'dtypes', 'efficiency', 'frames', 'models', 'modes', "
         "'name', 'quality', 'resolutions']"),
        ({"models": ["toy-pool", "wf-vae-xxl"]}, "models[1] (wf-vae-xxl): unknown model "
         "'wf-vae-xxl'; registered: "),
        ({"models": ["toy-8k"]}, "models[0] (toy-8k): frames/resolutions: no clip length of "
         "the form 8k fits in 5 frames"),
        ({"resolutions": [[16, 15]]}, "models[0] (toy-pool): frames/resolutions: toy-pool: "
         "width 15 is not divisible by the spatial factor 2"),
        ({"frames": [0]}, "frames: 0 is not a positive integer"),
        ({"dtypes": ["float8"]}, "dtypes: 'float8' is not allowed; allowed: "
         "['float32', 'float16', 'bfloat16']"),
        ({"modes": ["temporal_chunks(4)"]}, "models[0] (toy-pool): modes: temporal_chunks(4) "
         "not supported; supported kinds: full (give the model its own `modes` in its "
         "`models` entry)"),
        ({"modes": ["zigzag"]}, "modes: unknown inference mode 'zigzag'; allowed: full, "
         "temporal_chunks, spatial_tiles"),
        ({"quality": {"metrics": ["fid"]}}, f"quality.metrics: 'fid' unknown; allowed: {METRICS}"),
        ({"quality": {"metrics": []}}, "quality.metrics: must be a non-empty list, got []"),
        ({"quality": {"batch_size": 0}}, "quality.batch_size: 0 is not a positive integer"),
        ({"quality": {"fvd_missing": "ignore"}}, "quality.fvd_missing: 'ignore' not allowed; "
         "allowed: ['error', 'random', 'skip', 'fetch', 'fetch-or-random', 'fetch-or-skip']"),
        ({"efficiency": {"seed": "abc"}}, "efficiency.seed: must be an integer >= 0, got 'abc'"),
        ({"efficiency": {"warmup": -1}}, "efficiency.warmup: must be an integer >= 0, got -1"),
        ({"efficiency": {"speed": 2}}, "efficiency: unknown key(s) ['speed']; allowed: "
         "['batch_size', 'repeats', 'seed', 'warmup']"),
        ({"models": [{"preset": "toy-pool", "quality": "yes"}]}, "models[0].quality: must be "
         "true, false or absent (quality only for real weights), got 'yes'"),
        ({"models": [{"preset": "toy-pool", "weigths": "random"}]}, "models[0]: unknown key(s) "
         "['weigths']; allowed: ['efficiency', 'modes', 'preset', 'quality', 'weights']"),
        ({"models": [{"preset": "toy-pool", "weights": "/no/such/dir"}]}, "models[0] "
         "(toy-pool): toy-pool: weights not found at /no/such/dir"),
        ({"models": []}, "models: at least one model is required"),
        ({"name": "../elsewhere"}, f"name: '../elsewhere' {NAME_RULE}"),
        ({"datasets": ["nope"]}, "datasets: unknown ['nope']; defined: ["),
        ({"datasets": []}, "datasets: must not be empty (leave the key out for the default)"),
        ({"datasets_file": 3}, "datasets_file: must be a path, got 3"),
        ({"device": "tpu"}, "device: Expected one of cpu, cuda"),
    ],
)  # fmt: skip
def test_invalid_sweep_keys(tmp_path, capsys, overrides, problem):
    code, err = run(tmp_path, capsys, {**BASE, **overrides})
    assert code == 2
    assert err.startswith(f"vae-bench: error: {tmp_path / 'sweep.yaml'}: {problem}"), err
    if overrides.get("device"):
        assert err.endswith("; allowed: auto, cpu, cuda, cuda:N")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name: [unclosed\n", "not valid YAML: "),
        ("- a\n- b\n", "a sweep file must be a mapping with 'name' and 'models'"),
        ("name: x\n", "models: missing (required)"),
        (b"name: \xff\xfe\n", "cannot read the sweep file: 'utf-8' codec can't decode byte 0xff"),
    ],
)
def test_invalid_sweep_files(tmp_path, capsys, text, problem):
    code, err = run(tmp_path, capsys, text)
    assert code == 2
    assert err.startswith(f"vae-bench: error: {tmp_path / 'sweep.yaml'}: {problem}"), err


def test_missing_sweep_file_and_bad_run_name(tmp_path, capsys):
    assert main(["run", str(tmp_path / "absent.yaml")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"vae-bench: error: sweep file not found: {tmp_path / 'absent.yaml'} (neither a path "
        "nor a shipped sweep; `vae-bench list --sweeps` lists the shipped ones)"
    )
    code, err = run(tmp_path, capsys, BASE, "--name", "a/b")
    assert code == 2 and err == f"vae-bench: error: command line: --name: 'a/b' {NAME_RULE}"


FOLDER_KEYS = (
    "kind, description, root, sample_rate, start, seed, resize, interpolation, antialias, "
    "max_clips, extensions"
)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"kind": "videos"}, "key 'kind': got 'videos'; allowed: synthetic, folder"),
        ({"kind": "folder", "root": ".", "fps": 30},
         f"key 'fps': unknown key; allowed keys for kind 'folder': {FOLDER_KEYS}"),
        ({"kind": "folder", "root": ".", "sample_rate": 0},
         "key 'sample_rate': must be an integer >= 1, got 0"),
        ({"kind": "folder", "root": ".", "start": "middle"},
         "key 'start': got 'middle'; allowed: first, center, random"),
        ({"kind": "folder", "root": ".", "resize": "fit"},
         "key 'resize': got 'fit'; allowed: short_side_crop, stretch"),
        ({"kind": "folder"}, "key 'root': missing (required)"),
        ({"kind": "folder", "root": "absent"}, "root {root}/absent does not exist"),
        ({"kind": "folder", "root": "."}, "no video files under {root} (extensions: "),
        ({"kind": "synthetic", "num_clips": -1}, "key 'num_clips': must be an integer >= 1, "
         "got -1"),
    ],
)  # fmt: skip
def test_invalid_datasets_file(tmp_path, capsys, entry, problem):
    datasets = tmp_path / "datasets.yaml"
    datasets.write_text(yaml.safe_dump({"clips": entry}))
    sweep = {**BASE, "models": ["identity"], "datasets": ["clips"],
             "datasets_file": str(datasets)}  # fmt: skip
    code, err = run(tmp_path, capsys, sweep)
    assert code == 2
    scanned = "{root}" in problem  # the folder itself is checked when the sweep is planned
    where = f"{tmp_path / 'sweep.yaml'}: datasets: " if scanned else ""
    expected = f"vae-bench: error: {where}{datasets}: dataset 'clips': "
    assert err.startswith(expected + problem.format(root=tmp_path)), err


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("clips: {kind: folder\n", "not valid YAML: "),
        ("- clips\n", "must be a mapping of dataset name -> entry, got list"),
        ("clips: 3\n", "dataset 'clips': must be a mapping of keys (kind: ...), got 3"),
    ],
)
def test_invalid_datasets_yaml(tmp_path, capsys, text, problem):
    datasets = tmp_path / "datasets.yaml"
    datasets.write_text(text)
    code, err = run(tmp_path, capsys, {**BASE, "datasets_file": str(datasets)})
    assert code == 2
    assert err.startswith(f"vae-bench: error: {datasets}: {problem}"), err
