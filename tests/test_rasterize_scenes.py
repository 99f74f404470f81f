"""Many scenes in one call (scene ids): every camera's image, per-item outputs and gradients
equal, bit for bit, a call with only its scene's surfels and cameras."""

from __future__ import annotations

import pytest
import torch

from gsplat_lib import rasterize_surfels
from gsplat_lib.ops.densify import accumulate_screen_stats
from gsplat_lib.ops.rasterize_scenes import check_scene_ids, plan_scene_items
from rasterize_scenes import IMAGE_OUTPUTS, PARAMS, random_cameras, random_surfels

WIDTH, HEIGHT = 37, 29
ITEM_OUTPUTS = ["radii", "means2d", "depths_surfel"]


def packed_scenes(surfels_per_scene, cameras_per_scene, channels=3, seed=0):
    """Scenes of the given sizes, their surfels and cameras shuffled together: (params, scene_ids,
    viewmats, Ks, camera_scene_ids, backgrounds)."""
    g = torch.Generator().manual_seed(seed)
    num_surfels, num_cameras = sum(surfels_per_scene), sum(cameras_per_scene)
    params = random_surfels(num_surfels, channels=channels, seed=seed, scale_range=(0.1, 0.4))
    scene_ids = torch.repeat_interleave(torch.arange(len(surfels_per_scene)), torch.tensor(surfels_per_scene))
    scene_ids = scene_ids[torch.randperm(num_surfels, generator=g)]
    viewmats, Ks = random_cameras(num_cameras, WIDTH, HEIGHT, seed=seed + 1, distance=3.0)
    camera_scene_ids = torch.repeat_interleave(torch.arange(len(cameras_per_scene)), torch.tensor(cameras_per_scene))
    camera_scene_ids = camera_scene_ids[torch.randperm(num_cameras, generator=g)]
    backgrounds = torch.rand(num_cameras, channels, generator=g)
    return params, scene_ids, viewmats, Ks, camera_scene_ids, backgrounds


def render(params, viewmats, Ks, backgrounds, cotangents, sh_degree=None, device="cpu", semantics="gsplat_lib",
           **scene_ids):
    """A render on ``device``, its loss sum(output * cotangent) backpropagated: outputs, per-item
    outputs, gradients (on the CPU)."""
    leaves = {k: v.to(device).clone().requires_grad_(True) for k, v in params.items()}
    bg = backgrounds.to(device).clone().requires_grad_(True)
    viewmats, Ks = viewmats.to(device), Ks.to(device)
    cotangents = {k: v.to(device) for k, v in cotangents.items()}
    scene_ids = {k: v.to(device) for k, v in scene_ids.items()}
    color_args = dict(colors=leaves["colors"]) if sh_degree is None else dict(sh=leaves["colors"],
                                                                                sh_degree=sh_degree)
    out = rasterize_surfels(leaves["means"], leaves["quats"], leaves["scales"], leaves["opacities"],
                            viewmats=viewmats, Ks=Ks, width=WIDTH, height=HEIGHT, near=0.3, far=20.0,
                            backgrounds=bg, semantics=semantics, **color_args, **scene_ids)
    loss = sum((getattr(out, k) * cotangents[k]).sum() for k in IMAGE_OUTPUTS)
    loss.backward()
    result = {k: getattr(out, k).detach() for k in IMAGE_OUTPUTS + ITEM_OUTPUTS}
    result.update({f"grad_{k}": leaves[k].grad for k in PARAMS})
    if out.center_grad is not None:
        result["center_grad"] = out.center_grad.grad
    result.update(grad_backgrounds=bg.grad, screen_grad=out.screen_grad.grad, screen_absgrad=out.screen_absgrad.grad,
                  item_cameras=out.item_cameras, item_surfels=out.item_surfels)
    return {k: None if v is None else v.cpu() for k, v in result.items()}


def image_cotangents(num_cameras, channels, seed=5):
    g = torch.Generator().manual_seed(seed)
    shapes = dict(colors=channels, normals=3, normals_world=3)
    return {k: torch.randn(num_cameras, HEIGHT, WIDTH, shapes.get(k, 1), generator=g) for k in IMAGE_OUTPUTS}


