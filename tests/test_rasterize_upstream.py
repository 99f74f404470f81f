"""rasterize_surfels(semantics="upstream") on the CPU against the float64 reference of upstream's
rasterizer (gsplat_lib.reference.diff_surfel, its upstream mode): images, radii, centres, the
statistics and the gradients of every input; the reference's gradients against float64 finite
differences where upstream's backward is the true derivative; lane widths, tile widths and
thread counts; and the rules that set the mode apart from gsplat_lib's."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.spatial.transform import Rotation

import gsplat_lib.ops.rasterize as rasterize_module
from diff_surfel_scenes import camera_settings, edge_on_rotations, orbit_viewmat
from gsplat_lib import _backend, build_info, rasterize_surfels
from gsplat_lib.reference.diff_surfel import (
    UPSTREAM, densification_statistic, render_diff_surfel, upstream_backward_image_size)
from rasterize_scenes import PARAMS, RENDERED_IMAGES, random_surfels

NEAR, FAR = 0.2, 100.0
WIDTH, HEIGHT = 36, 28
LANE_WIDTHS = [1, 4] + ([8] if build_info()["cpu_lanes"] >= 8 else [])


def camera(seed, focal=(31.0, 33.0), principal=(15.5, 16.0)):
    """(viewmat [4, 4], K [3, 3]) in gsplat_lib's conventions."""
    K = torch.tensor([[focal[0], 0.0, principal[0]], [0.0, focal[1], principal[1]], [0.0, 0.0, 1.0]])
    return orbit_viewmat(seed), K


def scene_of(kind, seed):
    if kind == "random":
        return random_surfels(40, seed=seed)
    if kind == "sub_pixel":  # the fallback wins nearly everywhere, centred on e
        return random_surfels(50, seed=seed, scale_range=(0.002, 0.012))
    if kind == "edge_on":
        scene = random_surfels(40, seed=seed)
        scene["quats"] = edge_on_rotations(scene["means"], orbit_viewmat(seed), 3.0)
        return scene
    if kind == "opaque":  # alpha clamped at 0.99, pixels that stop early
        return dict(random_surfels(40, seed=seed, scale_range=(0.2, 0.5)), opacities=torch.full((40,), 0.995))
    raise ValueError(kind)


def leaves_of(scene, dtype=torch.float32):
    return {k: v.to(dtype).clone().requires_grad_(True) for k, v in scene.items()}


def render(leaves, viewmat, K, width=WIDTH, height=HEIGHT, **kwargs):
    return rasterize_surfels(leaves["means"], leaves["quats"], leaves["scales"], leaves["opacities"], leaves["colors"],
                             viewmat[None], K[None], width, height, NEAR, FAR, semantics=UPSTREAM, **kwargs)


def render_reference(leaves, viewmat, K, width=WIDTH, height=HEIGHT):
    settings = camera_settings(viewmat, width, height, focal=(float(K[0, 0]), float(K[1, 1])),
                               principal=(float(K[0, 2]), float(K[1, 2])), bg=(0.0, 0.0, 0.0), dtype=torch.float64)
    return settings, render_diff_surfel(settings, leaves["means"], leaves["opacities"][:, None],
                                        colors_precomp=leaves["colors"], scales=leaves["scales"],
                                        rotations=leaves["quats"], semantics=UPSTREAM)


def reference_images(reference):
    """The reference's allmap as RasterResult's channels-last images of one camera."""
    maps = reference.allmap.permute(1, 2, 0)
    return dict(colors=reference.color.permute(1, 2, 0), depths=maps[..., 0:1], alphas=maps[..., 1:2],
                normals=maps[..., 2:5], median_depths=maps[..., 5:6], distortions=maps[..., 6:7])


