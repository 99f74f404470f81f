"""Times the surfel rasterizer: forward and forward+backward, CPU (and CUDA when present).

Reports ns per evaluated (pixel, surfel) pair: the forward's count is every pair it evaluated
(up to each pixel's saturation), the backward's every pair it revisits (up to each pixel's last
contributor); "per core" multiplies by the threads used. The CPU cases run once on one thread
(what a core costs) and once on every core (what the threads scale to: on a VM whose host takes
some of its time, that figure varies most). Also times the pure-PyTorch reference on a size
where it fits, and gsplat's ``rasterization_2dgs`` on CUDA when it is installed. On CUDA each
case also runs with ``deterministic=False`` (atomic per-surfel gradient records), and the JSON
holds each mode's CUDA memory peak over one forward+backward, counted above what was allocated
before it (the inputs), so that whatever an earlier case left behind does not count.

    python benchmarks/bench_rasterize.py [--out bench_rasterize.json] [--quick] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time

# torch's OpenMP workers busy-wait for milliseconds after each torch op, on the cores our
# threads then need; passive waiting hands the cores back (README, "CPU threads"). Must be set
# before torch loads its OpenMP runtime; a value set by the caller wins. Recorded in the JSON.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import gsplat_lib  # noqa: E402
from gsplat_lib import rasterize_surfels  # noqa: E402
from gsplat_lib.reference import rasterize_surfels_reference  # noqa: E402
from rasterize_scenes import random_cameras, random_surfels  # noqa: E402


def scene_for(num_surfels: int, device: torch.device):
    # Scales shrink with the count so the scene's depth complexity stays in a realistic range.
    size = 0.6 / num_surfels ** (1 / 3)
    scene = random_surfels(num_surfels, seed=0, extent=1.0, scale_range=(0.5 * size, 2.0 * size))
    scene["opacities"] = 0.05 + 0.6 * torch.rand(num_surfels, generator=torch.Generator().manual_seed(1))
    return {k: v.to(device) for k, v in scene.items()}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_cuda_bytes(fn, device: torch.device):
    """fn's result and the most CUDA memory it held at once above what was allocated before."""
    gc.collect()  # an earlier case's reference cycles would otherwise still hold theirs
    synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = fn()
    synchronize(device)
    return result, torch.cuda.max_memory_allocated(device) - base


def best_time(fn, device, repeats: int) -> float:
    fn()  # warm up
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def time_gsplat_lib(num_surfels, width, height, num_cameras, device, repeats, deterministic=True):
    scene = scene_for(num_surfels, device)
    viewmats, Ks = random_cameras(num_cameras, width, height, seed=3)
    viewmats, Ks = viewmats.to(device), Ks.to(device)
    leaves = {k: v.clone().requires_grad_(True) for k, v in scene.items()}

    def forward():
        with torch.no_grad():
            return rasterize_surfels(scene["means"], scene["quats"], scene["scales"], scene["opacities"],
                                     scene["colors"], viewmats, Ks, width, height)

    def forward_backward():
        out = rasterize_surfels(leaves["means"], leaves["quats"], leaves["scales"], leaves["opacities"],
                                leaves["colors"], viewmats, Ks, width, height, deterministic=deterministic)
        (out.colors.sum() + out.depths.sum() + out.normals.sum() + out.distortions.sum()).backward()
        return out

    # out's backward_pairs are filled in by the backward.
    out, peak_bytes = peak_cuda_bytes(forward_backward, device) if device.type == "cuda" else (forward_backward(), None)
    t_fwd = best_time(forward, device, repeats)
    t_fwd_bwd = best_time(forward_backward, device, repeats)
    threads = gsplat_lib._backend.num_threads() if device.type == "cpu" else 1
    fwd_pairs = int(out.evaluated_pairs.sum())
    bwd_pairs = int(out.backward_pairs.sum())
    t_bwd = max(t_fwd_bwd - t_fwd, 0.0)
    row = dict(method="gsplat_lib" if deterministic else "gsplat_lib deterministic=False", device=str(device),
               surfels=num_surfels, width=width, height=height, cameras=num_cameras, threads=threads,
               forward_s=t_fwd, forward_backward_s=t_fwd_bwd, forward_backward_peak_bytes=peak_bytes,
               forward_pairs=fwd_pairs, backward_pairs=bwd_pairs,
               forward_ns_per_pair=1e9 * t_fwd / max(fwd_pairs, 1),
               backward_ns_per_pair=1e9 * t_bwd / max(bwd_pairs, 1))
    row["forward_ns_per_pair_core"] = row["forward_ns_per_pair"] * threads
    row["backward_ns_per_pair_core"] = row["backward_ns_per_pair"] * threads
    return row


