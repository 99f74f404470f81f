"""Benchmark of TSDF fusion and mesh extraction: gsplat_lib.mesh against Open3D's
ScalableTSDFVolume (2DGS's choice) on the same depth maps.

Depth maps: by default an analytic scene (a sphere on a square, ray cast in float64) seen by
``--views`` orbiting cameras of ``--width`` x ``--height``; with ``--run RUN_DIR``, the surface
depth a trained gsplat-train run renders for its training cameras (what its mesh stage fuses).
For each method, best of ``--repeats`` (the methods alternate, so a busy spell of the shared
machine hits both): integration time for all views (block allocation included; ``--batch``
views per call for gsplat_lib) in wall and process CPU seconds (the CPU time is the steadier
on a loaded machine), extraction time (marching cubes), the process's peak resident memory
above what it held before the run (CPU, Linux; the largest over the repeats, and still a lower
bound: memory freed by an earlier run is reused unseen), or CUDA's peak allocation, and the
voxel blocks' size. Open3D runs with 2DGS's settings (16^3 units, depth
sampling stride 4, RGB8 colour), the same voxel size, truncation and max depth. The surfaces are
compared both ways (mean and 95th percentile of the distance from one mesh's samples to the
other mesh, in voxels). Prints a table and writes JSON (``--out``).

    PYTHONPATH=. python benchmarks/bench_mesh.py --views 60 --width 640 --height 480 --voxel 0.01
    PYTHONPATH=. python benchmarks/bench_mesh.py --run runs/demo
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (README, "CPU threads")

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

import gsplat_lib
from gsplat_lib.mesh import Mesh, TSDFVolume, distance_to_mesh, sample_mesh_surface

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from mesh_scenes import orbit_cameras, plane, scene_depths, sphere  # noqa: E402


def analytic_inputs(args):
    viewmats, Ks = orbit_cameras(args.views, args.width, args.height, distance=2.0, elevation=0.3, base_elevation=0.5)
    depths = scene_depths(viewmats, Ks, args.width, args.height, [sphere((0.1, -0.05, 0.15), 0.35), plane(-0.3037, 0.8)])
    g = torch.Generator().manual_seed(0)
    colors = torch.rand((args.views, args.height, args.width, 3), generator=g)
    return {"viewmats": viewmats, "Ks": Ks, "depths": depths, "colors": colors, "alphas": None}


def run_inputs(run_dir: Path):
    """Surface depth, colour and opacity that the run's mesh stage fuses (training cameras)."""
    from gsplat_lib.mesh import render_depth_maps
    from gsplat_lib.train.config import TrainConfig
    from gsplat_lib.train.run_dir import read_json
    from gsplat_lib.train.trainer import Trainer

    stored = read_json(run_dir / "settings.json")["config"]
    stored.update(output=str(run_dir), progress=False, force=False)
    trainer = Trainer(TrainConfig(**stored))
    final = run_dir / trainer.run_dir.finished("train")["final_checkpoint"]
    model = gsplat_lib.load_checkpoint(final, restore_rng=False).model
    cameras = trainer.scene.train
    viewmats = torch.from_numpy(np.stack([camera.viewmat for camera in cameras]))
    Ks = torch.from_numpy(np.stack([camera.K for camera in cameras]))
    sizes = [(camera.width, camera.height) for camera in cameras]
    batches = list(render_depth_maps(model, viewmats, Ks, sizes, depth_ratio=trainer.config.depth_ratio, batch_size=64))
    (batch,) = batches  # one image size
    alphas = batch.alphas
    depths = torch.where(alphas >= 0.5, batch.depths, torch.zeros(()))  # the mask, applied for both methods
    return {"viewmats": batch.viewmats, "Ks": batch.Ks, "depths": depths, "colors": batch.colors, "alphas": None}


def peak_rss_reset() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _status_bytes(field: str) -> Optional[int]:
    """A memory figure of this process from /proc/self/status (Linux), in bytes."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def peak_rss_bytes() -> Optional[int]:
    return _status_bytes("VmHWM")


def current_rss_bytes() -> Optional[int]:
    return _status_bytes("VmRSS")


def ours(inputs, args, device: str) -> Dict[str, object]:
    """One run of gsplat_lib's volume: times, peak memory, sizes and the mesh."""
    data = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    peak_rss_reset()
    before = current_rss_bytes()
    cpu_start = time.process_time()
    start = time.perf_counter()
    volume = TSDFVolume(args.voxel, truncation=args.truncation, max_depth=args.max_depth, device=device)
    for first in range(0, data["depths"].shape[0], args.batch):
        chunk = slice(first, first + args.batch)
        volume.integrate(data["depths"][chunk], data["viewmats"][chunk], data["Ks"][chunk], data["colors"][chunk])
    if device == "cuda":
        torch.cuda.synchronize()
    integrated, cpu_integrated = time.perf_counter(), time.process_time()
    mesh = volume.extract_mesh()
    if device == "cuda":
        torch.cuda.synchronize()
    extracted, cpu_extracted = time.perf_counter(), time.process_time()
    peak = (torch.cuda.max_memory_allocated() - base) if device == "cuda" else _above(peak_rss_bytes(), before)
    return {
        "integrate_s": integrated - start, "extract_s": extracted - integrated, "peak_bytes": peak,
        "integrate_cpu_s": cpu_integrated - cpu_start, "extract_cpu_s": cpu_extracted - cpu_integrated,
        "blocks": volume.num_blocks, "volume_bytes": volume.memory_bytes, "faces": mesh.num_faces, "mesh": mesh.to("cpu"),
    }


