"""Real-size benchmark: a dense surfel world at 1080p, no download.

    python benchmarks/bench_scale.py [--out bench_scale.json] [--cpu-size] [--device cpu|cuda]

The scene. A "ground-truth" world of ``--surfels`` opaque surfels (default 2M on CUDA) lying on
the built-in scene's surfaces (ground, spheres, boxes): each is where a random pixel ray of a
random camera first hits them (``trace_rays``), facing that surface's normal, coloured by its
shading (``shade``), sized from its 3 nearest neighbours so the surfaces are closed. ``--views``
cameras (default 48) look at it from the built-in scene's ring at 1920x1080; their target images
are that world rendered by gsplat_lib's rasterizer, and the starting point cloud (``--points``,
default 1M) is a random subset of its surfel centres jittered by half a surfel spacing, with
their colours, as SfM would give.
Why not the built-in scene's generator at that size: it ray-traces every pixel 3x3 times in
numpy on the CPU, minutes per 1080p view; tracing one ray per surfel (seconds) and rasterizing
the targets on the device fits the whole run, build included, in one 10-minute GPU command. The
starting cloud is 1M points, not an SfM-sized 100k, because a run of a few hundred steps
cannot densify to real size: this way every measured step works at 1M+ surfels.

What is measured, in one process (peak memory: CUDA ``max_memory_allocated`` of each phase, or
on the CPU the process's peak RSS so far, which only grows from phase to phase):

- forward+backward of one 1920x1080 training camera over the ground-truth world (median and best
  of ``--repeats``; colours, depths, normals and distortion all in the loss), gsplat_lib's
  rasterizer and, on CUDA with nerfstudio ``gsplat`` importable, its ``rasterization_2dgs``
  (``bench_rasterize``'s cases on this scene);
- steps/s of the full 2DGS recipe: gsplat_lib's ``Trainer`` on the in-memory ``SceneData``,
  schedule scaled to ``--steps`` (densification, opacity reset, SH, normal and distortion
  losses included; no intermediate checkpoint), counted after ``--warmup`` steps;
- steps/s of a fixed 2DGS step (render, L1 + D-SSIM, backward, Adam; no densification) from the
  same starting cloud, through gsplat_lib and, on CUDA with gsplat, through gsplat's
  ``rasterization_2dgs`` (``bench_train``'s fixed loop on this scene: gsplat's trainer is a
  script, not an API; it does at least this much work per step).

Ratios are gsplat's time over ours (above 1: we are faster). On the CPU (or with
``--cpu-size``) everything is reduced: 100k surfels, 50k points, 480x270, 8 views, 20 timed
steps: under a minute on two cores. On a lent GPU, build and run in one command:
``benchmarks/gpu_suite.sh OUT build bench_scale``.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, replace

# As bench_rasterize: torch's OpenMP workers must wait passively (set before torch loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gsplat_lib  # noqa: E402
from bench_rasterize import synchronize, time_gsplat_lib_on, time_gsplat_peer_on, write_results  # noqa: E402
from bench_train import _worker_fixed_loop, _worker_recipe  # noqa: E402
from gsplat_lib import knn_dist2, rasterize_surfels  # noqa: E402
from gsplat_lib.data import Camera, SceneData, scene_extent  # noqa: E402
from gsplat_lib.data.scene import split_indices  # noqa: E402
from gsplat_lib.data.synthetic_scene import (  # noqa: E402
    DEFAULT_SCENE_BACKGROUND,
    DEFAULT_SCENE_FOV_X_DEG,
    shade,
    synthetic_scene_viewmats,
    trace_rays,
)

GROUND_TRUTH_OPACITY = 0.9
#: Surfel radius over the RMS distance to the 3 nearest neighbours: enough overlap to close surfaces.
SCALE_PER_SPACING = 1.2
#: Rays traced per numpy call while placing the ground-truth surfels (bounds host memory).
RAY_CHUNK = 500_000


@dataclass(frozen=True)
class Size:
    surfels: int  # ground-truth world
    points: int  # starting point cloud
    width: int
    height: int
    views: int
    steps: int  # recipe and fixed-loop steps, after the warm-up
    warmup: int
    repeats: int  # forward+backward timings


GPU_SIZE = Size(surfels=2_000_000, points=1_000_000, width=1920, height=1080, views=48, steps=200, warmup=10,
                repeats=20)
CPU_SIZE = Size(surfels=100_000, points=50_000, width=480, height=270, views=8, steps=20, warmup=2, repeats=5)


def intrinsics(width: int, height: int) -> np.ndarray:
    """The built-in scene's pinhole camera at this size (fx = fy = 0.5 W / tan(0.5 fov))."""
    focal = 0.5 * width / math.tan(0.5 * math.radians(DEFAULT_SCENE_FOV_X_DEG))
    return np.array([[focal, 0.0, 0.5 * width], [0.0, focal, 0.5 * height], [0.0, 0.0, 1.0]])


