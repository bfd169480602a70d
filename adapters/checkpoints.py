"""Reading weight files and matching them strictly against a model, for every adapter.

Strict means every tensor of the model is in the file under its name and shape, and
nothing else is; a failure names the missing, unexpected and mis-shaped keys (a capped
listing) in one :class:`AdapterError`, so a wrong file is diagnosed in one run.
"""

from __future__ import annotations

import inspect
import json
import pickle
import zipfile
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from vae_bench.adapters.base import AdapterError

Shape = tuple[int, ...]
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
CONFIG_NAME = "config.json"
#: A release config's constructor arguments and notes on what was left out of them.
Config = tuple[dict[str, Any], tuple[str, ...]]


@dataclass(frozen=True)
class LoadReport:
    """What was read, from where, and which allowances were used."""

    weights_file: Path
    source: str
    config: dict[str, Any]
    notes: tuple[str, ...] = ()


# --- strict key matching ----------------------------------------------------------------
@dataclass(frozen=True)
class Wording:
    """How a strictness error words its parts (``{n}``, ``{total}``, ``{keys}`` fields) and
    wraps them (``{subject}``, ``{parts}``, ``{hint}``); ``listed`` caps the keys named per
    kind (``None``: all)."""

    missing: str
    unexpected: str
    mis_shaped: str
    entry: Callable[[str, Shape | str, Shape], str]
    wrap: str
    listed: int | None


# diffusers-style wording (SD-VAE, LiteVAE): "missing 1 of 248 keys: ...".
TOTALS = Wording(
    missing="missing {n} of {total} keys: {keys}",
    unexpected="unexpected {n} keys: {keys}",
    mis_shaped="{n} shape mismatches: {keys}",
    entry=lambda key, found, model: f"{key} {list(found)} (model {list(model)})",
    wrap="{subject} ({parts}){hint}",
    listed=8,
)
# Release-loader wording (WF-VAE, OD-VAE, IV-VAE): "missing keys (1): ...".
COUNTS = Wording(
    missing="missing keys ({n}): {keys}",
    unexpected="unexpected keys ({n}): {keys}",
    mis_shaped="shape mismatches ({n}): {keys}",
    entry=lambda key, found, model: f"{key} {found} != {model}",
    wrap="{subject}: {parts}{hint}",
    listed=12,
)


def shape_of(value: Any) -> Shape | str:
    """A tensor's shape, or the type name of anything else (reported, never loaded)."""
    return tuple(value.shape) if torch.is_tensor(value) else type(value).__name__


def shapes(state: Mapping[str, Any]) -> dict[str, Shape | str]:
    return {str(key): shape_of(value) for key, value in state.items()}


def model_shapes(model: torch.nn.Module) -> dict[str, Shape]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def listing(items: Sequence[str], limit: int | None = TOTALS.listed) -> str:
    """``items`` joined, the ones past ``limit`` counted instead of named."""
    if limit is None or len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", ... and {len(items) - limit} more"


def check_state_dict(
    expected: Mapping[str, Sequence[int]],
    found: Mapping[str, Shape | str],
    subject: str,
    wording: Wording,
    *,
    hint: str = "",
    unmapped: Sequence[str] = (),
    optional: Collection[str] = (),
) -> tuple[str, ...]:
    """Raise :class:`AdapterError` unless ``found`` (key -> shape) matches ``expected`` exactly.

    ``unmapped``: file keys a conversion could not place, reported as unexpected.
    ``optional``: model keys the file may leave out (the model keeps its own values).
    Returns the optional keys that are absent.
    """
    absent = sorted(expected.keys() - found.keys())
    missing = [key for key in absent if key not in optional]
    unexpected = sorted([*unmapped, *(found.keys() - expected.keys())])
    mis_shaped = [
        wording.entry(key, found[key], tuple(expected[key]))
        for key in sorted(expected.keys() & found.keys())
        if found[key] != tuple(expected[key])
    ]
    if not (missing or unexpected or mis_shaped):
        return tuple(key for key in absent if key in optional)
    parts = []
    for template, keys in (
        (wording.missing, missing),
        (wording.unexpected, unexpected),
        (wording.mis_shaped, mis_shaped),
    ):
        if keys:
            text = listing(keys, wording.listed)
            parts.append(template.format(n=len(keys), total=len(expected), keys=text))
    raise AdapterError(wording.wrap.format(subject=subject, parts="; ".join(parts), hint=hint))


