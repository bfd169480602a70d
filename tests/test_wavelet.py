"""Haar transforms of WF-VAE: exact inverse, orthonormality, the release's layout and
constants, and the energy compaction the model relies on."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage.transform import resize

from vae_bench.adapters.wf_vae.wavelet import (
    BANDS_2D,
    BANDS_3D,
    HAAR_3D_SCALE_EXACT,
    HAAR_3D_SCALE_RELEASE,
    Haar3D,
    InverseHaar3D,
    haar_2d,
    haar_3d,
    haar_kernels_2d,
    haar_kernels_3d,
    inverse_haar_2d,
    inverse_haar_3d,
)

# The release's filter tables (wavelet.py of PKU-YuanGroup/WF-VAE): +-1 patterns indexed
# [t][h][w] (3D) and [h][w] (2D), scaled by 0.3536 and 1/2.
RELEASE_SIGNS_3D = {
    "h": [[[1, 1], [1, 1]], [[1, 1], [1, 1]]],
    "g": [[[1, -1], [1, -1]], [[1, -1], [1, -1]]],
    "hh": [[[1, 1], [-1, -1]], [[1, 1], [-1, -1]]],
    "gh": [[[1, -1], [-1, 1]], [[1, -1], [-1, 1]]],
    "h_v": [[[1, 1], [1, 1]], [[-1, -1], [-1, -1]]],
    "g_v": [[[1, -1], [1, -1]], [[-1, 1], [-1, 1]]],
    "hh_v": [[[1, 1], [-1, -1]], [[-1, -1], [1, 1]]],
    "gh_v": [[[1, -1], [-1, 1]], [[-1, 1], [1, -1]]],
}
RELEASE_SIGNS_2D = {
    "aa": [[1, 1], [1, 1]],
    "ad": [[1, 1], [-1, -1]],
    "da": [[1, -1], [1, -1]],
    "dd": [[1, -1], [-1, 1]],
}


def _video(t: int = 9, size: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, t, size, size, generator=generator, dtype=torch.float64) * 2 - 1


def test_kernels_are_the_release_tables():
    for k, name in enumerate(BANDS_3D):
        expected = torch.tensor(RELEASE_SIGNS_3D[name], dtype=torch.float32) * 0.3536
        assert torch.equal(haar_kernels_3d(HAAR_3D_SCALE_RELEASE)[k], expected), name
    for k, name in enumerate(BANDS_2D):
        expected = torch.tensor(RELEASE_SIGNS_2D[name], dtype=torch.float32) / 2
        assert torch.equal(haar_kernels_2d()[k], expected), name


def test_kernels_are_kronecker_products_of_the_1d_haar_pair():
    haar = np.array([[1.0, 1.0], [1.0, -1.0]]) / math.sqrt(2)  # rows: low, high
    kron3 = np.stack(
        [np.kron(haar[k >> 2 & 1], np.kron(haar[k >> 1 & 1], haar[k & 1])) for k in range(8)]
    )
    kron2 = np.stack([np.kron(haar[k & 1], haar[k >> 1 & 1]) for k in range(4)])
    np.testing.assert_allclose(haar_kernels_3d().reshape(8, 8).numpy(), kron3, atol=1e-7)
    np.testing.assert_allclose(haar_kernels_2d().reshape(4, 4).numpy(), kron2, atol=1e-7)


@pytest.mark.parametrize("dims", [2, 3])
def test_transform_matrix_is_orthogonal(dims):
    kernels = haar_kernels_3d if dims == 3 else haar_kernels_2d
    matrix = kernels(dtype=torch.float64).reshape(2**dims, -1)
    torch.testing.assert_close(matrix @ matrix.T, torch.eye(2**dims, dtype=torch.float64))


@pytest.mark.parametrize("frames", [1, 9, 17])
def test_3d_perfect_reconstruction_causal(frames):
    x = _video(frames)
    kernels = haar_kernels_3d(dtype=torch.float64)
    coeffs = haar_3d(x, kernels)
    assert coeffs.shape == (2, 24, (frames + 1) // 2, 8, 8)
    torch.testing.assert_close(inverse_haar_3d(coeffs, kernels), x, rtol=0, atol=1e-12)


def test_2d_perfect_reconstruction():
    x = _video(5)
    coeffs = haar_2d(x, haar_kernels_2d(dtype=torch.float64))
    assert coeffs.shape == (2, 12, 5, 8, 8)
    torch.testing.assert_close(
        inverse_haar_2d(coeffs, haar_kernels_2d(dtype=torch.float64)), x, rtol=0, atol=1e-12
    )


def test_energy_is_preserved():
    x = _video(8)
    energy = x.square().sum()
    block = haar_3d(x, haar_kernels_3d(dtype=torch.float64), causal_pad=False)
    torch.testing.assert_close(block.square().sum(), energy)
    torch.testing.assert_close(
        haar_2d(x, haar_kernels_2d(dtype=torch.float64)).square().sum(), energy
    )
    # the causal transform sees frame 0 twice: its energy counts twice
    causal = haar_3d(x[:, :, :7], haar_kernels_3d(dtype=torch.float64))
    torch.testing.assert_close(
        causal.square().sum(), x[:, :, :7].square().sum() + x[:, :, 0].square().sum()
    )


def test_release_constant_scales_the_round_trip():
    """0.3536 is not 2**-1.5: the release's 3D round trip gains 8 * 0.3536**2."""
    x = _video(9)
    kernels = haar_kernels_3d(HAAR_3D_SCALE_RELEASE, torch.float64)
    gain = 8 * HAAR_3D_SCALE_RELEASE**2
    torch.testing.assert_close(
        inverse_haar_3d(haar_3d(x, kernels), kernels), x * gain, rtol=0, atol=1e-12
    )
    assert gain - 1 == pytest.approx(2.6368e-4, rel=1e-6)
    assert HAAR_3D_SCALE_EXACT == pytest.approx(1 / (2 * math.sqrt(2)))


