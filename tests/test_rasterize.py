"""The compiled CPU rasterizer against the pure-PyTorch reference, and its guarantees."""

import math

import pytest
import torch

from gsplat_lib import rasterize_surfels
from gsplat_lib.ops.sh import num_sh_bases, sh_to_colors
from gsplat_lib.reference import rasterize_surfels_reference
from rasterize_scenes import IMAGE_OUTPUTS, PARAMS, random_cameras, random_surfels

# A depth range where the distortion term is not flattened to ~1 (far = 1000 would be).
NEAR, FAR = 0.5, 12.0


def render(scene, viewmats, Ks, width, height, **kwargs):
    return rasterize_surfels(scene["means"], scene["quats"], scene["scales"], scene["opacities"], scene["colors"],
                             viewmats, Ks, width, height, kwargs.pop("near", NEAR), kwargs.pop("far", FAR), **kwargs)


def render_reference(scene, viewmats, Ks, width, height, **kwargs):
    return rasterize_surfels_reference(scene["means"], scene["quats"], scene["scales"], scene["opacities"],
                                       scene["colors"], viewmats, Ks, width, height,
                                       kwargs.pop("near", NEAR), kwargs.pop("far", FAR), **kwargs)


def leaf_scene(scene, dtype=torch.float32):
    return {k: v.detach().to(dtype).clone().requires_grad_(True) for k, v in scene.items()}


def random_cotangents(outputs, seed):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(outputs[k].shape, generator=g, dtype=torch.float64) for k in IMAGE_OUTPUTS}


def weighted_loss(outputs, cotangents):
    return sum((outputs[k].double() * cotangents[k]).sum() for k in IMAGE_OUTPUTS)


def as_dict(result):
    return {k: getattr(result, k) for k in IMAGE_OUTPUTS}


def assert_close_scaled(actual, expected, rtol, name, floor=1e-6):
    """|actual - expected| <= rtol * max|expected| (+ a tiny floor): gradients span many magnitudes.

    A gradient autograd never created (None) is zero.
    """
    if expected is None:
        expected = torch.zeros_like(actual)
    actual, expected = actual.detach(), expected.detach()
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    error = float((actual.double() - expected.double()).abs().max()) if expected.numel() else 0.0
    assert error <= rtol * scale + floor, f"{name}: max error {error:.3g} vs scale {scale:.3g}"


@pytest.mark.parametrize("seed,num_cameras,channels", [(0, 1, 3), (1, 2, 3), (2, 3, 1), (3, 2, 5)])
def test_forward_matches_reference(seed, num_cameras, channels):
    width, height = 37, 29
    viewmats, Ks = random_cameras(num_cameras, width, height, seed=seed)
    scene = random_surfels(40, channels=channels, seed=seed + 10)
    out = render(scene, viewmats, Ks, width, height)
    ref = render_reference({k: v.double() for k, v in scene.items()}, viewmats.double(), Ks.double(), width, height)
    for name in IMAGE_OUTPUTS + ["means2d", "depths_surfel"]:
        assert_close_scaled(getattr(out, name).detach(), ref[name], 2e-5, name)
    assert torch.equal(out.radii, ref["radii"])
    assert torch.equal(out.visible, ref["visible"])
    assert float(out.alphas.detach().max()) > 0.5, "the scene should cover part of the image"


@pytest.mark.parametrize("seed,num_cameras,channels", [(0, 1, 3), (1, 2, 3), (4, 2, 2)])
def test_gradients_match_reference(seed, num_cameras, channels):
    width, height = 33, 27
    viewmats, Ks = random_cameras(num_cameras, width, height, seed=seed)
    base = random_surfels(30, channels=channels, seed=seed + 20)
    backgrounds = torch.rand(num_cameras, channels, generator=torch.Generator().manual_seed(seed))

    scene = leaf_scene(base)
    bg = backgrounds.clone().requires_grad_(True)
    out = as_dict(render(scene, viewmats, Ks, width, height, backgrounds=bg))
    cotangents = random_cotangents(out, seed)
    weighted_loss(out, cotangents).backward()

    ref_scene = leaf_scene(base, torch.float64)
    ref_bg = backgrounds.double().clone().requires_grad_(True)
    ref = render_reference(ref_scene, viewmats.double(), Ks.double(), width, height, backgrounds=ref_bg)
    weighted_loss(ref, cotangents).backward()

    for name in PARAMS:
        assert_close_scaled(scene[name].grad, ref_scene[name].grad, 2e-3, f"grad {name}")
    assert_close_scaled(bg.grad, ref_bg.grad, 1e-4, "grad backgrounds")


