"""diffusers' video autoencoders behind one adapter: the peers the seed papers compare with.

Each supported class (CogVideoX, HunyuanVideo and 1.5, LTX-Video and LTX-2, Wan 2.1/2.2,
Mochi, Allegro, Cosmos, EasyAnimate's MagViT, VidTok, KVAE, where the installed diffusers
has it) is described by a :class:`VideoFamily`: how its config gives the spatial and
temporal factors and its frame rule (``1 + ft * k`` for these causal models), whether it
has spatial tiling, and how ``spatial_tiles(size, overlap)`` maps onto its
``enable_tiling`` arguments. Temporal tiling, where a class has it, keeps the class's own
frame tile sizes. Allegro's diffusers port only runs tiled, so its only mode is its own
tiling (``spatial_tiles`` with the class's tile size); Cosmos and KVAE have no spatial
tiling in diffusers, so they run whole frames only.

Weights load strictly from a local diffusers directory (``config.json`` plus
``diffusion_pytorch_model.safetensors``, or a pipeline directory with ``vae/``): the config
must name the preset's class, and every tensor of the file and model must match by name and
shape before diffusers reads it. Nothing is downloaded. ``random`` builds the preset's config
from a fixed seed.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch
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
from vae_bench.adapters.checkpoints import TOTALS, check_state_dict, model_shapes
from vae_bench.adapters.sampling import cpu_seeded_sample, seeded_build
from vae_bench.adapters.source import HUB, Source

RANDOM_SEED = 0
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
Config = Mapping[str, Any]


def _log2_levels(config: Config) -> int:
    return 2 ** (len(config["block_out_channels"]) - 1)


@dataclass(frozen=True)
class VideoFamily:
    """What the adapter needs to know about one diffusers video autoencoder class."""

    class_name: str
    family: str
    spatial: Callable[[torch.nn.Module], int]
    temporal: Callable[[torch.nn.Module], int]
    # "stride": tile size and stride; "overlap": overlap factors per axis; "overlap1": one
    # overlap factor and the latent tile size; "only": fixed tiles; "none": no tiling
    tiling: str
    # the frames the release's own forward pass adds before encoding (VidTok's causal models
    # replicate the first frame ``temporal - 1`` times; its decode drops them again)
    front_padding: Callable[[torch.nn.Module], int] = lambda m: 0
    causal: bool = True
    # a point latent: Cosmos encodes deterministically; the KVAE port keeps only the mean
    deterministic: bool = False

    @property
    def cls(self) -> type[torch.nn.Module]:
        return getattr(diffusers, self.class_name)


def _latent_channels(config: Config) -> int:
    for key in ("latent_channels", "z_dim", "z_channels"):
        if config.get(key):
            return int(config[key])
    raise AdapterError("the config names no latent_channels, z_dim or z_channels")


def _vidtok_front(vae: torch.nn.Module) -> int:
    if not vae.config.is_causal:
        raise AdapterError("only causal VidTok models are supported (T = 1 + 4k clips)")
    return int(vae.temporal_compression_ratio) - 1


def _int_attr(path: str) -> Callable[[torch.nn.Module], int]:
    """``int(model.<path>)``: a factor the model or its config states outright."""
    get = operator.attrgetter(path)
    return lambda model: int(get(model))


def _product(values: Any) -> int:
    result = 1
    for value in values:
        result *= int(value)
    return result


FAMILIES: dict[str, VideoFamily] = {
    family.class_name: family
    for family in (
        VideoFamily(
            "AutoencoderKLCogVideoX", "cogvideox",
            lambda m: _log2_levels(m.config), _int_attr("config.temporal_compression_ratio"),
            "overlap",
        ),
        VideoFamily(
            "AutoencoderKLHunyuanVideo", "hunyuanvideo",
            _int_attr("config.spatial_compression_ratio"),
            _int_attr("config.temporal_compression_ratio"), "stride",
        ),
        VideoFamily(
            "AutoencoderKLLTXVideo", "ltx-video",
            _int_attr("spatial_compression_ratio"), _int_attr("temporal_compression_ratio"),
            "stride",
        ),
        VideoFamily(
            "AutoencoderKLWan", "wan",
            lambda m: 2 ** (len(m.config.dim_mult) - 1) * int(m.config.patch_size or 1),
            lambda m: 2 ** sum(bool(d) for d in m.config.temperal_downsample), "stride",
        ),
        VideoFamily(
            "AutoencoderKLMochi", "mochi",
            lambda m: _product(m.config.spatial_expansions),
            lambda m: _product(m.config.temporal_expansions), "stride",
        ),
        VideoFamily(
            "AutoencoderKLAllegro", "allegro",
            lambda m: _log2_levels(m.config), _int_attr("config.temporal_compression_ratio"),
            "only",
        ),
        VideoFamily(
            "AutoencoderKLCosmos", "cosmos",
            _int_attr("config.spatial_compression_ratio"),
            _int_attr("config.temporal_compression_ratio"), "none", deterministic=True,
        ),
        VideoFamily(
            "AutoencoderKLHunyuanVideo15", "hunyuanvideo-1.5",
            _int_attr("config.spatial_compression_ratio"),
            _int_attr("config.temporal_compression_ratio"), "overlap1",
        ),
        VideoFamily(
            "AutoencoderKLLTX2Video", "ltx-2",
            _int_attr("spatial_compression_ratio"), _int_attr("temporal_compression_ratio"),
            "stride",
        ),
        VideoFamily(
            "AutoencoderKLMagvit", "easyanimate",
            lambda m: _log2_levels(m.config), lambda m: _log2_levels(m.config) // 2, "stride",
        ),
        VideoFamily(
            "AutoencoderVidTok", "vidtok",
            lambda m: 2 ** len(m.encoder.spatial_ds), lambda m: 2 ** len(m.encoder.tempo_ds),
            "overlap", _vidtok_front,
        ),
        VideoFamily(
            "AutoencoderKLKVAEVideo", "kvae",
            lambda m: 2 ** (len(m.config.ch_mult) - 1),
            _int_attr("config.temporal_compress_times"), "none", deterministic=True,
        ),
    )  # fmt: skip
    if hasattr(diffusers, family.class_name)
}


def family_of(
    class_name: str, where: str, families: Mapping[str, VideoFamily] = FAMILIES
) -> VideoFamily:
    if class_name not in families:
        raise AdapterError(
            f"{where}: {class_name!r} is not a video autoencoder of the installed diffusers "
            f"{diffusers.__version__}; supported: {', '.join(families)}"
        )
    return families[class_name]


class DiffusersVideoVAE(VideoVAE):
    """Any diffusers video ``AutoencoderKL*`` class; the latent is the posterior mode."""

    families: Mapping[str, VideoFamily] = FAMILIES

    def __init__(self, vae: torch.nn.Module, name: str, weights: str = RANDOM_WEIGHTS) -> None:
        self.kind = family_of(type(vae).__name__, name, self.families)
        self._vae = vae.eval()
        self.weights = weights
        temporal = self.kind.temporal(vae)
        self._front = self.kind.front_padding(vae)
        config = vae.config
        modes = {"only": ("spatial_tiles",), "none": ("full",)}.get(
            self.kind.tiling, ("full", "spatial_tiles")
        )
        self.spec = VAESpec(
            name=name,
            family=self.kind.family,
            latent_channels=_latent_channels(config),
            spatial_factor=self.kind.spatial(vae),
            temporal_factor=temporal,
            causal=self.kind.causal,
            frame_rule=FrameRule(temporal, 1) if temporal > 1 else FrameRule(),
            scaling_factor=float(getattr(config, "scaling_factor", None) or 1.0),
            shift_factor=float(getattr(config, "shift_factor", None) or 0.0),
            encoder_params=_part_params(vae, "encoder", "quant_conv"),
            decoder_params=_part_params(vae, "decoder", "post_quant_conv"),
            modes=modes,
        )

    @property
    def module(self) -> torch.nn.Module:
        return self._vae

    def _moments(self, video: torch.Tensor, mode: InferenceMode) -> Any:
        video = video.to(self.dtype)
        if self._front:
            first = video[:, :, :1].expand(-1, -1, self._front, -1, -1)
            video = torch.cat([first, video], dim=2)
        with self._tiling(mode):
            return self._vae.encode(video).latent_dist

    def _encode(self, video: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        return self._moments(video, mode).mode()

    def _sample(self, video: torch.Tensor, mode: InferenceMode, seed: int) -> torch.Tensor:
        posterior = self._moments(video, mode)
        if self.kind.deterministic:
            return posterior.mode()
        return cpu_seeded_sample(posterior.mean, posterior.logvar, seed)

    def _decode(self, latent: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        self.check_latent(latent)
        with self._tiling(mode):
            out = self._vae.decode(latent.to(self.dtype))
        return getattr(out, "sample", out)  # VidTok returns the tensor itself

    @contextmanager
    def _tiling(self, mode: InferenceMode) -> Iterator[None]:
        """The class's tiling set for one call, its previous settings restored after."""
        vae = self._vae
        names = [n for n in vars(vae) if n.startswith("tile_") or n == "use_tiling"]
        saved = {name: getattr(vae, name) for name in names}
        try:
            if mode.kind == "spatial_tiles":
                self._enable(mode)
            else:
                vae.use_tiling = False
            yield
        finally:
            for name, value in saved.items():
                setattr(vae, name, value)

    def _enable(self, mode: InferenceMode) -> None:
        vae, size, overlap = self._vae, mode.size, mode.overlap
        assert size is not None
        if size % self.spec.spatial_factor or overlap % self.spec.spatial_factor:
            raise AdapterError(
                f"{self.spec.name}: spatial_tiles({size},{overlap}): size and overlap must be "
                f"multiples of the spatial factor {self.spec.spatial_factor}"
            )
        if self.kind.tiling == "stride":
            vae.enable_tiling(
                tile_sample_min_height=size, tile_sample_min_width=size,
                tile_sample_stride_height=size - overlap, tile_sample_stride_width=size - overlap,
            )  # fmt: skip
        elif self.kind.tiling in ("overlap", "overlap1"):
            # set directly: enable_tiling's `or` defaults would turn a zero overlap into 1/4
            vae.enable_tiling()
            factor, latent = overlap / size, size // self.spec.spatial_factor
            settings = {
                "tile_sample_min_height": size, "tile_sample_min_width": size,
                "tile_latent_min_height": latent, "tile_latent_min_width": latent,
                "tile_overlap_factor": factor,
                "tile_overlap_factor_height": factor, "tile_overlap_factor_width": factor,
            }  # fmt: skip
            for name, value in settings.items():
                if hasattr(vae, name):
                    setattr(vae, name, value)
        else:
            fixed = (vae.tile_sample_min_height, vae.tile_sample_min_width)
            if size != fixed[0] or size != fixed[1]:
                raise AdapterError(
                    f"{self.spec.name}: this diffusers port tiles with fixed {fixed[0]}x"
                    f"{fixed[1]} tiles only; use `spatial_tiles({fixed[0]})`"
                )
            vae.enable_tiling()

    # --- construction -------------------------------------------------------------
    @classmethod
    def from_config(cls, preset: Preset) -> DiffusersVideoVAE:
        kind = family_of(str(preset.config.get("class_name")), preset.name, cls.families)
        arguments = dict(preset.config.get("config", {}))
        try:
            vae = seeded_build(RANDOM_SEED, lambda: kind.cls(**arguments))
        except (TypeError, ValueError) as error:
            raise AdapterError(f"{preset.name}: {kind.class_name}(**config): {error}") from error
        return cls(vae, preset.name, RANDOM_WEIGHTS)

    @classmethod
    def from_pretrained(cls, path: str | Path, preset: Preset) -> DiffusersVideoVAE:
        directory = _directory(Path(path).expanduser(), preset)
        kind = family_of(str(preset.config.get("class_name")), preset.name, cls.families)
        vae, weights = load_directory(directory, kind, preset.name)
        return cls(vae, preset.name, file_sha256(weights))