def ellipse_centres(scene, viewmat, K):
    """[N, 2] float64: e = (C*02, C*12) / C*22 of each surfel's map M (gsplat_lib's pixels)."""
    q = scene["quats"].double()
    w, x, y, z = (q / q.norm(dim=-1, keepdim=True)).unbind(-1)
    t_u = torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y + w * z), 2 * (x * z - w * y)], -1)
    t_v = torch.stack([2 * (x * y - w * z), 1 - 2 * (x * x + z * z), 2 * (y * z + w * x)], -1)
    W, t, Kd = viewmat[:3, :3].double(), viewmat[:3, 3].double(), K.double()
    s = scene["scales"].double()
    columns = torch.stack([t_u @ W.T * s[:, :1], t_v @ W.T * s[:, 1:], scene["means"].double() @ W.T + t], -1)
    M = Kd @ columns
    dual = M @ torch.diag(torch.tensor([9.0, 9.0, -1.0], dtype=torch.float64)) @ M.transpose(1, 2)
    return torch.stack([dual[:, 0, 2], dual[:, 1, 2]], -1) / dual[:, 2, 2, None]


def cotangents(shapes, seed):
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=g, dtype=torch.float64) for name, shape in shapes.items()}


def weighted_loss(images, weights):
    return sum((images[name].double() * weights[name]).sum() for name in weights)


def assert_close_scaled(actual, expected, rtol, name, floor=1e-6):
    actual, expected = actual.detach().double(), expected.detach().double()
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    error = float((actual - expected).abs().max()) if expected.numel() else 0.0
    assert error <= rtol * scale + floor, f"{name}: max error {error:.3g} vs scale {scale:.3g}"


# Where the fallback wins, upstream's hit depth is the ray-plane intersection far along the plane,
# ill-conditioned in M (tests/test_compat_faithful.py): float32 noise reaches ~1e-3 there.
DEPTH_RTOL = 2e-3


@pytest.mark.parametrize("kind,seed", [("random", 1), ("sub_pixel", 2), ("edge_on", 3), ("opaque", 4)])
def test_forward_and_gradients_match_the_upstream_reference(kind, seed):
    scene = scene_of(kind, seed)
    viewmat, K = camera(seed)
    ours, theirs = leaves_of(scene), leaves_of(scene, torch.float64)
    out = render(ours, viewmat, K)
    settings, reference = render_reference(theirs, viewmat, K)
    expected = reference_images(reference)
    assert int(reference.visible.sum()) > 5
    for name in RENDERED_IMAGES:
        rtol = DEPTH_RTOL if name in ("depths", "median_depths") else 2e-5
        assert_close_scaled(getattr(out, name)[0], expected[name], rtol, name)
    assert torch.equal(out.radii[0, :, 0].long(), reference.radii)
    assert torch.equal(out.radii[0, :, 0], out.radii[0, :, 1])
    visible = reference.visible
    assert_close_scaled(out.means2d[0][visible], ellipse_centres(scene, viewmat, K)[visible], 1e-5, "means2d = e")

    # Cotangents on every image but the depths: those are too ill-conditioned on the fallback
    # pixels for a float32 gradient to follow float64's at 3e-3 (test_depth_gradients_... below).
    weights = cotangents({name: expected[name].shape for name in ["colors", "alphas", "normals", "distortions"]}, seed)
    weighted_loss({name: getattr(out, name)[0] for name in weights}, weights).backward()
    weighted_loss(expected, weights).backward()
    for name in PARAMS:
        assert_close_scaled(ours[name].grad, theirs[name].grad, 3e-3, f"grad {name}")
    statistic = densification_statistic(reference)
    wide, high = upstream_backward_image_size(WIDTH, HEIGHT, settings.tanfovx, settings.tanfovy)
    assert_close_scaled(out.screen_grad.grad[0] * torch.tensor([wide / 2, high / 2]), statistic[:, :2], 2e-3,
                        "upstream statistic")
    assert_close_scaled(out.screen_absgrad.grad[0] * torch.tensor([WIDTH / 2, HEIGHT / 2]), statistic[:, 2:], 2e-3,
                        "GenFusion's absolute statistic")
    per_pixel = [torch.zeros(1, 2, dtype=torch.float64) if p.grad is None else p.grad for p in reference.pixel_probes]
    assert_close_scaled(out.center_grad.grad[0], torch.stack([g.sum(0) for g in per_pixel]), 2e-3, "dL/de")


