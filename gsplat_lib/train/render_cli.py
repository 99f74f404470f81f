"""``gsplat-render``: render a trained model to PNGs (RGB, depth colour map, normals).

    gsplat-render runs/demo                          # a run directory: its test views
    gsplat-render runs/demo --orbit 36               # 36 views on a circle around the scene
    gsplat-render model.ply --data path/to/colmap    # a PLY file and a dataset's test views
    gsplat-render runs/demo/checkpoints/step_001000.ckpt --orbit 12 --output orbit/
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

from gsplat_lib.cameras import look_at
from gsplat_lib.data import Camera, load_scene
from gsplat_lib.model import GaussianModel
from gsplat_lib.train.run_dir import RunDirectory, read_json
from gsplat_lib.train.scene_defaults import stored_depth_ratio
from gsplat_lib.train.environment import environment_of
from gsplat_lib.train.trainer import render_camera, write_view_images

_DESCRIPTION = """\
Render a trained model from its PLY file, a checkpoint, or a gsplat-train output directory,
to PNG images: <view>_rgb.png, <view>_depth.png (turbo colour map, near = red) and
<view>_normal.png (world normals as colours). The views are the test views of a dataset
(--data, or the dataset of the run directory) or, with --orbit N, N cameras on a circle
around the scene."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gsplat-render", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path, help="A .ply file, a .ckpt checkpoint or a gsplat-train output directory.")
    parser.add_argument(
        "--output", type=Path, default=None,
        help="Where the PNGs go (default: RUN_DIR/renders/test_render, .../train_render or .../orbit; "
        "for a bare PLY file, renders/ next to it).",
    )
    parser.add_argument(
        "--data", type=Path, default=None,
        help="Dataset whose test views are rendered (default: the run directory's dataset).",
    )
    parser.add_argument("--orbit", type=int, default=0, metavar="N", help="Render N orbit views instead of test views.")
    parser.add_argument("--split", choices=("test", "train"), default="test", help="Dataset views to render (default: test).")
    parser.add_argument("--downscale", type=int, default=None, help="Image downscale of --data (default: the run's, else 1).")
    parser.add_argument("--width", type=int, default=None, help="Orbit image width (default: the dataset's, else 640).")
    parser.add_argument("--height", type=int, default=None, help="Orbit image height (default: the dataset's, else 480).")
    parser.add_argument("--white-background", action="store_true", help="Render over white instead of black.")
    parser.add_argument("--device", default="cpu", help="Torch device (default: cpu).")
    return parser


def _load_model(path: Path, device):
    """(model, run settings or None, run directory or None, the checkpoint's trainer state or
    {}) of a PLY, checkpoint or run directory."""
    if path.is_dir():
        settings = read_json(path / "settings.json")
        if not isinstance(settings, dict) or "settings" not in settings:
            raise ValueError(f"{path} is a directory without a gsplat-train settings.json")
        run_dir = RunDirectory(path, settings["fingerprint"])
        finished = run_dir.finished("train")
        if finished is not None:
            checkpoint_path = path / finished["final_checkpoint"]
        elif run_dir.checkpoints():
            checkpoint_path = run_dir.checkpoints()[-1][1]
        else:
            raise ValueError(f"{path} holds no checkpoint yet")
        checkpoint = GaussianModel.load_checkpoint(checkpoint_path, device=device, restore_rng=False)
        return checkpoint.model, settings["settings"], path, checkpoint.trainer_state
    if not path.is_file():
        raise FileNotFoundError(f"no model at {path}")
    if path.suffix.lower() == ".ply":
        return GaussianModel.from_ply(path, device=device), None, None, {}
    checkpoint = GaussianModel.load_checkpoint(path, device=device, restore_rng=False)
    run_root = path.parent.parent if path.parent.name == "checkpoints" else None
    settings = None
    if run_root is not None:
        settings_file = read_json(run_root / "settings.json")
        settings = settings_file.get("settings") if isinstance(settings_file, dict) else None
    return checkpoint.model, settings, run_root, checkpoint.trainer_state


def _dataset_path(args, settings, run_root) -> Optional[Path]:
    if args.data is not None:
        return args.data
    if settings is None:
        return None
    if settings.get("data") is not None:
        return Path(settings["data"])
    builtin = run_root / "data" if run_root is not None else None
    return builtin if builtin is not None and builtin.is_dir() else None


