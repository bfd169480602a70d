"""Reading CV-VAE's released folders and loading them with a strict key match.

The release (``AILab-CVC/CV-VAE`` on the hub, folders ``vae3d`` and ``vae3d_v1-1``) is a
diffusers model folder, read by its inference script with ``CVVAEModel.from_pretrained``:
``config.json`` and ``diffusion_pytorch_model.safetensors`` (``vae3d``: float32;
``vae3d_v1-1``: float16, loaded into the model's dtype). The ``cv_vae*.ckpt`` beside them
is not read by that script, so a folder's ``*.ckpt`` is not taken for its weights here
either; a weights file can still be named directly (``.safetensors``, ``.bin``, ``.ckpt``).

Strict: every tensor of the model is in the file under its name and shape, and nothing
else. Config keys the class does not take are noted in the load report.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vae_bench.adapters.checkpoints import (
    COUNTS,
    Config,
    LoadReport,
    check_state_dict,
    constructor_defaults,
    find_weights,
    model_shapes,
    read_class_config,
    read_state_dict,
    release_config,
    shapes,
)
from vae_bench.adapters.cv_vae.model import CVVAEModel

CLASS_NAME = "CVVAEModel"
# The keys that shape the network (the others are checked by the class or are inference
# settings).
ARCHITECTURE = ("ch", "ch_mult", "num_res_blocks", "z_channels")


def split_config(config: Mapping[str, Any], source: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The class's arguments in ``config``, and a note naming the keys left out."""
    accepted = constructor_defaults(CVVAEModel)
    ignored = sorted(k for k in config if not k.startswith("_") and k not in accepted)
    notes = (f"{source}: keys not used by {CLASS_NAME}: {', '.join(ignored)}",) if ignored else ()
    return {k: v for k, v in config.items() if k in accepted}, notes


def read_config(path: Path) -> Config:
    return split_config(read_class_config(path, CLASS_NAME), str(path))


def architecture_differences(found: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """The architecture keys where two configs differ (absent keys at the class default)."""
    defaults = constructor_defaults(CVVAEModel)
    differences = []
    for key in ARCHITECTURE:
        a, b = found.get(key, defaults[key]), expected.get(key, defaults[key])
        a, b = (list(v) if isinstance(v, list | tuple) else v for v in (a, b))
        if a != b:
            differences.append(f"{key} {a!r} (preset {b!r})")
    return differences


def load_strict(model: CVVAEModel, state: Mapping[str, Any]) -> tuple[str, ...]:
    """Load ``state`` into ``model`` or raise :class:`AdapterError` naming every missing,
    unexpected or mis-shaped key; returns a note on the stored dtype when it differs."""
    check_state_dict(
        model_shapes(model), shapes(state), f"{CLASS_NAME} state dict does not match the model",
        COUNTS,
    )  # fmt: skip
    model.load_state_dict(state, strict=True)
    stored = sorted({str(v.dtype).removeprefix("torch.") for v in state.values()})
    model_dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    if stored != [model_dtype]:
        return (f"weights stored as {', '.join(stored)}, loaded as {model_dtype}",)
    return ()


def load_model(path: Path, fallback_config: Mapping[str, Any]) -> tuple[CVVAEModel, LoadReport]:
    """Build the model from the release's config and load its weights strictly.

    ``path``: a release folder, or one weights file (the ``config.json`` beside it is used
    when there is one, else ``fallback_config``, the preset's).
    """
    path = Path(path)
    config, notes = release_config(
        path, read_config, lambda: split_config(fallback_config, "preset config")
    )
    weights = find_weights(path, CLASS_NAME, read_checkpoints=False) if path.is_dir() else path
    with torch.device("meta"):  # no random init: every tensor is overwritten below
        model = CVVAEModel.from_config(config)
    model.to_empty(device="cpu")
    state, source = read_state_dict(weights)
    notes = (*notes, *load_strict(model, state))
    return model.eval(), LoadReport(weights, source, dict(model.config), notes)