def test_depth_gradients_match_the_reference_where_they_are_well_conditioned():
    """Face-on surfels large enough that every pixel they reach takes the ray-splat path near
    them: the depth, median and distortion gradients through the hit depth."""
    scene = random_surfels(30, seed=8, scale_range=(0.15, 0.3), extent=0.6)
    viewmat, K = camera(8)
    # Axes t_u, t_v, t_w = the camera's x, y, z in the world: the rows of its rotation.
    xyzw = Rotation.from_matrix(viewmat[:3, :3].T.double().numpy()).as_quat()
    scene["quats"] = torch.tensor(xyzw[[3, 0, 1, 2]], dtype=torch.float32).repeat(30, 1)
    ours, theirs = leaves_of(scene), leaves_of(scene, torch.float64)
    out = render(ours, viewmat, K)
    _, reference = render_reference(theirs, viewmat, K)
    expected = reference_images(reference)
    weights = cotangents({name: expected[name].shape for name in ["depths", "median_depths", "distortions"]}, 9)
    weighted_loss({name: getattr(out, name)[0] for name in weights}, weights).backward()
    weighted_loss(expected, weights).backward()
    for name in ["means", "quats", "scales", "opacities"]:  # the colours have no part in this loss
        assert_close_scaled(ours[name].grad, theirs[name].grad, 3e-3, f"grad {name}")


def test_reference_gradients_match_finite_differences_where_upstream_is_exact():
    """Where upstream's backward is the true derivative (no alpha clamped at 0.99, no depth in
    the loss, so the fallback's frozen (u, v) does not matter), the reference's autograd
    gradient of its upstream mode equals float64 central differences; the tests above tie our
    kernels to that autograd gradient."""
    scene = random_surfels(4, seed=11, scale_range=(0.05, 0.2), extent=0.3)
    scene["opacities"] = torch.tensor([0.5, 0.6, 0.7, 0.8])
    viewmat, K = camera(11, focal=(20.0, 21.0), principal=(8.0, 7.5))
    leaves = leaves_of(scene, torch.float64)
    weights = cotangents({"colors": (12, 14, 3), "alphas": (12, 14, 1)}, 12)

    def loss(values):
        _, reference = render_reference(values, viewmat, K, width=14, height=12)
        return weighted_loss(reference_images(reference), weights)

    loss(leaves).backward()
    step = 1e-6
    for name in ["means", "quats", "scales", "opacities", "colors"]:
        numeric = torch.zeros_like(leaves[name])
        for index in range(leaves[name].numel()):
            shifted = [{k: v.detach().clone() for k, v in leaves.items()} for _ in range(2)]
            for sign, values in zip((1, -1), shifted):
                values[name].view(-1)[index] += sign * step
            numeric.view(-1)[index] = (loss(shifted[0]) - loss(shifted[1])) / (2 * step)
        assert_close_scaled(leaves[name].grad, numeric, 1e-5, f"finite differences {name}", floor=1e-8)


def test_the_backward_passes_the_alpha_clamp_through_as_upstream_does():
    """A surfel of opacity 0.995 facing the camera: at its centre o G > 0.99, so alpha is clamped.
    Upstream (and this mode) still gives the opacity the gradient of o G there."""
    means = torch.tensor([[0.0, 0.0, 2.0]], requires_grad=True)
    opacities = torch.tensor([0.995], requires_grad=True)
    args = (torch.tensor([[1.0, 0.0, 0.0, 0.0]]), torch.tensor([[0.01, 0.01]]))
    K = torch.tensor([[20.0, 0.0, 2.5], [0.0, 20.0, 2.5], [0.0, 0.0, 1.0]])
    grads = {}
    for semantics in ("gsplat_lib", UPSTREAM):
        out = rasterize_surfels(means, *args, opacities, torch.ones(1, 1), torch.eye(4)[None], K[None], 5, 5, NEAR, FAR,
                                semantics=semantics)
        assert out.alphas[0, 2, 2, 0].item() == pytest.approx(0.99)
        out.alphas[0, 2, 2, 0].backward()
        grads[semantics] = opacities.grad.item()
        opacities.grad = None
    assert grads["gsplat_lib"] == 0.0
    assert grads[UPSTREAM] == pytest.approx(1.0, rel=1e-6)  # d(o G)/do at G = 1


