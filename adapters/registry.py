"""The preset registry: built-in adapters plus third-party ones from entry points.

Third-party packages add models by declaring an entry point in the group
``vae_bench.adapters`` that names a callable; the callable registers its presets with
:func:`register` (the suite's own presets come in the same way, so both paths are used).
"""

from __future__ import annotations

from importlib.metadata import entry_points

from vae_bench.adapters.base import RANDOM_WEIGHTS, AdapterError, Preset, VideoVAE

ENTRY_POINT_GROUP = "vae_bench.adapters"

_PRESETS: dict[str, Preset] = {}
_loaded = False


def register(preset: Preset, *, replace: bool = False) -> Preset:
    if preset.name in _PRESETS and not replace and _PRESETS[preset.name] is not preset:
        raise AdapterError(f"preset {preset.name!r} is already registered")
    _PRESETS[preset.name] = preset
    return preset


def _load_plugins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from vae_bench.adapters import register_builtin

    register_builtin()
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.value.startswith("adapters:"):
            continue  # the built-ins, registered above even when not installed
        try:
            entry.load()()
        except Exception as error:  # a broken plugin must not hide the other models
            raise AdapterError(
                f"adapter plugin {entry.name!r} ({entry.value}) failed: {error}"
            ) from error


def presets() -> dict[str, Preset]:
    """All registered presets by name."""
    _load_plugins()
    return dict(sorted(_PRESETS.items()))


def family(preset: Preset) -> str:
    """The adapter family a preset belongs to: its adapter's module, as ``wf-vae``.

    Read from the module rather than the built spec, so listing needs no model build.
    """
    module = preset.adapter.__module__.removeprefix("vae_bench.adapters.")
    return module.removesuffix(".adapter").split(".")[0].replace("_", "-")


def presets_by_family() -> dict[str, list[Preset]]:
    """Registered presets grouped by :func:`family`, both sorted by name."""
    groups: dict[str, list[Preset]] = {}
    for preset in presets().values():
        groups.setdefault(family(preset), []).append(preset)
    return dict(sorted(groups.items()))


def get_preset(name: str) -> Preset:
    available = presets()
    if name not in available:
        raise AdapterError(f"unknown model {name!r}; registered: {', '.join(available)}")
    return available[name]


def create_model(name: str, weights: str = RANDOM_WEIGHTS) -> VideoVAE:
    """Build a registered model with random weights or load its official files."""
    return get_preset(name).create(weights)
