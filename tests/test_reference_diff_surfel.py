"""The float64 reference of the diff_surfel_rasterization API (gsplat_lib.reference.diff_surfel):
its gsplat_lib semantics against gsplat_lib's own reference (written separately), its upstream
semantics against upstream's rules on hand-made cases, and both statistics against their
definitions."""

import math

import pytest
import torch

from diff_surfel_scenes import camera_settings, orbit_viewmat, random_scene, splat_to_pixels
from gsplat_lib.reference import rasterize_surfels_reference
from gsplat_lib.reference.diff_surfel import (
    GSPLAT_LIB, UPSTREAM, densification_statistic, render_diff_surfel, upstream_backward_image_size)

SIZE = 16
# A tiny surfel (0.3 x 0.05 px) whose depth varies along u: its ellipse centre is not its centre.
TILTED = torch.tensor([[0.3, 0.0, 8.2], [0.0, 0.05, 7.9], [0.1, 0.0, 1.0]], dtype=torch.float64)


def assert_close_scaled(actual, expected, rtol, name, floor=1e-9):
    actual, expected = actual.detach().double(), expected.detach().double()
    scale = float(expected.abs().max())
    error = float((actual - expected).abs().max())
    assert error <= rtol * scale + floor, f"{name}: max error {error:.3g} vs scale {scale:.3g}"


def one_camera(focal=20.0):
    """Identity view, principal point at the image centre (gsplat_lib convention), SIZE^2 pixels."""
    return camera_settings(torch.eye(4), SIZE, SIZE, focal=(focal, focal), principal=(SIZE / 2, SIZE / 2),
                           bg=(0.0, 0.0, 0.0), dtype=torch.float64)


def face_on(pixels, sigmas, opacities, depths, focal=20.0):
    """Face-on surfels centred on upstream pixel coordinates ``pixels`` with screen sigma ``sigmas`` (px)."""
    centre = SIZE / 2 - 0.5  # the principal point in upstream's pixels
    depths = torch.tensor(depths, dtype=torch.float64)
    pixels = torch.tensor(pixels, dtype=torch.float64)
    means = torch.stack([(pixels[:, 0] - centre) * depths / focal, (pixels[:, 1] - centre) * depths / focal,
                         depths], -1)
    scales = (torch.tensor(sigmas, dtype=torch.float64) * depths / focal)[:, None].repeat(1, 2)
    return dict(means3D=means, opacities=torch.tensor(opacities, dtype=torch.float64)[:, None], scales=scales,
                rotations=torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64).repeat(len(depths), 1),
                colors_precomp=torch.ones(len(depths), 3, dtype=torch.float64))


def render(scene, semantics, settings=None):
    with torch.no_grad():
        return render_diff_surfel(settings or one_camera(), semantics=semantics, **scene)


@pytest.mark.parametrize("seed,focal,principal", [(0, (30.0, 33.0), (20.0, 15.0)), (1, (26.0, 26.0), (12.0, 18.5))])
def test_gsplat_semantics_match_gsplat_lib_reference(seed, focal, principal):
    width, height = 36, 28
    viewmat = orbit_viewmat(seed)
    settings = camera_settings(viewmat, width, height, focal=focal, principal=principal, dtype=torch.float64)
    scene = random_scene(40, seed + 20)
    ours = render_diff_surfel(settings, scene["means3D"].double(), scene["opacities"].double(),
                              colors_precomp=scene["colors"].double(), scales=scene["scales"].double(),
                              rotations=scene["rotations"].double(), semantics=GSPLAT_LIB)
    shift = torch.zeros(1, 40, 2, dtype=torch.float64, requires_grad=True)
    K = torch.tensor([[focal[0], 0, principal[0]], [0, focal[1], principal[1]], [0, 0, 1]], dtype=torch.float64)
    theirs = rasterize_surfels_reference(
        scene["means3D"].double(), scene["rotations"].double(), scene["scales"].double(),
        scene["opacities"].double()[:, 0], scene["colors"].double(), viewmat.double()[None], K[None], width, height,
        0.2, 100.0, backgrounds=settings.bg.double()[None], screen_shift=shift)
    expected = {"color": theirs["colors"][0], "depth": theirs["depths"][0], "alpha": theirs["alphas"][0],
                "normal": theirs["normals"][0], "median": theirs["median_depths"][0],
                "distortion": theirs["distortions"][0]}
    got = {"color": ours.color, "depth": ours.allmap[0:1], "alpha": ours.allmap[1:2], "normal": ours.allmap[2:5],
           "median": ours.allmap[5:6], "distortion": ours.allmap[6:7]}
    for key in expected:
        assert_close_scaled(got[key], expected[key].permute(2, 0, 1), 1e-9, key)
    assert torch.equal(ours.radii, theirs["radii"][0].max(-1).values.long())

    g = torch.Generator().manual_seed(3)
    v_color = torch.randn(3, height, width, generator=g, dtype=torch.float64)
    v_alpha = torch.randn(1, height, width, generator=g, dtype=torch.float64)
    ((ours.color * v_color).sum() + (ours.allmap[1:2] * v_alpha).sum()).backward()
    ((expected["color"].permute(2, 0, 1) * v_color).sum() + (expected["alpha"].permute(2, 0, 1) * v_alpha).sum()
     ).backward()
    ndc = torch.tensor([width / 2, height / 2], dtype=torch.float64)
    assert_close_scaled(densification_statistic(ours)[:, :2], shift.grad[0] * ndc, 1e-8, "statistic")


