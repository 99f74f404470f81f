"""Training run of the exact-resume test (tests/test_model_resume.py).

    python tests/resume_worker.py IN.ckpt OUT.ckpt --until STEP

continues a checkpoint in a new process up to step ``--until`` and saves it; the test
imports :func:`run` to train the uninterrupted run and the first half in its own process.
Reports of the densification steps go next to the output (``OUT.ckpt.json``). The scene
is a fixed random surfel model rendered into four 32 x 32 cameras. Every kind of state a
trainer reads is exercised: the global torch RNG picks the cameras of each step, numpy's
draws random backgrounds, Python's shuffles the pair; the strategy densifies every 4
steps and resets opacity every 10; the SH degree grows every 7 steps.
"""

import argparse
import json
import math
import random
from pathlib import Path

import numpy as np
import torch

from gsplat_lib import DefaultStrategy, GaussianModel, load_checkpoint
from gsplat_lib.cameras import look_at

MAX_STEPS = 36
SIZE = 32
CAMERAS_PER_STEP = 2


def scene():
    """Cameras and target images: a fixed random surfel model, rendered once."""
    viewmats = torch.stack(
        [look_at((2.5 * math.cos(a), 2.5 * math.sin(a), 0.8 + 0.3 * i), up=(0.0, 0.0, 1.0)) for i, a in enumerate((0.0, 1.6, 3.2, 4.8))]
    )
    Ks = torch.tensor([[36.0, 0.0, 16.0], [0.0, 36.0, 16.0], [0.0, 0.0, 1.0]]).expand(4, 3, 3).contiguous()
    generator = torch.Generator().manual_seed(1234)
    target = GaussianModel.from_points(
        torch.rand(200, 3, generator=generator) - 0.5, torch.rand(200, 3, generator=generator),
        scene_extent=1.0, sh_degree=0, seed=1,
    )
    with torch.no_grad():
        target.params["opacity_logits"].fill_(1.0)
        images = target.render(viewmats, Ks, SIZE, SIZE).colors
    return viewmats, Ks, images


def initial_run(fused_adam=True):
    generator = torch.Generator().manual_seed(99)
    model = GaussianModel.from_points(
        torch.rand(150, 3, generator=generator) - 0.5, torch.rand(150, 3, generator=generator),
        scene_extent=1.0, sh_degree=3, seed=7, max_steps=MAX_STEPS, sh_degree_interval=7, fused_adam=fused_adam,
    )
    strategy = DefaultStrategy(
        refine_start=3, refine_every=4, refine_stop=33, reset_every=10, reset_opacity_value=0.08,
        grad_threshold=0.0008, percent_dense=0.1, prune_opacity=0.07, prune_world_size=0.18,
        prune_screen_size=8.0, seed=3,
    )
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    return model, strategy, 0


def train(model, strategy, first_step, last_step, viewmats, Ks, images):
    reports = []
    for step in range(first_step, last_step + 1):
        model.update_learning_rate(step)
        model.maybe_increase_sh_degree(step)
        cameras = torch.randperm(len(viewmats))[:CAMERAS_PER_STEP].tolist()
        random.shuffle(cameras)
        backgrounds = torch.from_numpy(np.random.rand(CAMERAS_PER_STEP, 3).astype(np.float32))
        result = model.render(viewmats[cameras], Ks[cameras], SIZE, SIZE, backgrounds=backgrounds)
        loss = (result.colors - images[cameras]).abs().mean()
        loss.backward()
        model.optimizer.step()
        model.optimizer.zero_grad(set_to_none=True)
        report = strategy.step_post_backward(model, result, step)
        if report is not None:
            reports.append({"step": step, **report._asdict()})
    return reports


def run(until, out, resume_from=None, fused_adam=True):
    """Trains a fresh run (or continues ``resume_from``) up to step ``until``, saves it to
    ``out`` and writes its densification reports to ``out.json``, single-threaded and with
    deterministic algorithms; the process's thread count and determinism flag are restored.
    A fresh run uses FusedAdam unless ``fused_adam`` is False; a resumed one, its checkpoint's."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        viewmats, Ks, images = scene()
        if resume_from is None:
            model, strategy, last_step = initial_run(fused_adam)
        else:
            checkpoint = load_checkpoint(resume_from)
            model, strategy, last_step = checkpoint.model, checkpoint.strategy, checkpoint.step
        reports = train(model, strategy, last_step + 1, until, viewmats, Ks, images)
        out = Path(out)
        model.save_checkpoint(out, step=until, strategy=strategy)
        out.with_name(out.name + ".json").write_text(json.dumps(reports))
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("out")
    parser.add_argument("--until", type=int, required=True)
    args = parser.parse_args()
    run(args.until, args.out, resume_from=args.checkpoint)


if __name__ == "__main__":
    main()
