"""The released weight files and strict loading.

The release (ModelScope ``wpy1999/iv-vae``) publishes one file per model,
``ivvae_z{z_dim}_dim{dim}.pth``: a ``torch.save``d flat state dict of ``VAutoencoder3d``
(keys ``encoder.*``, ``conv1.*``, ``conv2.*``, ``decoder.*``, no prefix, no wrapper),
which its ``IV_VAE(z_dim, dim)`` loads with ``load_state_dict(strict=True)``. Here it is
read with ``torch.load(weights_only=True)`` and matched just as strictly: every tensor of
the model present under its name and shape, nothing else.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vae_bench.adapters.base import AdapterError
from vae_bench.adapters.checkpoints import COUNTS, check_state_dict, listing, model_shapes, shapes
from vae_bench.adapters.iv_vae.model import IVVAEConfig, IVVAEModel

SUFFIX = ".pth"


def weights_file(path: Path, config: IVVAEConfig) -> Path:
    """``path`` itself, or the release's file for ``config`` inside the directory ``path``."""
    if not path.is_dir():
        return path
    expected = path / f"{config.release_name}{SUFFIX}"
    if expected.is_file():
        return expected
    present = ", ".join(sorted(p.name for p in path.iterdir())) or "nothing"
    raise AdapterError(f"{path}: no {expected.name} (the release's file name); found {present}")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The flat state dict in a released ``.pth`` (tensors only, loaded on the CPU)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError) as error:
        raise AdapterError(f"cannot read IV-VAE weights {path}: {error}") from error
    if not isinstance(state, Mapping):
        raise AdapterError(
            f"{path}: expected a state dict (mapping of names to tensors), "
            f"got {type(state).__name__}"
        )
    others = sorted(str(k) for k, v in state.items() if not torch.is_tensor(v))
    if others:
        shown = listing(others, COUNTS.listed)
        raise AdapterError(f"{path}: not a flat state dict; entries that are not tensors: {shown}")
    return {str(k): v for k, v in state.items()}


def save_state_dict(model: IVVAEModel, path: str | Path) -> Path:
    """Write ``model`` in the release's format (a flat ``torch.save``d state dict)."""
    path = Path(path)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
    return path


def load_strict(model: IVVAEModel, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``model``; raise :class:`AdapterError` naming every missing,
    unexpected or mis-shaped key (and the widths the file seems to have)."""
    check_state_dict(
        model_shapes(model),
        shapes(state),
        f"{source} does not match IV-VAE {model.config.release_name}",
        COUNTS,
        hint=_widths_hint(state),
    )
    model.load_state_dict(state, strict=True)


def _widths_hint(state: Mapping[str, Any]) -> str:
    """The release name whose widths the file's first and latent layers have, if readable."""
    first = state.get("encoder.conv1.conv_2d.weight")
    latent = state.get("conv2.conv_2d.weight")
    if not (torch.is_tensor(first) and torch.is_tensor(latent)):
        return ""
    if first.ndim != 4 or latent.ndim != 4:
        return ""
    return f" (the file's widths are those of ivvae_z{latent.shape[1]}_dim{first.shape[0]})"

