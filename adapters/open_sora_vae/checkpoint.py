"""Reading the released files and loading them with a strict key match.

The release (``hpcai-tech/OpenSora-VAE-v1.2``) is what transformers' ``save_pretrained``
writes for ``VideoAutoencoderPipeline``: ``config.json`` and ``model.safetensors`` (or
``pytorch_model.bin``) holding the whole pipeline's state dict: ``spatial_vae.module.*``,
``temporal_vae.*`` and the ``scale``/``shift`` buffers. Strict: every tensor of the
network, the two buffers included, is in the file under its name and shape, and nothing
else. The buffers loaded are the normalisation used, as when the release loads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vae_bench.adapters.base import AdapterError
from vae_bench.adapters.checkpoints import (
    COUNTS,
    LoadReport,
    check_state_dict,
    model_shapes,
    read_state_dict,
    shapes,
)
from vae_bench.adapters.open_sora_vae.config import (
    MODEL_TYPE,
    PipelineConfig,
    ReleaseConfig,
    read_release_config,
)
from vae_bench.adapters.open_sora_vae.model import VideoAutoencoderPipeline

CONFIG_NAME = "config.json"
WEIGHTS_NAMES = ("model.safetensors", "pytorch_model.bin")  # transformers' file names


@dataclass(frozen=True)
class Loaded:
    model: VideoAutoencoderPipeline
    report: LoadReport
    release: ReleaseConfig | None


def find_weights(directory: Path) -> Path:
    for name in WEIGHTS_NAMES:
        if (directory / name).is_file():
            return directory / name
    present = ", ".join(sorted(p.name for p in directory.iterdir())) or "nothing"
    raise AdapterError(
        f"{directory}: no {MODEL_TYPE} weights (expected {' or '.join(WEIGHTS_NAMES)}; "
        f"found {present})"
    )


def _release_notes(release: ReleaseConfig, config: PipelineConfig) -> list[str]:
    differences = [
        f"{key} {a!r} (preset {b!r})"
        for key, a, b in (
            (k, v, getattr(config.temporal, k)) for k, v in release.temporal.to_dict().items()
        )
        if a != b
    ]
    if differences:
        raise AdapterError(
            f"the release config describes another temporal VAE: {'; '.join(differences)}"
        )
    notes = [f"config.json micro_frame_size {release.micro_frame_size}"]
    if release.micro_batch_size is not None:
        notes.append(f"config.json micro_batch_size {release.micro_batch_size}")
    return notes


def load_strict(model: VideoAutoencoderPipeline, state: Mapping[str, Any], hint: str) -> None:
    check_state_dict(
        model_shapes(model),
        shapes(state),
        f"{MODEL_TYPE} state dict does not match the model",
        COUNTS,
        hint=hint,
    )
    model.load_state_dict(state, strict=True)


def load_model(path: Path, config: PipelineConfig, hint: str = "") -> Loaded:
    """The pipeline with the file's weights; ``path`` is a release directory or its
    weights file (the ``config.json`` beside it is checked when there is one)."""
    path = Path(path)
    if path.is_dir():
        config_path = path / CONFIG_NAME
        if not config_path.is_file():
            raise AdapterError(f"{path}: no {CONFIG_NAME} (the release ships one with weights)")
    else:
        config_path = path.parent / CONFIG_NAME
    release = read_release_config(config_path) if config_path.is_file() else None
    weights = find_weights(path) if path.is_dir() else path
    notes = (
        _release_notes(release, config)
        if release is not None
        else [f"no {CONFIG_NAME} beside {path.name}: preset config used"]
    )
    state, source = read_state_dict(weights)
    with torch.device("meta"):  # no random init: every tensor is overwritten below
        model = config.build()
    model.to_empty(device="cpu")
    load_strict(model, state, hint)
    used = {
        "temporal": config.temporal.to_dict(),
        "scale": model.scale.flatten().tolist(),  # the file's buffers
        "shift": model.shift.flatten().tolist(),
    }
    return Loaded(model.eval(), LoadReport(weights, source, used, tuple(notes)), release)
