"""The CUDA rasterizer in upstream semantics against the CPU backend's (the same math in
csrc/core, the pair records 17 + D floats wide). Needs a GPU."""

import pytest
import torch

from gsplat_lib import rasterize_surfels
from rasterize_scenes import IMAGE_OUTPUTS as OUTPUTS
from rasterize_scenes import PARAMS, random_cameras, random_surfels
from test_rasterize_cuda import assert_matches

pytestmark = pytest.mark.cuda


def run(scene, viewmats, Ks, width, height, device, deterministic=True):
    leaves = {k: v.to(device).clone().requires_grad_(True) for k, v in scene.items()}
    out = rasterize_surfels(leaves["means"], leaves["quats"], leaves["scales"], leaves["opacities"],
                            leaves["colors"], viewmats.to(device), Ks.to(device), width, height, 0.2, 100.0,
                            deterministic=deterministic, semantics="upstream")
    g = torch.Generator().manual_seed(3)
    loss = sum((getattr(out, k) * torch.randn(getattr(out, k).shape, generator=g).to(device)).sum() for k in OUTPUTS)
    loss.backward()
    result = {k: getattr(out, k).detach().cpu() for k in OUTPUTS + ["radii", "means2d", "depths_surfel"]}
    result.update({f"grad_{k}": leaves[k].grad.cpu() for k in PARAMS})
    for name in ("screen_grad", "screen_absgrad", "center_grad"):
        result[name] = getattr(out, name).grad.cpu()
    return result


# No channels (the butterfly then sums 16 geometry values, the 17th alone), one, three (the
# registers' kernels), five (colour in the output), and many (the backward's opt-in shared memory).
@pytest.mark.parametrize("num_surfels,channels,num_cameras,deterministic", [
    (300, 3, 2, True), (200, 0, 1, True), (150, 1, 2, True), (130, 5, 1, True), (40, 600, 1, True),
    (300, 3, 2, False),
])
def test_cuda_matches_cpu_in_upstream_semantics(num_surfels, channels, num_cameras, deterministic):
    width, height = 70, 45
    viewmats, Ks = random_cameras(num_cameras, width, height, seed=num_surfels, distance=3.0)
    scene = random_surfels(num_surfels, channels=channels, seed=num_surfels + 2, scale_range=(0.005, 0.3))
    cpu = run(scene, viewmats, Ks, width, height, "cpu")
    cuda = run(scene, viewmats, Ks, width, height, "cuda", deterministic=deterministic)
    assert_matches(cuda, cpu, 1e-3)