def _run(scene, viewmat, K, lanes, monkeypatch, tile_width=64, threads=None):
    monkeypatch.setattr(rasterize_module, "CPU_LANES", lanes)
    monkeypatch.setattr(rasterize_module, "CPU_TILE_WIDTH", tile_width)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        leaves = leaves_of(scene)
        out = render(leaves, viewmat, K, width=37, height=29)
        weights = cotangents({name: getattr(out, name).shape for name in RENDERED_IMAGES}, 5)
        weighted_loss({name: getattr(out, name) for name in RENDERED_IMAGES}, weights).backward()
    finally:
        torch.set_num_threads(previous)
    grads = {name: leaves[name].grad for name in PARAMS}
    grads.update(screen_grad=out.screen_grad.grad, screen_absgrad=out.screen_absgrad.grad,
                 center_grad=out.center_grad.grad)
    return out, grads


def _two_camera_scene():
    scene = random_surfels(200, seed=21, scale_range=(0.005, 0.3))
    scene["quats"][:30] = torch.tensor([math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0])
    return scene


@pytest.mark.parametrize("lanes", LANE_WIDTHS[1:])
def test_lane_widths_give_the_scalar_bits(lanes, monkeypatch):
    scene = _two_camera_scene()
    viewmat, K = camera(21, principal=(18.0, 14.0))
    scalar, scalar_grads = _run(scene, viewmat, K, 1, monkeypatch)
    vector, vector_grads = _run(scene, viewmat, K, lanes, monkeypatch)
    for name in RENDERED_IMAGES + ["evaluated_pairs", "radii", "means2d"]:
        assert torch.equal(getattr(scalar, name), getattr(vector, name)), name
    assert torch.equal(scalar.backward_pairs, vector.backward_pairs)
    for name, expected in scalar_grads.items():
        assert torch.isfinite(vector_grads[name]).all(), name
        assert_close_scaled(vector_grads[name], expected, 1e-5, name, floor=0.0)


@pytest.mark.parametrize("tile_width", [16, 7])
def test_the_pixels_are_upstreams_tiles_whatever_the_cpu_tile_width(tile_width, monkeypatch):
    scene = _two_camera_scene()
    viewmat, K = camera(22)
    wide, wide_grads = _run(scene, viewmat, K, 0, monkeypatch)
    narrow, narrow_grads = _run(scene, viewmat, K, 0, monkeypatch, tile_width=tile_width)
    for name in RENDERED_IMAGES + ["evaluated_pairs", "radii", "means2d"]:
        assert torch.equal(getattr(wide, name), getattr(narrow, name)), name
    for name, expected in wide_grads.items():
        assert_close_scaled(narrow_grads[name], expected, 1e-5, name, floor=0.0)


def test_thread_counts_give_the_same_bits(monkeypatch):
    scene = _two_camera_scene()
    viewmat, K = camera(23)
    one, one_grads = _run(scene, viewmat, K, 0, monkeypatch, threads=1)
    two, two_grads = _run(scene, viewmat, K, 0, monkeypatch, threads=2)
    for name in RENDERED_IMAGES + ["radii", "means2d"]:
        assert torch.equal(getattr(one, name), getattr(two, name)), name
    for name, expected in one_grads.items():
        assert torch.equal(two_grads[name], expected), name


