"""SD-VAE: Stable Diffusion's KL-f8 autoencoder through diffusers' ``AutoencoderKL``.

An image VAE, so a clip runs frame by frame: frames are folded into the batch
(``[B, C, T, H, W] -> [B*T, C, H, W]``) in groups of at most ``frame_batch`` frames, which
bounds memory whatever the clip length, and the latent is ``[B, 4, T, H/8, W/8]``: the raw
posterior mode. The spec carries the release's ``scaling_factor`` (0.18215) for diffusion use.

Two checkpoint layouts load, both strictly (every key of file and model accounted for):

* a diffusers directory (``config.json`` + ``diffusion_pytorch_model.safetensors|.bin``,
  or a pipeline directory with a ``vae/`` folder), as ``stabilityai/sd-vae-ft-mse`` and
  ``stabilityai/sd-vae-ft-ema`` are published;
* an original single file (``.ckpt``/``.pt``/``.pth``/``.bin``/``.safetensors``): a full SD v1
  checkpoint (``first_stage_model.*`` keys) or a standalone VAE (bare keys, optionally under
  ``state_dict``), converted with diffusers' own LDM key converter and the preset's config,
  so nothing is fetched from the hub.

``spatial_tiles(size, overlap)`` is diffusers' own tiling (``enable_tiling``), mapped as
``tile_sample_min_size = size`` pixels, ``tile_latent_min_size = size / 8`` and
``tile_overlap_factor = overlap / size``: tiles start every ``size - overlap`` pixels and
neighbours blend linearly over ``overlap`` pixels (``overlap / 8`` latent rows when encoding).
As in diffusers, a frame no larger than ``size`` in both dimensions runs whole.
"""

from __future__ import annotations

import inspect
import json
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
from safetensors import SafetensorError, safe_open

from vae_bench.adapters.base import (
    RANDOM_WEIGHTS,
    AdapterError,
    FrameRule,
    InferenceMode,
    Preset,
    VAESpec,
    VideoVAE,
    count_params,
    file_sha256,
)
from vae_bench.adapters.checkpoints import (
    DIFFUSERS_WEIGHTS,
    TOTALS,
    check_state_dict,
    listing,
    model_shapes,
    torch_load,
)
from vae_bench.adapters.frames import DEFAULT_FRAME_BATCH, frame_batch_of, per_frame
from vae_bench.adapters.sampling import cpu_seeded_sample, seeded_build
from vae_bench.adapters.source import DIFFUSERS_FILES, HUB, Source

FAMILY = "sd-vae"
RANDOM_SEED = 0  # from_config: two random builds of one preset are identical
LDM_PREFIX = "first_stage_model."
# Training state kept in some original checkpoints (LPIPS/discriminator, EMA shadow copies).
TRAINING_ONLY_PREFIXES = ("loss.", "model_ema.")
SINGLE_FILE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".safetensors")
# Config entries that change the network; the rest (sample_size, scaling_factor, ...) do not.
ARCH_KEYS = (
    "in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels",
    "layers_per_block", "act_fn", "latent_channels", "norm_num_groups", "use_quant_conv",
    "use_post_quant_conv", "mid_block_add_attention",
)  # fmt: skip
_INIT = inspect.signature(AutoencoderKL.__init__).parameters
MODEL_KEYS = tuple(name for name in _INIT if name != "self")

# The released KL-f8 config (stabilityai/sd-vae-ft-mse config.json).
_KL_F8: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 256,
    "scaling_factor": 0.18215,
}