def test_each_output_has_gradients():
    """Each image output alone, the median depth included, moves the surfels."""
    width, height = 24, 20
    viewmats, Ks = random_cameras(1, width, height, seed=5)
    base = random_surfels(20, seed=6)
    for name in IMAGE_OUTPUTS:
        scene = leaf_scene(base)
        out = render(scene, viewmats, Ks, width, height)
        getattr(out, name).sum().backward()
        ref_scene = leaf_scene(base, torch.float64)
        ref = render_reference(ref_scene, viewmats.double(), Ks.double(), width, height)
        ref[name].sum().backward()
        assert float(scene["means"].grad.abs().sum()) > 0, name
        # Some gradients are analytically zero (hit depth does not depend on scale): compare
        # them at the magnitude of this output's mean gradient, float32's resolution.
        floor = 1e-5 * float(ref_scene["means"].grad.abs().max())
        for param in PARAMS:
            assert_close_scaled(scene[param].grad, ref_scene[param].grad, 2e-3, f"{name} -> {param}", floor)


def test_densification_statistic_matches_reference():
    width, height = 20, 16
    viewmats, Ks = random_cameras(2, width, height, seed=7)
    base = random_surfels(12, seed=8)
    scene = leaf_scene(base)
    out = render(scene, viewmats, Ks, width, height)
    cotangents = random_cotangents(as_dict(out), 3)
    weighted_loss(as_dict(out), cotangents).backward()

    ref_scene = {k: v.double() for k, v in base.items()}
    shift = torch.zeros(2, 1, 1, 12, 2, dtype=torch.float64, requires_grad=True)
    ref = render_reference(ref_scene, viewmats.double(), Ks.double(), width, height, screen_shift=shift)
    (grad,) = torch.autograd.grad(weighted_loss(ref, cotangents), shift)
    assert_close_scaled(out.screen_grad.grad, grad[:, 0, 0], 2e-3, "screen_grad")

    per_pixel = torch.zeros(2, height, width, 12, 2, dtype=torch.float64, requires_grad=True)
    ref = render_reference(ref_scene, viewmats.double(), Ks.double(), width, height, screen_shift=per_pixel)
    (grad,) = torch.autograd.grad(weighted_loss(ref, cotangents), per_pixel)
    assert_close_scaled(out.screen_absgrad.grad, grad.abs().sum(dim=(1, 2)), 2e-3, "screen_absgrad")


def test_sh_colors_match_reference():
    width, height = 24, 24
    viewmats, Ks = random_cameras(2, width, height, seed=9)
    base = random_surfels(25, seed=10)
    sh = torch.randn(25, num_sh_bases(3), 3, generator=torch.Generator().manual_seed(1)) * 0.3
    means = base["means"].clone().requires_grad_(True)
    sh_leaf = sh.clone().requires_grad_(True)
    out = rasterize_surfels(means, base["quats"], base["scales"], base["opacities"], None, viewmats, Ks, width,
                            height, NEAR, FAR, sh=sh_leaf, sh_degree=2)
    out.colors.sum().backward()
    ref_means = base["means"].double().clone().requires_grad_(True)
    ref_sh = sh.double().clone().requires_grad_(True)
    colors = sh_to_colors(ref_sh, 2, ref_means, viewmats.double())
    ref = rasterize_surfels_reference(ref_means, base["quats"].double(), base["scales"].double(),
                                      base["opacities"].double(), colors, viewmats.double(), Ks.double(), width,
                                      height, NEAR, FAR)
    ref["colors"].sum().backward()
    assert_close_scaled(out.colors.detach(), ref["colors"], 2e-5, "colors")
    assert_close_scaled(means.grad, ref_means.grad, 2e-3, "grad means")
    assert_close_scaled(sh_leaf.grad, ref_sh.grad, 2e-3, "grad sh")


