"""gsplat_lib.compat.diff_surfel_rasterization against the float64 reference of upstream's API
(gsplat_lib.reference.diff_surfel) in gsplat_lib semantics: images, aux maps, radii, the
means2D statistic and the gradients of upstream's inputs."""

import pytest
import torch

import gsplat_lib.compat.diff_surfel_rasterization as dsr
from diff_surfel_cases import (
    CASES, HEIGHT, WIDTH, assert_close_scaled, assert_forward_matches, backpropagate_same_loss, build_case, render_pair)
from diff_surfel_scenes import camera_settings, orbit_viewmat, splat_to_pixels
from gsplat_lib.compat.diff_surfel_rasterization import (
    GaussianRasterizationSettings, GaussianRasterizer, rasterize_gaussians)
from gsplat_lib.compat.upstream_camera import upstream_intrinsics
from gsplat_lib.reference.diff_surfel import GSPLAT_LIB, densification_statistic


@pytest.fixture(autouse=True)
def gsplat_lib_semantics(monkeypatch):
    """The compat layer defaults to upstream's semantics (test_compat_faithful.py); these test gsplat_lib's."""
    monkeypatch.setattr(dsr, "SEMANTICS", GSPLAT_LIB)


@pytest.mark.parametrize("name", list(CASES))
def test_compat_matches_reference_in_gsplat_lib_semantics(name):
    scene, settings, case = build_case(name, seed=list(CASES).index(name) + 3)
    (color, radii, allmap, means2D), leaves32, reference, leaves64 = render_pair(scene, settings, case)

    assert color.shape == (3, HEIGHT, WIDTH) and allmap.shape == (7, HEIGHT, WIDTH)
    assert radii.dtype == torch.int32 and radii.shape == (scene["means3D"].shape[0],)
    assert int(reference.visible.sum()) > 5, "the case should show several surfels"
    assert_forward_matches(color, radii, allmap, reference)
    backpropagate_same_loss(color, allmap, reference)
    assert_close_scaled(means2D.grad, densification_statistic(reference), 2e-3, "means2D.grad")
    for key in leaves32:
        assert_close_scaled(leaves32[key].grad, leaves64[key].grad, 3e-3, f"grad {key}")


@pytest.mark.parametrize("columns", [2, 3, 4])
def test_means2D_layouts(columns):
    """2DGS passes [N, 3] (column 2 stays 0), GenFusion [N, 4] (2:4: the absolute statistic)."""
    scene, settings, case = build_case("colors", seed=11)
    (color, radii, allmap, means2D), _, reference, _ = render_pair(scene, settings, case, means2d_columns=columns)
    (color.sum() + allmap[1].sum()).backward()
    (reference.color.sum() + reference.allmap[1].sum()).backward()
    expected = densification_statistic(reference)
    assert means2D.grad.shape == (scene["means3D"].shape[0], columns)
    assert_close_scaled(means2D.grad[:, :2], expected[:, :2], 2e-3, "signed")
    if columns == 3:
        assert torch.equal(means2D.grad[:, 2], torch.zeros_like(means2D.grad[:, 2]))
    if columns == 4:
        assert_close_scaled(means2D.grad[:, 2:], expected[:, 2:], 2e-3, "absolute")
        assert bool((means2D.grad[:, 2:] >= 0).all())
    assert bool((means2D.grad[radii == 0] == 0).all()), "culled surfels get no statistic"
    assert float(means2D.grad[radii > 0, :2].abs().sum()) > 0


def test_means2D_leaf_without_grad_and_no_grad_mode():
    scene, settings, case = build_case("colors", seed=12)
    rasterizer = GaussianRasterizer(settings)
    plain = torch.zeros(scene["means3D"].shape[0], 3)
    args = dict(means3D=scene["means3D"], opacities=scene["opacities"], colors_precomp=scene["colors"],
                scales=scene["scales"], rotations=scene["rotations"])
    color, _, _ = rasterizer(means2D=plain, **args)
    with torch.no_grad():
        tracked = torch.zeros_like(plain, requires_grad=True)
        color_no_grad, _, _ = rasterizer(means2D=tracked, **args)
    assert torch.equal(color, color_no_grad)
    leaf = torch.zeros_like(plain, requires_grad=True)  # a leaf works too
    opacities = scene["opacities"].clone().requires_grad_(True)
    color, _, _ = rasterizer(means2D=leaf, **dict(args, opacities=opacities))
    color.sum().backward()
    assert leaf.grad is not None and float(leaf.grad.abs().sum()) > 0


