"""Bad weight files for every checkpoint-loading adapter: one clear ``AdapterError``.

Each family saves a tiny model in its release format; the file is then cut short,
replaced by a pickle where safetensors are expected, given code to run, edited (missing,
unexpected, mis-shaped keys) or swapped for another family's. Every failure names the
file; no pickled code ever runs (every ``torch.load`` is ``weights_only=True``).
"""

from __future__ import annotations

import ast
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vae_bench.adapters import AdapterError, Preset
from vae_bench.adapters.iv_vae import save_state_dict as save_iv
from vae_bench.adapters.lite_vae import save_state_dict as save_lite

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass(frozen=True)
class Family:
    """How one family's release is written: ``save(dir) -> (path to load, weights file)``."""

    name: str
    preset: Callable[[], Preset]
    save: Callable[[Preset, Path], tuple[Path, Path]]


def _od_preset() -> Preset:
    from tests.test_od_vae import tiny_preset

    return tiny_preset()


def _wf_preset() -> Preset:
    from tests.test_wf_vae import tiny_preset

    return tiny_preset("wf-vae-s-8ch")


def _iv_preset() -> Preset:
    from tests.test_iv_vae import tiny_preset

    return tiny_preset()


def _lite_preset() -> Preset:
    from tests.test_lite_vae import TINY

    return TINY


def _diffusers_dir(preset: Preset, directory: Path) -> tuple[Path, Path]:
    preset.create().module.save_pretrained(directory)
    return directory, directory / "diffusion_pytorch_model.safetensors"


def _iv_file(preset: Preset, directory: Path) -> tuple[Path, Path]:
    path = save_iv(preset.create().module, directory / "ivvae_z4_dim4.pth")
    return path, path


def _lite_file(preset: Preset, directory: Path) -> tuple[Path, Path]:
    path = save_lite(preset.create().module, directory / "lite.safetensors")
    return path, path


FAMILIES = {
    "od-vae": Family("od-vae", _od_preset, _diffusers_dir),
    "wf-vae": Family("wf-vae", _wf_preset, _diffusers_dir),
    "iv-vae": Family("iv-vae", _iv_preset, _iv_file),
    "lite-vae": Family("lite-vae", _lite_preset, _lite_file),
}


def read(weights: Path) -> dict[str, torch.Tensor]:
    """The file's tensors, copied out (safetensors memory-maps the file we overwrite)."""
    if weights.suffix == ".safetensors":
        return {k: v.clone() for k, v in load_file(str(weights)).items()}
    return torch.load(weights, weights_only=True)


def write(weights: Path, state: dict[str, torch.Tensor]) -> None:
    if weights.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
    else:
        torch.save(state, weights)


@pytest.fixture(params=sorted(FAMILIES))
def release(request, tmp_path) -> tuple[Preset, Path, Path]:
    family = FAMILIES[request.param]
    preset = family.preset()
    (tmp_path / "release").mkdir()
    target, weights = family.save(preset, tmp_path / "release")
    return preset, target, weights


def load_error(preset: Preset, target: Path) -> str:
    with pytest.raises(AdapterError) as error:
        preset.create(target)
    return str(error.value)


def test_the_untouched_release_loads(release):
    preset, target, _ = release
    assert preset.create(target).weights not in ("random", "none")


def test_truncated_file(release):
    preset, target, weights = release
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    message = load_error(preset, target)
    assert str(weights) in message and "cannot" in message, message


def test_pickle_where_safetensors_are_expected(release):
    preset, target, weights = release
    if weights.suffix != ".safetensors":
        pytest.skip("this release is a torch pickle by design")
    torch.save(read(weights), weights)  # same name, pickle inside
    message = load_error(preset, target)
    assert str(weights) in message and "safetensors" in message, message


class RunsCode:
    """Unpickling this would run a shell command: ``weights_only`` must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused_without_running_it(release, tmp_path):
    preset, target, weights = release
    marker = tmp_path / "code-ran"
    state = {**read(weights), "payload": RunsCode(marker)}
    pickled = weights.with_suffix(".ckpt" if weights.suffix == ".safetensors" else weights.suffix)
    torch.save(state, pickled)
    if weights != pickled:
        weights.unlink()
    message = load_error(preset, target if target.is_dir() else pickled)
    assert "weights_only" in message and str(pickled) in message, message
    assert not marker.exists()


@pytest.mark.parametrize("edit", ["missing", "unexpected", "shape"])
def test_keys_that_do_not_match_are_named(release, edit):
    preset, target, weights = release
    state = read(weights)
    key = sorted(k for k, v in state.items() if v.ndim >= 1 and "weight" in k)[0]
    if edit == "missing":
        del state[key]
    elif edit == "unexpected":
        state["encoder.not_in_the_model.weight"] = torch.zeros(3)
    else:
        state[key] = torch.zeros(*state[key].shape[:-1], state[key].shape[-1] + 1)
    write(weights, state)
    message = load_error(preset, target)
    words = {"missing": ("missing", key), "unexpected": ("unexpected",
             "encoder.not_in_the_model.weight"), "shape": ("shape", key)}[edit]  # fmt: skip
    assert all(word in message for word in words), message


@pytest.mark.parametrize("other", ["lite-vae", "iv-vae"])
def test_weights_of_another_model_are_refused(release, other, tmp_path):
    preset, target, weights = release
    family = FAMILIES[other]
    if preset.name == family.preset().name:
        pytest.skip("same family")
    (tmp_path / "other").mkdir()
    _, foreign = family.save(family.preset(), tmp_path / "other")
    state = read(foreign)
    write(weights, state)
    message = load_error(preset, target)
    assert "missing" in message and "unexpected" in message, message


def test_every_torch_load_in_the_suite_is_weights_only():
    """Static check over the sources: no ``torch.load`` without ``weights_only=True``."""
    calls = 0
    for path in [*REPO.glob("adapters/**/*.py"), *REPO.glob("bench/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            if node.func.attr == "load" and ast.unparse(node.func.value) == "torch":
                calls += 1
                flags = {k.arg: ast.unparse(k.value) for k in node.keywords}
                assert flags.get("weights_only") == "True", f"{path}:{node.lineno}"
    assert calls >= 3