def time_reference(num_surfels, width, height, repeats):
    scene = scene_for(num_surfels, torch.device("cpu"))
    viewmats, Ks = random_cameras(1, width, height, seed=3)
    leaves = {k: v.clone().requires_grad_(True) for k, v in scene.items()}

    def run_reference():
        out = rasterize_surfels_reference(leaves["means"], leaves["quats"], leaves["scales"], leaves["opacities"],
                                          leaves["colors"], viewmats, Ks, width, height)
        (out["colors"].sum() + out["depths"].sum() + out["normals"].sum() + out["distortions"].sum()).backward()

    def run_ours():
        out = rasterize_surfels(leaves["means"], leaves["quats"], leaves["scales"], leaves["opacities"],
                                leaves["colors"], viewmats, Ks, width, height)
        (out.colors.sum() + out.depths.sum() + out.normals.sum() + out.distortions.sum()).backward()

    t_ref = best_time(run_reference, torch.device("cpu"), repeats)
    t_ours = best_time(run_ours, torch.device("cpu"), repeats)
    return dict(method="reference vs gsplat_lib", device="cpu", surfels=num_surfels, width=width, height=height,
                cameras=1, reference_forward_backward_s=t_ref, gsplat_lib_forward_backward_s=t_ours,
                speedup=t_ref / t_ours)


def time_gsplat_peer(num_surfels, width, height, num_cameras, repeats):
    try:
        from gsplat import rasterization_2dgs
    except ImportError:
        return None
    device = torch.device("cuda")
    scene = scene_for(num_surfels, device)
    viewmats, Ks = random_cameras(num_cameras, width, height, seed=3)
    viewmats, Ks = viewmats.to(device), Ks.to(device)
    scales3 = torch.cat([scene["scales"], torch.zeros_like(scene["scales"][:, :1])], dim=1)
    leaves = {k: v.clone().requires_grad_(True) for k, v in dict(scene, scales=scales3).items()}

    # gsplat 1.5.3's non-packed 2DGS path takes per-camera colours [C, N, D] only. Depth and
    # distortion are rendered as ours are ("RGB+ED", distloss) and the backward takes the same
    # outputs: colours, depth, normals, distortion.
    def render():
        colors = leaves["colors"].expand(num_cameras, -1, -1)
        return rasterization_2dgs(leaves["means"], leaves["quats"], leaves["scales"], leaves["opacities"], colors,
                                  viewmats, Ks, width, height, render_mode="RGB+ED", distloss=True)

    def forward():
        with torch.no_grad():
            render()

    def forward_backward():
        colors_depth, _, normals, _, distortions, _, _ = render()
        (colors_depth.sum() + normals.sum() + distortions.sum()).backward()

    _, peak_bytes = peak_cuda_bytes(forward_backward, device)
    return dict(method="gsplat rasterization_2dgs", device="cuda", surfels=num_surfels, width=width,
                height=height, cameras=num_cameras, forward_s=best_time(forward, device, repeats),
                forward_backward_s=best_time(forward_backward, device, repeats),
                forward_backward_peak_bytes=peak_bytes)