def test_precomputed_transform_renders_like_scales_and_rotations():
    scene, settings, _ = build_case("scale_modifier", seed=13)
    rasterizer = GaussianRasterizer(settings)
    direct = rasterizer(scene["means3D"], torch.zeros(40, 3), scene["opacities"], colors_precomp=scene["colors"],
                        scales=scene["scales"], rotations=scene["rotations"])
    precomp = splat_to_pixels(scene["means3D"], scene["scales"], scene["rotations"], settings,
                              scale_modifier=settings.scale_modifier)
    via_precomp = rasterizer(scene["means3D"], torch.zeros(40, 3), scene["opacities"], colors_precomp=scene["colors"],
                             cov3D_precomp=precomp)
    assert_close_scaled(via_precomp[0], direct[0], 1e-4, "color")
    assert_close_scaled(via_precomp[2], direct[2], 1e-4, "allmap")
    assert torch.equal(via_precomp[1], direct[1])


def test_intrinsics_come_from_projmatrix():
    viewmat = orbit_viewmat(5)
    settings = camera_settings(viewmat, 64, 48, focal=(50.0, 55.0), principal=(20.5, 30.25))
    K = upstream_intrinsics(settings.viewmatrix, settings.projmatrix, 64, 48)
    # Upstream's pixel centres sit at integers: its principal point is half a pixel less.
    expected = torch.tensor([[50.0, 0.0, 20.0], [0.0, 55.0, 29.75], [0.0, 0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(K, expected, rtol=0, atol=2e-3)


def test_bad_cameras_raise():
    viewmat = orbit_viewmat(6)
    settings = camera_settings(viewmat, 32, 24)
    skewed = settings.projmatrix.clone()
    skewed[3, 0] += 5.0  # a translation in x after projection: not a pinhole
    with pytest.raises(ValueError, match="projmatrix"):
        upstream_intrinsics(settings.viewmatrix, skewed, 32, 24)
    broken = settings.viewmatrix.clone()
    broken[0, 0] = float("nan")
    with pytest.raises(ValueError, match="viewmatrix"):
        upstream_intrinsics(broken, settings.projmatrix, 32, 24)
    with pytest.raises(ValueError, match="viewmatrix"):
        upstream_intrinsics(settings.viewmatrix[:3], settings.projmatrix, 32, 24)


def test_upstream_api_surface():
    assert GaussianRasterizationSettings._fields == (
        "image_height", "image_width", "tanfovx", "tanfovy", "bg", "scale_modifier", "viewmatrix", "projmatrix",
        "sh_degree", "campos", "prefiltered", "debug")
    scene, settings, _ = build_case("colors", seed=14)
    rasterizer = GaussianRasterizer(raster_settings=settings)
    assert isinstance(rasterizer, torch.nn.Module)
    means2D = torch.zeros(40, 3)
    geometry = dict(scales=scene["scales"], rotations=scene["rotations"])
    with pytest.raises(ValueError, match="exactly one of either SHs or precomputed colors"):
        rasterizer(scene["means3D"], means2D, scene["opacities"], **geometry)
    with pytest.raises(ValueError, match="exactly one of either SHs or precomputed colors"):
        rasterizer(scene["means3D"], means2D, scene["opacities"], shs=scene["shs"], colors_precomp=scene["colors"],
                   **geometry)
    with pytest.raises(ValueError, match="scale/rotation pair or precomputed 3D covariance"):
        rasterizer(scene["means3D"], means2D, scene["opacities"], colors_precomp=scene["colors"],
                   scales=scene["scales"])
    with pytest.raises(ValueError, match="opacities"):
        rasterizer(scene["means3D"], means2D, scene["opacities"][:5], colors_precomp=scene["colors"], **geometry)
    with pytest.raises(ValueError, match="means2D"):
        rasterizer(scene["means3D"], torch.zeros(40, 1, requires_grad=True), scene["opacities"],
                   colors_precomp=scene["colors"], **geometry)
    # The functional form takes empty tensors for absent inputs, as upstream's does.
    empty = torch.empty(0)
    functional = rasterize_gaussians(scene["means3D"], means2D, empty, scene["colors"], scene["opacities"],
                                     scene["scales"], scene["rotations"], empty, settings)
    module = rasterizer(scene["means3D"], means2D, scene["opacities"], colors_precomp=scene["colors"], **geometry)
    for a, b in zip(functional, module):
        assert torch.equal(a, b)


def test_mark_visible_is_upstreams_near_test():
    viewmat = orbit_viewmat(8)
    settings = camera_settings(viewmat, 32, 24)
    points = torch.randn(200, 3) * 3
    depth = points @ viewmat[:3, :3].T[:, 2] + viewmat[2, 3]
    visible = GaussianRasterizer(settings).markVisible(points)
    assert visible.dtype == torch.bool
    assert torch.equal(visible, depth > 0.2)