def surface_hits(count: int, viewmats: np.ndarray, K: np.ndarray, width: int, height: int, rng):
    """``count`` first hits of random pixel rays of random cameras: (points, normals, colours), float64."""
    found, total = [], 0
    while total < count:
        rays = min(RAY_CHUNK, int(1.3 * (count - total)) + 16)  # ~80% of the rays hit something
        views = rng.integers(len(viewmats), size=rays)
        pixels = np.stack([rng.uniform(0, width, rays), rng.uniform(0, height, rays), np.ones(rays)], axis=1)
        rotations = viewmats[views, :3, :3]  # world-to-camera
        directions = np.einsum("nji,nj->ni", rotations, pixels @ np.linalg.inv(K).T)
        origins = -np.einsum("nji,nj->ni", rotations, viewmats[views, :3, 3])
        hits = trace_rays(origins, directions)
        kept = hits.hit
        if not kept.any():
            raise ValueError("no camera ray hits the scene: check the cameras")
        found.append((hits.points[kept], hits.normals[kept], np.clip(shade(hits)[kept], 0.0, 1.0)))
        total += int(kept.sum())
    points, normals, colors = (np.concatenate(parts)[:count] for parts in zip(*found))
    return points, normals, colors


def quaternions_facing(normals: torch.Tensor) -> torch.Tensor:
    """[N, 4] (w, x, y, z) unit quaternions turning +z onto each unit normal (half-way rotation)."""
    w = 1.0 + normals[:, 2]
    quats = torch.stack([w, -normals[:, 1], normals[:, 0], torch.zeros_like(w)], dim=1)
    flipped = w < 1e-6  # normal = -z: half a turn about x
    quats[flipped] = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=quats.dtype, device=quats.device)
    return quats / quats.norm(dim=1, keepdim=True)


def build_scene(size: Size, device: torch.device, seed: int = 0):
    """(ground-truth surfels as a dict of tensors on ``device``, SceneData with targets rendered from them)."""
    rng = np.random.default_rng(seed)
    viewmats = synthetic_scene_viewmats(size.views)
    K = intrinsics(size.width, size.height)
    points, normals, colors = surface_hits(size.surfels, viewmats, K, size.width, size.height, rng)

    means = torch.from_numpy(points.astype(np.float32)).to(device)
    spacing = knn_dist2(means).sqrt()
    world = dict(
        means=means,
        quats=quaternions_facing(torch.from_numpy(normals.astype(np.float32)).to(device)),
        scales=(SCALE_PER_SPACING * spacing)[:, None].repeat(1, 2),
        opacities=torch.full((size.surfels,), GROUND_TRUTH_OPACITY, device=device),
        colors=torch.from_numpy(colors.astype(np.float32)).to(device),
    )

    background = np.asarray(DEFAULT_SCENE_BACKGROUND, dtype=np.float32)
    backgrounds = torch.from_numpy(background).to(device)[None]
    K32 = torch.from_numpy(K.astype(np.float32)).to(device)[None]
    cameras = []
    with torch.no_grad():
        for view, viewmat in enumerate(viewmats.astype(np.float32)):
            image = rasterize_surfels(world["means"], world["quats"], world["scales"], world["opacities"],
                                      world["colors"], torch.from_numpy(viewmat).to(device)[None], K32,
                                      size.width, size.height, backgrounds=backgrounds).colors[0]
            cameras.append(Camera(name=f"view_{view:03d}", viewmat=viewmat, K=K.astype(np.float32),
                                  width=size.width, height=size.height,
                                  image=image.clamp(0.0, 1.0).cpu().numpy()))

    # The starting cloud: SfM-like points on the surfaces, off by up to about half a spacing.
    chosen = rng.choice(size.surfels, size=min(size.points, size.surfels), replace=False)
    jitter = rng.normal(scale=0.5, size=(len(chosen), 3)) * spacing.cpu().numpy()[chosen, None] / math.sqrt(3)
    train_ids, test_ids = split_indices(size.views, 8)
    train = [cameras[index] for index in train_ids]
    scene = SceneData(
        train=train, test=[cameras[index] for index in test_ids],
        points=(points[chosen] + jitter).astype(np.float32), point_colors=colors[chosen].astype(np.float32),
        scene_extent=scene_extent(train), background=background,
    )
    return world, scene


