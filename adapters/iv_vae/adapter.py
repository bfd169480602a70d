"""IV-VAE behind the suite's protocol, and the presets of the four released models.

Inference modes (the release has no spatial tiling):

- ``full``: frame 0, then every 4-frame group of the clip in one batched pass.
- ``temporal_chunks(size)``: frame 0, then ``size`` frames (a multiple of 4) per pass,
  each group causal layer carrying its last input frame to the next pass; the decoder
  takes ``size / 4`` latent frames per pass. ``temporal_chunks(4)`` is the release's own
  inference (``rec_video.py``: one group per pass, one latent frame per decoder pass).
  Because a group never depends on later groups, every chunk size gives the same output
  as ``full``; only memory and speed change. ``overlap`` must be 0.

Latents are the raw posterior mean; the release's ``encode`` draws a sample and applies
``scale * (z - shift)``: here sampling needs a seed, and the factors are in the spec.
"""

from __future__ import annotations

from pathlib import Path

import torch

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
from vae_bench.adapters.iv_vae.checkpoint import load_strict, read_state_dict, weights_file
from vae_bench.adapters.iv_vae.model import SPATIAL_FACTOR, TEMPORAL_FACTOR, IVVAEConfig, IVVAEModel
from vae_bench.adapters.sampling import cpu_seeded_sample, seeded_build
from vae_bench.adapters.source import URL, Source

FAMILY = "iv-vae"
RANDOM_SEED = 0  # from_config: two random builds of one preset are identical
MODES = ("full", "temporal_chunks")


class IVVAE(VideoVAE):
    """An :class:`IVVAEModel` with the suite's encode/decode and inference modes."""

    def __init__(
        self,
        model: IVVAEModel,
        name: str,
        weights: str = RANDOM_WEIGHTS,
        source: Path | None = None,
    ) -> None:
        self._model = model.eval()
        self.weights = weights
        self.source = source
        config = model.config
        self.spec = VAESpec(
            name=name,
            family=FAMILY,
            latent_channels=config.z_dim,
            spatial_factor=SPATIAL_FACTOR,
            temporal_factor=TEMPORAL_FACTOR,
            causal=True,
            frame_rule=FrameRule(step=TEMPORAL_FACTOR, offset=1),
            scaling_factor=config.scale_factor,
            shift_factor=config.shift_factor,
            encoder_params=count_params(model.encoder) + count_params(model.conv1),
            decoder_params=count_params(model.conv2) + count_params(model.decoder),
            modes=MODES,
        )

    @property
    def module(self) -> IVVAEModel:
        return self._model

    # --- inference ----------------------------------------------------------------------
    def _moments(self, video: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        video = video.to(device=self.device, dtype=self.dtype)
        return self._model.encode_moments(video, self._chunk(mode))

    def _encode(self, video: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        return self._moments(video, mode)[:, : self.spec.latent_channels].contiguous()

    def _sample(self, video: torch.Tensor, mode: InferenceMode, seed: int) -> torch.Tensor:
        """``mean + exp(logvar / 2) * noise`` (the release's draw, without a clamp), the
        noise from one seeded CPU generator so that a sample does not depend on the device."""
        mean, logvar = self._moments(video, mode).chunk(2, dim=1)
        return cpu_seeded_sample(mean, logvar, seed)

    def _decode(self, latent: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
        self.check_latent(latent)
        latent = latent.to(device=self.device, dtype=self.dtype)
        chunk = self._chunk(mode)
        return self._model.decode_latent(
            latent, None if chunk is None else chunk // TEMPORAL_FACTOR
        )

    def _chunk(self, mode: InferenceMode) -> int | None:
        """Frames per pass after frame 0, or ``None`` for one pass (``full``)."""
        if mode.kind != "temporal_chunks":
            return None
        assert mode.size is not None  # InferenceMode guarantees it for this kind
        if mode.overlap:
            raise AdapterError(
                f"{self.spec.name}: temporal_chunks takes no overlap (each pass carries the "
                f"last frame of the previous one); got {mode.label}"
            )
        if mode.size % TEMPORAL_FACTOR:
            raise AdapterError(
                f"{self.spec.name}: temporal_chunks({mode.size}): the size must be a "
                f"multiple of {TEMPORAL_FACTOR} frames (whole groups)"
            )
        return mode.size

    # --- construction -------------------------------------------------------------------
    @classmethod
    def from_config(cls, preset: Preset) -> IVVAE:
        """Random weights, the same for every call (seed ``RANDOM_SEED``)."""
        config = IVVAEConfig.from_mapping(preset.config, f"preset {preset.name}")
        model = seeded_build(RANDOM_SEED, lambda: IVVAEModel(config))
        return cls(model, preset.name)

    @classmethod
    def from_pretrained(cls, path: str | Path, preset: Preset) -> IVVAE:
        """The release's ``ivvae_z*_dim*.pth`` (a file, or a directory holding the preset's
        file), loaded strictly into the preset's architecture."""
        config = IVVAEConfig.from_mapping(preset.config, f"preset {preset.name}")
        file = weights_file(Path(path).expanduser(), config)
        if not file.is_file():
            raise AdapterError(f"{preset.name}: weights not found at {file}")
        with torch.device("meta"):  # no random init: every tensor is overwritten below
            model = IVVAEModel(config)
        model.to_empty(device="cpu")
        load_strict(model, read_state_dict(file), str(file))
        return cls(model, preset.name, weights=file_sha256(file), source=file)


# ModelScope serves a repo's files at models/<repo>/resolve/<revision>/<path>; the file
# names are the README's list, at the repo root.
RELEASE = "https://www.modelscope.cn/models/wpy1999/iv-vae/resolve/master"

# (z_dim, dim, scale_factor, shift_factor) as the release's IV_VAE lists them.
_RELEASED = (
    (4, 64, 1.3196, 0.1250),
    (8, 64, 1.0940, -0.0322),
    (16, 64, 0.9697, -0.1553),
    (16, 96, 0.7619, -0.0483),
)

PRESETS = tuple(
    Preset(
        f"iv-vae-z{z}-dim{dim}",
        IVVAE,
        config={"z_dim": z, "dim": dim, "scale_factor": scale, "shift_factor": shift},
        source=Source(
            URL, f"{RELEASE}/ivvae_z{z}_dim{dim}.pth", files=(f"ivvae_z{z}_dim{dim}.pth",),
            revision="", note="ModelScope publishes no sha256 here; the fetched file's is recorded",
        ),  # fmt: skip
        description=f"IV-VAE, {z} latent channels, base width {dim}, 8x8x4, group causal",
    )
    for z, dim, scale, shift in _RELEASED
)
