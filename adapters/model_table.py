"""One line of facts per registered preset, for ``vae-bench list --markdown`` and the README.

The facts come from each preset's spec, built on the meta device (no memory, no weights),
so the table cannot drift from the code: the README's copy is checked against it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from vae_bench.adapters.base import Preset
from vae_bench.adapters.registry import family, presets

HEADER = (
    "| preset | family | latent ch | spatial x temporal | frame rule | causal | params "
    "| official weights |"
)


@dataclass(frozen=True)
class PresetFacts:
    name: str
    family: str
    latent_channels: int
    spatial_factor: int
    temporal_factor: int
    frame_rule: str
    causal: bool
    params: int
    weights: str


def official_weights(preset: Preset) -> str:
    """Where the released weights are, or why there are none."""
    if preset.source is not None:
        return str(preset.source)
    if preset.release:
        return preset.release
    if preset.adapter.weights == "none":
        return "none needed (nothing learned)"
    return "none released (random weights, or a local checkpoint)"


def preset_facts(preset: Preset) -> PresetFacts:
    with torch.device("meta"):
        spec = preset.create().spec
    return PresetFacts(
        name=preset.name,
        family=family(preset),
        latent_channels=spec.latent_channels,
        spatial_factor=spec.spatial_factor,
        temporal_factor=spec.temporal_factor,
        frame_rule=str(spec.frame_rule),
        causal=spec.causal,
        params=spec.params,
        weights=official_weights(preset),
    )


def markdown_table(selected: Iterable[Preset] | None = None) -> str:
    """The presets (default: every registered one), grouped by family, as Markdown."""
    chosen = presets().values() if selected is None else selected
    facts = sorted((preset_facts(p) for p in chosen), key=lambda f: (f.family, f.name))
    lines = [HEADER, "| --- " * 8 + "|"]
    for f in facts:
        params = f"{f.params / 1e6:.1f}M" if f.params else "-"
        lines.append(
            f"| `{f.name}` | {f.family} | {f.latent_channels} | "
            f"{f.spatial_factor} x {f.temporal_factor} | {f.frame_rule} | "
            f"{'yes' if f.causal else 'no'} | {params} | {f.weights} |"
        )
    return "\n".join(lines)
