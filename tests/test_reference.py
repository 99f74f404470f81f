"""The pure-PyTorch reference rasterizer: the contract of docs/design.md, checked directly.

The strongest check is `test_matches_sequential_contract`: an independent, scalar,
front-to-back loop over pixels and surfels written from the contract's words (numpy,
float64, scipy's quaternion convention) must give the same outputs as the vectorised,
differentiable reference.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from gsplat_lib.cameras import look_at
from gsplat_lib.reference import distortion_running_sums, rasterize_surfels_reference
from rasterize_scenes import IMAGE_OUTPUTS

IMAGE_KEYS = tuple(IMAGE_OUTPUTS)
DIFFERENTIABLE_KEYS = IMAGE_KEYS + ("means2d", "depths_surfel")


@pytest.fixture(autouse=True)
def single_thread():
    """These scenes are tiny: thread start-up dominates, and on a busy machine it is ~10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def intrinsics(focal, cx, cy) -> torch.Tensor:
    return torch.tensor([[focal, 0.0, cx], [0.0, 1.1 * focal, cy], [0.0, 0.0, 1.0]], dtype=torch.float64)


def random_scene(seed, num_surfels, channels=3, scale_range=(0.15, 0.6), opacity_range=(0.3, 0.95)):
    g = torch.Generator().manual_seed(seed)
    low, high = scale_range
    o_low, o_high = opacity_range
    return dict(
        means=(torch.rand(num_surfels, 3, generator=g, dtype=torch.float64) * 2 - 1) * 0.8,
        quats=torch.randn(num_surfels, 4, generator=g, dtype=torch.float64),
        scales=low + (high - low) * torch.rand(num_surfels, 2, generator=g, dtype=torch.float64),
        opacities=o_low + (o_high - o_low) * torch.rand(num_surfels, generator=g, dtype=torch.float64),
        colors=torch.rand(num_surfels, channels, generator=g, dtype=torch.float64),
    )


def two_cameras(width, height):
    viewmats = torch.stack([look_at((0.3, -0.4, -4.0), up=(0.0, -1.0, 0.0), dtype=torch.float64),
                            look_at((3.0, 1.0, -2.5), up=(0.0, -1.0, 0.0), dtype=torch.float64)])
    Ks = torch.stack([
        intrinsics(1.1 * width, 0.45 * width, 0.55 * height),
        intrinsics(0.9 * width, 0.58 * width, 0.42 * height),
    ])
    return viewmats, Ks


def render(scene, viewmats, Ks, width, height, **kwargs):
    return rasterize_surfels_reference(
        scene["means"], scene["quats"], scene["scales"], scene["opacities"], scene["colors"],
        viewmats, Ks, width, height, **kwargs,
    )


# ---------------------------------------------------------------------------
# An independent scalar implementation of the contract, for comparison.


