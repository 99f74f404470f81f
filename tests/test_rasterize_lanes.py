"""The CPU pixel passes run the per-pixel math on lane groups of 1, 4 or 8 pixels, over
tiles of any width up to 64 (CUDA's 16 included).

Width 1 is the scalar form the CUDA backend compiles, so these tests also run the CUDA math
on machines without a GPU. Every width must give the same forward bits; gradients are sums
over lanes taken in a different (fixed) order, so they agree to rounding.
"""

from __future__ import annotations

import math

import pytest
import torch

import gsplat_lib.ops.rasterize as rasterize_module
from gsplat_lib import build_info, rasterize_surfels
from rasterize_scenes import RENDERED_IMAGES as IMAGE_OUTPUTS
from rasterize_scenes import random_cameras, random_surfels

WIDTHS = [4] + ([8] if build_info()["cpu_lanes"] >= 8 else [])


def _edge_on_scene():
    """Surfels seen edge-on and tiny ones: the screen fallback wins at many pixels."""
    scene = random_surfels(60, channels=2, seed=5, scale_range=(0.002, 0.2))
    tilt = torch.tensor([math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0])
    scene["quats"][:20] = tilt
    return scene


def _culled_scene():
    """Bad surfels between good ones, so culled and visible lanes share a projection group."""
    scene = random_surfels(43, seed=6)
    scene["means"][3, 0] = math.nan
    scene["means"][9] = torch.tensor([0.0, 0.0, -40.0])  # far behind every camera
    scene["quats"][12] = 0.0
    scene["scales"][17, 1] = -0.1
    scene["opacities"][21] = math.inf
    scene["colors"][26, 2] = math.nan
    return scene


SCENES = {
    "culled": (_culled_scene, 2, 31, 27),
    # Odd image sizes: lane groups run past the last column of a tile and of the image.
    "random": (lambda: random_surfels(300, channels=5, seed=1), 2, 37, 29),
    "edge_on": (_edge_on_scene, 1, 24, 21),
    "dense_opaque": (lambda: dict(random_surfels(400, seed=2, scale_range=(0.2, 0.5)),
                                  opacities=torch.full((400,), 0.95)), 1, 40, 33),
}


def _run(scene, viewmats, Ks, width, height, lanes, monkeypatch, tile_width=64):
    monkeypatch.setattr(rasterize_module, "CPU_LANES", lanes)
    monkeypatch.setattr(rasterize_module, "CPU_TILE_WIDTH", tile_width)
    leaves = {k: v.clone().requires_grad_(True) for k, v in scene.items()}
    out = rasterize_surfels(leaves["means"], leaves["quats"], leaves["scales"], leaves["opacities"],
                            leaves["colors"], viewmats, Ks, width, height, 0.5, 12.0)
    g = torch.Generator().manual_seed(7)
    loss = sum((getattr(out, k) * torch.randn(getattr(out, k).shape, generator=g)).sum() for k in IMAGE_OUTPUTS)
    loss.backward()
    grads = {k: v.grad for k, v in leaves.items()}
    grads["screen_grad"] = out.screen_grad.grad
    grads["screen_absgrad"] = out.screen_absgrad.grad
    return out, grads


@pytest.mark.parametrize("scene_name", sorted(SCENES))
@pytest.mark.parametrize("lanes", WIDTHS)
def test_lane_widths_match_the_scalar_math(scene_name, lanes, monkeypatch):
    make, num_cameras, width, height = SCENES[scene_name]
    scene = make()
    viewmats, Ks = random_cameras(num_cameras, width, height, seed=4, distance=3.0)
    scalar, scalar_grads = _run(scene, viewmats, Ks, width, height, 1, monkeypatch)
    vector, vector_grads = _run(scene, viewmats, Ks, width, height, lanes, monkeypatch)
    assert int(scalar.evaluated_pairs.sum()) > 0
    for name in IMAGE_OUTPUTS + ["evaluated_pairs", "radii", "means2d"]:
        assert torch.equal(getattr(scalar, name), getattr(vector, name)), name
    assert torch.equal(scalar.backward_pairs, vector.backward_pairs)
    for name, expected in scalar_grads.items():
        actual = vector_grads[name]
        assert torch.isfinite(actual).all(), name
        scale = expected.abs().max().clamp_min(1e-6)
        assert (actual - expected).abs().max() <= 1e-5 * scale, name


def test_default_is_the_widest_lane_group(monkeypatch):
    make, num_cameras, width, height = SCENES["random"]
    scene = make()
    viewmats, Ks = random_cameras(num_cameras, width, height, seed=4, distance=3.0)
    widest, widest_grads = _run(scene, viewmats, Ks, width, height, WIDTHS[-1], monkeypatch)
    default, default_grads = _run(scene, viewmats, Ks, width, height, 0, monkeypatch)
    for name in IMAGE_OUTPUTS:
        assert torch.equal(getattr(widest, name), getattr(default, name)), name
    for name in widest_grads:
        assert torch.equal(widest_grads[name], default_grads[name]), name


def test_unsupported_lane_width_is_a_clear_error(monkeypatch):
    viewmats, Ks = random_cameras(1, 16, 16)
    scene = random_surfels(10)
    monkeypatch.setattr(rasterize_module, "CPU_LANES", 3)
    with pytest.raises(ValueError, match="cpu_lanes"):
        rasterize_surfels(scene["means"], scene["quats"], scene["scales"], scene["opacities"], scene["colors"],
                          viewmats, Ks, 16, 16)


@pytest.mark.parametrize("tile_width", [16, 7, 1])
def test_tile_widths_match(tile_width, monkeypatch):
    # Each pixel sees the same splats in the same order whatever the tiling: the same forward
    # bits. A pair's gradient record covers a different set of pixels, so gradients agree to
    # rounding.
    make, num_cameras, width, height = SCENES["random"]
    scene = make()
    viewmats, Ks = random_cameras(num_cameras, width, height, seed=4, distance=3.0)
    wide, wide_grads = _run(scene, viewmats, Ks, width, height, 0, monkeypatch)
    narrow, narrow_grads = _run(scene, viewmats, Ks, width, height, 0, monkeypatch, tile_width)
    for name in IMAGE_OUTPUTS + ["evaluated_pairs", "radii", "means2d"]:
        assert torch.equal(getattr(wide, name), getattr(narrow, name)), name
    assert torch.equal(wide.backward_pairs, narrow.backward_pairs)
    for name, expected in wide_grads.items():
        scale = expected.abs().max().clamp_min(1e-6)
        assert (narrow_grads[name] - expected).abs().max() <= 1e-5 * scale, name


@pytest.mark.parametrize("tile_width", [0, 65])
def test_unsupported_tile_width_is_a_clear_error(tile_width, monkeypatch):
    make, num_cameras, width, height = SCENES["random"]
    viewmats, Ks = random_cameras(num_cameras, width, height, seed=4, distance=3.0)
    with pytest.raises(ValueError, match="tile_width"):
        _run(make(), viewmats, Ks, width, height, 0, monkeypatch, tile_width)
