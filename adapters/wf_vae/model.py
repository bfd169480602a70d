"""WFVAEModel: the Wavelet-Flow VAE with the release's configuration and checkpoint layout.

Encoder: a causal 3D Haar transform turns the clip into 8 sub-bands (24 channels, time
and space /2). The main path convolves them down to the latent; two "energy-flow"
pathways feed the low-pass band's further wavelet levels (a 2D level, then a 3D level)
into the main path at matching resolutions, so low-frequency energy reaches the latent
directly. Decoder: the mirror image; side branches predict each level's sub-bands and
inverse wavelets add them back, the last inverse 3D transform giving the video.

Compression: 8x8 in space, 4x in time, causal: ``T = 1 + 4k`` frames give ``1 + k``
latent frames. Block-wise inference ("Causal Cache") gives the same result as one pass
with ``layernorm``; with ``groupnorm`` it cannot, as 3D GroupNorm spans the whole clip.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from vae_bench.adapters.base import AdapterError
from vae_bench.adapters.sampling import DiagonalGaussian
from vae_bench.adapters.wf_vae.layers import (
    NORM_TYPES,
    AttnBlock3DFix,
    CausalConv3d,
    CausalStreaming,
    Conv2d,
    Downsample,
    ResnetBlock2D,
    ResnetBlock3D,
    Spatial2xTime2x3DDownsample,
    Spatial2xTime2x3DUpsample,
    Upsample,
    normalization,
    swish,
)
from vae_bench.adapters.wf_vae.wavelet import Haar2D, Haar3D, InverseHaar2D, InverseHaar3D

TEMPORAL_FACTOR = 4
SPATIAL_FACTOR = 8

# The module choices of the released 4x-temporal model (the only layout built here; the
# config keys keep the release's spelling, "dowmsample" included).
RELEASED_BLOCKS = {
    "l1_dowmsample_block": "Downsample",
    "l1_downsample_wavelet": "HaarWaveletTransform2D",
    "l2_dowmsample_block": "Spatial2xTime2x3DDownsample",
    "l2_downsample_wavelet": "HaarWaveletTransform3D",
    "l1_upsample_block": "Upsample",
    "l1_upsample_wavelet": "InverseHaarWaveletTransform2D",
    "l2_upsample_block": "Spatial2xTime2x3DUpsample",
    "l2_upsample_wavelet": "InverseHaarWaveletTransform3D",
}
ATTENTION_TYPES = ("AttnBlock3DFix",)
T_INTERPOLATIONS = ("nearest", "trilinear")


class Encoder(nn.Module):
    def __init__(
        self,
        latent_dim: int,
        base_channels: int,
        num_resblocks: int,
        energy_flow_hidden_size: int,
        dropout: float,
        use_attention: bool,
        norm_type: str,
    ) -> None:
        super().__init__()
        base, flow = base_channels, energy_flow_hidden_size
        self.down1 = nn.Sequential(
            Conv2d(24, base, kernel_size=3, padding=1),
            *[ResnetBlock2D(base, base, norm_type, dropout) for _ in range(num_resblocks)],
            Downsample(base, base),
        )
        self.down2 = nn.Sequential(
            Conv2d(base + flow, 2 * base, kernel_size=3, padding=1),
            *[ResnetBlock3D(2 * base, 2 * base, norm_type, dropout) for _ in range(num_resblocks)],
            Spatial2xTime2x3DDownsample(2 * base, 2 * base),
        )
        self.connect_l1 = Conv2d(12, flow, kernel_size=3, padding=1)
        self.connect_l2 = Conv2d(24, flow, kernel_size=3, padding=1)
        mid: list[nn.Module] = [
            ResnetBlock3D(2 * base + flow, 4 * base, norm_type, dropout),
            ResnetBlock3D(4 * base, 4 * base, norm_type, dropout),
        ]
        if use_attention:
            mid.insert(1, AttnBlock3DFix(4 * base, norm_type))
        self.mid = nn.Sequential(*mid)
        self.norm_out = normalization(4 * base, norm_type)
        self.conv_out = CausalConv3d(4 * base, 2 * latent_dim, 3, padding=1)
        self.wavelet_transform_in = Haar3D()
        self.wavelet_transform_l1 = Haar2D()
        self.wavelet_transform_l2 = Haar3D()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coeffs = self.wavelet_transform_in(x)  # 8 bands x RGB: T/2, H/2
        l1_coeffs = self.wavelet_transform_l1(coeffs[:, :3])  # low band, 2D: H/4
        l1 = self.connect_l1(l1_coeffs)
        l2_coeffs = self.wavelet_transform_l2(l1_coeffs[:, :3])  # its low band, 3D: T/4, H/8
        l2 = self.connect_l2(l2_coeffs)
        h = self.down1(coeffs)
        h = self.down2(torch.cat([h, l1], dim=1))
        h = self.mid(torch.cat([h, l2], dim=1))
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(
        self,
        latent_dim: int,
        base_channels: int,
        num_resblocks: int,
        energy_flow_hidden_size: int,
        dropout: float,
        use_attention: bool,
        norm_type: str,
        t_interpolation: str,
        connect_res_layer_num: int,
    ) -> None:
        super().__init__()
        base, flow = base_channels, energy_flow_hidden_size
        self.energy_flow_hidden_size = flow
        self.conv_in = CausalConv3d(latent_dim, 4 * base, 3, padding=1)
        mid: list[nn.Module] = [
            ResnetBlock3D(4 * base, 4 * base, norm_type, dropout),
            ResnetBlock3D(4 * base, 4 * base + flow, norm_type, dropout),
        ]
        if use_attention:
            mid.insert(1, AttnBlock3DFix(4 * base, norm_type))
        self.mid = nn.Sequential(*mid)
        self.up2 = nn.Sequential(
            *[ResnetBlock3D(4 * base, 4 * base, norm_type, dropout) for _ in range(num_resblocks)],
            Spatial2xTime2x3DUpsample(4 * base, 4 * base, t_interpolation, depth=0),
            ResnetBlock3D(4 * base, 4 * base + flow, norm_type, dropout),
        )
        self.up1 = nn.Sequential(
            *[
                ResnetBlock3D((4 if i == 0 else 2) * base, 2 * base, norm_type, dropout)
                for i in range(num_resblocks)
            ],
            Upsample(2 * base, 2 * base),
            ResnetBlock3D(2 * base, 2 * base, norm_type, dropout),
        )
        self.layer = nn.Sequential(
            ResnetBlock3D(2 * base, base, norm_type, dropout),
            ResnetBlock3D(base, base, norm_type, dropout),
        )
        self.connect_l1 = nn.Sequential(
            *[ResnetBlock3D(flow, flow, norm_type, dropout) for _ in range(connect_res_layer_num)],
            Conv2d(flow, 12, kernel_size=3, padding=1),
        )
        self.connect_l2 = nn.Sequential(
            *[ResnetBlock3D(flow, flow, norm_type, dropout) for _ in range(connect_res_layer_num)],
            Conv2d(flow, 24, kernel_size=3, padding=1),
        )
        self.norm_out = normalization(base, norm_type)
        self.conv_out = Conv2d(base, 24, kernel_size=3, padding=1)
        self.inverse_wavelet_transform_out = InverseHaar3D()
        self.inverse_wavelet_transform_l1 = InverseHaar2D()
        self.inverse_wavelet_transform_l2 = InverseHaar3D()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        flow = self.energy_flow_hidden_size
        h = self.mid(self.conv_in(z))
        l2 = self.inverse_wavelet_transform_l2(self.connect_l2(h[:, -flow:]))  # T*2, H*2
        h = self.up2(h[:, :-flow])
        l1_coeffs = self.connect_l1(h[:, -flow:])
        l1_coeffs = torch.cat([l1_coeffs[:, :3] + l2, l1_coeffs[:, 3:]], dim=1)
        l1 = self.inverse_wavelet_transform_l1(l1_coeffs)  # H*4
        h = self.layer(self.up1(h[:, :-flow]))
        h = self.conv_out(swish(self.norm_out(h)))
        h = torch.cat([h[:, :3] + l1, h[:, 3:]], dim=1)
        return self.inverse_wavelet_transform_out(h)  # T*4, H*8


def _streaming_modules(module: nn.Module) -> Iterator[CausalStreaming]:
    return (m for m in module.modules() if isinstance(m, CausalStreaming))


def chunk_spans(frames: int, chunk: int) -> list[tuple[int, int]]:
    """The release's blocks: frame 0 alone, then ``chunk`` frames at a time."""
    return [(0, 1)] + [(start, min(start + chunk, frames)) for start in range(1, frames, chunk)]