def sequential_contract(scene, viewmats, Ks, width, height, near, far, backgrounds, scale_modifier):
    means, quats = scene["means"].numpy(), scene["quats"].numpy()
    scales = scene["scales"].numpy() * scale_modifier
    opacities, colors = scene["opacities"].numpy(), scene["colors"].numpy()
    num_cameras, num_surfels, channels = viewmats.shape[0], means.shape[0], colors.shape[-1]
    out = {
        "colors": np.zeros((num_cameras, height, width, channels)),
        "alphas": np.zeros((num_cameras, height, width, 1)),
        "depths": np.zeros((num_cameras, height, width, 1)),
        "median_depths": np.zeros((num_cameras, height, width, 1)),
        "normals": np.zeros((num_cameras, height, width, 3)),
        "distortions": np.zeros((num_cameras, height, width, 1)),
        "radii": np.zeros((num_cameras, num_surfels, 2), dtype=np.int64),
        "means2d": np.zeros((num_cameras, num_surfels, 2)),
        "depths_surfel": np.zeros((num_cameras, num_surfels)),
    }
    stops = 0
    for c in range(num_cameras):
        W, t, K = viewmats[c, :3, :3].numpy(), viewmats[c, :3, 3].numpy(), Ks[c].numpy()
        drawn = []
        for n in range(num_surfels):
            q = quats[n]
            if q @ q <= 1e-24 or scales[n].min() <= 0 or opacities[n] <= 0:
                continue
            x, y, z, w = q[1], q[2], q[3], q[0]
            R = Rotation.from_quat([x, y, z, w]).as_matrix()
            p_c = W @ means[n] + t
            M = K @ np.stack([W @ R[:, 0] * scales[n, 0], W @ R[:, 1] * scales[n, 1], p_c], 1)
            normal = W @ R[:, 2]
            if normal @ p_c > 0:
                normal = -normal
            z_c = M[2, 2]
            if not near <= z_c <= far or not 3 * math.hypot(M[2, 0], M[2, 1]) < 0.999 * z_c:
                continue
            dual = M @ np.diag([9.0, 9.0, -1.0]) @ M.T
            centre = M[:2, 2] / z_c
            lo, hi = np.zeros(2), np.zeros(2)
            for axis in range(2):
                e = dual[axis, 2] / dual[2, 2]
                h = math.sqrt(max(0.0, e * e - dual[axis, axis] / dual[2, 2]))
                lo[axis] = min(e - h, centre[axis] - 2.1214) - 0.5
                hi[axis] = max(e + h, centre[axis] + 2.1214) + 0.5
            # Visible only if some pixel centre i + 0.5 inside the image lies in [lo, hi].
            if any(math.ceil(max(lo[a] - 0.5, 0)) > math.floor(min(hi[a] - 0.5, size - 1))
                   for a, size in ((0, width), (1, height))):
                continue
            out["radii"][c, n] = np.ceil(np.maximum(hi - centre, centre - lo))
            out["means2d"][c, n] = centre
            out["depths_surfel"][c, n] = z_c
            drawn.append((z_c, n, M, centre, normal))
        drawn.sort(key=lambda item: (item[0], item[1]))
        for j in range(height):
            for i in range(width):
                px, py = i + 0.5, j + 0.5
                T, A, S1, S2 = 1.0, 0.0, 0.0, 0.0
                pixel = {key: out[key][c, j, i] for key in IMAGE_KEYS if key in out}
                for _, n, M, centre, normal in drawn:
                    qv = np.cross(px * M[2] - M[0], py * M[2] - M[1])
                    rho3d = (qv[0] ** 2 + qv[1] ** 2) / qv[2] ** 2 if qv[2] ** 2 > 1e-30 else math.inf
                    rho2d = 2 * ((px - centre[0]) ** 2 + (py - centre[1]) ** 2)
                    if rho3d <= rho2d:
                        rho, hit = rho3d, M[2] @ np.array([qv[0] / qv[2], qv[1] / qv[2], 1.0])
                    else:
                        rho, hit = rho2d, M[2, 2]
                    if rho > 9 or hit < near:
                        continue
                    alpha = min(0.99, opacities[n] * math.exp(-rho / 2))
                    if alpha < 1 / 255:
                        continue
                    T_next = T * (1 - alpha)
                    if T_next < 0.9e-4:
                        stops += 1
                        break
                    weight = alpha * T
                    pixel["colors"] += weight * colors[n]
                    pixel["depths"] += weight * hit
                    pixel["normals"] += weight * normal
                    m = far * (1 - near / hit) / (far - near)
                    pixel["distortions"] += weight * (m * m * A - 2 * m * S1 + S2)
                    A, S1, S2 = A + weight, S1 + weight * m, S2 + weight * m * m
                    if T > 0.5:
                        pixel["median_depths"][0] = hit
                    T = T_next
                pixel["colors"] += T * backgrounds[c].numpy()
                pixel["alphas"][0] = 1 - T
    return out, stops


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sequential_contract(seed):
    width, height, near, far = 12, 10, 0.5, 20.0
    scene = random_scene(seed, 6, channels=2, opacity_range=(0.5, 1.0))
    # A stack of nearly opaque surfels facing camera 0 so that the stop rule (T < 1e-4)
    # and the alpha clamp are hit.
    scene["means"][3:] = torch.tensor([0.05, 0.0, 0.0]) + 0.02 * scene["means"][3:]
    scene["quats"][3:] = torch.tensor([1.0, 0.0, 0.0, 0.0]) + 0.1 * scene["quats"][3:]
    scene["opacities"][3:] = torch.tensor([0.999, 0.98, 0.97])
    viewmats, Ks = two_cameras(width, height)
    backgrounds = torch.tensor([[0.2, 0.7], [1.0, 0.0]], dtype=torch.float64)
    scale_modifier = 0.9
    ref = render(scene, viewmats, Ks, width, height, near=near, far=far,
                 backgrounds=backgrounds, scale_modifier=scale_modifier)
    expected, stops = sequential_contract(scene, viewmats, Ks, width, height, near, far,
                                          backgrounds, scale_modifier)
    assert stops > 0, "the stop rule was not exercised"
    for key, value in expected.items():
        np.testing.assert_allclose(ref[key].numpy(), value, rtol=1e-10, atol=1e-10, err_msg=key)
    np.testing.assert_array_equal(ref["visible"].numpy(), expected["radii"][..., 0] > 0)
    alphas = expected["alphas"]
    expected_depths = np.where(alphas > 0, expected["depths"] / np.where(alphas > 0, alphas, 1), 0)
    np.testing.assert_allclose(ref["expected_depths"].numpy(), expected_depths, rtol=1e-10, atol=1e-10)
    normals_world = np.einsum("chwi,cij->chwj", expected["normals"], viewmats[:, :3, :3].numpy())
    np.testing.assert_allclose(ref["normals_world"].numpy(), normals_world, rtol=1e-10, atol=1e-10)