def merge_config(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``overrides``; a new ``block_out_channels`` alone re-derives the
    block type lists to its length, so a narrower or shallower test model is one override."""
    config = {**base, **overrides}
    if "block_out_channels" in overrides:
        levels = len(config["block_out_channels"])
        for key, block in (
            ("down_block_types", "DownEncoderBlock2D"),
            ("up_block_types", "UpDecoderBlock2D"),
        ):
            if key not in overrides:
                config[key] = (block,) * levels
    return config


def sd_config(**overrides: Any) -> dict[str, Any]:
    """The released KL-f8 ``AutoencoderKL`` config with ``overrides`` applied."""
    return merge_config(_KL_F8, overrides)


def split_config(config: Mapping[str, Any], name: str) -> tuple[dict[str, Any], int]:
    """``AutoencoderKL`` keyword arguments and the frame batch; unknown keys are errors."""
    frame_batch = frame_batch_of(config, MODEL_KEYS, name)
    return {k: v for k, v in config.items() if k in MODEL_KEYS}, frame_batch


def tile_overlap_factor(size: int, overlap: int, spatial_factor: int = 8) -> float:
    """The ``tile_overlap_factor`` for which diffusers' tiling lands exactly on ``size`` and
    ``overlap`` pixels.

    diffusers derives the tile stride and blend widths from the float factor with ``int()``
    (in ``_tiled_encode`` and ``tiled_decode``); ``overlap / size`` can round one of them
    down a pixel, which shifts tiles against the latent grid. The float nearest
    ``overlap / size`` that reproduces the integer grid is used; pairs without one are refused.
    """
    for what, value in (("size", size), ("overlap", overlap)):
        if value % spatial_factor:
            raise AdapterError(
                f"spatial_tiles: {what} {value} must be a multiple of the spatial factor "
                f"{spatial_factor}"
            )
    factor = _exact_factor(size, overlap, spatial_factor)
    if factor is None:
        valid = [
            o
            for o in range(0, size, spatial_factor)
            if _exact_factor(size, o, spatial_factor) is not None
        ]
        near = sorted(valid, key=lambda o: abs(o - overlap))[:2]
        raise AdapterError(
            f"spatial_tiles({size},{overlap}): diffusers' float overlap factor cannot express "
            f"this overlap exactly; nearest that work: {', '.join(map(str, sorted(near)))}"
        )
    return factor


def _exact_factor(size: int, overlap: int, spatial_factor: int) -> float | None:
    latent = size // spatial_factor
    wanted = (
        size - overlap,
        overlap,
        (size - overlap) // spatial_factor,
        overlap // spatial_factor,
    )
    low = high = overlap / size
    for _ in range(16):  # the nearest floats first, a few ulps either way
        for factor in (low, high):
            grid = (
                int(size * (1 - factor)),  # encode stride (pixels)
                int(size * factor),  # decode blend (pixels)
                int(latent * (1 - factor)),  # decode stride (latent)
                int(latent * factor),  # encode blend (latent)
            )
            if grid == wanted:
                return factor
        low, high = math.nextafter(low, -math.inf), math.nextafter(high, math.inf)
    return None


class SDVAE(VideoVAE):
    """A diffusers ``AutoencoderKL`` applied to each frame of a clip."""

    def __init__(
        self,
        vae: AutoencoderKL,
        name: str,
        *,
        weights: str = RANDOM_WEIGHTS,
        frame_batch: int = DEFAULT_FRAME_BATCH,
    ) -> None:
        if frame_batch < 1:
            raise AdapterError(f"{name}: frame_batch must be positive, got {frame_batch}")
        self._vae = vae.eval()
        self.weights = weights
        self.frame_batch = frame_batch
        config = vae.config
        self.spec = VAESpec(
            name=name,
            family=FAMILY,
            latent_channels=config.latent_channels,
            spatial_factor=2 ** (len(config.block_out_channels) - 1),
            temporal_factor=1,
            causal=False,
            frame_rule=FrameRule(),
            scaling_factor=float(config.scaling_factor),
            shift_factor=float(config.shift_factor or 0.0),
            encoder_params=count_params(vae.encoder) + _params(vae.quant_conv),
            decoder_params=count_params(vae.decoder) + _params(vae.post_quant_conv),
            modes=("full", "spatial_tiles"),
        )

    @property
    def module(self) -> AutoencoderKL:
        return self._vae

    # --- inference ----------------------------------------------------------------
    def _encode(self, video: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        return self._per_frame(video, mode, lambda x: self._vae.encode(x).latent_dist.mode())

    def _decode(self, latent: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        self.check_latent(latent)
        return self._per_frame(latent, mode, lambda z: self._vae.decode(z).sample)

    def _sample(self, video: torch.Tensor, mode: InferenceMode, seed: int) -> torch.Tensor:
        """``mean + std * noise`` with one seeded CPU draw for the whole latent, so a sample
        depends on neither the frame batch nor the device."""
        moments = self._per_frame(video, mode, lambda x: self._vae.encode(x).latent_dist.parameters)
        mean, logvar = moments.chunk(2, dim=1)
        return cpu_seeded_sample(mean, logvar.clamp(-30.0, 20.0), seed)  # diffusers' clamp

    def _per_frame(
        self,
        video: torch.Tensor,
        mode: InferenceMode,
        run: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """``run`` over frames folded into the batch, ``frame_batch`` frames at a time."""
        with self._tiling(mode):
            return per_frame(video, run, self.frame_batch, self.dtype, self.spec.name)

    @contextmanager
    def _tiling(self, mode: InferenceMode) -> Iterator[None]:
        """diffusers' tiling set for one call and restored after it (the module is shared)."""
        vae = self._vae
        names = (
            "use_tiling",
            "tile_sample_min_size",
            "tile_latent_min_size",
            "tile_overlap_factor",
        )
        saved = {name: getattr(vae, name) for name in names}
        if mode.kind == "spatial_tiles":
            assert mode.size is not None
            factor = tile_overlap_factor(mode.size, mode.overlap, self.spec.spatial_factor)
            vae.enable_tiling()
            vae.tile_sample_min_size = mode.size
            vae.tile_latent_min_size = mode.size // self.spec.spatial_factor
            vae.tile_overlap_factor = factor
        else:
            vae.disable_tiling()
        try:
            yield
        finally:
            for name, value in saved.items():
                setattr(vae, name, value)

    # --- construction -------------------------------------------------------------
    @classmethod
    def from_config(cls, preset: Preset, **overrides: Any) -> SDVAE:
        """Random weights from a fixed seed; ``overrides`` change the preset's config."""
        model_config, frame_batch = split_config(
            merge_config(preset.config, overrides), preset.name
        )
        vae = seeded_build(RANDOM_SEED, lambda: AutoencoderKL(**model_config))
        return cls(vae, preset.name, weights=RANDOM_WEIGHTS, frame_batch=frame_batch)

    @classmethod
    def from_pretrained(cls, path: str | Path, preset: Preset) -> SDVAE:
        """A diffusers directory or an original single-file checkpoint, strictly matched."""
        path = Path(path).expanduser()
        if not path.exists():
            raise AdapterError(f"{preset.name}: weights not found at {path}{_release_hint(preset)}")
        model_config, frame_batch = split_config(preset.config, preset.name)
        directory = _diffusers_directory(path) if path.is_dir() else None
        if directory is not None:
            vae, source = _load_diffusers(directory, model_config, preset)
        else:
            file = _single_file_in(path, preset) if path.is_dir() else path
            vae, source = _load_single_file(file, model_config, preset)
        return cls(vae, preset.name, weights=file_sha256(source), frame_batch=frame_batch)


def _params(module: torch.nn.Module | None) -> int:
    return 0 if module is None else count_params(module)


def _release_hint(preset: Preset) -> str:
    return f" (official release: {preset.release})" if preset.release else ""


# --- loading: diffusers directories ---------------------------------------------------
def _diffusers_directory(path: Path) -> Path | None:
    for directory in (path, path / "vae"):
        if (directory / "config.json").is_file():
            return directory
    return None


def _load_diffusers(
    directory: Path, preset_config: Mapping[str, Any], preset: Preset
) -> tuple[AutoencoderKL, Path]:
    config_path = directory / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as error:
        raise AdapterError(f"{preset.name}: cannot read {config_path}: {error}") from error
    if not isinstance(config, dict) or config.get("_class_name") != "AutoencoderKL":
        found = config.get("_class_name") if isinstance(config, dict) else type(config).__name__
        raise AdapterError(
            f"{preset.name}: {config_path} describes {found!r}, not an AutoencoderKL"
            f"{_release_hint(preset)}"
        )
    _check_architecture(config, preset_config, config_path, preset)
    weights = next((directory / n for n in DIFFUSERS_WEIGHTS if (directory / n).is_file()), None)
    if weights is None:
        present = sorted(p.name for p in directory.iterdir())
        raise AdapterError(
            f"{preset.name}: {directory} has no {' or '.join(DIFFUSERS_WEIGHTS)} "
            f"(found: {', '.join(present)})"
        )
    model = _meta_model({k: v for k, v in config.items() if k in MODEL_KEYS})
    found_shapes = _file_shapes(weights, preset)
    # Older releases name the attention weights query/key/value/proj_attn; diffusers renames
    # them while loading, so the comparison does too.
    if hasattr(model, "_fix_state_dict_keys_on_load"):
        model._fix_state_dict_keys_on_load(found_shapes)
    _check_keys(model_shapes(model), found_shapes, weights, preset)
    try:
        vae, info = AutoencoderKL.from_pretrained(
            directory,
            low_cpu_mem_usage=True,
            local_files_only=True,
            use_safetensors=weights.suffix == ".safetensors",
            output_loading_info=True,
            torch_dtype=torch.float32,  # as single files load; cells cast to their dtype
        )
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        raise AdapterError(
            f"{preset.name}: diffusers could not load {directory}: {error}"
        ) from error
    leftovers = {kind: keys for kind, keys in info.items() if keys}
    if leftovers:
        raise AdapterError(f"{preset.name}: loading {weights} left {leftovers}")
    return vae, weights


def _check_architecture(
    config: Mapping[str, Any], preset_config: Mapping[str, Any], source: Path, preset: Preset
) -> None:
    def value(mapping: Mapping[str, Any], key: str) -> Any:
        item = mapping.get(key, _INIT[key].default)
        return tuple(item) if isinstance(item, (list, tuple)) else item

    differences = [
        f"{key} {value(config, key)!r} (preset {value(preset_config, key)!r})"
        for key in ARCH_KEYS
        if value(config, key) != value(preset_config, key)
    ]
    if differences:
        raise AdapterError(
            f"{preset.name}: {source} describes another architecture: {'; '.join(differences)}"
        )


def _file_shapes(weights: Path, preset: Preset) -> dict[str, tuple[int, ...]]:
    if weights.suffix == ".safetensors":
        try:
            with safe_open(str(weights), framework="pt", device="cpu") as handle:
                return {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
        except (SafetensorError, OSError) as error:
            raise AdapterError(
                f"{preset.name}: cannot read {weights} (truncated or not safetensors?): {error}"
            ) from error
    state = torch_load(weights, preset.name)
    if not isinstance(state, Mapping):
        raise AdapterError(f"{preset.name}: {weights} holds a {type(state).__name__}, not weights")
    others = sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
    if others:
        raise AdapterError(f"{preset.name}: {weights} has non-tensor entries: {listing(others)}")
    return {str(k): tuple(v.shape) for k, v in state.items()}


# --- loading: original single files ----------------------------------------------------
def _single_file_in(directory: Path, preset: Preset) -> Path:
    files = sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix in SINGLE_FILE_SUFFIXES
    )
    if len(files) != 1:
        raise AdapterError(
            f"{preset.name}: {directory} has no config.json and {len(files)} checkpoint files "
            f"({', '.join(p.name for p in files) or 'none'}); give one checkpoint file or a "
            f"diffusers directory{_release_hint(preset)}"
        )
    return files[0]


def _load_single_file(
    path: Path, model_config: Mapping[str, Any], preset: Preset
) -> tuple[AutoencoderKL, Path]:
    if path.suffix not in SINGLE_FILE_SUFFIXES:
        raise AdapterError(
            f"{preset.name}: {path} is not a checkpoint; expected a diffusers directory or a "
            f"file ending in {', '.join(SINGLE_FILE_SUFFIXES)}"
        )
    state = _read_vae_state(path, preset)
    converted, unmapped = _convert_ldm(state, model_config, path, preset)
    model = _meta_model(model_config)
    found = {k: tuple(v.shape) for k, v in converted.items()}
    _check_keys(model_shapes(model), found, path, preset, unmapped)
    model.to_empty(device="cpu")
    model.load_state_dict(converted, strict=True)
    return model, path


def _read_vae_state(path: Path, preset: Preset) -> dict[str, torch.Tensor]:
    """The VAE's tensors under their LDM names: ``first_stage_model.*`` of a full SD
    checkpoint (the UNet and text encoder are left unread) or every key of a bare VAE."""
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                names = _vae_names(list(handle.keys()))
                state: dict[str, Any] = {new: handle.get_tensor(old) for old, new in names.items()}
        except (SafetensorError, OSError) as error:
            raise AdapterError(
                f"{preset.name}: cannot read {path} (truncated or not safetensors?): {error}"
            ) from error
    else:
        loaded = torch_load(path, preset.name)
        if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
            loaded = loaded["state_dict"]
        if not isinstance(loaded, Mapping):
            raise AdapterError(
                f"{preset.name}: {path} holds a {type(loaded).__name__}, not a state dict"
            )
        names = _vae_names([str(k) for k in loaded])
        state = {new: loaded[old] for old, new in names.items()}
        others = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
        if others:
            raise AdapterError(
                f"{preset.name}: {path} is not a VAE state dict; non-tensor entries: "
                f"{listing(others)}"
            )
    dropped = sorted(k for k in state if k.startswith(TRAINING_ONLY_PREFIXES))
    if dropped:
        warnings.warn(
            f"{path}: ignored {len(dropped)} training-only entries "
            f"({', '.join(p + '*' for p in TRAINING_ONLY_PREFIXES)}); loaded the model weights",
            stacklevel=4,
        )
    return {k: v for k, v in state.items() if not k.startswith(TRAINING_ONLY_PREFIXES)}


def _vae_names(keys: Sequence[str]) -> dict[str, str]:
    if any(key.startswith(LDM_PREFIX) for key in keys):
        return {key: key[len(LDM_PREFIX) :] for key in keys if key.startswith(LDM_PREFIX)}
    return {key: key for key in keys}


def _convert_ldm(
    state: Mapping[str, torch.Tensor], config: Mapping[str, Any], path: Path, preset: Preset
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """diffusers names and shapes for LDM ones, and the LDM keys the conversion leaves out.

    ``convert_ldm_vae_checkpoint`` renames keys and squeezes the 1x1-conv attention weights,
    silently skipping names it does not know. It runs here on stand-ins (each key's index,
    expanded to the key's shape, no memory), so every output is traced to its source key and
    the skipped keys are named instead of lost.
    """
    keys = list(state)
    empty = [key for key in keys if state[key].numel() == 0]
    if empty:
        raise AdapterError(f"{preset.name}: {path} has empty tensors: {listing(empty)}")
    stand_ins = {key: torch.tensor(i).expand(state[key].shape) for i, key in enumerate(keys)}
    try:
        mapped = convert_ldm_vae_checkpoint(stand_ins, config)
    except KeyError as error:  # an upsampling conv's bias is read along with its weight
        raise AdapterError(
            f"{preset.name}: {path} does not match the model strictly (missing key "
            f"{error.args[0]} in the original layout){_release_hint(preset)}"
        ) from error
    converted: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for new_key, stand_in in mapped.items():
        if stand_in is None:  # a downsampling conv without its bias: reported as missing
            continue
        source = keys[int(stand_in.reshape(-1)[0])]
        converted[new_key] = state[source].reshape(stand_in.shape)
        used.add(source)
    return converted, sorted(set(keys) - used)


# --- strictness ------------------------------------------------------------------------
def _check_keys(
    expected: Mapping[str, tuple[int, ...]],
    found: Mapping[str, tuple[int, ...]],
    source: Path,
    preset: Preset,
    unmapped: Sequence[str] = (),
) -> None:
    check_state_dict(
        expected,
        found,
        f"{preset.name}: {source} does not match the model strictly",
        TOTALS,
        hint=_release_hint(preset),
        unmapped=unmapped,
    )


def _meta_model(config: Mapping[str, Any]) -> AutoencoderKL:
    """The architecture without memory: names and shapes of every parameter."""
    with torch.device("meta"):
        return AutoencoderKL(**config)


PRESETS = (
    Preset(
        "sd-vae-ft-mse",
        SDVAE,
        config=sd_config(),
        source=Source(HUB, "stabilityai/sd-vae-ft-mse", files=DIFFUSERS_FILES),
        description="SD KL-f8, decoder fine-tuned with MSE + 0.1 LPIPS (diffusers layout)",
    ),
    Preset(
        "sd-vae-ft-ema",
        SDVAE,
        config=sd_config(),
        source=Source(HUB, "stabilityai/sd-vae-ft-ema", files=DIFFUSERS_FILES),
        description="SD KL-f8, decoder fine-tuned with L1 + LPIPS, EMA weights (diffusers layout)",
    ),
    Preset(
        "sd-vae-kl-f8",
        SDVAE,
        config=sd_config(sample_size=512),
        release=(
            "first_stage_model.* of an SD v1 checkpoint, e.g. "
            "https://huggingface.co/CompVis/stable-diffusion-v-1-4-original (sd-v1-4.ckpt)"
        ),
        source=Source(
            HUB, "CompVis/stable-diffusion-v-1-4-original", files=("sd-v1-4.ckpt",),
            note="gated: accept the licence on the repo page and log in (hf auth login); "
            "the whole SD v1.4 checkpoint (about 4 GB) is fetched for its VAE",
        ),  # fmt: skip
        description="the original CompVis KL-f8 autoencoder of Stable Diffusion v1",
    ),
)