def write_results(path: str, benchmark: str, repeats: int, rows, used_cuda: bool) -> None:
    """The JSON of a rasterizer benchmark: its rows, and the machine and build they ran on."""
    machine = dict(platform=platform.platform(), cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                   omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"), torch=torch.__version__,
                   gpu=torch.cuda.get_device_name() if used_cuda else None)
    result = dict(benchmark=benchmark, repeats=repeats, machine=machine, build_info=gsplat_lib.build_info(), rows=rows)
    with open(path, "w") as handle:
        json.dump(result, handle, indent=2)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench_rasterize.json", help="where to write the JSON results")
    parser.add_argument("--repeats", type=int, default=20,
                        help="timed runs per case, the best kept (on a VM whose host takes some of its time, "
                             "few runs often catch none undisturbed; the reference, seconds a run, gets at most 5)")
    parser.add_argument("--quick", action="store_true", help="only the smallest cases (a smoke run)")
    parser.add_argument("--threads", default=f"1,{os.cpu_count()}",
                        help="comma-separated CPU thread counts to run each CPU case with (default: 1 and all cores)")
    args = parser.parse_args()
    thread_counts = sorted({max(1, int(t)) for t in args.threads.split(",")})
    default_threads = torch.get_num_threads()

    sizes = [(10_000, 256, 256, 1), (10_000, 256, 256, 4), (10_000, 512, 512, 1), (100_000, 256, 256, 1),
             (100_000, 512, 512, 1), (100_000, 512, 512, 4)]
    if args.quick:
        sizes = sizes[:1]
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and gsplat_lib.build_info()["cuda"]:
        devices.append(torch.device("cuda"))

    rows = []
    for device in devices:
        for num_surfels, width, height, cameras in sizes:
            for threads in thread_counts if device.type == "cpu" else [default_threads]:
                torch.set_num_threads(threads)
                row = time_gsplat_lib(num_surfels, width, height, cameras, device, args.repeats)
                rows.append(row)
                print(f"{row['device']:5s} N={num_surfels:>7d} {width}x{height} C={cameras} threads={row['threads']}  "
                      f"fwd {1e3 * row['forward_s']:8.1f} ms  fwd+bwd {1e3 * row['forward_backward_s']:8.1f} ms  "
                      f"fwd {row['forward_ns_per_pair_core']:6.2f} ns/pair/core  "
                      f"bwd {row['backward_ns_per_pair_core']:6.2f} ns/pair/core", flush=True)
            torch.set_num_threads(default_threads)
            if device.type == "cuda":
                # Atomic per-surfel gradient records instead of one per pair: time and peak memory.
                atomic = time_gsplat_lib(num_surfels, width, height, cameras, device, args.repeats,
                                         deterministic=False)
                rows.append(atomic)
                print(f"  deterministic=False: fwd+bwd {1e3 * atomic['forward_backward_s']:.2f} ms, peak "
                      f"{atomic['forward_backward_peak_bytes'] / 2**20:.0f} MiB (deterministic: "
                      f"{row['forward_backward_peak_bytes'] / 2**20:.0f} MiB)", flush=True)
                peer = time_gsplat_peer(num_surfels, width, height, cameras, args.repeats)
                if peer is not None:
                    rows.append(peer)
                    print(f"  gsplat rasterization_2dgs: fwd {1e3 * peer['forward_s']:.2f} ms  "
                          f"fwd+bwd {1e3 * peer['forward_backward_s']:.2f} ms, peak "
                          f"{peer['forward_backward_peak_bytes'] / 2**20:.0f} MiB", flush=True)
    reference = time_reference(2_000, 128, 128, max(1, min(5, args.repeats - 1)))
    rows.append(reference)
    print(f"reference fwd+bwd {reference['reference_forward_backward_s']:.3f} s vs gsplat_lib "
          f"{1e3 * reference['gsplat_lib_forward_backward_s']:.2f} ms at 2000 surfels 128x128: "
          f"{reference['speedup']:.0f}x", flush=True)

    write_results(args.out, "rasterize", args.repeats, rows, used_cuda=len(devices) > 1)


if __name__ == "__main__":
    main()
