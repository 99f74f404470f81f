"""The CUDA rasterizer against the CPU backend (same math in csrc/core). Needs a GPU."""

import pytest
import torch

from gsplat_lib import rasterize_surfels
from rasterize_scenes import IMAGE_OUTPUTS as OUTPUTS
from rasterize_scenes import PARAMS, random_cameras, random_surfels

pytestmark = pytest.mark.cuda



def run(scene, viewmats, Ks, width, height, device, cotangent_seed=0, backgrounds=None, deterministic=True):
    leaves = {k: v.to(device).clone().requires_grad_(True) for k, v in scene.items()}
    bg = None if backgrounds is None else backgrounds.to(device).clone().requires_grad_(True)
    out = rasterize_surfels(leaves["means"], leaves["quats"], leaves["scales"], leaves["opacities"],
                            leaves["colors"], viewmats.to(device), Ks.to(device), width, height, 0.5, 12.0,
                            backgrounds=bg, deterministic=deterministic)
    g = torch.Generator().manual_seed(cotangent_seed)
    loss = sum((getattr(out, k) * torch.randn(getattr(out, k).shape, generator=g).to(device)).sum() for k in OUTPUTS)
    loss.backward()
    result = {k: getattr(out, k).detach().cpu() for k in OUTPUTS + ["radii", "means2d", "depths_surfel"]}
    result.update({f"grad_{k}": leaves[k].grad.cpu() for k in PARAMS})
    result["screen_grad"] = out.screen_grad.grad.cpu()
    result["screen_absgrad"] = out.screen_absgrad.grad.cpu()
    if bg is not None:
        result["grad_backgrounds"] = bg.grad.cpu()
    return result


def assert_matches(cuda, cpu, rtol):
    for name, expected in cpu.items():
        actual = cuda[name]
        if expected.dtype in (torch.int32, torch.int64, torch.bool):
            assert torch.equal(actual, expected), name
            continue
        scale = float(expected.abs().max()) if expected.numel() else 0.0
        error = float((actual - expected).abs().max()) if expected.numel() else 0.0
        assert error <= rtol * scale + 1e-5, f"{name}: {error:.3g} vs scale {scale:.3g}"


# The forward has a kernel for each of 1 to 4 channels (colour in registers) and one for any
# other count (colour in the output): every one of them is compared, no channels at all too
# (the backward's records then hold geometry only).
@pytest.mark.parametrize("num_surfels,channels,num_cameras", [
    (200, 3, 1), (500, 3, 3), (300, 6, 2), (50, 1, 2), (120, 2, 1), (150, 4, 2), (130, 5, 1), (160, 0, 2),
])
def test_cuda_matches_cpu(num_surfels, channels, num_cameras):
    width, height = 70, 45
    viewmats, Ks = random_cameras(num_cameras, width, height, seed=num_surfels)
    scene = random_surfels(num_surfels, channels=channels, seed=num_surfels + 1)
    backgrounds = torch.rand(num_cameras, channels)
    cpu = run(scene, viewmats, Ks, width, height, "cpu", backgrounds=backgrounds)
    cuda = run(scene, viewmats, Ks, width, height, "cuda", backgrounds=backgrounds)
    assert_matches(cuda, cpu, rtol=1e-3)


def no_surfels(channels=3):
    return {k: v[:0] for k, v in random_surfels(1, channels=channels).items()}


def all_culled(channels=3):
    scene = random_surfels(30, channels=channels, seed=9)
    scene["scales"].zero_()  # degenerate: every surfel culled, no (tile, surfel) pair
    return scene


# Launches with nothing to do (N = 0, no pairs, 1x1 images) must be skipped, not run as empty
# grids; many channels take the backward's opt-in shared memory.
@pytest.mark.parametrize("make_scene,width,height,num_cameras", [
    (no_surfels, 20, 10, 2), (all_culled, 20, 10, 2), (lambda: random_surfels(40, seed=10), 1, 1, 2),
    (lambda: random_surfels(40, seed=11), 33, 17, 1), (lambda: random_surfels(40, channels=900, seed=12), 18, 17, 1),
])
def test_cuda_matches_cpu_on_edge_cases(make_scene, width, height, num_cameras):
    viewmats, Ks = random_cameras(num_cameras, width, height, seed=13)
    scene = make_scene()
    cpu = run(scene, viewmats, Ks, width, height, "cpu")
    cuda = run(scene, viewmats, Ks, width, height, "cuda")
    assert_matches(cuda, cpu, rtol=1e-3)