def test_output_shapes_and_dtypes():
    scene = random_scene(0, 4, channels=5)
    viewmats, Ks = two_cameras(7, 5)
    for dtype in (torch.float32, torch.float64):
        out = render({k: v.to(dtype) for k, v in scene.items()}, viewmats, Ks, 7, 5)
        shapes = {"colors": (2, 5, 7, 5), "normals": (2, 5, 7, 3), "normals_world": (2, 5, 7, 3),
                  "radii": (2, 4, 2), "means2d": (2, 4, 2), "depths_surfel": (2, 4), "visible": (2, 4)}
        for key in ("alphas", "depths", "expected_depths", "median_depths", "distortions"):
            shapes[key] = (2, 5, 7, 1)
        assert set(out) == set(shapes)
        for key, shape in shapes.items():
            assert tuple(out[key].shape) == shape, key
        assert out["radii"].dtype == torch.int32 and out["visible"].dtype == torch.bool
        assert all(out[key].dtype == dtype for key in DIFFERENTIABLE_KEYS)


def test_float32_matches_float64():
    scene = random_scene(3, 6)
    viewmats, Ks = two_cameras(12, 10)
    ref64 = render(scene, viewmats, Ks, 12, 10)
    ref32 = render({k: v.float() for k, v in scene.items()}, viewmats.float(), Ks.float(), 12, 10)
    for key in DIFFERENTIABLE_KEYS:
        torch.testing.assert_close(ref32[key].double(), ref64[key], rtol=1e-4, atol=1e-4, msg=key)


def test_batched_cameras_equal_single_camera_calls():
    scene = random_scene(4, 6)
    scene["colors"] = torch.rand(2, 6, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    viewmats, Ks = two_cameras(12, 10)
    backgrounds = torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.8, 0.7]], dtype=torch.float64)
    batched = render(scene, viewmats, Ks, 12, 10, backgrounds=backgrounds)
    for c in range(2):
        single_scene = dict(scene, colors=scene["colors"][c])
        single = render(single_scene, viewmats[c : c + 1], Ks[c : c + 1], 12, 10,
                        backgrounds=backgrounds[c : c + 1])
        for key, value in single.items():
            torch.testing.assert_close(batched[key][c : c + 1], value, rtol=1e-12, atol=1e-12, msg=key)


def face_on_surfel(z=3.0, opacity=0.7, scale=0.5, width=9, height=9):
    """One surfel facing the camera (normal along -z), centred on the middle pixel."""
    scene = dict(
        means=torch.tensor([[0.0, 0.0, z]], dtype=torch.float64),
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64),
        scales=torch.tensor([[scale, 0.6 * scale]], dtype=torch.float64),
        opacities=torch.tensor([opacity], dtype=torch.float64),
        colors=torch.tensor([[0.25, 0.5, 1.0]], dtype=torch.float64),
    )
    viewmats = torch.eye(4, dtype=torch.float64)[None]
    Ks = intrinsics(10.0, width / 2, height / 2)[None]
    return scene, viewmats, Ks


@pytest.mark.parametrize("opacity", [0.4, 0.995, 3.0])
def test_face_on_surfel_centre_alpha(opacity):
    scene, viewmats, Ks = face_on_surfel(opacity=opacity)
    out = render(scene, viewmats, Ks, 9, 9)
    assert out["alphas"][0, 4, 4, 0].item() == pytest.approx(min(0.99, opacity), rel=1e-12)
    assert out["normals"][0, 4, 4].tolist() == pytest.approx([0.0, 0.0, -min(0.99, opacity)])
    assert out["means2d"][0, 0].tolist() == pytest.approx([4.5, 4.5])
    assert out["depths_surfel"][0, 0].item() == pytest.approx(3.0)


