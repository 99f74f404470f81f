"""Spherical-harmonics colours: basis, constants, camera directions, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import sph_harm_y
from scipy.spatial.transform import Rotation

from gsplat_lib.ops.sh import SH_C0, eval_sh, num_sh_bases, sh_to_colors


def random_directions(count, seed=0):
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(count, 3, generator=g, dtype=torch.float64)
    return dirs / dirs.norm(dim=-1, keepdim=True)


def scipy_real_sh(degree, dirs):
    """Standard real SH (no Condon-Shortley phase) from scipy's complex ones, ordered
    l^2 + l + m: ``[count, (degree + 1)^2]``."""
    x, y, z = dirs.numpy().T
    polar, azimuth = np.arccos(np.clip(z, -1, 1)), np.arctan2(y, x)
    columns = []
    for l in range(degree + 1):
        for m in range(-l, l + 1):
            complex_sh = sph_harm_y(l, abs(m), polar, azimuth)  # includes (-1)^m
            if m < 0:
                columns.append(math.sqrt(2) * (-1) ** m * complex_sh.imag)
            elif m == 0:
                columns.append(complex_sh.real)
            else:
                columns.append(math.sqrt(2) * (-1) ** m * complex_sh.real)
    return torch.from_numpy(np.stack(columns, -1))


def basis_of(degree, dirs):
    """The basis functions of eval_sh, read off with one-hot coefficients: ``[count, K]``."""
    count, bases = dirs.shape[0], num_sh_bases(degree)
    one_hot = torch.eye(bases, dtype=torch.float64)[:, :, None].expand(bases, bases, 3)
    values = eval_sh(degree, one_hot[None].expand(count, -1, -1, -1), dirs[:, None, :])
    return values[..., 0]  # [count, K], identical in every channel


def test_num_sh_bases():
    assert [num_sh_bases(d) for d in range(4)] == [1, 4, 9, 16]
    with pytest.raises(ValueError, match="sh_degree"):
        num_sh_bases(4)
    with pytest.raises(TypeError, match="sh_degree"):
        num_sh_bases(1.0)


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_basis_matches_real_spherical_harmonics(degree):
    dirs = random_directions(50)
    ours = basis_of(degree, dirs)
    # 3DGS keeps the Condon-Shortley phase: its basis is (-1)^m times the standard one
    # (band 1 is C1 * (-y, z, -x)).
    signs = torch.tensor([(-1.0) ** m for l in range(degree + 1) for m in range(-l, l + 1)],
                         dtype=torch.float64)
    torch.testing.assert_close(ours, scipy_real_sh(degree, dirs) * signs, rtol=1e-10, atol=1e-12)


def test_basis_is_orthonormal_on_the_sphere():
    # Gauss-Legendre in cos(theta) x uniform azimuth integrates these polynomials exactly.
    nodes, weights = np.polynomial.legendre.leggauss(12)
    azimuths = np.arange(24) * 2 * math.pi / 24
    cos_t, phi = np.meshgrid(nodes, azimuths, indexing="ij")
    sin_t = np.sqrt(1 - cos_t**2)
    dirs = torch.from_numpy(np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], -1).reshape(-1, 3))
    quadrature = torch.from_numpy(np.repeat(weights, 24) * 2 * math.pi / 24)
    basis = basis_of(3, dirs)
    gram = basis.T @ (basis * quadrature[:, None])
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), rtol=0, atol=1e-12)


def test_degree_zero_is_dc_term():
    g = torch.Generator().manual_seed(1)
    sh = torch.randn(7, 16, 3, generator=g, dtype=torch.float64)
    means = torch.randn(7, 3, generator=g, dtype=torch.float64)
    viewmats = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1)
    colors = sh_to_colors(sh, 0, means, viewmats)
    expected = torch.clamp_min(SH_C0 * sh[:, 0] + 0.5, 0.0).expand(2, -1, -1)
    torch.testing.assert_close(colors, expected, rtol=0, atol=0)


def test_higher_degrees_ignore_extra_coefficients():
    g = torch.Generator().manual_seed(2)
    sh = torch.randn(5, 16, 3, generator=g, dtype=torch.float64)
    dirs = random_directions(5)
    torch.testing.assert_close(eval_sh(1, sh, dirs), eval_sh(1, sh[:, :4], dirs))
    torch.testing.assert_close(eval_sh(2, sh, dirs), eval_sh(2, sh[:, :9], dirs))


def test_band_one_direct_formula():
    g = torch.Generator().manual_seed(3)
    sh = torch.randn(6, 4, 3, generator=g, dtype=torch.float64)
    dirs = random_directions(6, seed=4)
    x, y, z = (dirs[:, i, None] for i in range(3))
    c1 = math.sqrt(3 / (4 * math.pi))
    expected = (1 / math.sqrt(4 * math.pi)) * sh[:, 0] - c1 * y * sh[:, 1] + c1 * z * sh[:, 2] - c1 * x * sh[:, 3]
    torch.testing.assert_close(eval_sh(1, sh, dirs), expected, rtol=1e-12, atol=1e-12)


def camera(position, rotation):
    """World-to-camera [4, 4] of a camera at ``position`` with world-to-camera ``rotation``."""
    viewmat = torch.eye(4, dtype=torch.float64)
    viewmat[:3, :3] = torch.as_tensor(rotation, dtype=torch.float64)
    viewmat[:3, 3] = -viewmat[:3, :3] @ torch.as_tensor(position, dtype=torch.float64)
    return viewmat


def test_colour_uses_direction_from_camera_centre():
    g = torch.Generator().manual_seed(5)
    sh = torch.randn(4, 16, 3, generator=g, dtype=torch.float64) * 0.3
    means = torch.randn(4, 3, generator=g, dtype=torch.float64)
    position = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    rotations = Rotation.random(3, random_state=6).as_matrix()
    viewmats = torch.stack([camera(position, r) for r in rotations])
    colors = sh_to_colors(sh, 3, means, viewmats)
    # The camera's orientation does not matter, only its centre.
    torch.testing.assert_close(colors[1], colors[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(colors[2], colors[0], rtol=1e-12, atol=1e-12)
    dirs = (means - position) / (means - position).norm(dim=-1, keepdim=True)
    expected = torch.clamp_min(eval_sh(3, sh, dirs) + 0.5, 0.0)
    torch.testing.assert_close(colors[0], expected, rtol=1e-12, atol=1e-12)


def test_rotating_scene_and_coefficients_together():
    # A band-1 colour is a linear function of the direction: rotating the world (means and
    # camera) by Q and the band-1 vector by Q gives the same colours.
    g = torch.Generator().manual_seed(7)
    sh = torch.randn(5, 4, 3, generator=g, dtype=torch.float64) * 0.2
    means = torch.randn(5, 3, generator=g, dtype=torch.float64)
    position = torch.tensor([1.0, 2.0, -3.0], dtype=torch.float64)
    rotation = torch.from_numpy(Rotation.random(random_state=8).as_matrix())
    base = sh_to_colors(sh, 1, means, camera(position, torch.eye(3))[None])
    # eval_sh band 1 is C1 * (-y, z, -x) . (s1, s2, s3) = C1 * d . (-s3, -s1, s2).
    to_vector = torch.tensor([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    vectors = torch.einsum("ij,njc->nic", to_vector, sh[:, 1:4])
    rotated_sh = sh.clone()
    rotated_sh[:, 1:4] = torch.einsum("ji,jk,nkc->nic", to_vector, rotation, vectors)
    rotated = sh_to_colors(rotated_sh, 1, means @ rotation.T, camera(rotation @ position, torch.eye(3))[None])
    torch.testing.assert_close(rotated, base, rtol=1e-12, atol=1e-12)


def test_colours_are_clamped_at_zero():
    sh = torch.zeros(2, 1, 3, dtype=torch.float64)
    sh[0, 0] = -5.0
    colors = sh_to_colors(sh, 0, torch.zeros(2, 3, dtype=torch.float64), torch.eye(4, dtype=torch.float64)[None])
    assert torch.all(colors[0, 0] == 0) and torch.all(colors[0, 1] == 0.5)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(9)
    sh = (torch.randn(3, 16, 3, generator=g, dtype=torch.float64) * 0.2).requires_grad_(True)
    means = torch.randn(3, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    viewmats = torch.stack([camera([0.0, 0.0, -4.0], torch.eye(3)),
                            camera([2.0, 1.0, 0.5], Rotation.random(random_state=1).as_matrix())])
    for degree in range(4):
        assert torch.autograd.gradcheck(lambda s, m: sh_to_colors(s, degree, m, viewmats), (sh, means))


@pytest.mark.parametrize("mean", [[0.0, 0.0, -4.0], [math.nan, 0.0, 1.0], [math.inf, 0.0, 0.0]])
def test_degenerate_directions_give_finite_values_and_gradients(mean):
    # The first mean sits on the camera centre or is not finite.
    sh = torch.full((2, 16, 3), 0.1, dtype=torch.float64, requires_grad=True)
    means = torch.tensor([mean, [0.3, 0.2, 1.0]], dtype=torch.float64, requires_grad=True)
    viewmats = camera([0.0, 0.0, -4.0], torch.eye(3))[None]
    colors = sh_to_colors(sh, 3, means, viewmats)
    assert torch.isfinite(colors).all()
    colors.sum().backward()
    assert torch.isfinite(sh.grad).all() and torch.isfinite(means.grad).all()
    assert torch.all(means.grad[0] == 0)


def test_float32_follows_inputs():
    sh = torch.randn(4, 9, 3)
    colors = sh_to_colors(sh, 2, torch.randn(4, 3), torch.eye(4)[None])
    assert colors.dtype == torch.float32 and colors.shape == (1, 4, 3)


@pytest.mark.parametrize(
    "sh_shape, degree, error, match",
    [
        ((4, 3, 3), 1, ValueError, "sh_degree=1"),
        ((4, 16, 3), 4, ValueError, "sh_degree"),
        ((4, 16), 1, ValueError, "sh"),
        ((4, 16, 4), 1, ValueError, "sh"),
        ((4, 16, 3), -1, ValueError, "sh_degree"),
    ],
)
def test_bad_arguments(sh_shape, degree, error, match):
    with pytest.raises(error, match=match):
        sh_to_colors(torch.zeros(sh_shape), degree, torch.zeros(4, 3), torch.eye(4)[None])
