"""Training throughput and peak memory on the built-in synthetic scene.

    python benchmarks/bench_train.py [--steps 200] [--batch-size 1] [--out bench_train.json]

Each configuration runs in its own process (so the peak-memory figures are its own):

- ``gsplat_lib`` on CPU: the full 2DGS recipe of ``gsplat-train`` (densification included,
  with the schedule of a ``--steps`` run); peak memory = the process's peak RSS
  (``resource.getrusage(...).ru_maxrss``: tensors live outside Python's allocator, so
  tracemalloc would not see them);
- a "fixed loop" without densification (same initial surfels, L1 + D-SSIM, Adam with the
  2DGS learning rates) through gsplat_lib's rasterizer, on CPU and, when a GPU is present,
  on CUDA (peak memory = ``torch.cuda.max_memory_allocated``);
- the same fixed loop through nerfstudio gsplat's ``rasterization_2dgs`` when gsplat is
  importable and a GPU is present (gsplat's trainer is a script, not an importable API),
  else skipped with the reason.

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _scene():
    from gsplat_lib.data import synthetic_scene_data

    return synthetic_scene_data()


def _worker_recipe(device: str, steps: int, batch_size: int, scene=None, warmup_steps: int = 0,
                   intermediate_checkpoints: bool = True) -> dict:
    """gsplat-train's training stage (the full 2DGS recipe, scaled to ``steps``) on ``scene``
    (default: the built-in scene). ``seconds`` is the whole stage (setup and the final
    checkpoint included); ``steady_steps_per_second`` counts the steps after ``warmup_steps``."""
    import torch

    from gsplat_lib.train import TrainConfig, Trainer
    from gsplat_lib.train.monitor import TrainingMonitor

    cuda = device.startswith("cuda")

    class StepClock(TrainingMonitor):
        def __init__(self):
            self.finished_at = {}

        def started(self, model, scene, config, first_step, **run_details):
            self.finished_at[first_step - 1] = time.perf_counter()

        def step_finished(self, step, model):
            if cuda:
                torch.cuda.synchronize()
            self.finished_at[step] = time.perf_counter()

    scene = _scene() if scene is None else scene
    clock = StepClock()
    with tempfile.TemporaryDirectory() as output:
        config = TrainConfig(
            output=output, iterations=steps, batch_size=batch_size, device=device, progress=False,
            checkpoint_every=None if intermediate_checkpoints else steps,
        )
        trainer = Trainer(config, scene=scene, log=lambda message: None, monitor=clock)
        trainer.run_dir.claim(config.result_settings(), config.to_dict())
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        model, _ = trainer.train()
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    steady_seconds = clock.finished_at[steps] - clock.finished_at[warmup_steps]
    peak = (
        torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    )
    return {
        "steps_per_second": steps / seconds,
        "seconds": seconds,
        "steady_steps_per_second": (steps - warmup_steps) / steady_seconds,
        "peak_memory_mib": peak,
        "memory_kind": "cuda max_memory_allocated" if device.startswith("cuda") else "process peak RSS",
        "final_surfels": model.num_surfels,
    }


def _worker_fixed_loop(library: str, device: str, steps: int, batch_size: int, scene=None,
                       warmup_steps: int = 0) -> dict:
    """A plain loop without densification (same initial surfels, L1 + D-SSIM, Adam with the
    2DGS learning rates) through gsplat_lib's or nerfstudio gsplat's 2DGS rasterizer, on
    ``scene`` (default: the built-in scene); ``warmup_steps`` more run before the clock starts."""
    import numpy as np
    import torch

    from gsplat_lib import GaussianModel
    from gsplat_lib.train import losses

    scene = _scene() if scene is None else scene
    model = GaussianModel.from_points(
        torch.from_numpy(scene.points).to(device), torch.from_numpy(scene.point_colors).to(device),
        scene_extent=scene.scene_extent, max_steps=steps,
    )
    viewmats = torch.from_numpy(np.stack([c.viewmat for c in scene.train])).to(device)
    Ks = torch.from_numpy(np.stack([c.K for c in scene.train])).to(device)
    targets = torch.from_numpy(np.stack([c.image for c in scene.train])).to(device)
    width, height = scene.train[0].width, scene.train[0].height
    if library == "gsplat":
        from gsplat import rasterization_2dgs

        def render(batch):
            scales = torch.cat([model.scales, torch.zeros_like(model.scales[:, :1])], dim=1)
            return rasterization_2dgs(
                model.means, model.quats, scales, model.opacities, model.sh, viewmats[batch], Ks[batch],
                width, height, sh_degree=0,
            )[0]
    else:

        def render(batch):
            return model.render(viewmats[batch], Ks[batch], width, height).colors

    cuda = device.startswith("cuda")
    generator = torch.Generator().manual_seed(0)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for step in range(warmup_steps + steps):
        if step == warmup_steps:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
        batch = torch.randperm(len(scene.train), generator=generator)[:batch_size].to(device)
        colors = render(batch)
        loss = 0.8 * losses.l1_loss(colors, targets[batch]) + 0.2 * losses.dssim_loss(colors, targets[batch])
        loss.backward()
        model.optimizer.step()
        model.optimizer.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        "steps_per_second": steps / seconds,
        "seconds": seconds,
        "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "memory_kind": "cuda max_memory_allocated" if cuda else "process peak RSS",
        "final_surfels": model.num_surfels,
    }


def _run_worker(kind: str, args) -> dict:
    """Runs one configuration in a fresh process; returns its JSON result or the reason it was skipped."""
    command = [sys.executable, __file__, "--worker", kind, "--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    import gsplat_lib

    # The worker imports the gsplat_lib this process imported (an installed one, or the tree's
    # with PYTHONPATH=.), not the source tree by default: without its compiled core it fails.
    package_parent = str(Path(gsplat_lib.__file__).resolve().parents[1])
    environment = {**os.environ, "PYTHONPATH": package_parent + os.pathsep + os.environ.get("PYTHONPATH", "")}
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if completed.returncode != 0:
        return {"error": completed.stderr.strip().splitlines()[-1] if completed.stderr.strip() else "failed"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="training steps per configuration (default 200)")
    parser.add_argument("--batch-size", type=int, default=1, help="cameras per step (default 1)")
    parser.add_argument("--out", type=Path, default=Path("bench_train.json"), help="JSON output path")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None:
        library, device = args.worker.split("/")
        if library == "recipe":
            result = _worker_recipe(device, args.steps, args.batch_size)
        else:
            result = _worker_fixed_loop(library, device, args.steps, args.batch_size)
        print(json.dumps(result))
        return 0

    import torch

    import gsplat_lib

    rows = {}
    rows["gsplat_lib cpu, recipe"] = _run_worker("recipe/cpu", args)
    rows["gsplat_lib cpu, fixed loop"] = _run_worker("gsplat_lib/cpu", args)
    if not torch.cuda.is_available():
        rows["gsplat_lib cuda"] = {"skipped": "no CUDA device"}
    elif not gsplat_lib.build_info()["cuda"]:
        rows["gsplat_lib cuda"] = {"skipped": "this build of gsplat_lib has no CUDA backend"}
    else:
        rows["gsplat_lib cuda, recipe"] = _run_worker("recipe/cuda", args)
        rows["gsplat_lib cuda, fixed loop"] = _run_worker("gsplat_lib/cuda", args)
    try:
        import gsplat  # noqa: F401

        gsplat_available = True
    except ImportError:
        gsplat_available = False
    if not gsplat_available:
        rows["gsplat 2dgs, fixed loop"] = {"skipped": "gsplat is not installed"}
    elif not torch.cuda.is_available():
        rows["gsplat 2dgs, fixed loop"] = {"skipped": "gsplat needs a CUDA device"}
    else:
        rows["gsplat 2dgs, fixed loop"] = _run_worker("gsplat/cuda", args)

    print(f"training on the built-in scene (96x72, 21 training views), {args.steps} steps, batch {args.batch_size}")
    print(f"{'configuration':32s} {'steps/s':>9s} {'peak MiB':>10s} {'surfels':>9s}  memory measure / note")
    for name, row in rows.items():
        if "steps_per_second" in row:
            print(
                f"{name:32s} {row['steps_per_second']:9.2f} {row['peak_memory_mib']:10.1f} "
                f"{row['final_surfels']:9d}  {row['memory_kind']}"
            )
        else:
            print(f"{name:32s} {'-':>9s} {'-':>10s} {'-':>9s}  {row.get('skipped') or row.get('error')}")
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "torch": torch.__version__,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "results": rows,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