def face_on(pixels, sigmas, opacities, depths, focal=20.0, size=16):
    """Face-on surfels centred on pixel centres ``pixels`` (gsplat_lib's, i + 0.5) with screen sigma
    ``sigmas`` (px), identity camera: (scene, viewmat, K)."""
    depths = torch.tensor(depths)
    pixels = torch.tensor(pixels)
    centre = size / 2
    means = torch.stack([(pixels[:, 0] - centre) * depths / focal, (pixels[:, 1] - centre) * depths / focal, depths],
                        -1)
    scales = (torch.tensor(sigmas) * depths / focal)[:, None].repeat(1, 2)
    K = torch.tensor([[focal, 0.0, centre], [0.0, focal, centre], [0.0, 0.0, 1.0]])
    scene = dict(means=means, quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(len(depths), 1), scales=scales,
                 opacities=torch.tensor(opacities), colors=torch.ones(len(depths), 1))
    return scene, torch.eye(4), K


@torch.no_grad()
def render_both(scene, viewmat, K, size=16, near=NEAR, far=FAR):
    return {semantics: rasterize_surfels(scene["means"], scene["quats"], scene["scales"], scene["opacities"],
                                         scene["colors"], viewmat[None], K[None], size, size, near, far,
                                         semantics=semantics)
            for semantics in ("gsplat_lib", UPSTREAM)}


def test_upstream_draws_beyond_three_sigma_within_its_tiles():
    out = render_both(*face_on([(8.5, 8.5)], [2.0], [0.99], [2.0]))
    beyond = (14, 10)  # (y, x): dx = 2, dy = 6, rho = 10 > 9, alpha 0.99 e^-5 >= 1/255
    assert float(out[UPSTREAM].alphas[0, beyond[0], beyond[1], 0]) == pytest.approx(0.99 * math.exp(-5.0), rel=1e-5)
    assert float(out["gsplat_lib"].alphas[0, beyond[0], beyond[1], 0]) == 0.0


def test_upstream_stops_below_1e4():
    # T after two surfels is 1e-3; the third (alpha 0.905) would leave 0.95e-4: below upstream's
    # 1e-4, above gsplat_lib's 0.9e-4.
    out = render_both(*face_on([(8.5, 8.5)] * 3, [3.0] * 3, [0.99, 0.9, 0.905], [2.0, 2.5, 3.0]))
    assert float(out[UPSTREAM].alphas[0, 8, 8, 0]) == pytest.approx(1 - 1e-3, rel=1e-6)
    assert float(out["gsplat_lib"].alphas[0, 8, 8, 0]) == pytest.approx(1 - 0.95e-4, rel=1e-6)


def test_far_does_not_cull_and_near_culls_at_and_before_it():
    out = render_both(*face_on([(8.5, 8.5)], [2.0], [0.8], [150.0]))
    assert float(out[UPSTREAM].alphas[0, 8, 8, 0]) == pytest.approx(0.8)
    assert int(out[UPSTREAM].radii[0, 0, 0]) == 6 and int(out["gsplat_lib"].radii[0, 0, 0]) == 0
    # Centre depth exactly at near: gsplat_lib keeps it (z >= near), upstream culls (z <= near).
    scene, viewmat, K = face_on([(8.5, 8.5)], [2.0], [0.8], [0.5])
    out = render_both(scene, viewmat, K, near=0.5)
    assert int(out[UPSTREAM].radii[0, 0, 0]) == 0 and int(out["gsplat_lib"].radii[0, 0, 0]) > 0


def test_radii_are_upstreams():
    out = render_both(*face_on([(8.5, 8.5), (5.5, 9.5)], [1.9, 0.05], [0.8, 0.8], [2.0, 3.0]))
    assert out[UPSTREAM].radii[0].tolist() == [[6, 6], [3, 3]]  # ceil(max(3 sigma, 3 * 0.707106))
    assert out["gsplat_lib"].radii[0, :, 0].tolist() == [7, 3]