def assert_scenes_match(params, scene_ids, viewmats, Ks, camera_scene_ids, backgrounds, sh_degree=None,
                        bitwise_colors=True, device="cpu", semantics="gsplat_lib"):
    channels = backgrounds.shape[1]
    cotangents = image_cotangents(viewmats.shape[0], channels)
    packed = render(params, viewmats, Ks, backgrounds, cotangents, sh_degree, device, semantics, scene_ids=scene_ids,
                    camera_scene_ids=camera_scene_ids)
    assert packed["item_cameras"].shape == packed["item_surfels"].shape == packed["radii"].shape[:1]
    covered = torch.zeros(scene_ids.shape[0], dtype=torch.bool)
    for s in range(int(max(scene_ids.max(), camera_scene_ids.max())) + 1):
        cameras = torch.nonzero(camera_scene_ids == s).flatten()
        surfels = torch.nonzero(scene_ids == s).flatten()
        if cameras.numel() == 0:
            continue
        covered[surfels] = True
        alone = render({k: v[surfels] for k, v in params.items()}, viewmats[cameras], Ks[cameras],
                       backgrounds[cameras], {k: v[cameras] for k, v in cotangents.items()}, sh_degree, device,
                       semantics)
        for k in IMAGE_OUTPUTS:
            assert torch.equal(packed[k][cameras], alone[k]), (s, k)
        assert torch.equal(packed["grad_backgrounds"][cameras], alone["grad_backgrounds"]), s
        for j, c in enumerate(cameras.tolist()):
            rows = packed["item_cameras"] == c
            assert torch.equal(packed["item_surfels"][rows], surfels), (s, c)
            for k in ITEM_OUTPUTS + ["screen_grad", "screen_absgrad"] + (["center_grad"] if "center_grad" in packed
                                                                           else []):
                assert torch.equal(packed[k][rows], alone[k][j]), (s, c, k)
        for k in PARAMS:
            expected, actual = alone[f"grad_{k}"], packed[f"grad_{k}"][surfels]
            if k == "colors" and not bitwise_colors:
                torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-7)
            else:
                assert torch.equal(actual, expected), (s, k)
    for k in PARAMS:  # surfels of scenes no camera sees get no gradient
        assert not packed[f"grad_{k}"][~covered].any(), k
    return packed


def test_each_camera_equals_a_call_with_only_its_scene():
    # Scene 1 has no surfels, scene 3 no camera, scene 4 one surfel; up to 4 cameras a scene.
    scenes = packed_scenes([30, 0, 45, 20, 1, 60], [2, 1, 4, 0, 1, 1], seed=1)
    packed = assert_scenes_match(*scenes)
    assert packed["radii"].shape[0] == 30 * 2 + 45 * 4 + 1 + 60  # items, not C x N


def test_upstream_semantics_too():
    assert_scenes_match(*packed_scenes([30, 0, 45, 20, 1], [2, 1, 3, 0, 1], seed=14), semantics="upstream")


def test_sh_colours_and_other_channel_counts():
    params, *rest = packed_scenes([25, 40, 15], [1, 3, 2], channels=3, seed=2)
    g = torch.Generator().manual_seed(3)
    params["colors"] = torch.randn(params["means"].shape[0], 9, 3, generator=g) * 0.3  # SH degree 2
    assert_scenes_match(params, *rest, sh_degree=2)
    for channels in (1, 5):
        assert_scenes_match(*packed_scenes([12, 30], [2, 1], channels=channels, seed=4 + channels))


def test_many_cameras_of_a_scene():
    # The dense call's colour gradient sums more than 4 cameras with torch's reduction, in another
    # grouping than the packed items' ordered sum: equal to rounding, every other gradient bit for bit.
    assert_scenes_match(*packed_scenes([35, 20], [6, 1], seed=6), bitwise_colors=False)


def test_the_same_bits_for_any_thread_count():
    scenes = packed_scenes([40, 25, 30], [2, 1, 2], seed=8)
    params, scene_ids, viewmats, Ks, camera_scene_ids, backgrounds = scenes
    cotangents = image_cotangents(viewmats.shape[0], 3)
    threads = torch.get_num_threads()
    runs = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            runs.append(render(params, viewmats, Ks, backgrounds, cotangents, scene_ids=scene_ids,
                               camera_scene_ids=camera_scene_ids))
    finally:
        torch.set_num_threads(threads)
    for other in runs[1:]:
        for k, v in runs[0].items():
            assert torch.equal(v, other[k]), k