def test_upstream_draws_beyond_three_sigma_inside_its_tiles():
    scene = face_on([(8.0, 8.0)], [2.0], [0.99], [2.0])
    inside = (10, 13)  # (y, x): dx = 5, dy = 2, rho = 29 / 4
    for semantics in (UPSTREAM, GSPLAT_LIB):
        alpha = render(scene, semantics).allmap[1]
        assert float(alpha[8, 8]) == pytest.approx(0.99, rel=1e-9)
        assert float(alpha[inside]) == pytest.approx(0.99 * math.exp(-29 / 8), rel=1e-9)
    beyond = (14, 10)  # dx = 2, dy = 6: rho = 10 > 9, alpha 0.0067 >= 1/255
    assert float(render(scene, UPSTREAM).allmap[1][beyond]) == pytest.approx(0.99 * math.exp(-5.0), rel=1e-9)
    assert float(render(scene, GSPLAT_LIB).allmap[1][beyond]) == 0.0


def test_stop_threshold_is_1e4_upstream_and_0_9e4_here():
    # T after two surfels is 1e-3; the third (alpha 0.905) would leave 0.95e-4.
    scene = face_on([(8.0, 8.0)] * 3, [3.0] * 3, [0.99, 0.9, 0.905], [2.0, 2.5, 3.0])
    up = render(scene, UPSTREAM).allmap[1][8, 8]
    ours = render(scene, GSPLAT_LIB).allmap[1][8, 8]
    assert float(up) == pytest.approx(1 - 0.01 * 0.1, rel=1e-12)
    assert float(ours) == pytest.approx(1 - 0.01 * 0.1 * 0.095, rel=1e-12)


def test_far_culls_only_here_and_near_culls_both():
    far_scene = face_on([(8.0, 8.0)], [2.0], [0.8], [150.0])
    assert float(render(far_scene, UPSTREAM).allmap[1][8, 8]) == pytest.approx(0.8)
    assert int(render(far_scene, UPSTREAM).radii[0]) > 0
    assert float(render(far_scene, GSPLAT_LIB).allmap[1].max()) == 0.0
    near_scene = face_on([(8.0, 8.0)], [2.0], [0.8], [0.15])
    for semantics in (UPSTREAM, GSPLAT_LIB):
        out = render(near_scene, semantics)
        assert float(out.allmap[1].max()) == 0.0 and int(out.radii[0]) == 0


def test_radii():
    scene = face_on([(8.0, 8.0), (5.0, 9.0)], [1.9, 0.05], [0.8, 0.8], [2.0, 3.0])
    # Upstream: ceil(max(3 sigma, 3 * 0.707106)); here: ceil of the box (3 sigma, or the
    # fallback's 2.1214, plus half a pixel of padding) around the projected centre.
    assert render(scene, UPSTREAM).radii.tolist() == [6, 3]
    assert render(scene, GSPLAT_LIB).radii.tolist() == [7, 3]


def test_fallback_is_centred_on_the_ellipse_centre_upstream():
    """A strongly tilted tiny surfel: its ellipse centre e is not its projected centre c. Where
    the fallback wins, upstream's alpha is o exp(-|x - e|^2), gsplat_lib's o exp(-|x - c|^2)."""
    settings = one_camera()
    homography = TILTED.clone()
    scene = dict(means3D=torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64),
                 opacities=torch.tensor([[0.9]], dtype=torch.float64),
                 colors_precomp=torch.ones(1, 3, dtype=torch.float64), cov3D_precomp=homography.reshape(1, 9))
    conic = homography @ torch.diag(torch.tensor([9.0, 9.0, -1.0], dtype=torch.float64)) @ homography.T
    e = torch.stack([conic[0, 2], conic[1, 2]]) / conic[2, 2]
    c = homography[:2, 2] / homography[2, 2]
    assert float((e - c).norm()) > 0.3
    for semantics, centre in ((UPSTREAM, e), (GSPLAT_LIB, c)):
        alpha = render(scene, semantics, settings).allmap[1]
        for y, x in ((8, 8), (9, 9), (7, 8)):
            expected = 0.9 * math.exp(-float(((torch.tensor([x, y], dtype=torch.float64) - centre) ** 2).sum()))
            assert float(alpha[y, x]) == pytest.approx(expected, rel=1e-9), (semantics, x, y)


