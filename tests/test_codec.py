"""Codec baselines: the stream spends the reference latent's bits, and decodes back."""

from __future__ import annotations

import math

import pytest
import torch

from vae_bench.adapters import get_preset
from vae_bench.adapters.base import AdapterError, Preset
from vae_bench.adapters.codec import (
    CODECS,
    CodecBaseline,
    LatentBudget,
    available_codecs,
    from_rgb24,
    pack,
    to_rgb24,
    unpack,
)
from vae_bench.results import read_results
from vae_bench.runner import plan, run_sweep
from vae_bench.sweep import Sweep, SweepError, parse_sweep
from vae_bench.synthetic import SyntheticDataset

AVAILABLE = available_codecs()
FRAMES, SIZE = 9, 64


def clip(index: int = 0, frames: int = FRAMES, size: int = SIZE) -> torch.Tensor:
    dataset = SyntheticDataset(num_clips=4)
    return dataset.load(dataset.clip_ids()[index], frames, size, size).video[None]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(4.0 / float(((a - b) ** 2).mean()))


def test_the_budget_is_the_reference_latent_in_bits() -> None:
    budget = LatentBudget(channels=16, spatial_factor=8, temporal_factor=4, bits_per_value=16)
    # 17 frames -> 1 + 16/4 = 5 latent frames of 16 x 8 x 8 fp16 values.
    assert budget.bits(17, 64, 64) == 16 * 5 * 8 * 8 * 16
    assert budget.frame_rule.is_valid(17) and not budget.frame_rule.is_valid(16)
    with pytest.raises(AdapterError, match="channels"):
        LatentBudget(channels=0)


def test_the_presets_cover_the_three_codecs() -> None:
    for codec in ("h264", "hevc", "av1"):
        preset = get_preset(f"{codec}-match-16ch")
        assert preset.config["codec"] == codec


@pytest.mark.parametrize("codec", AVAILABLE)
@pytest.mark.parametrize("index", [0, 3])  # a photo clip and a shapes-over-texture clip
def test_stream_size_is_within_five_percent_of_the_latent_bits(codec: str, index: int) -> None:
    model = get_preset(f"{codec}-match-16ch").create()
    video = clip(index)
    latent = model.encode(video)
    target = LatentBudget().bits(FRAMES, SIZE, SIZE)
    (rate,) = model.last_rates
    assert rate.target_bits == target
    packets = unpack(latent)[0]
    assert 8 * sum(map(len, packets)) == rate.bits  # the latent holds exactly those bits
    assert abs(rate.bits / target - 1) <= 0.05


@pytest.mark.parametrize("codec", AVAILABLE)
def test_round_trip_shape_range_and_batch(codec: str) -> None:
    model = get_preset(f"{codec}-match-16ch").create()
    video = torch.cat([clip(0), clip(1)])
    recon = model.reconstruct(video)
    assert model.weights == "none"
    assert recon.shape == video.shape and recon.dtype == torch.float32
    assert recon.min() >= -1 and recon.max() <= 1
    # at about 1 bit per pixel the reconstruction is close, and each clip is its own
    assert psnr(recon[0], video[0]) > 25 and psnr(recon[1], video[1]) > 25
    assert psnr(recon[0], video[0]) > psnr(recon[0], video[1]) + 5


@pytest.mark.parametrize("codec", AVAILABLE)
def test_more_bits_give_higher_psnr(codec: str) -> None:
    video = clip(1)
    scores = []
    for channels in (4, 32):
        preset = Preset("t", CodecBaseline, config={"codec": codec, "channels": channels})
        scores.append(psnr(preset.create().reconstruct(video), video))
    assert scores[1] > scores[0] + 1


def test_pixels_map_to_8_bit_and_back_exactly() -> None:
    levels = torch.arange(256, dtype=torch.float32) / 127.5 - 1
    video = levels.reshape(1, 1, 16, 16).expand(3, 2, 16, 16)
    rgb = to_rgb24(video)
    assert rgb.shape == (2, 16, 16, 3) and rgb[0, 0, :, 0].tolist() == list(range(16))
    assert torch.allclose(from_rgb24(list(rgb)), video, atol=1e-6)


def test_packing_round_trips_ragged_streams() -> None:
    streams = [[b"\x00\x01", b"abc"], [b""], [b"x" * 300]]
    assert unpack(pack(streams)) == streams
    with pytest.raises(AdapterError, match="uint8"):
        unpack(torch.zeros(2, 8))


def test_bad_config_and_missing_encoder_are_named_at_construction(monkeypatch) -> None:
    with pytest.raises(AdapterError, match="'codec' must be one of h264, hevc, av1"):
        Preset("t", CodecBaseline, config={"codec": "mpeg2"}).create()
    with pytest.raises(AdapterError, match="unknown config keys bogus"):
        Preset("t", CodecBaseline, config={"codec": "h264", "bogus": 1}).create()
    missing = CODECS["h264"].__class__("h264", "no-such-encoder", "h264", (0, 51), dict)
    monkeypatch.setitem(CODECS, "h264", missing)
    with pytest.raises(AdapterError, match="no encoder 'no-such-encoder'"):
        Preset("t", CodecBaseline, config={"codec": "h264"}).create()


def sweep(codec: str) -> Sweep:
    return parse_sweep({
        "name": "codec", "device": "cpu", "datasets": ["synthetic"], "resolutions": [32],
        "frames": [9], "models": [{"preset": f"{codec}-match-16ch", "efficiency": False}],
        "quality": {"metrics": ["psnr"], "max_clips": 1},
    }, "sweep.yaml")  # fmt: skip


def test_a_sweep_with_an_unavailable_codec_fails_at_planning(monkeypatch) -> None:
    missing = CODECS["av1"].__class__("av1", "libsvtav1", "no-such-decoder", (1, 63), dict)
    monkeypatch.setitem(CODECS, "av1", missing)
    with pytest.raises(SweepError, match="av1-match-16ch.*no decoder 'no-such-decoder'"):
        plan(sweep("av1"))


@pytest.mark.skipif("h264" not in AVAILABLE, reason="no libx264 in this PyAV build")
def test_sweep_rows_say_weights_none(tmp_path) -> None:
    results = read_results(run_sweep(sweep("h264"), tmp_path, plots=False))
    rows = results[results.metric == "psnr"]
    assert len(rows) == 1 and (rows.status == "ok").all()
    assert rows.weights.tolist() == ["none"] and rows.family.tolist() == ["codec"]
    assert rows.value.iloc[0] > 20