def test_layout_is_band_major():
    """Channel ``band * C + c``: a clip constant per channel has only the low band."""
    x = torch.arange(1.0, 4.0, dtype=torch.float64).reshape(1, 3, 1, 1, 1).expand(1, 3, 5, 4, 4)
    coeffs = haar_3d(x, haar_kernels_3d(dtype=torch.float64))
    torch.testing.assert_close(
        coeffs[0, :3, :, 0, 0],
        torch.tensor([1.0, 2.0, 3.0]).double()[:, None].expand(3, 3) * 2 * math.sqrt(2),
    )
    assert coeffs[:, 3:].abs().max() < 1e-12
    # a horizontal ramp (along width) lives in band "g" (index 1): channels 3..5
    ramp = torch.tensor([0.0, 1.0]).double().repeat(2).reshape(1, 1, 1, 1, 4).expand(1, 3, 3, 2, 4)
    coeffs = haar_3d(ramp, haar_kernels_3d(dtype=torch.float64))
    energy = coeffs.square().sum(dim=(0, 2, 3, 4)).reshape(8, 3).sum(dim=1)
    assert energy[1] > 0 and energy[[2, 3, 4, 5, 6, 7]].sum() < 1e-12


def test_modules_hold_the_release_layout_and_stream():
    forward, inverse = Haar3D(), InverseHaar3D()
    assert sorted(forward.state_dict()) == sorted(f"{b}_conv.conv.weight" for b in BANDS_3D)
    assert sorted(inverse.state_dict()) == sorted(BANDS_3D)
    assert not any(p.requires_grad for p in forward.parameters())
    x = _video(9).float()
    whole = forward(x)
    forward.first_chunk = False  # a later block of a stream: no repeated frame 0
    torch.testing.assert_close(
        torch.cat(
            [forward(x[:, :, :1].expand(-1, -1, 2, -1, -1))[:, :, :1], forward(x[:, :, 1:])], 2
        ),
        whole,
    )


def _natural_clip(frames: int = 9, size: int = 64) -> torch.Tensor:
    """A diagonal camera pan (1 px per frame) over a photograph, in [-1, 1]."""
    image = resize(skdata.astronaut(), (size + frames, size + frames), anti_aliasing=True)
    clip = np.stack([image[t : t + size, t : t + size] for t in range(frames)])
    return torch.from_numpy(clip).permute(3, 0, 1, 2)[None].double() * 2 - 1


def test_low_band_holds_most_energy_of_natural_video():
    """WF-VAE's premise: the low-pass band carries most of a video's energy (noise: 1/8)."""
    kernels = haar_kernels_3d(dtype=torch.float64)
    for clip, low, high in (
        (_natural_clip(), 0.85, 1.0),
        (torch.randn(1, 3, 9, 64, 64).double(), 0.1, 0.16),
    ):
        coeffs = haar_3d(clip[:, :, 1:], kernels, causal_pad=False)  # 8 frames: 4 pairs
        share = coeffs[:, :3].square().sum() / coeffs.square().sum()
        assert low < share < high
