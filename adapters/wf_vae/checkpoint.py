"""Reading WF-VAE's released files and loading them with a strict key match.

Layouts accepted, as the release's own ``from_pretrained`` accepts them:

- a directory with ``config.json`` and diffusers weights
  (``diffusion_pytorch_model.safetensors`` or ``.bin``), as ``save_pretrained`` writes;
- a directory with ``config.json`` and one ``*.ckpt`` training checkpoint: its
  ``ema_state_dict`` (keys with the DDP ``module.`` prefix removed) when present and not
  empty, else ``state_dict["gen_model"]`` or ``state_dict``, else the file's top level.

Strict means every learned tensor of the model is in the file under its release name and
nothing else is. One documented allowance: the fixed Haar filters (not learned; the
release freezes them) may be absent, as in EMA checkpoints, whose shadow copies only
trainable parameters; then the model keeps the exact constants it was built with. The
Open-Sora Plan spelling of their module names (``wavelet_tranform_*``) is accepted too.
Both are recorded in the load report.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from adapters.base import AdapterError
from adapters.wf_vae.model import WFVAEModel
from adapters.wf_vae.wavelet import HAAR_MODULES

CONFIG_NAME = "config.json"
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
_OPEN_SORA_SPELLING = re.compile(r"^(encoder|decoder)\.(inverse_)?wavelet_tranform_")


@dataclass(frozen=True)
class LoadReport:
    """What was read, from where, and which allowances were used."""

    weights_file: Path
    source: str
    config: dict[str, Any]
    notes: tuple[str, ...] = ()


def find_weights(directory: Path) -> Path:
    """The weights file of a release directory (a single ``*.ckpt`` wins, as in the release)."""
    checkpoints = sorted(directory.glob("*.ckpt"))
    if len(checkpoints) > 1:
        names = ", ".join(p.name for p in checkpoints)
        raise AdapterError(f"{directory}: several checkpoints ({names}); pass the file to load")
    if checkpoints:
        return checkpoints[0]
    for name in DIFFUSERS_WEIGHTS:
        if (directory / name).is_file():
            return directory / name
    others = sorted(directory.glob("*.safetensors"))
    if len(others) == 1:
        return others[0]
    raise AdapterError(
        f"{directory}: no WF-VAE weights found (expected one *.ckpt, "
        f"{' or '.join(DIFFUSERS_WEIGHTS)}, or a single *.safetensors)"
    )


def read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise AdapterError(f"cannot read WF-VAE config {path}: {error}") from error
    name = config.get("_class_name", "WFVAEModel")
    if name != "WFVAEModel":
        raise AdapterError(f"{path}: _class_name is {name!r}, expected 'WFVAEModel'")
    return config


def select_state_dict(obj: Any, use_ema: bool = True) -> tuple[dict[str, Any], str]:
    """The model weights inside a training checkpoint, chosen as the release chooses them."""
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
    if path.suffix == ".safetensors":
        return load_file(str(path)), "safetensors"
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


def _shape(value: Any) -> tuple[int, ...] | str:
    return tuple(value.shape) if torch.is_tensor(value) else type(value).__name__


def haar_keys(model: torch.nn.Module) -> set[str]:
    """State-dict keys of the fixed wavelet filters."""
    keys = set()
    for name, module in model.named_modules():
        if isinstance(module, HAAR_MODULES):
            keys.update(f"{name}.{key}" for key in module.state_dict())
    return keys


def load_strict(model: WFVAEModel, state: Mapping[str, Any]) -> tuple[str, ...]:
    """Load ``state`` into ``model``; raise :class:`AdapterError` naming every missing,
    unexpected or mis-shaped key. Returns notes on the allowances used."""
    notes = []
    renamed = {_OPEN_SORA_SPELLING.sub(r"\1.\2wavelet_transform_", k): v for k, v in state.items()}
    if len(renamed) != len(state):
        raise AdapterError("checkpoint holds wavelet filters under both spellings")
    if renamed.keys() != state.keys():
        notes.append("wavelet filters read under Open-Sora Plan names (wavelet_tranform_*)")
    expected = model.state_dict()
    fixed = haar_keys(model)
    missing = sorted(set(expected) - set(renamed))
    unexpected = sorted(set(renamed) - set(expected))
    learned_missing = [k for k in missing if k not in fixed]
    mis_shaped = [
        f"{key} {_shape(value)} != {tuple(expected[key].shape)}"
        for key, value in renamed.items()
        if key in expected and _shape(value) != tuple(expected[key].shape)
    ]
    if learned_missing or unexpected or mis_shaped:
        parts = []
        if learned_missing:
            parts.append(f"missing keys ({len(learned_missing)}): {', '.join(learned_missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if mis_shaped:
            parts.append(f"shape mismatches ({len(mis_shaped)}): {', '.join(mis_shaped)}")
        raise AdapterError("WF-VAE state dict does not match the model: " + "; ".join(parts))
    if missing:
        notes.append(f"{len(missing)} fixed Haar filter tensors absent; exact constants kept")
    model.load_state_dict(renamed, strict=False)
    return tuple(notes)


def load_model(
    path: Path, fallback_config: Mapping[str, Any], use_ema: bool = True
) -> tuple[WFVAEModel, LoadReport]:
    """Build the model from the release's config and load its weights strictly.

    ``path``: a release directory, or one weights file (its directory's ``config.json``
    is used when there is one, else ``fallback_config``).
    """
    path = Path(path)
    notes: list[str] = []
    if path.is_dir():
        config_path = path / CONFIG_NAME
        if not config_path.is_file():
            raise AdapterError(f"{path}: no {CONFIG_NAME} (the release ships one with weights)")
        config, weights = read_config(config_path), find_weights(path)
    else:
        weights, config_path = path, path.parent / CONFIG_NAME
        if config_path.is_file():
            config = read_config(config_path)
        else:
            config = dict(fallback_config)
            notes.append(f"no {CONFIG_NAME} beside {path.name}: preset config used")
    init_keys = set(inspect.signature(WFVAEModel.__init__).parameters) - {"self"}
    ignored = sorted(k for k in config if not k.startswith("_") and k not in init_keys)
    if ignored:
        notes.append(f"config keys not used by WFVAEModel: {', '.join(ignored)}")
    model = WFVAEModel.from_config({k: v for k, v in config.items() if k not in ignored})
    state, source = read_state_dict(weights, use_ema)
    notes.extend(load_strict(model, state))
    return model.eval(), LoadReport(weights, source, dict(model.config), tuple(notes))