@pytest.mark.parametrize("semantics", ["gsplat_lib", "upstream"])
@pytest.mark.parametrize("group_bytes", [1, 16000])
def test_camera_groups_give_the_same_bits(monkeypatch, group_bytes, semantics):
    # The CPU backward runs camera group by camera group; a scene's cameras (shuffled among the
    # others) may then fall in several groups, whose sums are added on in camera order. One camera
    # per group (1 byte), or two or three (16000 bytes), gives the bits of one group for the whole call.
    from gsplat_lib.ops import rasterize

    scenes = packed_scenes([40, 0, 25, 30, 1], [3, 1, 1, 2, 2], seed=9)
    params, scene_ids, viewmats, Ks, camera_scene_ids, backgrounds = scenes
    cotangents = image_cotangents(viewmats.shape[0], 3)
    runs = []
    for budget in (None, group_bytes):
        monkeypatch.setattr(rasterize, "CPU_GROUP_BYTES", budget)
        runs.append(render(params, viewmats, Ks, backgrounds, cotangents, semantics=semantics, scene_ids=scene_ids,
                           camera_scene_ids=camera_scene_ids))
        # Dense: every camera sees all.
        runs.append(render(params, viewmats, Ks, backgrounds, cotangents, semantics=semantics))
    for whole, grouped in ((runs[0], runs[2]), (runs[1], runs[3])):
        for k, v in whole.items():
            assert (v is None and grouped[k] is None) or torch.equal(v, grouped[k]), k
    assert_scenes_match(*scenes, semantics=semantics)  # and still each camera's own scene, grouped


def test_compiled_plan_equals_the_torch_plan():
    g = torch.Generator().manual_seed(9)
    scene_ids = torch.randint(0, 7, (500,), generator=g)
    camera_scene_ids = torch.tensor([3, 0, 6, 3, 2, 9, 9, 3])  # scene 9 has no surfels
    checked = check_scene_ids(scene_ids, camera_scene_ids, 500, 8, torch.device("cpu"))
    compiled = plan_scene_items(*checked, use_torch=False)
    reference = plan_scene_items(*checked, use_torch=True)
    for name, value in compiled.buffers().items():
        assert torch.equal(value, getattr(reference, name)), name
    assert torch.equal(compiled.item_cameras, reference.item_cameras)
    assert compiled.num_items == int((scene_ids[None, :] == camera_scene_ids[:, None]).sum())
    # Each camera's items: its scene's surfels in index order.
    for c, s in enumerate(camera_scene_ids.tolist()):
        assert torch.equal(compiled.item_surfels[compiled.item_cameras == c], torch.nonzero(scene_ids == s).flatten())


def test_sparse_scene_ids_are_renumbered():
    scene_ids = torch.tensor([10**12, 5, 10**12, 5])
    _, _, num_scenes = check_scene_ids(scene_ids, torch.tensor([5, 10**12]), 4, 2, torch.device("cpu"))
    assert num_scenes == 2
    scenes = packed_scenes([3, 2], [1, 1], seed=10)
    params, ids, viewmats, Ks, camera_ids, backgrounds = scenes
    cotangents = image_cotangents(2, 3)
    dense_ids = render(params, viewmats, Ks, backgrounds, cotangents, scene_ids=ids, camera_scene_ids=camera_ids)
    sparse_ids = render(params, viewmats, Ks, backgrounds, cotangents, scene_ids=ids * 10**9 + 7,
                        camera_scene_ids=camera_ids * 10**9 + 7)
    for k, v in dense_ids.items():
        assert torch.equal(v, sparse_ids[k]), k


@pytest.mark.parametrize("surfels,cameras", [([0, 0], [1, 2]), ([0, 4], [1, 0]), ([0], [1])])
def test_empty_calls(surfels, cameras):
    params, scene_ids, viewmats, Ks, camera_scene_ids, backgrounds = packed_scenes(surfels, cameras, seed=11)
    cotangents = image_cotangents(viewmats.shape[0], 3)
    out = render(params, viewmats, Ks, backgrounds, cotangents, scene_ids=scene_ids,
                 camera_scene_ids=camera_scene_ids)
    assert out["radii"].shape == (0, 2) and out["item_surfels"].shape == (0,)
    assert torch.equal(out["colors"], backgrounds[:, None, None, :].expand(-1, HEIGHT, WIDTH, -1))
    for k in PARAMS:
        assert not out[f"grad_{k}"].any()


