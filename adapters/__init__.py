"""Model adapters: every video VAE behind one protocol (see ``vae_bench.adapters.base``)."""

from vae_bench.adapters.base import (
    FULL,
    RANDOM_WEIGHTS,
    AdapterError,
    FrameRule,
    InferenceMode,
    Preset,
    VAESpec,
    VideoVAE,
)
from vae_bench.adapters.registry import create_model, get_preset, presets, register


def builtin_presets() -> list[Preset]:
    """The suite's own presets, family by family."""
    from vae_bench.adapters import (
        codec,
        cv_vae,
        diffusers_video,
        identity,
        iv_vae,
        lite_vae,
        od_vae,
        open_sora_vae,
        resample,
        sd_vae,
        svd_vae,
        wf_vae,
    )

    modules = (identity, resample, codec, wf_vae, od_vae, cv_vae, iv_vae, sd_vae, lite_vae)
    families = (*modules, diffusers_video, svd_vae, open_sora_vae)
    return [preset for module in families for preset in module.PRESETS]


def register_builtin() -> None:
    """Register the suite's own presets (entry point ``vae_bench.adapters:builtin``)."""
    for preset in builtin_presets():
        register(preset, replace=True)


__all__ = [
    "FULL",
    "RANDOM_WEIGHTS",
    "AdapterError",
    "FrameRule",
    "InferenceMode",
    "Preset",
    "VAESpec",
    "VideoVAE",
    "builtin_presets",
    "create_model",
    "get_preset",
    "presets",
    "register",
    "register_builtin",
]