def _above(peak: Optional[int], before: Optional[int]) -> Optional[int]:
    return None if peak is None or before is None else max(0, peak - before)


def open3d_volume(inputs, args) -> Dict[str, object]:
    """One run of Open3D's ScalableTSDFVolume on the same depth maps."""
    import open3d as o3d

    integration = o3d.pipelines.integration
    depths = inputs["depths"][..., 0].numpy().astype(np.float32)
    colors = np.ascontiguousarray((inputs["colors"].numpy() * 255.0).round().clip(0, 255).astype(np.uint8))
    viewmats = inputs["viewmats"].double().numpy()
    Ks = inputs["Ks"].double().numpy()
    height, width = depths.shape[1:]
    peak_rss_reset()
    before = current_rss_bytes()
    cpu_start = time.process_time()
    start = time.perf_counter()
    volume = integration.ScalableTSDFVolume(
        voxel_length=args.voxel, sdf_trunc=args.truncation, color_type=integration.TSDFVolumeColorType.RGB8
    )
    for view in range(depths.shape[0]):
        K = Ks[view]
        # Open3D puts pixel centres at integers, we at i + 0.5: shift the principal point.
        intrinsic = o3d.camera.PinholeCameraIntrinsic(
            width, height, K[0, 0], K[1, 1], K[0, 2] - 0.5, K[1, 2] - 0.5
        )
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(colors[view]), o3d.geometry.Image(np.ascontiguousarray(depths[view])),
            depth_scale=1.0, depth_trunc=args.max_depth, convert_rgb_to_intensity=False,
        )
        volume.integrate(rgbd, intrinsic, viewmats[view])
    integrated, cpu_integrated = time.perf_counter(), time.process_time()
    o3d_mesh = volume.extract_triangle_mesh()
    extracted, cpu_extracted = time.perf_counter(), time.process_time()
    peak = _above(peak_rss_bytes(), before)
    mesh = Mesh(
        torch.from_numpy(np.asarray(o3d_mesh.vertices, dtype=np.float32)),
        torch.from_numpy(np.asarray(o3d_mesh.triangles, dtype=np.int64)),
    )
    if mesh.num_faces == 0:
        raise RuntimeError(
            f"open3d {o3d.__version__}'s ScalableTSDFVolume fused nothing: 0.20 places its blocks at depth / 1000 "
            f"for float depth images; run with open3d 0.19 (or --no-open3d)"
        )
    return {
        "integrate_s": integrated - start, "extract_s": extracted - integrated, "peak_bytes": peak,
        "integrate_cpu_s": cpu_integrated - cpu_start, "extract_cpu_s": cpu_extracted - cpu_integrated,
        "blocks": None, "volume_bytes": None, "faces": mesh.num_faces, "mesh": mesh, "version": o3d.__version__,
    }


def keep_best(best: Dict[str, Dict[str, object]], method: str, run: Dict[str, object]) -> None:
    """Keeps each method's fastest times and its largest peak memory."""
    found = best.setdefault(method, dict(run))
    for key in ("integrate_s", "extract_s", "integrate_cpu_s", "extract_cpu_s"):
        found[key] = min(found[key], run[key])
    if run["peak_bytes"] is not None:  # the largest: a run that reused freed memory shows less
        found["peak_bytes"] = max(found["peak_bytes"] or 0, run["peak_bytes"])


