"""Reading the CausalVideoVAE releases and loading them with a strict key match.

Layouts, as the release's ``from_pretrained`` reads them:

- ``config.json`` + one ``*.ckpt`` training checkpoint (Open-Sora Plan v1.1/v1.2,
  ``vae/checkpoint.ckpt``), read as its ``init_from_ckpt`` does: ``ema_state_dict`` (DDP
  ``module.`` prefixes removed) when present and not empty, else
  ``state_dict["gen_model"]`` or ``state_dict``, else the top level;
- ``config.json`` + diffusers weights (``diffusion_pytorch_model.safetensors`` or ``.bin``,
  as ``save_pretrained`` writes them; Open-Sora Plan v1.0).

Strict: every tensor of the model must be in the file under its name and shape, and
nothing else, with one documented allowance taken from the release: training
checkpoints may carry the loss's weights (LPIPS, discriminator) under ``loss.*``, which
``init_from_ckpt`` skips; they are left out and counted in the load report. Config keys
the class does not take (training settings such as ``lr``, ``loss_params``) are reported
too, and the ones that would change the network are checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vae_bench.adapters.base import AdapterError
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
from vae_bench.adapters.od_vae.model import CausalVAEModel

CLASS_NAME = "CausalVAEModel"
TRAINING_PREFIX = "loss."
# Keys of released configs that the class does not take but that describe the network:
# accepted only with the values the class builds anyway.
FIXED_KEYS: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "encoder_spatial_downsample_undown": "",
    "decoder_spatial_upsample_unup": "",
}
# Config keys that do not change the network's function at inference.
NON_ARCHITECTURE = ("dropout", "scale", "shift")


def _normal(value: Any) -> Any:
    return tuple(_normal(v) for v in value) if isinstance(value, list | tuple) else value


def architecture_differences(found: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """The architecture keys where two configs differ, each missing key at the class's
    default (``found`` from a release file, ``expected`` from a preset)."""
    differences = []
    for key, default in constructor_defaults(CausalVAEModel).items():
        a, b = _normal(found.get(key, default)), _normal(expected.get(key, default))
        if key not in NON_ARCHITECTURE and a != b:
            differences.append(f"{key} {a!r} (preset {b!r})")
    return differences


def read_config(path: Path) -> Config:
    """The constructor arguments in a release ``config.json`` and notes on the rest."""
    return split_config(read_class_config(path, CLASS_NAME), str(path))


def split_config(config: Mapping[str, Any], source: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Keep the class's arguments; check the architectural extras; note what is ignored."""
    accepted = constructor_defaults(CausalVAEModel)
    for key, allowed in FIXED_KEYS.items():
        value = config.get(key, allowed)
        values = value if isinstance(value, list | tuple) else [value]
        if any(item != allowed for item in values):
            raise AdapterError(
                f"{source}: {key} = {value!r} is not supported (only {allowed!r}, as released)"
            )
    ignored = sorted(k for k in config if not k.startswith("_") and k not in accepted)
    notes = (f"config keys not used by {CLASS_NAME}: {', '.join(ignored)}",) if ignored else ()
    return {k: v for k, v in config.items() if k in accepted}, notes


def load_strict(model: CausalVAEModel, state: Mapping[str, Any]) -> tuple[str, ...]:
    """Load ``state`` into ``model``; raise :class:`AdapterError` naming every missing,
    unexpected or mis-shaped key. Returns notes on the allowance used."""
    training = sorted(k for k in state if k.startswith(TRAINING_PREFIX))
    weights = {k: v for k, v in state.items() if not k.startswith(TRAINING_PREFIX)}
    check_state_dict(
        model_shapes(model),
        shapes(weights),
        f"{CLASS_NAME} state dict does not match the model",
        COUNTS,
    )
    model.load_state_dict(weights, strict=True)
    if training:
        return (f"{len(training)} training-only {TRAINING_PREFIX}* tensors left out",)
    return ()


def load_model(
    path: Path, fallback_config: Mapping[str, Any], use_ema: bool = True
) -> tuple[CausalVAEModel, LoadReport]:
    """Build the model from the release's config and load its weights strictly.

    ``path``: a release directory, or one weights file (the ``config.json`` beside it is
    used when there is one, else ``fallback_config``, the preset's).
    """
    path = Path(path)
    config, notes = release_config(
        path, read_config, lambda: split_config(fallback_config, "preset config")
    )
    weights = find_weights(path, CLASS_NAME) if path.is_dir() else path
    with torch.device("meta"):  # no random init: every tensor is overwritten below
        model = CausalVAEModel.from_config(config)
    model.to_empty(device="cpu")
    state, source = read_state_dict(weights, use_ema)
    notes = (*notes, *load_strict(model, state))
    return model.eval(), LoadReport(weights, source, dict(model.config), notes)
