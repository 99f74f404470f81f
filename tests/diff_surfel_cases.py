"""Scene cases for comparing the compat layer with the diff_surfel reference, and a renderer of
one case through both (float32 compat, float64 reference)."""

import torch

from diff_surfel_scenes import camera_settings, edge_on_rotations, orbit_viewmat, random_scene, splat_to_pixels
from gsplat_lib.compat.diff_surfel_rasterization import GaussianRasterizer
from gsplat_lib.reference.diff_surfel import GSPLAT_LIB, render_diff_surfel

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


def render_pair(scene, settings, case, means2d_columns=4, semantics=GSPLAT_LIB):
    """(compat outputs, float32 leaves, reference render in ``semantics``, float64 leaves) of one case."""
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
    reference = render_diff_surfel(settings, semantics=semantics, **arguments(leaves64, True))
    return (color, radii, allmap, means2D), leaves32, reference, leaves64


def assert_close_scaled(actual, expected, rtol, name, floor=1e-6):
    """|actual - expected| <= rtol * max|expected| (+ floor)."""
    actual, expected = actual.detach().double(), expected.detach().double()
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    error = float((actual - expected).abs().max()) if expected.numel() else 0.0
    assert error <= rtol * scale + floor, f"{name}: max error {error:.3g} vs scale {scale:.3g}"


def assert_forward_matches(color, radii, allmap, reference, depth_rtol=2e-5):
    """Image and aux maps within float32 noise of the reference, radii equal. ``depth_rtol`` for
    the depth and median channels (upstream semantics' hit depths are ill-conditioned where the
    fallback wins: test_compat_faithful.py)."""
    assert_close_scaled(color, reference.color, 2e-5, "color")
    for channel, label in enumerate(["depth", "alpha", "normal x", "normal y", "normal z", "median", "distortion"]):
        rtol = depth_rtol if label in ("depth", "median") else 2e-5
        assert_close_scaled(allmap[channel], reference.allmap[channel], rtol, label)
    assert torch.equal(radii.long(), reference.radii)


def backpropagate_same_loss(color, allmap, reference, seed=7):
    """Backward of one random linear loss of (color, allmap) through the compat outputs and the reference."""
    g = torch.Generator().manual_seed(seed)
    v_color = torch.randn(color.shape, generator=g, dtype=torch.float64)
    v_allmap = torch.randn(allmap.shape, generator=g, dtype=torch.float64)
    ((color.double() * v_color).sum() + (allmap.double() * v_allmap).sum()).backward()
    ((reference.color * v_color).sum() + (reference.allmap * v_allmap).sum()).backward()