def test_edge_on_and_fallback_gradients_match_reference():
    """Surfels almost edge-on to the camera, and tiny ones drawn by the screen-space fallback."""
    width, height = 24, 24
    viewmats, Ks = random_cameras(1, width, height, seed=11)
    g = torch.Generator().manual_seed(12)
    forward_axis = viewmats[0, 2, :3]  # camera z in world coordinates
    # Quaternions whose normal is nearly perpendicular to the view direction.
    normals = torch.linalg.cross(forward_axis.expand(8, 3), torch.randn(8, 3, generator=g))
    normals = normals / normals.norm(dim=-1, keepdim=True)
    normals = normals + 0.05 * forward_axis  # 87 degrees or so
    normals = normals / normals.norm(dim=-1, keepdim=True)
    z = torch.tensor([0.0, 0.0, 1.0]).expand(8, 3)
    axis = torch.linalg.cross(z, normals)
    angle = torch.acos((z * normals).sum(-1).clamp(-1, 1))
    axis = axis / axis.norm(dim=-1, keepdim=True)
    edge_on_quats = torch.cat([torch.cos(angle / 2)[:, None], torch.sin(angle / 2)[:, None] * axis], dim=1)
    base = random_surfels(16, seed=13)
    base["quats"][:8] = edge_on_quats
    base["scales"][8:] = 1e-3  # sub-pixel: the fallback filter draws them
    scene = leaf_scene(base)
    out = as_dict(render(scene, viewmats, Ks, width, height))
    cotangents = random_cotangents(out, 4)
    weighted_loss(out, cotangents).backward()
    ref_scene = leaf_scene(base, torch.float64)
    ref = render_reference(ref_scene, viewmats.double(), Ks.double(), width, height)
    weighted_loss(ref, cotangents).backward()
    for name in PARAMS:
        assert_close_scaled(scene[name].grad, ref_scene[name].grad, 3e-3, f"grad {name}")


def test_batched_call_equals_per_camera_calls():
    width, height = 40, 30
    viewmats, Ks = random_cameras(3, width, height, seed=14)
    base = random_surfels(50, seed=15)
    batched = render(leaf_scene(base), viewmats, Ks, width, height)
    for c in range(3):
        single = render(leaf_scene(base), viewmats[c:c + 1], Ks[c:c + 1], width, height)
        for name in IMAGE_OUTPUTS:
            assert torch.equal(getattr(batched, name)[c:c + 1], getattr(single, name)), name
        assert torch.equal(batched.radii[c:c + 1], single.radii)


def _grads_with_threads(threads):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        width, height = 48, 40
        viewmats, Ks = random_cameras(2, width, height, seed=16)
        scene = leaf_scene(random_surfels(200, seed=17))
        out = render(scene, viewmats, Ks, width, height)
        cotangents = random_cotangents(as_dict(out), 5)
        weighted_loss(as_dict(out), cotangents).backward()
        return [getattr(out, k).detach().clone() for k in IMAGE_OUTPUTS] + [scene[k].grad for k in PARAMS] + [
            out.screen_grad.grad, out.screen_absgrad.grad]
    finally:
        torch.set_num_threads(previous)