def cpu_peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def release(device: torch.device) -> None:
    """Frees what the previous phase left, so the next phase's CUDA peak is its own."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def gsplat_importable() -> bool:
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


def time_forward_backward(world, scene: SceneData, size: Size, device: torch.device, with_gsplat: bool):
    """bench_rasterize's forward+backward cases on the first training camera: rows (ours, gsplat or None)."""
    camera = scene.train[0]
    viewmats = torch.from_numpy(camera.viewmat).to(device)[None]
    Ks = torch.from_numpy(camera.K).to(device)[None]
    ours = time_gsplat_lib_on(world, viewmats, Ks, size.width, size.height, size.repeats)
    ours["phase"] = "forward+backward"
    if device.type == "cpu":
        ours["peak_memory_mib"], ours["memory_kind"] = cpu_peak_rss_mib(), "process peak RSS so far"
    else:
        ours["peak_memory_mib"] = ours["forward_backward_peak_bytes"] / 2**20
        ours["memory_kind"] = "cuda max_memory_allocated above the inputs"
    if not with_gsplat:
        return ours, None
    release(device)
    peer = time_gsplat_peer_on(world, viewmats, Ks, size.width, size.height, size.repeats)
    peer["phase"] = "forward+backward"
    peer["peak_memory_mib"] = peer["forward_backward_peak_bytes"] / 2**20
    peer["memory_kind"] = ours["memory_kind"]
    return ours, peer


def training_row(method: str, phase: str, result: dict, size: Size, device: torch.device) -> dict:
    row = dict(method=method, phase=phase, device=str(device), starting_surfels=size.points, width=size.width,
               height=size.height, steps=size.steps, warmup_steps=size.warmup, **result)
    if device.type == "cpu":
        row["memory_kind"] = "process peak RSS so far"
    return row