def test_bad_scene_ids_are_errors_naming_them():
    params, scene_ids, viewmats, Ks, camera_scene_ids, _ = packed_scenes([4, 3], [1, 1], seed=12)
    args = (params["means"], params["quats"], params["scales"], params["opacities"], params["colors"], viewmats,
            Ks, WIDTH, HEIGHT)
    cases = [
        (dict(scene_ids=scene_ids), "camera_scene_ids is required"),
        (dict(camera_scene_ids=camera_scene_ids), "scene_ids is required"),
        (dict(scene_ids=scene_ids.int(), camera_scene_ids=camera_scene_ids), "scene_ids must have dtype torch.int64"),
        (dict(scene_ids=scene_ids.float(), camera_scene_ids=camera_scene_ids), "scene_ids must have dtype"),
        (dict(scene_ids=scene_ids[:-1], camera_scene_ids=camera_scene_ids), r"scene_ids must have shape \[7\]"),
        (dict(scene_ids=scene_ids[None], camera_scene_ids=camera_scene_ids), r"scene_ids must have shape \[7\]"),
        (dict(scene_ids=scene_ids, camera_scene_ids=camera_scene_ids[:1]), r"camera_scene_ids must have shape \[2\]"),
        (dict(scene_ids=torch.where(torch.arange(7) == 3, -2, scene_ids), camera_scene_ids=camera_scene_ids),
         r"scene_ids must be >= 0, got scene_ids\[3\] = -2"),
        (dict(scene_ids=scene_ids, camera_scene_ids=torch.tensor([0, -1])), r"camera_scene_ids must be >= 0"),
        (dict(scene_ids=[0] * 7, camera_scene_ids=camera_scene_ids), "scene_ids must be a torch.Tensor"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            rasterize_surfels(*args, **kwargs)
    per_camera_colors = params["colors"][None].expand(2, -1, -1)
    with pytest.raises(ValueError, match=r"colors: with scene ids give colors \[N, D\]"):
        rasterize_surfels(*args[:4], per_camera_colors, *args[5:], scene_ids=scene_ids,
                          camera_scene_ids=camera_scene_ids)


def test_densification_statistics_accumulate_per_surfel():
    params, scene_ids, viewmats, Ks, camera_scene_ids, backgrounds = packed_scenes([30, 45, 0, 20], [2, 3, 1, 1],
                                                                                   seed=13)
    cotangents = image_cotangents(viewmats.shape[0], 3)
    packed = render(params, viewmats, Ks, backgrounds, cotangents, scene_ids=scene_ids,
                    camera_scene_ids=camera_scene_ids)
    num_surfels = scene_ids.shape[0]
    stats = [torch.zeros(num_surfels), torch.zeros(num_surfels), torch.zeros(num_surfels, dtype=torch.int32),
             torch.zeros(num_surfels)]
    accumulate_screen_stats(*stats, packed["screen_grad"], packed["screen_absgrad"], packed["radii"], WIDTH, HEIGHT,
                            item_surfels=packed["item_surfels"])
    assert int(stats[2].sum()) > 0
    for s in range(4):
        cameras, surfels = torch.nonzero(camera_scene_ids == s).flatten(), torch.nonzero(scene_ids == s).flatten()
        alone = render({k: v[surfels] for k, v in params.items()}, viewmats[cameras], Ks[cameras],
                       backgrounds[cameras], {k: v[cameras] for k, v in cotangents.items()})
        expected = [torch.zeros(surfels.numel()), torch.zeros(surfels.numel()),
                    torch.zeros(surfels.numel(), dtype=torch.int32), torch.zeros(surfels.numel())]
        accumulate_screen_stats(*expected, alone["screen_grad"], alone["screen_absgrad"], alone["radii"], WIDTH,
                                HEIGHT)
        for got, want in zip(stats, expected):
            assert torch.equal(got[surfels], want), s