def test_deterministic_across_runs_and_thread_counts():
    runs = [_grads_with_threads(1), _grads_with_threads(2), _grads_with_threads(2)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert torch.equal(a, b)


def test_cpu_is_deterministic_when_asked_not_to_be():
    # deterministic=False only lets CUDA sum gradients atomically; the CPU has no such path.
    width, height = 40, 36
    viewmats, Ks = random_cameras(2, width, height, seed=41)
    base = random_surfels(300, seed=42)
    runs = []
    for deterministic in (True, False):
        scene = leaf_scene(base)
        out = render(scene, viewmats, Ks, width, height, deterministic=deterministic)
        weighted_loss(as_dict(out), random_cotangents(as_dict(out), 43)).backward()
        runs.append([getattr(out, k).detach() for k in IMAGE_OUTPUTS] + [scene[k].grad for k in PARAMS] +
                    [out.screen_grad.grad, out.screen_absgrad.grad])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def _saturating_scene_grads(seed=32):
    width, height = 40, 36
    viewmats, Ks = random_cameras(2, width, height, seed=31)
    scene = random_surfels(400, seed=seed)
    scene["opacities"] = 0.5 + 0.5 * scene["opacities"]  # saturating: records behind opaque pixels
    scene = leaf_scene(scene)
    out = render(scene, viewmats, Ks, width, height)
    weighted_loss(as_dict(out), random_cotangents(as_dict(out), 7)).backward()
    return [scene[k].grad for k in PARAMS] + [out.screen_grad.grad, out.screen_absgrad.grad]


def test_cpu_backward_writes_every_pair_record(monkeypatch):
    # The CPU backward reuses its thread's scratch (pair records, item gradients) uninitialised;
    # poisoned with NaN, any record it skipped would show up in the gradients. Many pairs have
    # no hit here: a tile's splats behind saturated pixels and splats whose rectangle misses
    # every pixel that needs them. The colour image is left uninitialised too, so a pixel the
    # forward skipped would show up as well.
    from gsplat_lib import _backend
    from gsplat_lib.ops import rasterize_autograd

    expected = _saturating_scene_grads()
    _backend.core().rasterize_fill_backward_scratch_cpu(float("nan"))  # what the next backward reuses
    allocate = rasterize_autograd.new_pass_output
    monkeypatch.setattr(rasterize_autograd, "new_pass_output",
                        lambda *shape, device: allocate(*shape, device=device).fill_(float("nan")))
    for got, want in zip(_saturating_scene_grads(), expected):
        assert torch.equal(got, want)


def test_cpu_backwards_on_several_threads_at_once():
    # Each thread keeps its own record buffer: concurrent backwards never share one.
    import threading

    seeds = [32, 33, 34, 35]
    expected = {seed: _saturating_scene_grads(seed) for seed in seeds}
    results = {}

    def run(seed):
        for _ in range(3):
            results.setdefault(seed, []).append(_saturating_scene_grads(seed))

    workers = [threading.Thread(target=run, args=(seed,)) for seed in seeds]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for seed in seeds:
        assert len(results[seed]) == 3
        for grads in results[seed]:
            assert all(torch.equal(g, e) for g, e in zip(grads, expected[seed]))


def _bad_scene():
    """One good surfel in front of a camera at the origin, then one bad surfel per failure mode."""
    good = dict(means=[0.0, 0.0, 3.0], quats=[1.0, 0.0, 0.0, 0.0], scales=[0.3, 0.3], opacities=0.8)
    bad = [
        dict(means=[math.nan, 0.0, 3.0]),
        dict(means=[math.inf, 0.0, 3.0]),
        dict(quats=[math.nan, 0.0, 0.0, 0.0]),
        dict(quats=[0.0, 0.0, 0.0, 0.0]),
        dict(scales=[0.0, 0.3]),
        dict(scales=[-0.1, 0.3]),
        dict(scales=[math.inf, 0.3]),
        dict(scales=[math.nan, 0.3]),
        dict(opacities=math.nan),
        dict(opacities=0.0),
        dict(means=[0.0, 0.0, -3.0]),                              # behind the camera
        dict(means=[0.0, 0.0, 0.0]),                               # on the camera centre
        dict(means=[0.0, 0.0, 0.2], scales=[2.0, 2.0],
             quats=[0.9238795, 0.3826834, 0.0, 0.0]),              # tilted disk through the camera plane
        dict(quats=[0.7071068, 0.7071068, 0.0, 0.0]),              # exactly edge-on
        dict(means=[50.0, 0.0, 3.0]),                              # off screen
        dict(means=[0.0, 0.0, 5000.0]),                            # beyond far
        dict(scales=[1e-30, 1e-30]),                               # vanishing
        dict(scales=[1e30, 1e30]),                                 # enormous
    ]
    rows = [good] + [{**good, **b} for b in bad]
    scene = {
        "means": torch.tensor([r["means"] for r in rows]),
        "quats": torch.tensor([r["quats"] for r in rows]),
        "scales": torch.tensor([r["scales"] for r in rows]),
        "opacities": torch.tensor([r["opacities"] for r in rows]),
        "colors": torch.rand(len(rows), 3, generator=torch.Generator().manual_seed(0)),
    }
    scene["colors"][1] = math.nan  # a NaN colour on an otherwise bad surfel too
    return scene


def test_bad_surfels_are_culled_without_nan():
    width, height = 32, 32
    viewmats = torch.eye(4)[None]
    Ks = torch.tensor([[[30.0, 0.0, 16.0], [0.0, 30.0, 16.0], [0.0, 0.0, 1.0]]])
    scene = leaf_scene(_bad_scene())
    out = render(scene, viewmats, Ks, width, height, near=0.1, far=100.0)
    loss = sum(getattr(out, k).sum() for k in IMAGE_OUTPUTS)
    loss.backward()
    for name in IMAGE_OUTPUTS:
        assert bool(torch.isfinite(getattr(out, name)).all()), name
    for name in PARAMS:
        assert bool(torch.isfinite(scene[name].grad).all()), name
    assert bool(out.visible[0, 0])
    visible = out.visible[0].tolist()
    # Culled: NaN/Inf anything, zero quat, non-positive scales, zero opacity, behind, on the
    # centre, through the camera plane, off screen, beyond far, enormous.
    for index in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16, 18]:
        assert not visible[index], f"surfel {index} should be culled"
        assert float(scene["means"].grad[index].abs().sum()) == 0.0
    # Exactly edge-on and vanishing surfels stay visible through the screen-space fallback.
    assert visible[14] and visible[17]
    assert float(out.alphas.detach().max()) > 0.5