def orbit_cameras(
    count: int,
    centre: np.ndarray,
    radius: float,
    height_offset: float,
    up: np.ndarray,
    K: np.ndarray,
    width: int,
    height: int,
):
    """``count`` cameras on a circle of ``radius`` around ``centre``, ``height_offset`` above it
    along ``up``, all looking at ``centre`` (OpenCV, no roll)."""
    up = up / np.linalg.norm(up)
    helper = np.array([1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    axis_a = np.cross(up, helper)
    axis_a /= np.linalg.norm(axis_a)
    axis_b = np.cross(up, axis_a)
    cameras = []
    for index in range(count):
        angle = 2.0 * math.pi * index / count
        eye = centre + radius * (math.cos(angle) * axis_a + math.sin(angle) * axis_b) + height_offset * up
        viewmat = look_at(eye, centre, up=up, dtype=torch.float64).numpy()
        cameras.append(
            Camera(
                name=f"orbit_{index:03d}.png", viewmat=viewmat.astype(np.float32), K=K.astype(np.float32),
                width=width, height=height, image=np.zeros((height, width, 3), np.float32),
            )
        )
    return cameras


def _orbit_from_cameras(cameras) -> Tuple[np.ndarray, float, float, np.ndarray]:
    """(centre, radius, height offset, up) of an orbit that looks like the dataset's cameras.

    The centre is the point nearest (least squares) to every optical axis; up is the mean of
    the cameras' up vectors (-y in OpenCV).
    """
    centres = np.stack([camera.camera_center.astype(np.float64) for camera in cameras])
    axes = np.stack([camera.viewmat[2, :3].astype(np.float64) for camera in cameras])
    up = -np.stack([camera.viewmat[1, :3].astype(np.float64) for camera in cameras]).mean(axis=0)
    up /= max(np.linalg.norm(up), 1e-12)
    projector = np.eye(3)[None] - axes[:, :, None] * axes[:, None, :]
    system = projector.sum(axis=0)
    if np.linalg.cond(system) < 1e8:
        centre = np.linalg.solve(system, np.einsum("nij,nj->i", projector, centres))
    else:
        centre = centres.mean(axis=0)
    offsets = centres - centre
    heights = offsets @ up
    radial = np.linalg.norm(offsets - heights[:, None] * up, axis=1)
    return centre, float(radial.mean()), float(heights.mean()), up


def _orbit_from_model(model) -> Tuple[np.ndarray, float, float, np.ndarray]:
    """(centre, radius, height offset, up) from the surfels alone: +z up, distance from their spread."""
    means = model.means.detach().cpu().numpy().astype(np.float64)
    centre = np.median(means, axis=0)
    spread = np.percentile(np.linalg.norm(means - centre, axis=1), 90)
    return centre, 2.5 * float(spread), 1.0 * float(spread), np.array([0.0, 0.0, 1.0])


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        device = torch.device(args.device)
        model, settings, run_root, trainer_state = _load_model(args.model, device)
        environment = environment_of(trainer_state, device)
        settings = settings or {}
        white = args.white_background or bool(settings.get("white_background", False))
        background = (1.0, 1.0, 1.0) if white else (0.0, 0.0, 0.0)
        data_path = _dataset_path(args, settings or None, run_root)
        scene = None
        if data_path is not None:
            downscale = args.downscale or int(settings.get("downscale", 1))
            test_every = int(settings.get("test_every", 8))
            scene = load_scene(data_path, downscale=downscale, test_every=test_every, background=background)
        if args.orbit > 0:
            if scene is not None and scene.train:
                centre, radius, offset, up = _orbit_from_cameras(scene.train)
                reference = scene.train[0]
                width, height = args.width or reference.width, args.height or reference.height
                K = reference.K.astype(np.float64).copy()
                K[0] *= width / reference.width
                K[1] *= height / reference.height
            else:
                centre, radius, offset, up = _orbit_from_model(model)
                width, height = args.width or 640, args.height or 480
                focal = 0.5 * width / math.tan(math.radians(25.0))
                K = np.array([[focal, 0.0, 0.5 * width], [0.0, focal, 0.5 * height], [0.0, 0.0, 1.0]])
            cameras = orbit_cameras(args.orbit, centre, radius, offset, up, K, width, height)
            kind = "orbit"
        else:
            if scene is None:
                raise ValueError("no dataset to take test views from: pass --data PATH, or --orbit N")
            cameras = scene.test if args.split == "test" else scene.train
            if not cameras:
                raise ValueError(f"the dataset has no {args.split} views (try --split train or --orbit N)")
            kind = args.split
        if args.output is not None:
            output = args.output
        else:
            base = run_root if run_root is not None else args.model.parent
            output = base / "renders" / (f"{kind}_render" if kind != "orbit" else "orbit")
        near = float(settings.get("near", 0.01))
        far = float(settings.get("far", 1000.0))
        depth_ratio = stored_depth_ratio(trainer_state, settings)
        for camera in cameras:
            rendered = render_camera(
                model, camera, background, near=near, far=far, depth_ratio=depth_ratio, environment=environment
            )
            write_view_images(output, camera.name, rendered, None)
    except (ValueError, OSError) as error:  # OSError: a missing input, a full disk, a read-only folder
        print(f"gsplat-render: error: {error}", file=sys.stderr)
        return 1
    print(f"rendered {len(cameras)} {kind} views ({model.num_surfels} surfels) to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