def _part_params(vae: torch.nn.Module, *names: str) -> int:
    return sum(count_params(getattr(vae, n)) for n in names if getattr(vae, n, None) is not None)


def _directory(path: Path, preset: Preset) -> Path:
    hint = f" (official release: {preset.release})" if preset.release else ""
    for directory in (path, path / "vae"):
        if (directory / "config.json").is_file():
            return directory
    raise AdapterError(
        f"{preset.name}: {path} is not a diffusers directory (no config.json there or in "
        f"vae/){hint}"
    )


def load_directory(
    directory: Path, kind: VideoFamily, name: str
) -> tuple[torch.nn.Module, Path]:
    """The model in ``directory``, after a strict name-and-shape match of its safetensors."""
    config_path = directory / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as error:
        raise AdapterError(f"{name}: cannot read {config_path}: {error}") from error
    found_class = config.get("_class_name") if isinstance(config, dict) else None
    if found_class != kind.class_name:
        raise AdapterError(
            f"{name}: {config_path} describes {found_class!r}, not {kind.class_name}"
        )
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        present = ", ".join(sorted(p.name for p in directory.iterdir()))
        raise AdapterError(f"{name}: {directory} has no {WEIGHTS_FILE} (found: {present})")
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as handle:
            found = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise AdapterError(f"{name}: cannot read {weights} (not safetensors?): {error}") from error
    with torch.device("meta"):
        meta = kind.cls.from_config(config)
    check_state_dict(
        model_shapes(meta), found, f"{name}: {weights} does not match the model strictly", TOTALS
    )
    try:
        vae, info = kind.cls.from_pretrained(
            directory, local_files_only=True, use_safetensors=True, output_loading_info=True,
            low_cpu_mem_usage=True, torch_dtype=torch.float32,
        )  # fmt: skip
    except (OSError, ValueError, RuntimeError) as error:
        raise AdapterError(f"{name}: diffusers could not load {directory}: {error}") from error
    leftovers = {kind_: keys for kind_, keys in info.items() if keys}
    if leftovers:
        raise AdapterError(f"{name}: loading {weights} left {leftovers}")
    return vae, weights


