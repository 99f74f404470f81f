"""A packed multi-scene GaussianModel: initialised per scene, rendered with scene ids in one call,
densified by DefaultStrategy with the scene ids following their surfels."""

from __future__ import annotations

import torch

from gsplat_lib import DefaultStrategy, GaussianModel
from rasterize_scenes import random_cameras

WIDTH = HEIGHT = 32


def two_scenes():
    g = torch.Generator().manual_seed(0)
    sizes = [120, 80]
    xyz = torch.cat([torch.rand(n, 3, generator=g) - 0.5 for n in sizes])  # overlapping in space
    rgb = torch.rand(sum(sizes), 3, generator=g)
    scene_ids = torch.repeat_interleave(torch.arange(2), torch.tensor(sizes))
    return xyz, rgb, scene_ids


def test_initial_scales_come_from_each_scenes_own_neighbours():
    xyz, rgb, scene_ids = two_scenes()
    packed = GaussianModel.from_points(xyz, rgb, scene_extent=1.0, sh_degree=0, scene_ids=scene_ids)
    for s in range(2):
        rows = scene_ids == s
        alone = GaussianModel.from_points(xyz[rows], rgb[rows], scene_extent=1.0, sh_degree=0)
        assert torch.equal(packed.params["log_scales"].detach()[rows], alone.params["log_scales"].detach())
    mixed = GaussianModel.from_points(xyz, rgb, scene_extent=1.0, sh_degree=0)
    assert not torch.equal(mixed.params["log_scales"], packed.params["log_scales"])


def test_a_packed_model_trains_and_densifies_with_its_scene_ids():
    xyz, rgb, scene_ids = two_scenes()
    model = GaussianModel.from_points(xyz, rgb, scene_extent=1.0, sh_degree=0, scene_ids=scene_ids)
    strategy = DefaultStrategy(refine_start=0, refine_every=3, grad_threshold=1e-9, percent_dense=0.5)
    viewmats, Ks = random_cameras(3, WIDTH, HEIGHT, seed=1, distance=2.0)
    camera_scene_ids = torch.tensor([0, 1, 1])
    target = torch.rand(3, HEIGHT, WIDTH, 3, generator=torch.Generator().manual_seed(2))
    reports = []
    for step in range(1, 7):
        result = model.render(viewmats, Ks, WIDTH, HEIGHT, scene_ids=scene_ids, camera_scene_ids=camera_scene_ids)
        assert result.item_surfels.shape[0] == int((scene_ids[None] == camera_scene_ids[:, None]).sum())
        (result.colors - target).abs().mean().backward()
        model.optimizer.step()
        model.optimizer.zero_grad(set_to_none=True)
        before = model.means.detach().clone()
        report = strategy.step_post_backward(model, result, step)
        if report is not None:
            reports.append(report)
            survivors_and_clones = slice(0, report.num_after - 2 * report.num_split)
            assert torch.equal(model.means.detach()[survivors_and_clones],
                               before[strategy.last_source[survivors_and_clones]])
            scene_ids = scene_ids[strategy.last_source]
            assert scene_ids.shape == (model.num_surfels,)
    assert len(reports) == 2 and any(r.num_after > r.num_before for r in reports)
    assert set(scene_ids.tolist()) == {0, 1}