def test_zero_opacity_is_projected_but_never_drawn():
    scene, viewmat, K = face_on([(8.5, 8.5)], [2.0], [0.0], [2.0])
    out = render_both(scene, viewmat, K)
    assert int(out[UPSTREAM].radii[0, 0, 0]) == 6 and float(out[UPSTREAM].alphas.max()) == 0.0
    assert int(out["gsplat_lib"].radii[0, 0, 0]) == 0


def test_upstream_keeps_disks_through_the_camera_plane_and_culls_bad_surfels_without_nan():
    scene = random_surfels(12, seed=31)
    scene["means"][0] = torch.tensor([0.0, 0.0, 0.5])
    scene["scales"][0] = torch.tensor([2.0, 2.0])  # reaches behind the camera
    scene["quats"][0] = torch.tensor([math.cos(0.6), math.sin(0.6), 0.0, 0.0])
    scene["means"][1, 0] = math.nan
    scene["scales"][2, 1] = 0.0
    scene["scales"][3, 0] = -0.1
    scene["quats"][4] = 0.0
    scene["opacities"][5] = math.inf
    scene["colors"][6, 1] = math.nan
    scene["means"][7] = torch.tensor([0.0, 0.0, 1.0])  # on the line of sight, seen exactly edge-on:
    scene["quats"][7] = torch.tensor([1.0, 1.0, 1.0, 1.0])  # normal exactly (1, 0, 0)
    scene["scales"][8] = torch.tensor([1e20, 1e20])  # a box far beyond the image and the int range
    viewmat, K = torch.eye(4), torch.tensor([[20.0, 0.0, 8.0], [0.0, 20.0, 8.0], [0.0, 0.0, 1.0]])
    leaves = leaves_of(scene)
    out = rasterize_surfels(leaves["means"], leaves["quats"], leaves["scales"], leaves["opacities"], leaves["colors"],
                            viewmat[None], K[None], 16, 16, NEAR, FAR, semantics=UPSTREAM)
    assert int(out.radii[0, 0, 0]) > 0, "the disk crossing the camera plane is kept"
    assert (out.radii[0, 1:8, 0] == 0).all(), out.radii[0, :, 0]
    weights = cotangents({name: getattr(out, name).shape for name in RENDERED_IMAGES}, 3)
    weighted_loss({name: getattr(out, name) for name in RENDERED_IMAGES}, weights).backward()
    for name in RENDERED_IMAGES:
        assert torch.isfinite(getattr(out, name)).all(), name
    for name in PARAMS:
        assert torch.isfinite(leaves[name].grad).all(), name
    for leaf in (out.screen_grad, out.screen_absgrad, out.center_grad):
        assert torch.isfinite(leaf.grad).all()
        assert (leaf.grad[0, 1:8] == 0).all(), "culled surfels get no statistic"


def test_the_semantics_argument_and_field_are_checked():
    scene, viewmat, K = face_on([(8.5, 8.5)], [2.0], [0.8], [2.0])
    args = (scene["means"], scene["quats"], scene["scales"], scene["opacities"], scene["colors"], viewmat[None],
            K[None], 16, 16)
    with pytest.raises(ValueError, match="semantics"):
        rasterize_surfels(*args, semantics="2dgs")
    assert rasterize_surfels(*args).center_grad is None, "center_grad exists in upstream semantics only"
    assert _backend.core().SEMANTICS == {"gsplat_lib": 0, "upstream": 1}
    assert _backend.core().PAIR_GRAD_COLOR_UPSTREAM == _backend.core().PAIR_GRAD_COLOR + 2  # and dL/de (2)
    # A value the core does not know is an error naming the field, before any pass runs.
    settings = rasterize_module.raster_settings
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rasterize_module, "raster_settings", lambda *a, **k: dict(settings(*a, **k), semantics=2))
        with pytest.raises(ValueError, match=r"semantics must be 0 \(gsplat_lib\) or 1 \(upstream\), got 2"):
            rasterize_surfels(*args)