def _preset(
    name: str, class_name: str, repo: str, description: str, subfolder: str = "vae",
    config: Config | None = None,
) -> Preset:  # fmt: skip
    """A public checkpoint's preset. ``config`` (for ``random`` builds) empty means the class
    defaults, where those are the released architecture; the loader reads the release's own
    config.json. No ``repo``: no diffusers-format release is known, random weights only."""
    files = ("config.json", "*.safetensors", "*.safetensors.index.json")  # sharded or not
    source = Source(HUB, repo, subfolder=subfolder, files=files) if repo else None
    return Preset(
        name, DiffusersVideoVAE, config={"class_name": class_name, "config": dict(config or {})},
        source=source, description=description,
    )  # fmt: skip


# Wan 2.2's VAE (TI2V-5B): the facts of Wan-AI/Wan2.2-TI2V-5B-Diffusers vae/config.json
WAN22_CONFIG = {
    "base_dim": 160, "decoder_base_dim": 256, "z_dim": 48, "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 2, "temperal_downsample": [False, True, True], "is_residual": True,
    "in_channels": 12, "out_channels": 12, "patch_size": 2, "scale_factor_spatial": 16,
    "scale_factor_temporal": 4,
}  # fmt: skip
# LTX-2's released VAE decodes non-causally (Lightricks/LTX-2 vae/config.json)
LTX2_CONFIG = {"decoder_causal": False, "spatial_compression_ratio": 32,
               "temporal_compression_ratio": 8}  # fmt: skip

