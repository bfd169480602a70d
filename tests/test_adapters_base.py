"""The adapter protocol's small pieces: frame rules, inference modes, registry, identity."""

from __future__ import annotations

import pytest
import torch

from vae_bench import adapters
from vae_bench.adapters import AdapterError, FrameRule, InferenceMode, VAESpec
from vae_bench.adapters.registry import ENTRY_POINT_GROUP


@pytest.mark.parametrize(
    ("rule", "frames", "fitted"),
    [(FrameRule(4, 1), 17, 17), (FrameRule(4, 1), 16, 13), (FrameRule(4, 1), 1, 1),
     (FrameRule(), 7, 7), (FrameRule(8, 0), 20, 16)],
)  # fmt: skip
def test_frame_rule_fit(rule, frames, fitted):
    assert rule.fit(frames) == fitted and rule.is_valid(fitted)
    assert all(not rule.is_valid(t) for t in range(fitted + 1, frames + 1))


def test_frame_rule_errors_and_text():
    assert str(FrameRule(4, 1)) == "1+4k" and str(FrameRule()) == "any"
    with pytest.raises(AdapterError, match="fewer than the minimum"):
        FrameRule(8, 0).fit(0)


def test_inference_mode_parse_and_labels():
    assert InferenceMode.parse("full") == adapters.FULL
    mode = InferenceMode.parse(" spatial_tiles( 256 , 32 ) ")
    assert (mode.kind, mode.size, mode.overlap, mode.label) == (
        "spatial_tiles",
        256,
        32,
        "spatial_tiles(256,32)",
    )
    assert InferenceMode.parse("temporal_chunks(16)").label == "temporal_chunks(16)"
    for bad, needle in [
        ("tiles(3)", "unknown inference mode"),
        ("temporal_chunks", "needs a positive size"),
        ("spatial_tiles(8, 8)", "overlap 8"),
        ("full(", "cannot parse"),
    ]:
        with pytest.raises(AdapterError, match=needle.replace("(", r"\(")):
            InferenceMode.parse(bad)


def test_spec_checks_and_latent_shape():
    spec = VAESpec(
        "m", "f", 16, spatial_factor=8, temporal_factor=4, causal=True, frame_rule=FrameRule(4, 1)
    )
    assert spec.latent_shape(33, 256, 128) == (16, 9, 32, 16)
    with pytest.raises(AdapterError, match="T must be 1\\+4k"):
        spec.check_input(32, 256, 256)
    with pytest.raises(AdapterError, match="width 100 is not divisible by the spatial factor 8"):
        spec.check_input(33, 256, 100)


def test_identity_is_exact_and_checks_input():
    vae = adapters.create_model("identity")
    video = torch.rand(2, 3, 5, 8, 8) * 2 - 1
    assert torch.equal(vae.reconstruct(video), video)
    with pytest.raises(AdapterError, match="does not support sampling"):
        vae.encode(video, seed=0)
    with pytest.raises(AdapterError, match=r"\[B, C, T, H, W\]"):
        vae.encode(video[0])


def test_registry_unknown_and_duplicate_names(toy_preset):
    with pytest.raises(AdapterError, match="unknown model 'nope'; registered: .*identity"):
        adapters.get_preset("nope")
    with pytest.raises(AdapterError, match="already registered"):
        adapters.register(adapters.Preset("toy-pool", type(adapters.create_model("toy-pool"))))
    with pytest.raises(AdapterError, match="weights not found at /does/not/exist"):
        adapters.create_model("toy-pool", "/does/not/exist")


def test_builtin_presets_come_through_the_entry_point_group():
    from importlib.metadata import entry_points

    names = {e.name: e.value for e in entry_points(group=ENTRY_POINT_GROUP)}
    assert names.get("builtin") == "vae_bench.adapters:register_builtin"
    assert "identity" in adapters.presets()


class _CastRecorder(torch.nn.Module):
    """A module with a diffusers-style ``to`` override that records being called."""

    def __init__(self, keep: list[str]) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 2)
        self._keep_in_fp32_modules = keep
        self.own_to_calls = 0

    def to(self, *args, **kwargs):  # type: ignore[override]
        self.own_to_calls += 1
        return super().to(*args, **kwargs)


class _Wrapped(adapters.VideoVAE):
    def __init__(self, module: torch.nn.Module) -> None:
        self._module = module
        self.spec = VAESpec(name="wrapped", family="test", latent_channels=2)

    @property
    def module(self) -> torch.nn.Module:
        return self._module

    def _encode(self, video, mode):
        return video

    def _decode(self, latent, mode):
        return latent


@pytest.mark.parametrize(("keep", "own_calls"), [([], 0), (["layer"], 1)])
def test_cast_bypasses_a_float32_keeping_override_only_when_it_keeps_nothing(keep, own_calls):
    module = _CastRecorder(keep)
    vae = _Wrapped(module).to("cpu", torch.bfloat16)
    assert vae.dtype == torch.bfloat16 and module.layer.weight.dtype == torch.bfloat16
    assert module.own_to_calls == own_calls
