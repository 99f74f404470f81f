"""The recipe on the built-in capture scene, one change at a time (the ablations of
docs/design.md, "Real scenes").

    python benchmarks/bench_capture_recipe.py [--steps 600] [--jobs 1] [--variants a,b,...] [--out capture_recipe.json]

Every variant trains ``gsplat-train``'s recipe (TrainConfig with the variant's overrides) on
the capture scene as ``--scene capture`` writes and loads it, in its own process, then
evaluates the held-out views: PSNR / SSIM, PSNR over the pixels that see sky, near geometry
(true depth < 6) and far geometry, the fog measures, depth and normal errors, surfels and
training time. Prints a table and writes JSON. Training is CPU-heavy: a variant of 600 steps
takes about a minute on two free cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: What every variant measured before the last two changes of the recipe shares: 2DGS's
#: random initial rotations and opacity resets.
_EARLIER = {"init_rotations": "random", "opacity_reset": "on", "prune_faint_opacity": 0.0}
_ENVIRONMENT = {**_EARLIER, "background": "environment"}
_SKY_SPHERE = {**_EARLIER, "background": "random", "prune_world_size_by": "extent"}

#: name -> (TrainConfig overrides, transform or None). "today" is the recipe before the
#: capture scene existed; "auto" is what gsplat-train chooses. The transform "sky_sphere"
#: adds initial points on a far sphere.
VARIANTS = {
    "today": (
        {**_EARLIER, "background": "constant", "prune_world_size_by": "extent", "lambda_distortion": 0.0, "depth_ratio": 0.0},
        None,
    ),
    "random_background": ({**_EARLIER, "background": "random", "prune_world_size_by": "extent"}, None),
    "sky_sphere": ({**_SKY_SPHERE, "background": "constant"}, "sky_sphere"),
    "sky_sphere_random": (_SKY_SPHERE, "sky_sphere"),
    "sky_sphere_random_prune_by_distance": ({**_SKY_SPHERE, "prune_world_size_by": "distance"}, "sky_sphere"),
    "mcmc": ({**_EARLIER, "background": "constant", "strategy": "mcmc"}, None),
    "environment": ({**_ENVIRONMENT, "prune_world_size_by": "extent"}, None),
    "environment_no_world_size_prune": ({**_ENVIRONMENT, "prune_world_size": 1e9}, None),
    "environment_prune_by_distance": ({**_ENVIRONMENT, "prune_world_size_by": "distance"}, None),
    "environment_no_opacity_reset": ({**_ENVIRONMENT, "opacity_reset": "off"}, None),
    "environment_distortion_1e3": ({**_ENVIRONMENT, "lambda_distortion": 1000.0}, None),
    "environment_distortion_1e4": ({**_ENVIRONMENT, "lambda_distortion": 10000.0}, None),
    "environment_depth_ratio_1": ({**_ENVIRONMENT, "depth_ratio": 1.0}, None),
    "environment_mcmc": ({**_ENVIRONMENT, "strategy": "mcmc"}, None),
    "planes_opacity_reset": ({"opacity_reset": "on", "prune_faint_opacity": 0.0}, None),
    "planes_no_faint_prune": ({"prune_faint_opacity": 0.0}, None),
    "planes_faint_prune_0.3": ({"prune_faint_opacity": 0.3}, None),
    "planes_mcmc": ({"strategy": "mcmc"}, None),
    "auto": ({}, None),
}

NEAR_DEPTH = 6.0


def _load_capture(folder: Path):
    from gsplat_lib.data import load_scene
    from gsplat_lib.data.capture_scene import make_capture_scene

    if not (folder / "sparse").is_dir():
        make_capture_scene(folder)
    return load_scene(folder)


def _add_sky_sphere(scene, count: int = 3000, seed: int = 0):
    """The scene with ``count`` extra initial points on a sphere beyond every point (twice the
    99th percentile of their distance from the cameras' centre), each coloured by the mean of
    the training pixels it projects to (the mean image colour where none): surfels to carry
    the sky."""
    import numpy as np

    centres = np.stack([camera.camera_center for camera in scene.train]).astype(np.float64)
    centre = centres.mean(axis=0)
    radius = 2.0 * float(np.percentile(np.linalg.norm(scene.points - centre, axis=1), 99))
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(count, 3))
    points = centre + radius * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    sums, seen = np.zeros((count, 3)), np.zeros(count)
    for camera in scene.train:
        in_camera = points @ camera.viewmat[:3, :3].T.astype(np.float64) + camera.viewmat[:3, 3]
        pixels = in_camera @ camera.K.T.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            u, v = pixels[:, 0] / pixels[:, 2], pixels[:, 1] / pixels[:, 2]
        inside = (in_camera[:, 2] > 0) & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
        sums[inside] += camera.image[v[inside].astype(int), u[inside].astype(int)]
        seen[inside] += 1
    mean_color = np.mean([camera.image.reshape(-1, 3).mean(axis=0) for camera in scene.train], axis=0)
    colors = np.where(seen[:, None] > 0, sums / np.maximum(seen, 1)[:, None], mean_color)
    scene.points = np.concatenate([scene.points, points.astype(np.float32)])
    scene.point_colors = np.concatenate([scene.point_colors, colors.astype(np.float32)])
    return scene


def _worker(name: str, steps: int, data: str) -> dict:
    import torch

    from gsplat_lib import load_checkpoint
    from gsplat_lib.train import TrainConfig, Trainer
    from gsplat_lib.train.environment import environment_of
    from gsplat_lib.train.trainer import render_camera

    overrides, transform = VARIANTS[name]
    scene = _load_capture(Path(data))
    if transform == "sky_sphere":
        scene = _add_sky_sphere(scene)
    with tempfile.TemporaryDirectory() as output:
        config = TrainConfig(output=output, data=data, iterations=steps, progress=False, **overrides)
        trainer = Trainer(config, scene=scene, log=lambda message: None)
        start = time.perf_counter()
        metrics = trainer.run()
        seconds = time.perf_counter() - start
        final = load_checkpoint(Path(output) / trainer.run_dir.finished("train")["final_checkpoint"], restore_rng=False)
        model, environment = final.model, environment_of(final.trainer_state, "cpu")
        errors = {"sky": [0.0, 0], "near": [0.0, 0], "far": [0.0, 0]}
        for camera in scene.test:
            rendered = render_camera(
                model, camera, scene.background, near=config.near, far=config.far,
                depth_ratio=trainer.scene_defaults.depth_ratio, environment=environment,
            )
            squared = ((rendered["rgb"].clamp(0, 1) - torch.from_numpy(camera.image)) ** 2).mean(dim=-1).numpy()
            depth = camera.depth[..., 0]
            for region, mask in (("sky", depth == 0), ("near", (depth > 0) & (depth < NEAR_DEPTH)), ("far", depth >= NEAR_DEPTH)):
                errors[region][0] += float(squared[mask].sum())
                errors[region][1] += int(mask.sum())
    keys = ("psnr", "ssim", "fog_fraction", "sky_fog_fraction", "hole_fraction", "depth_abs_rel", "normal_error_deg", "num_surfels")
    row = {key: metrics[key] for key in keys}
    for region, (total, count) in errors.items():
        row[f"psnr_{region}"] = -10.0 * math.log10(total / count) if count and total > 0 else None
    row["seconds"] = seconds
    row["scene_defaults"] = metrics["scene_defaults"]
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--jobs", type=int, default=1, help="variants trained at the same time")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS))
    parser.add_argument("--data", default=None, help="where the capture scene is written (default: a temporary folder)")
    parser.add_argument("--out", default="capture_recipe.json")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(_worker(args.worker, args.steps, args.data)))
        return 0
    names = [name for name in args.variants.split(",") if name]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    environment = dict(os.environ)
    environment.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(args.data or Path(scratch) / "capture")
        _load_capture(data)  # written once, before the workers read it
        pending, running, rows = list(names), [], {}
        while pending or running:
            while pending and len(running) < max(1, args.jobs):
                name = pending.pop(0)
                command = [sys.executable, __file__, "--worker", name, "--steps", str(args.steps), "--data", str(data)]
                running.append((name, subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environment)))
            time.sleep(1.0)
            for name, process in list(running):
                if process.poll() is None:
                    continue
                running.remove((name, process))
                output = process.stdout.read()
                if process.returncode != 0:
                    print(f"{name}: failed ({process.returncode})", file=sys.stderr)
                    continue
                rows[name] = json.loads(output.strip().splitlines()[-1])
                print(f"{name}: {json.dumps(rows[name])}", file=sys.stderr, flush=True)
    header = f"{'variant':32} {'PSNR':>6} {'sky':>6} {'near':>6} {'far':>6} {'SSIM':>6} {'fog%':>6} {'skyfog%':>7} {'hole%':>6} {'absrel':>7} {'normal':>6} {'surfels':>7} {'s':>5}"
    print(f"capture scene, {args.steps} steps")
    print(header)

    def show(value, scale=1.0, digits=2):
        return "-" if value is None else f"{value * scale:.{digits}f}"

    for name in names:
        if name not in rows:
            continue
        row = rows[name]
        print(
            f"{name:32} {show(row['psnr']):>6} {show(row['psnr_sky']):>6} {show(row['psnr_near']):>6} "
            f"{show(row['psnr_far']):>6} {show(row['ssim'], digits=3):>6} {show(row['fog_fraction'], 100, 1):>6} "
            f"{show(row['sky_fog_fraction'], 100, 1):>7} {show(row['hole_fraction'], 100, 1):>6} "
            f"{show(row['depth_abs_rel'], digits=3):>7} "
            f"{show(row['normal_error_deg'], digits=1):>6} {row['num_surfels']:>7} {row['seconds']:>5.0f}"
        )
    import torch

    Path(args.out).write_text(
        json.dumps(
            {
                "steps": args.steps,
                "machine": platform.processor() or platform.machine(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "variants": rows,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