_RELEASES: tuple[tuple[Any, ...], ...] = (
    ("cogvideox-2b-vae", "AutoencoderKLCogVideoX", "THUDM/CogVideoX-2b",
     "CogVideoX VAE, 16ch, 8x8 spatial, 4x causal temporal"),
    ("hunyuanvideo-vae", "AutoencoderKLHunyuanVideo", "hunyuanvideo-community/HunyuanVideo",
     "HunyuanVideo causal 3D VAE, 16ch, 8x8x4"),
    ("ltx-video-vae", "AutoencoderKLLTXVideo", "Lightricks/LTX-Video",
     "LTX-Video VAE, 128ch, 32x32 spatial, 8x temporal"),
    ("wan2.1-vae", "AutoencoderKLWan", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
     "Wan 2.1 causal 3D VAE, 16ch, 8x8x4"),
    ("wan2.2-vae", "AutoencoderKLWan", "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
     "Wan 2.2 (TI2V-5B) causal 3D VAE, 48ch, 16x16x4", "vae", WAN22_CONFIG),
    ("mochi-1-vae", "AutoencoderKLMochi", "genmo/mochi-1-preview",
     "Mochi 1 VAE, 12ch, 8x8 spatial, 6x temporal"),
    ("allegro-vae", "AutoencoderKLAllegro", "rhymes-ai/Allegro",
     "Allegro VAE, 4ch, 8x8x4, tiled only in diffusers"),
    ("cosmos-1.0-vae", "AutoencoderKLCosmos", "nvidia/Cosmos-1.0-Diffusion-7B-Text2World",
     "Cosmos 1.0 continuous tokenizer (CV8x8x8), 16ch, 8x8x8, deterministic, untiled"),
    ("hunyuanvideo-1.5-vae", "AutoencoderKLHunyuanVideo15",
     "hunyuanvideo-community/HunyuanVideo-1.5-480p_t2v",
     "HunyuanVideo 1.5 causal 3D VAE, 32ch, 16x16x4"),
    ("ltx-2-vae", "AutoencoderKLLTX2Video", "Lightricks/LTX-2",
     "LTX-2 video VAE, 128ch, 32x32 spatial, 8x temporal", "vae", LTX2_CONFIG),
    ("easyanimate-v5.1-vae", "AutoencoderKLMagvit", "alibaba-pai/EasyAnimateV5.1-12b-zh",
     "EasyAnimate V5.1 MagViT VAE, 16ch, 8x8x4"),
    ("vidtok-kl-causal-488-4ch", "AutoencoderVidTok", "",
     "VidTok KL causal 4x8x8, 4ch (microsoft/VidTok ships original-format checkpoints only; "
     "no diffusers-format release known: random weights or a converted folder)"),
    ("kvae-3d-1.0", "AutoencoderKLKVAEVideo", "kandinskylab/KVAE-3D-1.0",
     "KVAE 3D 1.0 (Kandinsky), 16ch, 8x8 spatial, 4x temporal, untiled", "diffusers"),
)  # fmt: skip

PRESETS = tuple(
    _preset(*release) for release in _RELEASES if release[1] in FAMILIES
)