def test_empty_inputs():
    viewmats, Ks = random_cameras(2, 16, 12)
    empty = {k: v[:0] for k, v in random_surfels(3).items()}
    out = render(leaf_scene(empty), viewmats, Ks, 16, 12)
    assert out.colors.shape == (2, 12, 16, 3) and float(out.alphas.detach().abs().max()) == 0.0
    assert out.radii.shape == (2, 0, 2)
    out.colors.sum().backward()
    scene = leaf_scene(random_surfels(5))
    out = render(scene, viewmats[:0], Ks[:0], 16, 12)
    assert out.colors.shape == (0, 12, 16, 3) and out.radii.shape == (0, 5, 2)


def test_one_pixel_image():
    viewmats = torch.eye(4)[None]
    Ks = torch.tensor([[[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]]])
    scene = dict(means=torch.tensor([[0.0, 0.0, 2.0]]), quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
                 scales=torch.tensor([[1.0, 1.0]]), opacities=torch.tensor([0.5]), colors=torch.ones(1, 3))
    out = render(scene, viewmats, Ks, 1, 1)
    assert out.alphas.shape == (1, 1, 1, 1)
    assert abs(float(out.alphas.detach()) - 0.5) < 1e-6  # a face-on surfel's centre: alpha = opacity
    assert abs(float(out.median_depths.detach()) - 2.0) < 1e-6


def test_huge_image_is_a_clear_error():
    viewmats, Ks = random_cameras(1, 16, 16)
    with pytest.raises(ValueError, match="render smaller images"):
        render(random_surfels(3), viewmats, Ks, 10**6, 10**6)


def test_pairs_that_do_not_fit_in_memory_are_a_clear_error(monkeypatch):
    from gsplat_lib.ops import rasterize_autograd, rasterize_memory

    monkeypatch.setattr(rasterize_memory, "CHECKED_BYTES", 0)
    # Room for the 16x16 images (about 31 KB) but not for the pairs of 2000 surfels.
    monkeypatch.setattr(rasterize_memory, "available_bytes", lambda device: 100_000)
    launched = []
    monkeypatch.setattr(rasterize_autograd, "bin_pairs", lambda *args, **kwargs: launched.append(args))
    viewmats, Ks = random_cameras(1, 16, 16)
    with pytest.raises(ValueError, match=r"\(tile, surfel\) pairs needing about .* GiB is available on cpu"):
        render(random_surfels(2000), viewmats, Ks, 16, 16)
    assert not launched  # raised before the pair buffers were allocated
    # On CUDA the message offers the per-surfel records of deterministic=False, which need less.
    cuda = torch.device("cuda")
    with pytest.raises(ValueError, match="pass deterministic=False"):
        rasterize_memory.check_pair_memory(10**6, 1000, 3, False, cuda)
    with pytest.raises(ValueError) as per_item:
        rasterize_memory.check_pair_memory(10**6, 1000, 3, True, cuda)
    assert "deterministic=False" not in str(per_item.value)


