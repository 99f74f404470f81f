"""Many scenes in one call on CUDA: every camera equals a CUDA call with only its scene, bit for
bit, and the packed call equals the CPU's (to the rounding CUDA and CPU differ by). Needs a GPU."""

from __future__ import annotations

import pytest
import torch

import gsplat_lib
from gsplat_lib.ops.densify import accumulate_screen_stats
from gsplat_lib.ops.rasterize_scenes import check_scene_ids, plan_scene_items
from test_densify_ops import packed_stats_case
from test_knn import scene_cloud
from test_rasterize_cuda import assert_matches
from test_rasterize_scenes import assert_scenes_match, image_cotangents, packed_scenes, render

pytestmark = pytest.mark.cuda


def test_cuda_each_camera_equals_a_cuda_call_with_only_its_scene():
    assert_scenes_match(*packed_scenes([30, 0, 45, 20, 1, 60], [2, 1, 4, 0, 1, 1], seed=1), device="cuda")


def test_cuda_upstream_semantics_too():
    assert_scenes_match(*packed_scenes([30, 0, 45, 20, 1], [2, 1, 3, 0, 1], seed=14), semantics="upstream",
                        device="cuda")


def test_cuda_sh_colours_and_other_channel_counts():
    params, *rest = packed_scenes([25, 40, 15], [1, 3, 2], channels=3, seed=2)
    params["colors"] = torch.randn(params["means"].shape[0], 9, 3, generator=torch.Generator().manual_seed(3)) * 0.3
    assert_scenes_match(params, *rest, sh_degree=2, device="cuda")
    for channels in (1, 5):
        assert_scenes_match(*packed_scenes([12, 30], [2, 1], channels=channels, seed=4 + channels), device="cuda")


def test_cuda_packed_call_matches_the_cpu():
    params, scene_ids, viewmats, Ks, camera_scene_ids, backgrounds = packed_scenes([40, 25, 30], [2, 1, 2], seed=8)
    cotangents = image_cotangents(viewmats.shape[0], 3)
    ids = dict(scene_ids=scene_ids, camera_scene_ids=camera_scene_ids)
    cpu = render(params, viewmats, Ks, backgrounds, cotangents, device="cpu", **ids)
    cuda = render(params, viewmats, Ks, backgrounds, cotangents, device="cuda", **ids)
    assert_matches(cuda, cpu, rtol=1e-3)


def test_cuda_plan_equals_the_compiled_cpu_plan():
    g = torch.Generator().manual_seed(9)
    scene_ids = torch.randint(0, 7, (5000,), generator=g)
    camera_scene_ids = torch.tensor([3, 0, 6, 3, 2, 9, 9, 3])
    checked = check_scene_ids(scene_ids, camera_scene_ids, 5000, 8, torch.device("cpu"))
    cpu = plan_scene_items(*checked, use_torch=False)
    cuda = plan_scene_items(*[t.cuda() if isinstance(t, torch.Tensor) else t for t in checked])
    for name, value in cpu.buffers().items():
        assert torch.equal(getattr(cuda, name).cpu(), value), name


@pytest.mark.parametrize("num_items, num_surfels", [(200000, 30000), (40, 1), (3, 10)])
def test_cuda_packed_screen_stats_equal_the_cpu(num_items, num_surfels):
    accumulators, (grad, absgrad, radii, item_surfels), _ = packed_stats_case(
        torch.Generator().manual_seed(4), num_items, num_surfels)
    gpu = [a.cuda() for a in accumulators]
    accumulate_screen_stats(*accumulators, grad, absgrad, radii, 128, 96, item_surfels=item_surfels)
    accumulate_screen_stats(*gpu, grad.cuda(), absgrad.cuda(), radii.cuda(), 128, 96, item_surfels=item_surfels.cuda())
    for a, b in zip(accumulators, gpu):
        assert torch.equal(a, b.cpu())


def test_cuda_knn_with_scene_ids_equals_the_cpu():
    points, scene_ids = scene_cloud()
    cpu = gsplat_lib.knn(points, 4, scene_ids=scene_ids)
    cuda = gsplat_lib.knn(points.cuda(), 4, scene_ids=scene_ids.cuda())
    assert torch.equal(cuda[0].cpu(), cpu[0]) and torch.equal(cuda[1].cpu(), cpu[1])
