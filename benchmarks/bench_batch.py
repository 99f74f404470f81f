"""Many small scenes per step: one rasterizer call with scene ids against a loop of per-object calls.

The TRELLIS-style workload of issue 29: O objects of 10k-50k surfels each (sizes drawn with a
fixed seed), one 128x128 view of each. "batched" renders all of them in ONE call
(``scene_ids`` / ``camera_scene_ids``), "loop" calls ``rasterize_surfels`` once per object on
``torch.split`` parts of the same leaf tensors (what a trainer with one decoder output would
do); both sum the same loss over all images and run one backward. Times are the best of
``--repeats`` runs of the forward (no grad) and of forward+backward, the two ways alternating
run by run. Peak memory of one forward+backward: on the CPU the process's resident high-water
mark above what it held before the step (each measured in a fresh process whose large
allocations are mappings of their own, ``/proc/self/clear_refs`` resets the mark after the
inputs are built and one warm-up step), on CUDA ``torch.cuda.max_memory_allocated`` above the
inputs. Also checks once that both give the same images and gradients (bit for bit).

    python benchmarks/bench_batch.py [--objects 64,256] [--quick] [--repeats 3] [--out bench_batch.json]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import subprocess
import sys
import time

# As in bench_rasterize.py: torch's OpenMP workers hand their cores back between ops.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import gsplat_lib  # noqa: E402
from gsplat_lib import rasterize_surfels  # noqa: E402
from bench_rasterize import synchronize  # noqa: E402
from rasterize_scenes import random_cameras, random_surfels  # noqa: E402

SIZE = 128
MODES = ("batched", "loop")


def make_objects(num_objects: int, min_surfels: int, max_surfels: int, device: torch.device):
    """Packed leaves of ``num_objects`` objects, their scene ids, starts and one camera each."""
    g = torch.Generator().manual_seed(num_objects)
    counts = torch.randint(min_surfels, max_surfels + 1, (num_objects,), generator=g)
    parts = []
    for o, count in enumerate(counts.tolist()):
        size = 0.6 / count ** (1 / 3)  # the object's depth complexity stays realistic at any count
        part = random_surfels(count, seed=1000 + o, extent=0.5, scale_range=(0.25 * size, size))
        part["opacities"] = 0.05 + 0.6 * torch.rand(count, generator=g)
        parts.append(part)
    params = {k: torch.cat([p[k] for p in parts]).to(device) for k in parts[0]}
    scene_ids = torch.repeat_interleave(torch.arange(num_objects), counts).to(device)
    starts = [0] + torch.cumsum(counts, 0).tolist()
    viewmats, Ks = random_cameras(num_objects, SIZE, SIZE, seed=7, distance=2.2)
    return params, scene_ids, starts, viewmats.to(device), Ks.to(device)


def image_loss(out) -> torch.Tensor:
    return out.colors.sum() + out.depths.sum() + out.normals.sum() + out.distortions.sum()


class Workload:
    """The inputs of one benchmark size and the two ways to render them."""

    def __init__(self, num_objects, min_surfels, max_surfels, device):
        self.device = device
        params, self.scene_ids, self.starts, self.viewmats, self.Ks = make_objects(
            num_objects, min_surfels, max_surfels, device)
        self.leaves = {k: v.requires_grad_(True) for k, v in params.items()}
        self.camera_scene_ids = torch.arange(num_objects, device=device)
        self.counts = [b - a for a, b in zip(self.starts[:-1], self.starts[1:])]
        self.num_objects = num_objects

    def render(self, mode: str, grad: bool):
        """The summed loss (rendered with autograd when ``grad``) of every object's view."""
        p = self.leaves
        with torch.set_grad_enabled(grad):
            if mode == "batched":
                return image_loss(rasterize_surfels(p["means"], p["quats"], p["scales"], p["opacities"], p["colors"],
                                                   self.viewmats, self.Ks, SIZE, SIZE, scene_ids=self.scene_ids,
                                                   camera_scene_ids=self.camera_scene_ids))
            # One split per tensor (its backward is one concatenation; slicing each object out
            # would make every slice's backward a full-size zero tensor: O(objects x surfels)).
            parts = {k: torch.split(v, self.counts) for k, v in p.items()}
            loss = torch.zeros((), device=self.device)
            for o in range(self.num_objects):
                loss = loss + image_loss(rasterize_surfels(
                    parts["means"][o], parts["quats"][o], parts["scales"][o], parts["opacities"][o],
                    parts["colors"][o], self.viewmats[o:o + 1], self.Ks[o:o + 1], SIZE, SIZE))
            return loss

    def forward_backward(self, mode: str) -> None:
        for leaf in self.leaves.values():
            leaf.grad = None
        self.render(mode, grad=True).backward()

    def gradients(self, mode: str):
        self.forward_backward(mode)
        return {k: v.grad.clone() for k, v in self.leaves.items()}