def surface_gap(a: Mesh, b: Mesh, voxel: float, samples: int = 20000) -> Dict[str, float]:
    """Distances from samples of each mesh to the other, in voxels."""
    ab = distance_to_mesh(sample_mesh_surface(a, samples, seed=1), b).numpy() / voxel
    ba = distance_to_mesh(sample_mesh_surface(b, samples, seed=2), a).numpy() / voxel
    both = np.concatenate([ab, ba])
    return {"mean_voxels": float(both.mean()), "p95_voxels": float(np.percentile(both, 95)), "max_voxels": float(both.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, default=60)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--voxel", type=float, default=None, help="default: 0.01, or the run's mesh voxel size")
    parser.add_argument("--truncation", type=float, default=None, help="default: 5 voxels")
    parser.add_argument("--max-depth", type=float, default=6.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--run", type=Path, default=None, help="fuse a trained run's rendered depth instead")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads of gsplat_lib (torch's); 0: torch's default")
    parser.add_argument("--no-open3d", action="store_true")
    parser.add_argument("--out", default="bench_mesh.json")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    if args.run is not None:
        inputs = run_inputs(args.run)
        if args.voxel is None:
            from gsplat_lib.train.run_dir import read_json

            marker = read_json(args.run / "stages" / "mesh.FINISHED.json")
            args.voxel = marker["results"]["settings"]["voxel_size"] if marker else 0.02
        scene = f"run {args.run}"
    else:
        inputs = analytic_inputs(args)
        scene = "sphere on a square (analytic)"
    args.voxel = args.voxel or 0.01
    args.truncation = args.truncation or 5.0 * args.voxel
    num_views, height, width = inputs["depths"].shape[:3]

    try:
        import open3d  # noqa: F401

        with_open3d = not args.no_open3d
    except ImportError:
        with_open3d = False
    with_cuda = torch.cuda.is_available() and bool(gsplat_lib.build_info()["cuda"])
    if with_cuda:
        ours(inputs, args, "cuda")  # warm-up: context, allocator, kernels
    # The methods alternate, repeat after repeat, so a busy spell of the machine hits both.
    results: Dict[str, Dict[str, object]] = {}
    for _ in range(args.repeats):
        keep_best(results, "gsplat_lib cpu", ours(inputs, args, "cpu"))
        if with_cuda:
            keep_best(results, "gsplat_lib cuda", ours(inputs, args, "cuda"))
        if with_open3d:
            keep_best(results, "open3d cpu", open3d_volume(inputs, args))

    reference = results.get("open3d cpu")
    rows: List[Dict[str, object]] = []
    for method, found in results.items():
        row = {key: value for key, value in found.items() if key != "mesh"}
        row["method"] = method
        if reference is not None and method != "open3d cpu":
            row["integrate_speedup_vs_open3d"] = reference["integrate_s"] / found["integrate_s"]
            row["extract_speedup_vs_open3d"] = reference["extract_s"] / found["extract_s"]
            row["integrate_cpu_time_ratio_vs_open3d"] = reference["integrate_cpu_s"] / found["integrate_cpu_s"]
            row["gap_to_open3d"] = surface_gap(found["mesh"], reference["mesh"], args.voxel)
        rows.append(row)

    print(f"{scene}: {num_views} views of {width}x{height}, voxel {args.voxel:g}, truncation {args.truncation:g}")
    print(f"{'method':<16} {'integrate s':>11} {'(cpu s)':>8} {'extract s':>9} {'peak MiB':>9} {'blocks MiB':>10} "
          f"{'faces':>8} {'x open3d (int/ext)':>19} {'gap mean/p95 vox':>17}")
    for row in rows:
        peak = f"{row['peak_bytes'] / 2**20:9.1f}" if row.get("peak_bytes") is not None else f"{'-':>9}"
        blocks = f"{row['volume_bytes'] / 2**20:10.1f}" if row.get("volume_bytes") is not None else f"{'-':>10}"
        ratio = (
            f"{row['integrate_speedup_vs_open3d']:8.2f} / {row['extract_speedup_vs_open3d']:6.2f}"
            if "integrate_speedup_vs_open3d" in row else f"{'-':>19}"
        )
        gap = f"{row['gap_to_open3d']['mean_voxels']:8.3f} / {row['gap_to_open3d']['p95_voxels']:5.2f}" if "gap_to_open3d" in row else f"{'-':>17}"
        print(
            f"{row['method']:<16} {row['integrate_s']:11.3f} {row['integrate_cpu_s']:8.3f} {row['extract_s']:9.3f} {peak} "
            f"{blocks} {row['faces']:8d} {ratio:>19} {gap:>17}"
        )

    report = {
        "benchmark": "mesh",
        "scene": scene,
        "views": num_views,
        "width": width,
        "height": height,
        "voxel": args.voxel,
        "truncation": args.truncation,
        "max_depth": args.max_depth,
        "batch": args.batch,
        "repeats": args.repeats,
        "machine": dict(
            platform=platform.platform(), processor=platform.processor(), cpu_count=os.cpu_count(),
            torch_threads=torch.get_num_threads(), torch_version=torch.__version__,
            omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
            cuda_device=torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            build_info=gsplat_lib.build_info(),
        ),
        "results": rows,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
