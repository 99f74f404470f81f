"""The compat layer in upstream's semantics (hbb1/diff-surfel-rasterization e0ed020) against the
float64 reference's upstream mode: images and aux maps within float32 noise, radii equal,
means2D.grad equal to upstream's statistic ([N, 3]) and GenFusion's ([N, 4]).

These switch on when the core has the faithful mode (issue 25, phase 2; docs/design.md "Faithful
mode for the compat layer"): then diff_surfel_rasterization.SEMANTICS selects it."""

import pytest
import torch

import gsplat_lib.compat.diff_surfel_rasterization as dsr
from diff_surfel_scenes import camera_settings, edge_on_rotations, orbit_viewmat, random_scene, splat_to_pixels
from gsplat_lib.reference.diff_surfel import UPSTREAM, densification_statistic, render_diff_surfel

pytestmark = pytest.mark.skipif(not hasattr(dsr, "SEMANTICS"),
                                reason="needs the core's faithful (upstream 2DGS) mode: issue 25, phase 2")

WIDTH, HEIGHT = 36, 28
CASES = {
    "colors": dict(),
    "sh_degree_3": dict(sh_degree=3),
    "sub_pixel": dict(scale_range=(0.002, 0.012), num=60),
    "edge_on": dict(edge_on=3.0),
    "off_centre_principal_point": dict(principal=(WIDTH * 0.3, HEIGHT * 0.7), focal=(30.0, 34.0)),
    "scale_modifier": dict(scale_modifier=0.6),
    "cov3D_precomp": dict(precomp=True),
}


@pytest.fixture
def upstream_semantics(monkeypatch):
    monkeypatch.setattr(dsr, "SEMANTICS", UPSTREAM)


def assert_close_scaled(actual, expected, rtol, name, floor=1e-6):
    actual, expected = actual.detach().double(), expected.detach().double()
    scale = float(expected.abs().max())
    error = float((actual - expected).abs().max())
    assert error <= rtol * scale + floor, f"{name}: max error {error:.3g} vs scale {scale:.3g}"


@pytest.mark.parametrize("columns", [3, 4])
@pytest.mark.parametrize("name", list(CASES))
def test_compat_matches_upstream_reference(upstream_semantics, name, columns):
    case = CASES[name]
    seed = list(CASES).index(name) + 30
    sh_degree = case.get("sh_degree")
    scene = random_scene(case.get("num", 40), seed, scale_range=case.get("scale_range", (0.05, 0.3)),
                         sh_degree=sh_degree or 0)
    viewmat = orbit_viewmat(seed)
    if "edge_on" in case:
        scene["rotations"] = edge_on_rotations(scene["means3D"], viewmat, case["edge_on"])
    settings = camera_settings(viewmat, WIDTH, HEIGHT, focal=case.get("focal"), principal=case.get("principal"),
                               sh_degree=sh_degree or 0, scale_modifier=case.get("scale_modifier", 1.0))

    def arguments(dtype):
        args = dict(means3D=scene["means3D"].to(dtype), opacities=scene["opacities"].to(dtype))
        if sh_degree is None:
            args["colors_precomp"] = scene["colors"].to(dtype)
        else:
            args["shs"] = scene["shs"].to(dtype)
        if case.get("precomp"):
            args["cov3D_precomp"] = splat_to_pixels(args["means3D"], scene["scales"].to(dtype),
                                                    scene["rotations"].to(dtype), settings, settings.scale_modifier)
        else:
            args.update(scales=scene["scales"].to(dtype), rotations=scene["rotations"].to(dtype))
        return args

    means2D = torch.zeros(scene["means3D"].shape[0], columns, requires_grad=True) + 0
    means2D.retain_grad()
    color, radii, allmap = dsr.GaussianRasterizer(settings)(means2D=means2D, **arguments(torch.float32))
    reference = render_diff_surfel(settings, semantics=UPSTREAM, **arguments(torch.float64))
    assert_close_scaled(color, reference.color, 2e-5, "color")
    for channel in range(7):
        assert_close_scaled(allmap[channel], reference.allmap[channel], 2e-5, f"allmap[{channel}]")
    assert torch.equal(radii.long(), reference.radii)

    g = torch.Generator().manual_seed(seed)
    v_color = torch.randn(color.shape, generator=g, dtype=torch.float64)
    v_allmap = torch.randn(allmap.shape, generator=g, dtype=torch.float64)
    ((color.double() * v_color).sum() + (allmap.double() * v_allmap).sum()).backward()
    ((reference.color * v_color).sum() + (reference.allmap * v_allmap).sum()).backward()
    expected = densification_statistic(reference)
    assert_close_scaled(means2D.grad[:, :2], expected[:, :2], 2e-3, "upstream statistic")
    if columns == 3:
        assert bool((means2D.grad[:, 2] == 0).all())
    else:
        assert_close_scaled(means2D.grad[:, 2:], expected[:, 2:], 2e-3, "GenFusion's absolute statistic")
