"""Data-parallel training on CPU: ``torchrun --nproc-per-node=R`` against one process, same
total batch, on the built-in scene.

    python benchmarks/bench_data_parallel.py [--steps 150] [--batch-size 2] [--ranks 2] [--width 96 --height 72]
                                             [--out bench_data_parallel.json]

One process runs with as many torch threads as the ranks together (all cores) and with one;
each rank runs one thread. Steps/s is the training stage's own figure (rank 0's for torchrun),
with the full 2DGS recipe (densification included). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path


def _train(command, output: Path, env) -> float:
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, cwd=output.parent)
    marker = json.loads((output / "stages" / "train.FINISHED.json").read_text())
    return float(marker["results"]["steps_per_second"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--width", type=int, default=None, help="image size of the built-in scene (default: its own)")
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--out", default="bench_data_parallel.json")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        scene = folder / "scene"
        from gsplat_lib.data import make_synthetic_scene

        size = {"width": args.width, "height": args.height} if args.width and args.height else {}
        make_synthetic_scene(scene, **size)
        common = ["--data", str(scene), "--iterations", str(args.steps), "--batch-size", str(args.batch_size),
                  "--no-progress", "--no-mesh", "--test-every", "0"]
        runs = [
            (f"1 process, {args.ranks} threads", [sys.executable, "-m", "gsplat_lib.train", "--num-threads", str(args.ranks)]),
            ("1 process, 1 thread", [sys.executable, "-m", "gsplat_lib.train", "--num-threads", "1"]),
            (f"torchrun, {args.ranks} ranks x 1 thread", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                         f"--nproc-per-node={args.ranks}", "-m", "gsplat_lib.train",
                                                         "--num-threads", "1"]),
        ]
        for index, (name, command) in enumerate(runs):
            output = folder / f"run{index}"
            rows.append({"run": name, "steps_per_second": _train([*command, *common, "--output", str(output)], output, env)})
    baseline = rows[0]["steps_per_second"]
    for row in rows:
        row["ratio_to_first"] = row["steps_per_second"] / baseline
    print(f"{'run':34s} {'steps/s':>9s} {'ratio':>7s}")
    for row in rows:
        print(f"{row['run']:34s} {row['steps_per_second']:9.2f} {row['ratio_to_first']:7.2f}")
    result = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "steps": args.steps,
              "batch_size": args.batch_size, "ranks": args.ranks, "width": args.width, "height": args.height,
              "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
