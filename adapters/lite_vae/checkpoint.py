"""Reading and writing LiteVAE weights in the release's layout, strictly.

The public weights (``RGenDiff/olitevaeB_im_f8c12`` on the Hugging Face hub,
``olitevaeB_im_f8c12.safetensors``) are the state dict of open-litevae's
``LiteAutoencoderKL``: flat ``encoder.*`` / ``decoder.*`` keys. Its training runs write
PyTorch Lightning ``.ckpt`` files holding the same keys under ``state_dict``, next to the
loss module (``loss.*``: discriminator, LPIPS) and, with EMA on, ``*_ema.*`` shadow copies.
Both load here: a ``.safetensors`` file, or a ``.ckpt``/``.pt``/``.pth``/``.bin`` read with
``torch.load(weights_only=True)``, bare or under ``state_dict``. Training-only entries are
dropped with a warning; every other key must match the model exactly (names and shapes).
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from adapters.base import AdapterError

WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
# Parts of a training checkpoint that are not the autoencoder.
TRAINING_ONLY_PREFIXES = ("loss.", "encoder_ema.", "decoder_ema.", "quantizer_ema.")
_LISTED = 8  # keys named per kind in an error


def weights_file(path: Path, name: str, release: str = "") -> Path:
    """``path`` itself, or the single weights file in the directory ``path``."""
    hint = f" (official release: {release})" if release else ""
    if not path.exists():
        raise AdapterError(f"{name}: weights not found at {path}{hint}")
    if path.is_file():
        if path.suffix not in WEIGHT_SUFFIXES:
            raise AdapterError(
                f"{name}: {path} is not a weights file; expected one ending in "
                f"{', '.join(WEIGHT_SUFFIXES)}"
            )
        return path
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if len(files) != 1:
        raise AdapterError(
            f"{name}: {path} holds {len(files)} weights files "
            f"({', '.join(p.name for p in files) or 'none'}); give exactly one{hint}"
        )
    return files[0]


def read_state_dict(path: Path, name: str) -> dict[str, torch.Tensor]:
    """The autoencoder's tensors in ``path`` (training-only entries dropped, with a warning)."""
    if path.suffix == ".safetensors":
        try:
            state: Mapping[str, Any] = load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as error:
            raise AdapterError(
                f"{name}: cannot read {path} (truncated or not safetensors?): {error}"
            ) from error
    else:
        state = _torch_load(path, name)
        if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
            state = state["state_dict"]  # a Lightning checkpoint
        if not isinstance(state, Mapping):
            raise AdapterError(f"{name}: {path} holds a {type(state).__name__}, not a state dict")
    others = sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
    if others:
        raise AdapterError(f"{name}: {path} has non-tensor entries: {listing(others)}")
    dropped = sorted(str(k) for k in state if str(k).startswith(TRAINING_ONLY_PREFIXES))
    if dropped:
        warnings.warn(
            f"{path}: ignored {len(dropped)} training-only entries "
            f"({', '.join(p + '*' for p in TRAINING_ONLY_PREFIXES)}); loaded the autoencoder",
            stacklevel=3,
        )
    return {str(k): v for k, v in state.items() if not str(k).startswith(TRAINING_ONLY_PREFIXES)}


def _torch_load(path: Path, name: str) -> Any:
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


def check_keys(
    expected: Mapping[str, torch.Size | tuple[int, ...]],
    found: Mapping[str, torch.Tensor],
    source: Path,
    name: str,
    hint: str = "",
) -> None:
    """Raise an :class:`AdapterError` naming missing, unexpected and mis-shaped keys."""
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    mismatched = [
        f"{key} {list(found[key].shape)} (model {list(expected[key])})"
        for key in sorted(expected.keys() & found.keys())
        if tuple(found[key].shape) != tuple(expected[key])
    ]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} of {len(expected)} keys: {listing(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} keys: {listing(unexpected)}")
    if mismatched:
        parts.append(f"{len(mismatched)} shape mismatches: {listing(mismatched)}")
    raise AdapterError(
        f"{name}: {source} does not match the model strictly ({'; '.join(parts)}){hint}"
    )


def save_state_dict(module: torch.nn.Module, path: str | Path) -> Path:
    """Write ``module``'s weights in the release's layout: ``.safetensors`` (as published) or
    a Lightning-style ``.ckpt`` (``{"state_dict": ...}``, as training writes)."""
    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    elif path.suffix in WEIGHT_SUFFIXES:
        torch.save({"state_dict": state}, path)
    else:
        raise AdapterError(f"cannot save to {path}: use one of {', '.join(WEIGHT_SUFFIXES)}")
    return path


def listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    return shown + (f", ... and {len(items) - _LISTED} more" if len(items) > _LISTED else "")
