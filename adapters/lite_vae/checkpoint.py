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

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vae_bench.adapters.base import AdapterError
from vae_bench.adapters.checkpoints import listing, torch_load

WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
# Parts of a training checkpoint that are not the autoencoder.
TRAINING_ONLY_PREFIXES = ("loss.", "encoder_ema.", "decoder_ema.", "quantizer_ema.")


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
        state = torch_load(path, name)
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

