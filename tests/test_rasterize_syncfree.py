"""The CUDA schedule without host waits (docs/design.md, "Pair capacity"), run on the CPU:
pair buffers from a capacity kept across calls, an overflow grown and redone, the pair total
and the camera checks read once per call at the end of the forward, and no blocking read."""

import math

import pytest
import torch

from gsplat_lib import rasterize_surfels
from gsplat_lib.ops import host_reads, pair_capacity
from gsplat_lib.ops.rasterize_autograd import UNUSED_KEY, bin_pairs
from rasterize_scenes import RENDERED_IMAGES, random_cameras, random_surfels

CPU = torch.device("cpu")
WIDTH, HEIGHT = 40, 30


@pytest.fixture
def cuda_schedule(monkeypatch):
    """The CUDA schedule on the CPU, from no capacity."""
    monkeypatch.setattr(pair_capacity, "USE_ON_CPU", True)
    pair_capacity.reset()
    yield
    pair_capacity.reset()


def render(scene_ids=None, backgrounds=True, viewmats=None, Ks=None, width=WIDTH, height=HEIGHT):
    """Images, every gradient and the statistics of a 3-camera render with random cotangents."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in random_surfels(300, seed=1).items()}
    default_viewmats, default_Ks = random_cameras(3, width, height, seed=2)
    viewmats = default_viewmats if viewmats is None else viewmats
    Ks = default_Ks if Ks is None else Ks
    bg = torch.rand(3, 3, generator=torch.Generator().manual_seed(3)).requires_grad_(True) if backgrounds else None
    ids = scene_ids or {}
    out = rasterize_surfels(leaves["means"], leaves["quats"], leaves["scales"], leaves["opacities"], leaves["colors"],
                            viewmats, Ks, width, height, backgrounds=bg, **ids)
    g = torch.Generator().manual_seed(4)
    loss = sum((getattr(out, k) * torch.randn(getattr(out, k).shape, generator=g)).sum() for k in RENDERED_IMAGES)
    loss.backward()
    result = {k: getattr(out, k).detach() for k in RENDERED_IMAGES + ["radii", "evaluated_pairs", "backward_pairs"]}
    result.update({f"grad_{k}": leaf.grad for k, leaf in leaves.items()})
    result.update(screen_grad=out.screen_grad.grad, screen_absgrad=out.screen_absgrad.grad)
    if bg is not None:
        result["grad_backgrounds"] = bg.grad
    return result


def assert_bit_equal(actual, expected):
    assert actual.keys() == expected.keys()
    for name in expected:
        assert torch.equal(actual[name], expected[name]), name


def scene_ids_of(num_surfels=300):
    """The scene id arguments of render (two scenes); the same tensors each call, as in training."""
    return dict(scene_ids=torch.arange(num_surfels) % 2, camera_scene_ids=torch.tensor([1, 0, 1]))


@pytest.mark.parametrize("scenes", [False, True], ids=["dense", "scene_ids"])
def test_overflow_is_grown_and_redone_bit_equal(scenes, cuda_schedule, monkeypatch):
    ids = scene_ids_of() if scenes else None
    monkeypatch.setattr(pair_capacity, "USE_ON_CPU", False)
    expected = render(ids)  # the CPU's own pass, which needs no capacity (and reads the scene plan)
    monkeypatch.setattr(pair_capacity, "USE_ON_CPU", True)
    pair_capacity.start_at(CPU, 50)  # far fewer than the pairs
    before = host_reads.counts()
    overflowed = render(ids)
    reads = host_reads.counts()
    assert pair_capacity.growths(CPU) == 1 and pair_capacity.capacity(CPU) > 50
    assert reads["blocking"] == before["blocking"] and reads["deferred"] == before["deferred"] + 1
    assert_bit_equal(overflowed, expected)
    assert_bit_equal(render(ids), expected)  # within the grown capacity: no redo
    assert pair_capacity.growths(CPU) == 1


def test_each_view_keeps_its_own_capacity(cuda_schedule, monkeypatch):
    # A larger image (a held-out render, a viewer frame) grows its own capacity; the training
    # view's stays as it was, so its calls keep sorting buffers of their own size.
    monkeypatch.setattr(pair_capacity, "MIN_CAPACITY", 1)  # capacities follow the totals
    ids = scene_ids_of()
    render(ids)
    small = pair_capacity.capacity(CPU, (3, WIDTH, HEIGHT))
    big_view = (3, 4 * WIDTH, 4 * HEIGHT)
    render(ids, width=big_view[1], height=big_view[2])
    assert pair_capacity.capacity(CPU, big_view) > small
    assert pair_capacity.capacity(CPU, (3, WIDTH, HEIGHT)) == small
    before = host_reads.counts()
    render(ids)
    assert host_reads.counts()["blocking"] == before["blocking"] and pair_capacity.growths(CPU) == 2


def test_first_call_reads_the_total_then_repeated_calls_keep_the_capacity(cuda_schedule):
    ids = scene_ids_of()
    render(ids)
    capacity, growths = pair_capacity.capacity(CPU), pair_capacity.growths(CPU)
    assert growths == 1 and capacity >= pair_capacity.MIN_CAPACITY
    before = host_reads.counts()
    for _ in range(3):
        render(ids)  # the same id tensors: their plan is reused, no read
    reads = host_reads.counts()
    assert (pair_capacity.capacity(CPU), pair_capacity.growths(CPU)) == (capacity, growths)
    assert reads["blocking"] == before["blocking"]
    assert reads["deferred"] == before["deferred"] + 3


def test_unused_pair_slots_sort_last_past_every_tile(cuda_schedule):
    viewmats, Ks = random_cameras(2, WIDTH, HEIGHT, seed=5)
    out = rasterize_surfels(**random_surfels(200, seed=6), viewmats=viewmats, Ks=Ks, width=WIDTH, height=HEIGHT)
    assert out.colors.isfinite().all()
    # bin_pairs directly: exact buffers, then twice the pairs' slots, then half of them.
    from gsplat_lib.ops.rasterize import raster_settings

    settings = raster_settings(1, 3, 3, 64, 32, 0.01, 100.0, CPU)
    depths = torch.tensor([2.0, 1.0, 3.0])
    rects = torch.tensor([[0, 0, 64, 32], [10, 0, 30, 16], [0, 0, 0, 0]], dtype=torch.int32)
    tiles = settings["tiles_x"] * settings["tiles_y"]
    counts = torch.tensor([tiles, -(-30 // settings["tile_width"]), 0])
    pair_ends = torch.cumsum(counts, 0)
    total = int(pair_ends[-1])
    exact = bin_pairs(depths, rects, pair_ends, dict(settings, num_pairs=total), use_torch=True)
    roomy = bin_pairs(depths, rects, pair_ends, dict(settings, num_pairs=2 * total), use_torch=True)
    assert torch.equal(roomy[0], exact[0]) and int(roomy[0][-1]) == total
    assert torch.equal(roomy[1][:total], exact[1]) and torch.equal(roomy[2][:total], exact[2])
    assert UNUSED_KEY >> 32 >= tiles
    short = bin_pairs(depths, rects, pair_ends, dict(settings, num_pairs=total // 2), use_torch=True)
    assert int(short[0][-1]) == total // 2 and int(short[2].max()) < total // 2  # only the first emitted


@pytest.mark.parametrize("bad, message", [
    ("viewmats", "viewmats contains NaN or Inf"),
    ("Ks", "Ks contains NaN or Inf"),
    ("pinhole", "Ks must be pinhole intrinsics"),
    ("backgrounds", "backgrounds contains NaN or Inf"),
    ("huge_backgrounds", "backgrounds holds values beyond"),
])
def test_bad_cameras_raise_the_same_errors_from_the_device_checks(bad, message, cuda_schedule):
    viewmats, Ks = random_cameras(3, WIDTH, HEIGHT, seed=2)
    backgrounds = torch.rand(3, 3)
    if bad == "viewmats":
        viewmats[1, 0, 3] = math.nan
    elif bad == "Ks":
        Ks[2, 0, 0] = math.inf
    elif bad == "pinhole":
        Ks[0, 2, 0] = 0.5
    elif bad == "backgrounds":
        backgrounds[1, 2] = math.nan
    else:
        backgrounds[0, 0] = 1e30
    scene = random_surfels(100, seed=1)
    before = host_reads.counts()
    with pytest.raises(ValueError, match=message):
        rasterize_surfels(**scene, viewmats=viewmats, Ks=Ks, width=WIDTH, height=HEIGHT, backgrounds=backgrounds)
    assert host_reads.counts()["blocking"] == before["blocking"] + 1  # the details, read only on failure


def test_trainer_steps_make_no_blocking_read(cuda_schedule, tmp_path, monkeypatch):
    from gsplat_lib.data.synthetic_scene import synthetic_scene_data
    from gsplat_lib.train import TrainConfig
    from gsplat_lib.train.trainer import Trainer

    per_step = []
    original = Trainer.train_step

    def counted(self, *args, **kwargs):
        before = host_reads.counts()
        stats = original(self, *args, **kwargs)
        after = host_reads.counts()
        per_step.append({k: after[k] - before[k] for k in after})
        return stats

    monkeypatch.setattr(Trainer, "train_step", counted)
    config = TrainConfig(output=str(tmp_path), iterations=12, progress=True, eval_every=0)  # densifies too
    trainer = Trainer(config, scene=synthetic_scene_data(8, 24, 18, num_points=200), log=lambda message: None)
    before = host_reads.counts()
    trainer.train()
    total = host_reads.counts()["blocking"] - before["blocking"]
    assert len(per_step) == 12
    assert all(step["blocking"] == 0 and step["deferred"] == 1 for step in per_step)
    assert pair_capacity.growths(CPU) >= 1
    assert total == 2  # the progress bar's loss and PSNR, read at steps 10 and 12