def test_single_surfel_has_no_distortion_and_its_own_median_depth():
    scene, viewmats, Ks = face_on_surfel()
    scene["quats"] = torch.tensor([[0.9, 0.3, -0.2, 0.1]], dtype=torch.float64)  # tilted
    out = render(scene, viewmats, Ks, 9, 9, near=0.5, far=10.0)
    hit = out["alphas"] > 0
    assert hit.sum() > 20
    assert torch.all(out["distortions"] == 0)
    # One contributor: its hit depth is the expected depth and the median depth.
    torch.testing.assert_close(out["median_depths"][hit], out["expected_depths"][hit], rtol=1e-12, atol=0)
    assert torch.all(out["median_depths"][~hit] == 0)
    # The tilted surfel's hit depth varies over the image, around its centre depth.
    assert out["median_depths"][hit].std() > 1e-3
    face_on = render(face_on_surfel()[0], viewmats, Ks, 9, 9)
    face_on_hit = face_on["alphas"] > 0
    torch.testing.assert_close(face_on["median_depths"][face_on_hit],
                               torch.full_like(face_on["median_depths"][face_on_hit], 3.0))


def test_background_where_nothing_is_hit():
    scene, viewmats, Ks = face_on_surfel(scale=0.1, width=16, height=12)
    bg = torch.tensor([[0.3, 0.6, 0.9]], dtype=torch.float64)
    out = render(scene, viewmats, Ks, 16, 12, backgrounds=bg)
    empty = out["alphas"][0, ..., 0] == 0
    assert empty.sum() > 100 and (~empty).sum() > 0
    assert torch.all(out["colors"][0][empty] == bg[0])
    for key in ("depths", "expected_depths", "median_depths", "normals", "distortions"):
        assert torch.all(out[key][0][empty] == 0), key
    # Where hit, the colour blends the surfel colour and the background by alpha.
    alpha = out["alphas"][0][~empty]
    blended = alpha * scene["colors"][0] + (1 - alpha) * bg[0]
    torch.testing.assert_close(out["colors"][0][~empty], blended)


def test_median_depth_picks_last_contributor_before_half_transmittance():
    # Three face-on surfels at depths 2, 3, 4 with alpha 0.3 each at the centre pixel:
    # T before them is 1, 0.7, 0.49 -> the median depth is that of the second one.
    scene, viewmats, Ks = face_on_surfel()
    scene = {key: value.repeat(3, *([1] * (value.dim() - 1))) for key, value in scene.items()}
    scene["means"][:, 2] = torch.tensor([4.0, 2.0, 3.0])
    scene["opacities"][:] = 0.3
    out = render(scene, viewmats, Ks, 9, 9, near=0.5, far=10.0)
    assert out["median_depths"][0, 4, 4, 0].item() == pytest.approx(3.0)
    scene["opacities"][:] = 0.1  # T never falls to 0.5: the last contributor's depth
    out = render(scene, viewmats, Ks, 9, 9, near=0.5, far=10.0)
    assert out["median_depths"][0, 4, 4, 0].item() == pytest.approx(4.0)


def stacked_face_on(opacities, depths):
    """Face-on surfels on the optical axis: at the centre pixel alpha_i = opacity_i exactly."""
    scene, viewmats, Ks = face_on_surfel()
    count = len(opacities)
    scene = {key: value.repeat(count, *([1] * (value.dim() - 1))) for key, value in scene.items()}
    scene["means"][:, 2] = torch.tensor(depths, dtype=torch.float64)
    scene["opacities"] = torch.tensor(opacities, dtype=torch.float64)
    scene["colors"] = torch.eye(count, dtype=torch.float64)
    return scene, viewmats, Ks


def test_median_depth_at_exactly_half_transmittance():
    # T before the second surfel is exactly 0.5: not > 0.5, so the first one is the median.
    scene, viewmats, Ks = stacked_face_on([0.5, 0.5], [2.0, 3.0])
    out = render(scene, viewmats, Ks, 9, 9, near=0.5, far=10.0)
    assert out["median_depths"][0, 4, 4, 0].item() == 2.0


