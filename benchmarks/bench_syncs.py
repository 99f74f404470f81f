"""Host waits per training step: how often a steady-state step of ``gsplat-train``'s recipe
(no densification in the measured steps) makes the host wait for the device.

    python benchmarks/bench_syncs.py [--device cuda] [--steps 30] [--warmup 10] [--out bench_syncs.json]

Counts, per measured step:

- gsplat_lib's own counter (``gsplat_lib.ops.host_reads``): blocking reads, deferred reads (the
  pair total and the camera checks, read once per render at the end of its forward) and of
  those the ones that had to wait. On the CPU the CUDA schedule is forced
  (``pair_capacity.USE_ON_CPU``), so the counts are the ones CUDA makes.
- on CUDA, torch.profiler's CUDA runtime calls that make the host wait: cudaStreamSynchronize,
  cudaDeviceSynchronize, cudaEventSynchronize and synchronous cudaMemcpy. The profiler counts
  any code, so the same script run on an older checkout gives the "before" figures (the
  counter is then missing and reported as such).

Prints a table and writes JSON. benchmarks/gpu_suite.sh runs it with the other benchmarks.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter

import torch

WAITING_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy")


def _counter():
    try:
        from gsplat_lib.ops import host_reads
    except ImportError:  # a checkout from before the counter
        return None
    return host_reads


def measure(device: str, steps: int, warmup: int, width: int, height: int) -> dict:
    from gsplat_lib.data import synthetic_scene_data
    from gsplat_lib.train import TrainConfig, Trainer
    from gsplat_lib.train.monitor import TrainingMonitor

    counter = _counter()
    if device == "cpu" and counter is not None:
        from gsplat_lib.ops import pair_capacity

        pair_capacity.USE_ON_CPU = True
    iterations = warmup + steps
    state = {"reads_before": None, "reads_after": None, "profile": None}

    class Probe(TrainingMonitor):
        def step_finished(self, step, model):
            if step != warmup:
                return
            state["reads_before"] = counter.counts() if counter is not None else None
            if device.startswith("cuda"):
                torch.cuda.synchronize()
                state["profile"] = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                                      torch.profiler.ProfilerActivity.CUDA])
                state["profile"].__enter__()

        def finished(self, model):
            if state["profile"] is not None:
                state["profile"].__exit__(None, None, None)
            state["reads_after"] = counter.counts() if counter is not None else None

    with tempfile.TemporaryDirectory() as output:
        # No densification or opacity reset in the run: every measured step is a steady one.
        config = TrainConfig(output=output, device=device, iterations=iterations, progress=False, eval_every=0,
                             densify_start=iterations, densify_stop=iterations + 1, reset_every=10 * iterations)
        scene = synthetic_scene_data(16, width, height)
        Trainer(config, scene=scene, log=lambda message: None, monitor=Probe()).train()
    result = {"device": device, "steps": steps, "warmup": warmup, "width": width, "height": height}
    if counter is not None:
        before, after = state["reads_before"], state["reads_after"]
        result["counter_per_step"] = {k: (after[k] - before[k]) / steps for k in after}
    if state["profile"] is not None:
        calls = Counter(event.name for event in state["profile"].events() if event.name in WAITING_CALLS)
        result["profiler_per_step"] = {name: calls.get(name, 0) / steps for name in WAITING_CALLS}
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--height", type=int, default=72)
    parser.add_argument("--out", default="bench_syncs.json")
    args = parser.parse_args(argv)
    result = measure(args.device, args.steps, args.warmup, args.width, args.height)
    print(f"host waits per steady training step ({args.device}, {args.width}x{args.height}, {args.steps} steps "
          f"after {args.warmup})")
    for group in ("counter_per_step", "profiler_per_step"):
        for name, value in result.get(group, {}).items():
            print(f"  {group.split('_')[0]:<9} {name:<24} {value:8.2f}")
    if "counter_per_step" not in result:
        print("  counter   (not in this checkout)")
    with open(args.out, "w") as file:
        json.dump(result, file, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
