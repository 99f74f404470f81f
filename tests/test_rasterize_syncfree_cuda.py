"""The CUDA schedule without host waits, on a GPU: an overflowing pair capacity grown and
redone bit-equal, and steady training steps free of synchronising calls (torch's sync debug
mode raises on any). Needs a GPU."""

import pytest
import torch

from gsplat_lib import rasterize_surfels
from gsplat_lib.ops import host_reads, pair_capacity
from rasterize_scenes import RENDERED_IMAGES, random_cameras, random_surfels

pytestmark = pytest.mark.cuda


def _render():
    device = torch.device("cuda")
    leaves = {k: v.to(device).requires_grad_(True) for k, v in random_surfels(2000, seed=1).items()}
    viewmats, Ks = random_cameras(3, 96, 64, seed=2)
    out = rasterize_surfels(leaves["means"], leaves["quats"], leaves["scales"], leaves["opacities"], leaves["colors"],
                            viewmats.to(device), Ks.to(device), 96, 64)
    g = torch.Generator().manual_seed(4)
    loss = sum((getattr(out, k) * torch.randn(getattr(out, k).shape, generator=g).to(device)).sum()
               for k in RENDERED_IMAGES)
    loss.backward()
    result = {k: getattr(out, k).detach().cpu() for k in RENDERED_IMAGES}
    result.update({f"grad_{k}": leaf.grad.cpu() for k, leaf in leaves.items()})
    return result


def test_overflow_on_cuda_is_grown_and_redone_bit_equal():
    pair_capacity.reset()
    roomy = _render()
    pair_capacity.start_at(torch.device("cuda"), 100)
    growths = pair_capacity.growths(torch.device("cuda"))
    redone = _render()
    assert pair_capacity.growths(torch.device("cuda")) == growths + 1
    for name in roomy:
        assert torch.equal(redone[name], roomy[name]), name


def test_steady_training_steps_never_synchronise(tmp_path, monkeypatch):
    from gsplat_lib.data.synthetic_scene import synthetic_scene_data
    from gsplat_lib.train import TrainConfig
    from gsplat_lib.train.trainer import Trainer

    warmup, iterations = 3, 8
    blocking = []
    original = Trainer.train_step

    def strict(self, model, strategy, step, *args, **kwargs):
        if step <= warmup:  # the first steps grow the pair capacity
            return original(self, model, strategy, step, *args, **kwargs)
        before = host_reads.counts()["blocking"]
        torch.cuda.set_sync_debug_mode("error")
        try:
            return original(self, model, strategy, step, *args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")
            blocking.append(host_reads.counts()["blocking"] - before)

    monkeypatch.setattr(Trainer, "train_step", strict)
    config = TrainConfig(output=str(tmp_path), device="cuda", iterations=iterations, progress=False, eval_every=0,
                         densify_start=iterations, densify_stop=iterations + 1, reset_every=10 * iterations)
    Trainer(config, scene=synthetic_scene_data(8, 48, 36, num_points=400), log=lambda message: None).train()
    assert blocking == [0] * (iterations - warmup)