def test_transmittance_stop_rule():
    # T: 1 -> 0.01 -> 1.5e-4 (kept, >= 0.9e-4) -> 7.5e-5 (< 0.9e-4: stop before the third).
    scene, viewmats, Ks = stacked_face_on([0.99, 0.985, 0.5, 0.3], [2.0, 3.0, 4.0, 5.0])
    out = render(scene, viewmats, Ks, 9, 9, near=0.5, far=10.0)
    expected_colour = [0.99, 0.01 * 0.985, 0.0, 0.0]
    assert out["colors"][0, 4, 4].tolist() == pytest.approx(expected_colour, rel=1e-12, abs=0)
    assert out["alphas"][0, 4, 4, 0].item() == pytest.approx(1 - 0.01 * 0.015, rel=1e-12)
    # Alpha is clamped to 0.99 before the rule: opacity 1 twice gives T = 1e-4, kept in float32
    # and float64 alike (the threshold sits below that tie on purpose).
    scene, viewmats, Ks = stacked_face_on([1.0, 1.0, 0.3], [2.0, 3.0, 4.0])
    out = render(scene, viewmats, Ks, 9, 9, near=0.5, far=10.0)
    transmittance = 1 - out["alphas"][0, 4, 4, 0].item()
    assert transmittance == pytest.approx(0.01 * 0.01, rel=1e-9)
    assert out["colors"][0, 4, 4, 2].item() == 0.0


def test_distortion_running_sums_equal_pairwise_form():
    g = torch.Generator().manual_seed(5)
    weights = torch.rand(4, 7, 9, generator=g, dtype=torch.float64) * 0.3
    mapped = torch.rand(4, 7, 9, generator=g, dtype=torch.float64)
    pairwise = torch.zeros(4, 7, dtype=torch.float64)
    for i in range(9):
        for j in range(i):
            pairwise += weights[..., i] * weights[..., j] * (mapped[..., i] - mapped[..., j]) ** 2
    torch.testing.assert_close(distortion_running_sums(weights, mapped), pairwise, rtol=1e-12, atol=1e-14)


def test_distortion_of_rendered_pixels_equals_pairwise_form():
    # Two face-on surfels at depths 2 and 5 covering the centre pixel: D = w1 w2 (m1 - m2)^2.
    scene, viewmats, Ks = face_on_surfel(opacity=0.6)
    scene = {key: value.repeat(2, *([1] * (value.dim() - 1))) for key, value in scene.items()}
    scene["means"][:, 2] = torch.tensor([5.0, 2.0])
    near, far = 0.5, 10.0
    out = render(scene, viewmats, Ks, 9, 9, near=near, far=far)
    w_front, w_back = 0.6, 0.6 * 0.4
    m_front, m_back = (far * (1 - near / z) / (far - near) for z in (2.0, 5.0))
    expected = w_front * w_back * (m_front - m_back) ** 2
    assert out["distortions"][0, 4, 4, 0].item() == pytest.approx(expected, rel=1e-12)