def test_upstream_hit_depth_always_comes_from_the_intersection():
    settings = one_camera()
    homography = TILTED.clone()
    scene = dict(means3D=torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64),
                 opacities=torch.tensor([[0.9]], dtype=torch.float64),
                 colors_precomp=torch.ones(1, 3, dtype=torch.float64), cov3D_precomp=homography.reshape(1, 9))
    y, x = 8, 9
    k = x * homography[2] - homography[0]
    l = y * homography[2] - homography[1]
    p = torch.linalg.cross(k, l)
    s = p[:2] / p[2]
    hit_depth = float(s[0] * homography[2, 0] + s[1] * homography[2, 1] + homography[2, 2])
    up = render(scene, UPSTREAM, settings).allmap
    ours = render(scene, GSPLAT_LIB, settings).allmap
    assert float(up[0, y, x] / up[1, y, x]) == pytest.approx(hit_depth, rel=1e-9)
    assert float(ours[0, y, x] / ours[1, y, x]) == pytest.approx(1.0, rel=1e-9)  # the centre's depth M22


def test_upstream_precomputed_transform_normal_is_minus_z():
    scene = face_on([(8.0, 8.0)], [2.0], [0.8], [2.0])
    settings = one_camera()
    precomp = splat_to_pixels(scene["means3D"], scene["scales"], scene["rotations"], settings)
    out = render(dict(means3D=scene["means3D"], opacities=scene["opacities"], colors_precomp=scene["colors_precomp"],
                      cov3D_precomp=precomp), UPSTREAM, settings)
    torch.testing.assert_close(out.allmap[2:5], torch.stack([0 * out.allmap[1], 0 * out.allmap[1], -out.allmap[1]]))


@pytest.mark.parametrize("semantics", [UPSTREAM, GSPLAT_LIB])
def test_statistics_against_their_definitions(semantics):
    """Upstream: dL/dM[0,2], dL/dM[1,2] over the ray-splat pixels, times M22 W'/2 (H'/2). gsplat_lib:
    the gradient of a screen translation M_0 += d_x M_2, M_1 += d_y M_2, times W/2 (H/2). Both
    checked through a translation or a change of cov3D_precomp, not through the probes."""
    width, height = 36, 28
    settings = camera_settings(orbit_viewmat(4), width, height, focal=(29.0, 31.0), principal=(17.0, 15.0),
                               dtype=torch.float64)
    scene = random_scene(25, 9)
    precomp = splat_to_pixels(scene["means3D"].double(), scene["scales"].double(), scene["rotations"].double(),
                              settings).detach()
    shift = torch.zeros(25, 2, dtype=torch.float64, requires_grad=True)
    homography = precomp.reshape(25, 3, 3)
    if semantics == GSPLAT_LIB:
        moved = homography + torch.stack([shift[:, :1] * homography[:, 2], shift[:, 1:] * homography[:, 2],
                                          torch.zeros_like(homography[:, 2])], 1)
    else:
        moved = homography + torch.nn.functional.pad(shift, (0, 1)).unsqueeze(-1).expand(25, 3, 3) * torch.tensor(
            [[0, 0, 1], [0, 0, 1], [0, 0, 0]], dtype=torch.float64)
    args = dict(means3D=scene["means3D"].double(), opacities=scene["opacities"].double(),
                colors_precomp=scene["colors"].double(), semantics=semantics)
    probed = render_diff_surfel(settings, cov3D_precomp=precomp, **args)
    translated = render_diff_surfel(settings, cov3D_precomp=moved.reshape(25, 9), **args)
    torch.testing.assert_close(probed.color, translated.color, rtol=0, atol=1e-12)
    g = torch.Generator().manual_seed(5)
    v = torch.randn(probed.color.shape, generator=g, dtype=torch.float64)
    w = torch.randn(probed.allmap.shape, generator=g, dtype=torch.float64)
    w[2:5] = 0  # a change of cov3D_precomp also turns the normal gsplat_lib derives from it; a translation does not
    ((probed.color * v).sum() + (probed.allmap * w).sum()).backward()
    ((translated.color * v).sum() + (translated.allmap * w).sum()).backward()
    statistic = densification_statistic(probed)
    if semantics == GSPLAT_LIB:
        expected = shift.grad * torch.tensor([width / 2, height / 2], dtype=torch.float64)
    else:
        wide, high = upstream_backward_image_size(width, height, settings.tanfovx, settings.tanfovy)
        expected = shift.grad * homography[:, 2, 2, None] * torch.tensor([wide / 2, high / 2], dtype=torch.float64)
    expected = expected * probed.visible[:, None]
    assert float(expected.abs().max()) > 0
    assert_close_scaled(statistic[:, :2], expected, 1e-9, "signed statistic")
    assert bool((statistic[:, 2:] >= 0).all())


def test_upstream_backward_image_size_is_a_float32_truncation():
    # focal = 26 / (2 tan) and focal * tan * 2 rounds to just below 26 in float32.
    assert upstream_backward_image_size(26, 26, 26 / (2 * 18.2), 26 / (2 * 18.2)) == (25, 25)
    assert upstream_backward_image_size(800, 600, 0.5, 0.375) == (800, 600)
