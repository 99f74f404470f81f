"""gsplat_lib.compat.diff_surfel_rasterization against the float64 reference of upstream's API
(gsplat_lib.reference.diff_surfel) in gsplat_lib semantics: images, aux maps, radii, the
means2D statistic and the gradients of upstream's inputs."""

import pytest
import torch

from diff_surfel_scenes import camera_settings, edge_on_rotations, orbit_viewmat, random_scene, splat_to_pixels
from gsplat_lib.compat.diff_surfel_rasterization import (
    GaussianRasterizationSettings, GaussianRasterizer, rasterize_gaussians)
from gsplat_lib.compat.upstream_camera import upstream_intrinsics
from gsplat_lib.reference.diff_surfel import GSPLAT_LIB, densification_statistic, render_diff_surfel

WIDTH, HEIGHT = 36, 28

CASES = {
    "colors": dict(),
    "sh_degree_0": dict(sh_degree=0),
    "sh_degree_1": dict(sh_degree=1),
    "sh_degree_3": dict(sh_degree=3),
    "sub_pixel": dict(scale_range=(0.002, 0.012), num=60),
    "edge_on": dict(edge_on=3.0),
    "off_centre_principal_point": dict(principal=(WIDTH * 0.3, HEIGHT * 0.7), focal=(30.0, 34.0)),
    "scale_modifier": dict(scale_modifier=0.6),
    "cov3D_precomp": dict(precomp=True),
    "cov3D_precomp_sh": dict(precomp=True, sh_degree=2),
}


def build_case(name, seed):
    case = CASES[name]
    sh_degree = case.get("sh_degree")
    scene = random_scene(case.get("num", 40), seed, scale_range=case.get("scale_range", (0.05, 0.3)),
                         sh_degree=sh_degree if sh_degree is not None else 0)
    viewmat = orbit_viewmat(seed)
    if "edge_on" in case:
        scene["rotations"] = edge_on_rotations(scene["means3D"], viewmat, case["edge_on"])
    settings = camera_settings(viewmat, WIDTH, HEIGHT, focal=case.get("focal"), principal=case.get("principal"),
                               sh_degree=sh_degree or 0, scale_modifier=case.get("scale_modifier", 1.0))
    return scene, settings, case


def render_pair(scene, settings, case, means2d_columns=4):
    """(compat outputs, float32 leaves, reference render, float64 leaves) of one case."""
    names = ["means3D", "opacities", "scales", "rotations", "shs" if case.get("sh_degree") is not None else "colors"]
    leaves32 = {k: scene[k].clone().requires_grad_(True) for k in names}
    leaves64 = {k: scene[k].double().requires_grad_(True) for k in names}

    def arguments(leaves, modifier_inside):
        args = dict(means3D=leaves["means3D"], opacities=leaves["opacities"])
        args["shs" if "shs" in leaves else "colors_precomp"] = leaves.get("shs", leaves.get("colors"))
        if case.get("precomp"):
            args["cov3D_precomp"] = splat_to_pixels(leaves["means3D"], leaves["scales"], leaves["rotations"], settings,
                                                    scale_modifier=settings.scale_modifier if modifier_inside else 1.0)
        else:
            args.update(scales=leaves["scales"], rotations=leaves["rotations"])
        return args

    means2D = torch.zeros(scene["means3D"].shape[0], means2d_columns, requires_grad=True) + 0
    means2D.retain_grad()
    color, radii, allmap = GaussianRasterizer(settings)(means2D=means2D, **arguments(leaves32, True))
    reference = render_diff_surfel(settings, semantics=GSPLAT_LIB, **arguments(leaves64, True))
    return (color, radii, allmap, means2D), leaves32, reference, leaves64


def assert_close_scaled(actual, expected, rtol, name, floor=1e-6):
    actual, expected = actual.detach().double(), expected.detach().double()
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    error = float((actual - expected).abs().max()) if expected.numel() else 0.0
    assert error <= rtol * scale + floor, f"{name}: max error {error:.3g} vs scale {scale:.3g}"


@pytest.mark.parametrize("name", list(CASES))
def test_compat_matches_reference_in_gsplat_lib_semantics(name):
    scene, settings, case = build_case(name, seed=list(CASES).index(name) + 3)
    (color, radii, allmap, means2D), leaves32, reference, leaves64 = render_pair(scene, settings, case)

    assert color.shape == (3, HEIGHT, WIDTH) and allmap.shape == (7, HEIGHT, WIDTH)
    assert radii.dtype == torch.int32 and radii.shape == (scene["means3D"].shape[0],)
    assert int(reference.visible.sum()) > 5, "the case should show several surfels"
    assert_close_scaled(color, reference.color, 2e-5, "color")
    for channel, label in enumerate(["depth", "alpha", "normal x", "normal y", "normal z", "median", "distortion"]):
        assert_close_scaled(allmap[channel], reference.allmap[channel], 2e-5, label)
    assert torch.equal(radii.long(), reference.radii)

    g = torch.Generator().manual_seed(7)
    v_color = torch.randn(color.shape, generator=g, dtype=torch.float64)
    v_allmap = torch.randn(allmap.shape, generator=g, dtype=torch.float64)
    ((color.double() * v_color).sum() + (allmap.double() * v_allmap).sum()).backward()
    ((reference.color * v_color).sum() + (reference.allmap * v_allmap).sum()).backward()

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