def test_cuda_with_no_cameras():
    scene = random_surfels(10)
    viewmats, Ks = random_cameras(1, 8, 8, seed=14)
    result = run(scene, viewmats[:0], Ks[:0], 8, 8, "cuda")
    assert result["colors"].shape == (0, 8, 8, 3)
    for name in PARAMS:
        assert torch.equal(result[f"grad_{name}"], torch.zeros_like(scene[name])), name


def test_cuda_backward_names_too_many_channels():
    # 20000 channels need 640 KB of shared memory per block: more than any GPU offers.
    scene = random_surfels(5, channels=20_000, seed=15)
    viewmats, Ks = random_cameras(1, 16, 16, seed=16)
    with pytest.raises(ValueError, match="num_channels 20000"):
        run(scene, viewmats, Ks, 16, 16, "cuda")


def test_cuda_kernels_wait_for_work_queued_on_the_current_stream():
    viewmats, Ks = random_cameras(1, 40, 40, seed=17)
    scene = random_surfels(100, seed=18)
    expected = run(scene, viewmats, Ks, 40, 40, "cpu")
    on_device = {k: v.cuda() for k, v in scene.items()}
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        # The surfels are written on this stream only after a long sleep: kernels launched on
        # another stream would read them before that.
        torch.cuda._sleep(200_000_000)
        late = {k: v * 1 for k, v in on_device.items()}
        result = run(late, viewmats, Ks, 40, 40, "cuda")
    torch.cuda.synchronize()
    assert_matches(result, expected, rtol=1e-3)


def test_cuda_is_deterministic():
    viewmats, Ks = random_cameras(2, 96, 64, seed=3)
    scene = random_surfels(2000, seed=4)
    first = run(scene, viewmats, Ks, 96, 64, "cuda")
    second = run(scene, viewmats, Ks, 96, 64, "cuda")
    for name in first:
        assert torch.equal(first[name], second[name]), name


@pytest.mark.parametrize("channels", [3, 6])
def test_cuda_nondeterministic_backward_matches_cpu(channels):
    # deterministic=False: each surfel's per-tile gradients are added atomically into one
    # record per (camera, surfel); only the order of those sums may differ.
    viewmats, Ks = random_cameras(2, 96, 64, seed=11)
    scene = random_surfels(1500, channels=channels, seed=12)
    cpu = run(scene, viewmats, Ks, 96, 64, "cpu")
    cuda = run(scene, viewmats, Ks, 96, 64, "cuda", deterministic=False)
    assert_matches(cuda, cpu, rtol=1e-3)
    deterministic = run(scene, viewmats, Ks, 96, 64, "cuda")
    for name in OUTPUTS + ["radii", "means2d", "depths_surfel"]:
        assert torch.equal(cuda[name], deterministic[name]), name  # the forward is the same either way


def test_cuda_bad_surfels_give_no_nan():
    viewmats, Ks = random_cameras(1, 32, 32, seed=5)
    scene = random_surfels(20, seed=6)
    scene["means"][0, 0] = float("nan")
    scene["scales"][1] = 0.0
    scene["quats"][2] = 0.0
    scene["scales"][3] = float("inf")
    result = run(scene, viewmats, Ks, 32, 32, "cuda")
    for name, value in result.items():
        if value.is_floating_point():
            assert bool(torch.isfinite(value).all()), name


def test_cuda_runs_on_the_tensors_device_and_current_stream():
    device = torch.device("cuda", torch.cuda.device_count() - 1)
    viewmats, Ks = random_cameras(1, 40, 40, seed=7)
    scene = random_surfels(100, seed=8)
    expected = run(scene, viewmats, Ks, 40, 40, "cpu")
    stream = torch.cuda.Stream(device)
    with torch.cuda.device(0), torch.cuda.stream(stream):
        result = run(scene, viewmats, Ks, 40, 40, device)
    torch.cuda.synchronize(device)
    assert_matches(result, expected, rtol=1e-3)