@pytest.mark.parametrize("name,bad,error,match", [
    ("means", torch.zeros(4, 2), ValueError, "means must have shape"),
    ("means", torch.zeros(4, 3, dtype=torch.float64), TypeError, "means must have dtype"),
    ("quats", torch.zeros(5, 4), ValueError, "quats must have shape"),
    ("scales", torch.zeros(4, 3), ValueError, "scales must have shape"),
    ("opacities", torch.zeros(4, 1), ValueError, "opacities must have shape"),
    ("colors", torch.zeros(3, 3), ValueError, "colors must have shape"),
    ("colors", [[0.0, 0.0, 0.0]] * 4, TypeError, "colors must be a torch.Tensor"),
])
def test_bad_arguments_are_named(name, bad, error, match):
    viewmats, Ks = random_cameras(1, 16, 16)
    scene = random_surfels(4)
    scene[name] = bad
    with pytest.raises(error, match=match):
        render(scene, viewmats, Ks, 16, 16)


def test_bad_cameras_and_sizes_are_named():
    viewmats, Ks = random_cameras(1, 16, 16)
    scene = random_surfels(4)
    with pytest.raises(ValueError, match="Ks must have shape"):
        render(scene, viewmats, Ks[:, :2], 16, 16)
    with pytest.raises(ValueError, match="Ks must be pinhole"):
        render(scene, viewmats, Ks * 2, 16, 16)
    bad = viewmats.clone()
    bad[0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="viewmats contains NaN"):
        render(scene, bad, Ks, 16, 16)
    with pytest.raises(ValueError, match="width must be >= 1"):
        render(scene, viewmats, Ks, 0, 16)
    with pytest.raises(TypeError, match="height must be an int"):
        render(scene, viewmats, Ks, 16, 16.0)
    with pytest.raises(ValueError, match="need 0 < near < far"):
        render(scene, viewmats, Ks, 16, 16, near=2.0, far=1.0)
    with pytest.raises(ValueError, match="backgrounds must have shape"):
        render(scene, viewmats, Ks, 16, 16, backgrounds=torch.zeros(1, 4))
    with pytest.raises(ValueError, match="exactly one of colors"):
        rasterize_surfels(scene["means"], scene["quats"], scene["scales"], scene["opacities"], None, viewmats, Ks,
                          16, 16)
    with pytest.raises(TypeError, match="deterministic must be a bool"):
        render(scene, viewmats, Ks, 16, 16, deterministic=1)


def test_cuda_tensor_on_cpu_only_build_names_the_fix():
    import gsplat_lib

    if gsplat_lib.build_info()["cuda"] or not torch.cuda.is_available():
        pytest.skip("needs a CPU-only build on a machine with a GPU")
    viewmats, Ks = random_cameras(1, 16, 16)
    scene = {k: v.cuda() for k, v in random_surfels(4).items()}
    with pytest.raises(RuntimeError, match="built without CUDA"):
        render(scene, viewmats.cuda(), Ks.cuda(), 16, 16)


def test_opaque_stacks_match_reference():
    """Saturated surfels (alpha clamped at 0.99) stacked: the stop rule decides the same way."""
    viewmats = torch.eye(4)[None]
    Ks = torch.tensor([[[20.0, 0.0, 8.5], [0.0, 20.0, 8.5], [0.0, 0.0, 1.0]]])
    depths = torch.tensor([2.0, 2.5, 3.0, 3.5])
    scene = dict(means=torch.stack([torch.zeros(4), torch.zeros(4), depths], dim=1),
                 quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(4, 1), scales=torch.full((4, 2), 0.5),
                 opacities=torch.ones(4), colors=torch.eye(4)[:, :3])
    out = render(scene, viewmats, Ks, 16, 16)
    ref = render_reference({k: v.double() for k, v in scene.items()}, viewmats.double(), Ks.double(), 16, 16)
    for name in IMAGE_OUTPUTS:
        assert_close_scaled(getattr(out, name), ref[name], 2e-5, name)
    # Two clamped surfels leave T = 1e-4 at the centre: both kept, the third stops the pixel.
    assert abs(float(out.alphas.detach()[0, 8, 8, 0]) - (1 - 1e-4)) < 1e-6