def test_fallback_filter_wins_for_tiny_surfels():
    scene, viewmats, Ks = face_on_surfel(scale=1e-4, opacity=0.8)
    scene["means"][0, :2] = torch.tensor([0.031, -0.017])  # off the pixel grid
    out = render(scene, viewmats, Ks, 9, 9)
    centre = out["means2d"][0, 0]
    pixels = torch.arange(9, dtype=torch.float64) + 0.5
    ys, xs = torch.meshgrid(pixels, pixels, indexing="ij")
    rho2d = 2 * ((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2)
    alpha = torch.clamp_max(0.8 * torch.exp(-rho2d / 2), 0.99)
    alpha = torch.where((rho2d <= 9) & (alpha >= 1 / 255), alpha, 0)
    torch.testing.assert_close(out["alphas"][0, ..., 0], alpha)
    torch.testing.assert_close(out["depths"][0, ..., 0], 3.0 * alpha)  # 2D path: z = M22
    assert tuple(out["radii"][0, 0].tolist()) == (3, 3)  # ceil(2.1214 + 0.5)


def test_screen_shift_translates_the_splat():
    scene, viewmats, Ks = face_on_surfel(width=12, height=12)
    scene["means"][0, :2] = torch.tensor([-0.21, -0.14])
    base = render(scene, viewmats, Ks, 12, 12)
    shift = torch.tensor([2.0, 1.0], dtype=torch.float64).reshape(1, 1, 1, 1, 2)
    moved = render(scene, viewmats, Ks, 12, 12, screen_shift=shift)
    assert base["alphas"][0, :, -2:].abs().sum() == 0 and base["alphas"][0, -1:].abs().sum() == 0
    for key in IMAGE_KEYS:
        torch.testing.assert_close(moved[key][0, 1:, 2:], base[key][0, :-1, :-2], msg=key)
    torch.testing.assert_close(moved["means2d"], base["means2d"])  # the shift is per pixel only


def test_screen_shift_statistic_is_sum_of_per_pixel_terms():
    scene = random_scene(6, 5)
    viewmats, Ks = two_cameras(12, 10)
    per_splat = torch.zeros(2, 1, 1, 5, 2, dtype=torch.float64, requires_grad=True)
    per_pixel = torch.zeros(2, 10, 12, 5, 2, dtype=torch.float64, requires_grad=True)
    cotangent = torch.rand(2, 10, 12, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for shift in (per_splat, per_pixel):
        (render(scene, viewmats, Ks, 12, 10, screen_shift=shift)["colors"] * cotangent).sum().backward()
    torch.testing.assert_close(per_splat.grad[:, 0, 0], per_pixel.grad.sum((1, 2)))
    assert per_pixel.grad.abs().sum() > per_pixel.grad.sum((1, 2)).abs().sum()  # abs variant differs
    assert torch.all(per_splat.grad.abs().sum(-1) > 0)


# ---------------------------------------------------------------------------
# Gradients (float64 gradcheck with default tolerances).


def gradcheck_outputs(scene, viewmats, Ks, width, height, with_shift=False, **kwargs):
    """gradcheck of every differentiable output, each projected on a fixed random cotangent."""
    names = ("means", "quats", "scales", "opacities", "colors")
    inputs = [scene[name].clone().requires_grad_(True) for name in names]
    num_cameras, num_surfels = viewmats.shape[0], scene["means"].shape[0]
    if with_shift:
        inputs.append(torch.zeros(num_cameras, 1, 1, num_surfels, 2, dtype=torch.float64,
                                  requires_grad=True))
    probe = render(dict(zip(names, inputs)), viewmats, Ks, width, height, **kwargs)
    # gradcheck ignores outputs that do not require grad: make sure none is cut off.
    assert all(probe[key].requires_grad for key in DIFFERENTIABLE_KEYS)
    g = torch.Generator().manual_seed(123)
    # Each cotangent is scaled by 1 / max |output| so that small outputs (distortion) get
    # Jacobian entries large enough for gradcheck's absolute tolerance to matter.
    cotangents = {
        key: torch.randn(probe[key].shape, generator=g, dtype=torch.float64)
        / probe[key].detach().abs().max().clamp_min(1e-3)
        for key in DIFFERENTIABLE_KEYS
    }

    def projected_outputs(*args):
        values = dict(zip(names, args))
        shift = args[len(names)] if with_shift else None
        out = render(values, viewmats, Ks, width, height, screen_shift=shift, **kwargs)
        return tuple((out[key] * cotangents[key]).sum() for key in DIFFERENTIABLE_KEYS)

    assert torch.autograd.gradcheck(projected_outputs, inputs)
    return probe


def test_gradcheck_random_scene_two_cameras():
    scene = random_scene(11, 5)
    viewmats, Ks = two_cameras(12, 10)
    probe = gradcheck_outputs(scene, viewmats, Ks, 12, 10, with_shift=True, near=0.5, far=20.0,
                              backgrounds=torch.tensor([[0.1, 0.5, 0.9], [0.3, 0.3, 0.3]],
                                                       dtype=torch.float64))
    assert probe["visible"].all()
    assert probe["distortions"].max() > 1e-4  # near/far chosen so distortion is not negligible


def test_gradcheck_per_camera_colors_and_high_opacity():
    scene = random_scene(12, 4, channels=2, opacity_range=(0.8, 1.0))
    scene["colors"] = torch.rand(1, 4, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    viewmats, Ks = two_cameras(8, 8)
    gradcheck_outputs(scene, viewmats[:1], Ks[:1], 8, 8, near=0.5, far=20.0)


def edge_on_scene(angle_degrees):
    """A surfel whose normal makes ``angle_degrees`` with the ray to its centre."""
    angle = math.radians(angle_degrees)
    # Camera at the origin looking down +z; the surfel centre is off axis, so rotate its
    # normal from the ray direction about an axis perpendicular to the ray.
    centre = np.array([0.15, -0.1, 3.0])
    ray = centre / np.linalg.norm(centre)
    axis = np.cross(ray, [0.3, 1.0, 0.2])
    axis /= np.linalg.norm(axis)
    rotation = Rotation.from_rotvec(axis * angle) * Rotation.align_vectors([ray], [[0.0, 0.0, 1.0]])[0]
    x, y, z, w = rotation.as_quat()
    scene = dict(
        means=torch.tensor(np.stack([centre, centre + [0.2, 0.25, 0.8]]), dtype=torch.float64),
        quats=torch.tensor([[w, x, y, z], [0.8, 0.1, 0.5, -0.3]], dtype=torch.float64),
        scales=torch.tensor([[0.5, 0.3], [0.6, 0.5]], dtype=torch.float64),
        opacities=torch.tensor([0.9, 0.6], dtype=torch.float64),
        colors=torch.tensor([[1.0, 0.2, 0.1], [0.1, 0.3, 0.9]], dtype=torch.float64),
    )
    viewmats = torch.eye(4, dtype=torch.float64)[None]
    Ks = intrinsics(12.0, 5.3, 4.6)[None]
    return scene, viewmats, Ks


@pytest.mark.parametrize("angle_degrees", [80.0, 86.0, 89.0])
def test_gradcheck_near_edge_on(angle_degrees):
    scene, viewmats, Ks = edge_on_scene(angle_degrees)
    rotation = Rotation.from_quat(scene["quats"][0, [1, 2, 3, 0]].numpy())
    ray = scene["means"][0].numpy() / np.linalg.norm(scene["means"][0].numpy())
    normal = rotation.as_matrix()[:, 2]
    assert math.degrees(math.acos(abs(normal @ ray))) == pytest.approx(angle_degrees)
    probe = gradcheck_outputs(scene, viewmats, Ks, 10, 9, near=0.5, far=20.0)
    assert probe["visible"][0, 0] and probe["alphas"].max() > 0.1


def test_gradcheck_fallback_filter():
    scene = random_scene(13, 4, scale_range=(2e-3, 5e-3))
    viewmats, Ks = two_cameras(8, 8)
    probe = gradcheck_outputs(scene, viewmats, Ks, 8, 8, near=0.5, far=20.0)
    assert probe["visible"].all() and probe["alphas"].max() > 0.1


# ---------------------------------------------------------------------------
# Bad and degenerate inputs: culled, no NaN anywhere, zero gradient for the culled surfel.


def bad_surfel_cases():
    nan, inf = math.nan, math.inf
    cases = {}
    for name, width in (("means", 3), ("quats", 4), ("scales", 2), ("colors", 3)):
        for label, value in (("nan", nan), ("inf", inf), ("-inf", -inf)):
            cases[f"{name}_{label}"] = (name, (0, width - 1), value)
    for label, value in (("nan", nan), ("inf", inf), ("zero", 0.0), ("negative", -0.5)):
        cases[f"opacities_{label}"] = ("opacities", (0,), value)
    cases["scale_zero"] = ("scales", (0, 1), 0.0)
    cases["scale_negative"] = ("scales", (0, 0), -0.2)
    cases["quat_zero"] = ("quats", (0, slice(None)), 0.0)
    cases["quat_tiny"] = ("quats", (0, slice(None)), 1e-13)
    cases["behind_camera"] = ("means", (0, slice(None)), (0.0, 0.0, -3.0))
    cases["on_camera_centre"] = ("means", (0, slice(None)), (0.0, 0.0, 0.0))
    cases["closer_than_near"] = ("means", (0, slice(None)), (0.0, 0.0, 0.005))
    cases["beyond_far"] = ("means", (0, slice(None)), (0.0, 0.0, 2000.0))
    cases["through_camera_plane"] = ("scales", (0, slice(None)), 50.0)
    cases["outside_image"] = ("means", (0, slice(None)), (30.0, 0.0, 3.0))
    return cases


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", sorted(bad_surfel_cases()))
def test_bad_surfel_is_culled_without_nan(case, dtype):
    name, index, value = bad_surfel_cases()[case]
    scene, viewmats, Ks = face_on_surfel(width=10, height=8)
    good = random_scene(7, 3, scale_range=(0.3, 0.6))
    good["means"][:, 2] += 3.0
    scene = {key: torch.cat([scene[key], good[key]]).to(dtype) for key in scene}
    # The bad surfel is tilted so that "through the camera plane" really crosses it.
    scene["quats"][0] = torch.tensor([0.9, 0.4, 0.1, 0.0])
    scene[name][index] = torch.tensor(value, dtype=dtype)
    inputs = {key: value.requires_grad_(True) for key, value in scene.items()}
    shift = torch.zeros(1, 1, 1, 4, 2, dtype=dtype, requires_grad=True)
    out = render(inputs, viewmats.to(dtype), Ks.to(dtype), 10, 8, near=0.01, far=1000.0,
                 screen_shift=shift)
    assert not out["visible"][0, 0] and out["radii"][0, 0].tolist() == [0, 0]
    assert out["visible"][0, 1:].all()
    assert out["means2d"][0, 0].tolist() == [0.0, 0.0] and out["depths_surfel"][0, 0].item() == 0.0
    loss = sum((out[key] * (1 + torch.rand_like(out[key]))).sum() for key in DIFFERENTIABLE_KEYS)
    for key in DIFFERENTIABLE_KEYS:
        assert torch.isfinite(out[key]).all(), key
    loss.backward()
    for key, value in list(inputs.items()) + [("screen_shift", shift)]:
        assert torch.isfinite(value.grad).all(), key
        assert torch.all(value.grad[..., 0, :] == 0 if key == "screen_shift" else value.grad[0] == 0), key
        assert value.grad[1:].abs().sum() > 0 if key != "screen_shift" else True


def test_huge_finite_values_do_not_give_nan_float32():
    scene, viewmats, Ks = face_on_surfel()
    scene = {key: value.float().repeat(3, *([1] * (value.dim() - 1))) for key, value in scene.items()}
    scene["quats"][0] = 1e30  # |q|^2 overflows float32
    scene["means"][1] = torch.tensor([1e37, -1e37, 3.0])  # W p + t and M overflow
    inputs = {key: value.requires_grad_(True) for key, value in scene.items()}
    out = render(inputs, viewmats.float(), Ks.float(), 9, 9)
    assert out["visible"][0].tolist() == [False, False, True]
    sum(out[key].sum() for key in DIFFERENTIABLE_KEYS).backward()
    for key, value in inputs.items():
        assert torch.isfinite(value.grad).all() and torch.all(value.grad[:2] == 0), key


def test_empty_scene_and_no_cameras():
    scene = {key: value[:0] for key, value in random_scene(0, 3).items()}
    viewmats, Ks = two_cameras(6, 4)
    bg = torch.tensor([[0.5, 0.25, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    out = render(scene, viewmats, Ks, 6, 4, backgrounds=bg)
    assert out["colors"].shape == (2, 4, 6, 3) and torch.all(out["colors"] == bg[:, None, None])
    assert out["radii"].shape == (2, 0, 2) and out["visible"].shape == (2, 0)
    for key in ("alphas", "depths", "median_depths", "distortions", "normals"):
        assert torch.all(out[key] == 0), key
    scene = random_scene(0, 3)
    out = render(scene, viewmats[:0], Ks[:0], 6, 4)
    assert out["colors"].shape == (0, 4, 6, 3) and out["radii"].shape == (0, 3, 2)
    assert out["normals_world"].shape == (0, 4, 6, 3)


def test_one_pixel_image():
    scene, viewmats, Ks = face_on_surfel(opacity=0.5, width=1, height=1)
    inputs = {key: value.requires_grad_(True) for key, value in scene.items()}
    out = render(inputs, viewmats, Ks, 1, 1)
    assert out["colors"].shape == (1, 1, 1, 3)
    assert out["alphas"].item() == pytest.approx(0.5)
    out["colors"].sum().backward()
    assert inputs["opacities"].grad.item() == pytest.approx(scene["colors"].sum().item())


@pytest.mark.parametrize(
    "change, error",
    [
        (lambda a: a.update(Ks=a["Ks"] * torch.tensor([1.0, 1.0, 2.0])[:, None]), ValueError),
        (lambda a: a["viewmats"].__setitem__((0, 0, 3), math.nan), ValueError),
        (lambda a: a.update(means=a["means"][:, :2]), ValueError),
        (lambda a: a.update(scales=a["scales"][:-1]), ValueError),
        (lambda a: a.update(colors=a["colors"][None].repeat(3, 1, 1)), ValueError),
        (lambda a: a.update(backgrounds=torch.zeros(2, 3, dtype=torch.float64)), ValueError),
        (lambda a: a.update(width=0), ValueError),
        (lambda a: a.update(height=4.0), TypeError),
        (lambda a: a.update(opacities=a["opacities"].long()), TypeError),
        (lambda a: a.update(scales=a["scales"].float()), TypeError),
    ],
)
def test_bad_arguments_raise(change, error):
    scene = random_scene(0, 3)
    args = dict(scene, viewmats=torch.eye(4, dtype=torch.float64)[None],
                Ks=intrinsics(8.0, 4.0, 4.0)[None], width=8, height=8)
    change(args)
    with pytest.raises(error):
        rasterize_surfels_reference(**args)