def best_time_once(fn, device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def cpu_peak_bytes_here(workload: Workload, mode: str) -> int:
    """Resident high-water mark of one forward+backward above the resident size before it."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed memory goes back, so the step's own pages count
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # resets VmHWM to the current resident size
    before = _status_kib("VmRSS")
    workload.forward_backward(mode)
    return 1024 * (_status_kib("VmHWM") - before)


def cpu_peak_bytes(args, num_objects: int, mode: str) -> int:
    """cpu_peak_bytes_here in a fresh process, so that nothing an earlier case freed is reused."""
    command = [sys.executable, __file__, "--memory-of", mode, "--objects", str(num_objects),
               "--min-surfels", str(args.min_surfels), "--max-surfels", str(args.max_surfels)]
    # Every large allocation its own mapping, returned when freed: the mark then follows what is live.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return int(done.stdout.strip().splitlines()[-1])


def cuda_peak_bytes(workload: Workload, mode: str) -> int:
    gc.collect()
    synchronize(workload.device)
    base = torch.cuda.memory_allocated(workload.device)
    torch.cuda.reset_peak_memory_stats(workload.device)
    workload.forward_backward(mode)
    synchronize(workload.device)
    return torch.cuda.max_memory_allocated(workload.device) - base


def check_equal(workload: Workload) -> bool:
    """Both ways give the same loss and gradients, bit for bit."""
    batched, loop = workload.gradients("batched"), workload.gradients("loop")
    return all(torch.equal(batched[k], loop[k]) for k in batched)


def run_case(args, num_objects: int, device: torch.device):
    workload = Workload(num_objects, args.min_surfels, args.max_surfels, device)
    surfels = workload.scene_ids.numel()
    row = dict(device=str(device), objects=num_objects, surfels=surfels, width=SIZE, height=SIZE,
               threads=gsplat_lib._backend.num_threads() if device.type == "cpu" else None,
               same_gradients=check_equal(workload))
    # Alternating rounds (batched, loop, batched, ...): a burst of the host's own load then
    # slows both sides of a round, not one case.
    for kind, run in (("forward", lambda mode: workload.render(mode, grad=False)),
                      ("forward_backward", workload.forward_backward)):
        for mode in MODES:
            row[f"{mode}_{kind}_s"] = float("inf")
            run(mode)  # warm up
        for _ in range(args.repeats):
            for mode in MODES:
                row[f"{mode}_{kind}_s"] = min(row[f"{mode}_{kind}_s"], best_time_once(lambda: run(mode), device))
    for mode in MODES:
        row[f"{mode}_peak_bytes"] = (cpu_peak_bytes(args, num_objects, mode) if device.type == "cpu"
                                     else cuda_peak_bytes(workload, mode))
    row["input_bytes"] = sum(v.numel() * v.element_size() for v in workload.leaves.values())
    row["forward_speedup"] = row["loop_forward_s"] / row["batched_forward_s"]
    row["forward_backward_speedup"] = row["loop_forward_backward_s"] / row["batched_forward_backward_s"]
    return row


def print_table(rows) -> None:
    header = (f"{'device':6s} {'objects':>7s} {'surfels':>9s} | {'fwd batched':>11s} {'fwd loop':>9s} {'ratio':>6s} | "
              f"{'f+b batched':>11s} {'f+b loop':>9s} {'ratio':>6s} | {'peak batched':>12s} {'peak loop':>10s} "
              f"{'B/surfel':>8s} | same")
    print(header, flush=True)
    print("-" * len(header))
    for r in rows:
        print(f"{r['device']:6s} {r['objects']:7d} {r['surfels']:9d} | {r['batched_forward_s']:10.3f}s "
              f"{r['loop_forward_s']:8.3f}s {r['forward_speedup']:5.2f}x | {r['batched_forward_backward_s']:10.3f}s "
              f"{r['loop_forward_backward_s']:8.3f}s {r['forward_backward_speedup']:5.2f}x | "
              f"{r['batched_peak_bytes'] / 2**20:9.0f} MiB {r['loop_peak_bytes'] / 2**20:6.0f} MiB "
              f"{r['batched_peak_bytes'] / r['surfels']:8.0f} | {r['same_gradients']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", default="64", help="comma-separated object counts (default 64; 256 too if "
                                                        "time allows: about 4x the time and memory)")
    parser.add_argument("--min-surfels", type=int, default=10_000)
    parser.add_argument("--max-surfels", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case, the best kept")
    parser.add_argument("--quick", action="store_true", help="8 objects of 2k-5k surfels, one repeat (a smoke run)")
    parser.add_argument("--out", default="bench_batch.json", help="where to write the JSON results")
    parser.add_argument("--memory-of", choices=MODES, help=argparse.SUPPRESS)  # the child of cpu_peak_bytes
    args = parser.parse_args()
    if args.quick:
        args.objects, args.min_surfels, args.max_surfels, args.repeats = "8", 2_000, 5_000, 1
    object_counts = [int(n) for n in args.objects.split(",")]

    if args.memory_of is not None:
        workload = Workload(object_counts[0], args.min_surfels, args.max_surfels, torch.device("cpu"))
        workload.forward_backward(args.memory_of)  # warm up: one-time allocations are not the step's
        print(cpu_peak_bytes_here(workload, args.memory_of))
        return

    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and gsplat_lib.build_info()["cuda"]:
        devices.append(torch.device("cuda"))
    rows = []
    for device in devices:
        for num_objects in object_counts:
            rows.append(run_case(args, num_objects, device))
            print_table(rows[-1:])
    print()
    print_table(rows)
    machine = dict(platform=platform.platform(), cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                   omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"), torch=torch.__version__,
                   gpu=torch.cuda.get_device_name() if len(devices) > 1 else None)
    with open(args.out, "w") as handle:
        json.dump(dict(benchmark="batch", repeats=args.repeats, machine=machine, build_info=gsplat_lib.build_info(),
                       rows=rows), handle, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