# --- reading ----------------------------------------------------------------------------
def torch_load(path: Path, name: str) -> Any:
    """``torch.load(weights_only=True)`` on the CPU (memory-mapped when the format allows),
    with unreadable or unsafe files turned into an :class:`AdapterError` naming ``path``."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # legacy format
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise AdapterError(
            f"{name}: {path} holds objects that torch.load(weights_only=True) refuses "
            f"({first}); save its state_dict alone or convert it to .safetensors"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise AdapterError(
            f"{name}: cannot read {path} as a PyTorch checkpoint (truncated or not a "
            f"checkpoint?): {error}"
        ) from error


def select_state_dict(obj: Any, use_ema: bool = True) -> tuple[dict[str, Any], str]:
    """The model weights inside a training checkpoint, chosen as the Open-Sora Plan
    releases' ``init_from_ckpt`` chooses them: non-empty ``ema_state_dict`` (DDP
    ``module.`` prefixes removed), else ``state_dict["gen_model"]`` or ``state_dict``,
    else the top level."""
    if not isinstance(obj, Mapping):
        raise AdapterError(f"checkpoint holds a {type(obj).__name__}, not a dict of tensors")
    ema = obj.get("ema_state_dict")
    if use_ema and isinstance(ema, Mapping) and len(ema) > 0:
        return {key.replace("module.", ""): value for key, value in ema.items()}, "ema_state_dict"
    state = obj.get("state_dict")
    if isinstance(state, Mapping):
        if "gen_model" in state:
            return dict(state["gen_model"]), "state_dict.gen_model"
        return dict(state), "state_dict"
    return dict(obj), "top level"


def read_state_dict(path: Path, use_ema: bool = True) -> tuple[dict[str, Any], str]:
    """A ``.safetensors`` file, or the weights in a training checkpoint, and where they were."""
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path)), "safetensors"
        except (SafetensorError, OSError) as error:
            raise AdapterError(
                f"{path}: cannot read as safetensors (truncated, or another format such as a "
                f"torch pickle under a .safetensors name?): {error}"
            ) from error
    if path.suffix not in CHECKPOINT_SUFFIXES:
        raise AdapterError(
            f"{path}: unknown weights format; expected .safetensors or "
            f"{', '.join(CHECKPOINT_SUFFIXES)}"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle payloads beyond tensors are refused on purpose
        raise AdapterError(
            f"{path}: cannot be read with torch.load(weights_only=True): {error}"
        ) from error
    return select_state_dict(obj, use_ema)


def find_weights(
    directory: Path,
    family: str,
    *,
    single_safetensors: bool = False,
    read_checkpoints: bool = True,
) -> Path:
    """The weights of a release directory: its one ``*.ckpt`` (it wins, as in the releases;
    not read when ``read_checkpoints`` is false, for releases whose loader reads diffusers
    weights only), else diffusers weights, else (``single_safetensors``) its only
    ``*.safetensors``."""
    checkpoints = sorted(directory.glob("*.ckpt")) if read_checkpoints else []
    if len(checkpoints) > 1:
        names = ", ".join(p.name for p in checkpoints)
        raise AdapterError(
            f"{directory}: several checkpoints ({names}); give the file to load as `weights`"
        )
    if checkpoints:
        return checkpoints[0]
    for name in DIFFUSERS_WEIGHTS:
        if (directory / name).is_file():
            return directory / name
    others = sorted(directory.glob("*.safetensors"))
    if single_safetensors and len(others) == 1:
        return others[0]
    extra = ", or a single *.safetensors" if single_safetensors else ""
    ckpt = "one *.ckpt or " if read_checkpoints else ""
    present = ", ".join(sorted(p.name for p in directory.iterdir())) or "nothing"
    raise AdapterError(
        f"{directory}: no {family} weights found (expected {ckpt}"
        f"{' or '.join(DIFFUSERS_WEIGHTS)}{extra}; found {present})"
    )


def constructor_defaults(cls: type) -> dict[str, Any]:
    """A model class's constructor arguments and their defaults (the release's)."""
    parameters = inspect.signature(cls.__init__).parameters
    return {name: p.default for name, p in parameters.items() if name != "self"}


def read_class_config(path: Path, class_name: str) -> dict[str, Any]:
    """A release's ``config.json`` as a dict, refused when it names another class."""
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise AdapterError(f"cannot read {class_name} config {path}: {error}") from error
    if not isinstance(config, dict):
        raise AdapterError(f"{path}: expected a JSON object, got {type(config).__name__}")
    name = config.get("_class_name", class_name)
    if name != class_name:
        raise AdapterError(f"{path}: _class_name is {name!r}, expected {class_name!r}")
    return config


def release_config(
    path: Path, read: Callable[[Path], Config], fallback: Callable[[], Config]
) -> Config:
    """The config of a release folder, or of the folder holding one weights file; a lone
    file with no ``config.json`` beside it takes ``fallback`` (the preset's), noted."""
    config_path = (path if path.is_dir() else path.parent) / CONFIG_NAME
    if config_path.is_file():
        return read(config_path)
    if path.is_dir():
        raise AdapterError(f"{path}: no {CONFIG_NAME} (the release ships one with weights)")
    config, notes = fallback()
    return config, (*notes, f"no {CONFIG_NAME} beside {path.name}: preset config used")