class WFVAEModel(ModelMixin, ConfigMixin):
    """WF-VAE with the release's config keys and state-dict names (``_class_name:
    WFVAEModel``), so its ``config.json`` + weights load unchanged."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        latent_dim: int = 8,
        base_channels: int = 128,
        encoder_num_resblocks: int = 2,
        encoder_energy_flow_hidden_size: int = 64,
        decoder_num_resblocks: int = 2,
        decoder_energy_flow_hidden_size: int = 128,
        attention_type: str = "AttnBlock3DFix",
        use_attention: bool = True,
        dropout: float = 0.0,
        norm_type: str = "groupnorm",
        t_interpolation: str = "nearest",
        connect_res_layer_num: int = 1,
        scale: Sequence[float] = (0.18215, 0.18215, 0.18215, 0.18215),
        shift: Sequence[float] = (0, 0, 0, 0),
        l1_dowmsample_block: str = "Downsample",
        l1_downsample_wavelet: str = "HaarWaveletTransform2D",
        l2_dowmsample_block: str = "Spatial2xTime2x3DDownsample",
        l2_downsample_wavelet: str = "HaarWaveletTransform3D",
        l1_upsample_block: str = "Upsample",
        l1_upsample_wavelet: str = "InverseHaarWaveletTransform2D",
        l2_upsample_block: str = "Spatial2xTime2x3DUpsample",
        l2_upsample_wavelet: str = "InverseHaarWaveletTransform3D",
    ) -> None:
        super().__init__()
        _check_config(
            attention_type=attention_type,
            norm_type=norm_type,
            t_interpolation=t_interpolation,
            blocks={
                "l1_dowmsample_block": l1_dowmsample_block,
                "l1_downsample_wavelet": l1_downsample_wavelet,
                "l2_dowmsample_block": l2_dowmsample_block,
                "l2_downsample_wavelet": l2_downsample_wavelet,
                "l1_upsample_block": l1_upsample_block,
                "l1_upsample_wavelet": l1_upsample_wavelet,
                "l2_upsample_block": l2_upsample_block,
                "l2_upsample_wavelet": l2_upsample_wavelet,
            },
        )
        self.encoder = Encoder(
            latent_dim,
            base_channels,
            encoder_num_resblocks,
            encoder_energy_flow_hidden_size,
            dropout,
            use_attention,
            norm_type,
        )
        self.decoder = Decoder(
            latent_dim,
            base_channels,
            decoder_num_resblocks,
            decoder_energy_flow_hidden_size,
            dropout,
            use_attention,
            norm_type,
            t_interpolation,
            connect_res_layer_num,
        )
        # Trailing frames of a decoder block that come from its one-frame look-ahead:
        # one at latent rate, two after the temporal upsampling.
        decoder = self.decoder
        for part in (decoder.up2, decoder.connect_l2, decoder.conv_in, decoder.mid):
            _set_cache_offset(part, 1)
        for part in (decoder.up2[-2:], decoder.up1, decoder.connect_l1, decoder.layer):
            _set_cache_offset(part, 2)

    # --- one pass ------------------------------------------------------------------
    def encode_moments(self, x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """Posterior moments ``[B, 2*latent, 1 + (T-1)/4, H/8, W/8]`` (mean, log-variance).

        ``chunk``: encode block-wise with the causal cache, ``chunk`` frames per block
        after frame 0 (a multiple of 4); the result equals the one-pass result.
        """
        if chunk is None:
            return self.encoder(x)
        return self._encode_blocks(x, chunk)

    def decode_latent(self, z: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """Video ``[B, 3, 1 + 4(T'-1), 8H', 8W']`` from latents; ``chunk``: latent frames
        per block after frame 0, decoded with the causal cache and one frame look-ahead."""
        if chunk is None:
            return self.decoder(z)
        return self._decode_blocks(z, chunk)

    def forward(
        self,
        x: torch.Tensor,
        sample_posterior: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        posterior = DiagonalGaussian.from_moments(self.encode_moments(x))
        z = posterior.sample(generator) if sample_posterior else posterior.mode()
        return self.decode_latent(z)

    # --- block-wise inference (the release's Causal Cache) --------------------------
    def _encode_blocks(self, x: torch.Tensor, chunk: int) -> torch.Tensor:
        if chunk <= 0 or chunk % TEMPORAL_FACTOR:
            raise AdapterError(
                f"WF-VAE causal cache: encoder blocks of {chunk} frames; they must be a "
                f"positive multiple of {TEMPORAL_FACTOR} (whole latent frames)"
            )
        outputs = []
        with _stream(self.encoder) as modules:
            for index, (start, end) in enumerate(chunk_spans(x.shape[2], chunk)):
                for module in modules:
                    module.first_chunk = index == 0
                outputs.append(self.encoder(x[:, :, start:end]))
        return torch.cat(outputs, dim=2)

    def _decode_blocks(self, z: torch.Tensor, chunk: int) -> torch.Tensor:
        if chunk <= 0:
            raise AdapterError(f"WF-VAE causal cache: decoder blocks of {chunk} latent frames")
        frames = z.shape[2]
        spans = chunk_spans(frames, chunk)
        if len(spans) > 1 and spans[-1][1] - spans[-1][0] == 1:
            raise AdapterError(
                f"WF-VAE causal cache: {frames} latent frames in blocks of {chunk} leave a "
                "last block of one latent frame, which the release's decoder cannot take "
                "(its upsampler treats a one-frame block as frame 0); use "
                f"`temporal_chunks(N)` with N = {TEMPORAL_FACTOR} x b, b > 1 and "
                f"({frames} - 1) % b != 1"
            )
        outputs = []
        with _stream(self.decoder) as modules:
            for index, (start, end) in enumerate(spans):
                for module in modules:
                    module.first_chunk = index == 0
                look_ahead = index != 0 and end + 1 < frames
                block = self.decoder(z[:, :, start : end + 1 if look_ahead else end])
                outputs.append(block[:, :, :-TEMPORAL_FACTOR] if look_ahead else block)
        return torch.cat(outputs, dim=2)


@contextmanager
def _stream(part: nn.Module) -> Iterator[list[CausalStreaming]]:
    """Switch a part's causal cache on for one block-wise pass, and off again after."""
    modules = list(_streaming_modules(part))
    for module in modules:
        module.reset_stream(cached=True)
    try:
        yield modules
    finally:
        for module in modules:
            module.reset_stream(cached=False)


def _set_cache_offset(part: nn.Module, offset: int) -> None:
    for module in part.modules():
        if isinstance(module, CausalConv3d):
            module.cache_offset = offset


def _check_config(
    attention_type: str, norm_type: str, t_interpolation: str, blocks: dict[str, str]
) -> None:
    problems = []
    if attention_type not in ATTENTION_TYPES:
        problems.append(
            f"attention_type {attention_type!r} (allowed: {', '.join(ATTENTION_TYPES)})"
        )
    if norm_type not in NORM_TYPES:
        problems.append(f"norm_type {norm_type!r} (allowed: {', '.join(NORM_TYPES)})")
    if t_interpolation not in T_INTERPOLATIONS:
        problems.append(
            f"t_interpolation {t_interpolation!r} (allowed: {', '.join(T_INTERPOLATIONS)})"
        )
    for key, value in blocks.items():
        if value != RELEASED_BLOCKS[key]:
            problems.append(f"{key} {value!r} (only the released {RELEASED_BLOCKS[key]!r})")
    if problems:
        raise AdapterError("WFVAEModel config not supported: " + "; ".join(problems))