def print_table(rows, size: Size, device: torch.device) -> None:
    print(f"\nbench_scale on {device}: {size.surfels} ground-truth surfels, {size.points} starting points, "
          f"{size.width}x{size.height}, {size.views} views")
    print(f"{'case':44s} {'result':>22s} {'peak MiB':>9s} {'surfels':>9s}  memory measure")
    for row in rows:
        if row.get("phase") == "forward+backward":
            name = f"fwd+bwd 1 camera, {row['method']}"
            result = f"{1e3 * row['forward_backward_median_s']:9.1f} ms (median)"
            surfels = row["surfels"]
        elif "steps_per_second" in row:
            name = f"{row['phase']}, {row['method']}"
            key = "steady_steps_per_second" if "steady_steps_per_second" in row else "steps_per_second"
            result = f"{row[key]:9.2f} steps/s"
            surfels = row["final_surfels"]
        else:
            continue
        print(f"{name:44s} {result:>22s} {row['peak_memory_mib']:9.0f} {surfels:9d}  {row['memory_kind']}")
    for row in rows:
        if row.get("phase") == "ratio":
            print(f"{row['method']}: {row['ratio']:.2f}")
        elif "skipped" in row:
            print(f"{row['method']}: skipped, {row['skipped']}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench_scale.json", help="where to write the JSON results")
    parser.add_argument("--device", default=None,
                        help="cpu or cuda (default: cuda when a GPU and a CUDA build of gsplat_lib are present)")
    parser.add_argument("--cpu-size", action="store_true", help="the reduced CPU size, whatever the device")
    for field in ("surfels", "points", "width", "height", "views", "steps", "warmup", "repeats"):
        parser.add_argument(f"--{field}", type=int, default=None, help=f"override the size's {field}")
    args = parser.parse_args(argv)

    cuda_ready = torch.cuda.is_available() and gsplat_lib.build_info()["cuda"]
    device = torch.device(args.device or ("cuda" if cuda_ready else "cpu"))
    if device.type == "cuda" and not cuda_ready:
        parser.error("--device cuda needs a CUDA GPU and a gsplat_lib built with CUDA")
    size = CPU_SIZE if args.cpu_size or device.type == "cpu" else GPU_SIZE
    size = replace(size, **{k: v for k, v in vars(args).items() if k in asdict(size) and v is not None})
    if size.points > size.surfels or min(asdict(size).values()) < 0 or size.steps < 1 or size.surfels < 4:
        parser.error(f"inconsistent size {size}: need 4 <= surfels, points <= surfels, steps >= 1")
    with_gsplat = device.type == "cuda" and gsplat_importable()

    start = time.perf_counter()
    world, scene = build_scene(size, device)
    synchronize(device)
    rows = [dict(method="scene", phase="build", device=str(device), seconds=time.perf_counter() - start,
                 **asdict(size))]
    print(f"scene built in {rows[0]['seconds']:.1f} s", flush=True)

    ours, peer = time_forward_backward(world, scene, size, device, with_gsplat)
    rows.append(ours)
    if peer is not None:
        rows.append(peer)
        rows.append(dict(method="fwd+bwd speed-up, gsplat time / ours (median)", phase="ratio",
                         ratio=peer["forward_backward_median_s"] / ours["forward_backward_median_s"]))
    print(f"forward+backward timed ({len(rows) - 1} cases)", flush=True)
    del world
    release(device)

    recipe = _worker_recipe(str(device), size.warmup + size.steps, 1, scene=scene, warmup_steps=size.warmup,
                            intermediate_checkpoints=False)
    rows.append(training_row("gsplat_lib Trainer", "full 2DGS recipe", recipe, size, device))
    release(device)
    # The fixed loop's learning-rate schedule spans its timed steps, as the recipe's does.
    loop = _worker_fixed_loop("gsplat_lib", str(device), size.steps, 1, scene=scene, warmup_steps=size.warmup)
    rows.append(training_row("gsplat_lib", "fixed 2DGS step", loop, size, device))
    release(device)
    if with_gsplat:
        peer_loop = _worker_fixed_loop("gsplat", str(device), size.steps, 1, scene=scene, warmup_steps=size.warmup)
        rows.append(training_row("gsplat rasterization_2dgs", "fixed 2DGS step", peer_loop, size, device))
        rows.append(dict(method="fixed step speed-up, gsplat time / ours", phase="ratio",
                         ratio=loop["steps_per_second"] / peer_loop["steps_per_second"]))
        rows.append(dict(method="recipe vs gsplat's fixed step, gsplat time / ours", phase="ratio",
                         ratio=recipe["steady_steps_per_second"] / peer_loop["steps_per_second"]))
    else:
        reason = "gsplat needs a CUDA device" if device.type != "cuda" else "gsplat is not installed"
        rows.append(dict(method="gsplat rasterization_2dgs", skipped=reason))

    print_table(rows, size, device)
    write_results(args.out, "scale", size.repeats, rows, used_cuda=device.type == "cuda")


if __name__ == "__main__":
    main()
