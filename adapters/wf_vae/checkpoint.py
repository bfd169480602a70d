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

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vae_bench.adapters.base import AdapterError
from vae_bench.adapters.checkpoints import (
    COUNTS,
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
from vae_bench.adapters.wf_vae.model import WFVAEModel
from vae_bench.adapters.wf_vae.wavelet import HAAR_MODULES

_OPEN_SORA_SPELLING = re.compile(r"^(encoder|decoder)\.(inverse_)?wavelet_tranform_")


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
    absent = check_state_dict(
        model_shapes(model),
        shapes(renamed),
        "WF-VAE state dict does not match the model",
        COUNTS,
        optional=haar_keys(model),
    )
    if absent:
        notes.append(f"{len(absent)} fixed Haar filter tensors absent; exact constants kept")
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
    config, noted = release_config(
        path, lambda found: (read_class_config(found, "WFVAEModel"), ()),
        lambda: (dict(fallback_config), ()),
    )  # fmt: skip
    notes = list(noted)
    weights = find_weights(path, "WF-VAE", single_safetensors=True) if path.is_dir() else path
    init_keys = set(constructor_defaults(WFVAEModel))
    ignored = sorted(k for k in config if not k.startswith("_") and k not in init_keys)
    if ignored:
        notes.append(f"config keys not used by WFVAEModel: {', '.join(ignored)}")
    model = WFVAEModel.from_config({k: v for k, v in config.items() if k not in ignored})
    state, source = read_state_dict(weights, use_ema)
    notes.extend(load_strict(model, state))
    return model.eval(), LoadReport(weights, source, dict(model.config), tuple(notes))
