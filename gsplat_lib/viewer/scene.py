"""What the viewer shows: a model, the dataset's cameras, the render settings of its run, a mesh.

:func:`load_viewer_scene` reads it from a ``gsplat-train`` run directory or a PLY file.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np
import torch

from gsplat_lib import GaussianModel, load_checkpoint
from gsplat_lib.data import Camera, load_scene
from gsplat_lib.train import RunDirectory
from gsplat_lib.train.environment import EnvironmentMap, environment_of
from gsplat_lib.train.scene_defaults import stored_depth_ratio
from gsplat_lib.viewer.mesh import MESH_FILE, TriangleMesh, read_mesh_ply

__all__ = ["ViewerScene", "load_viewer_scene", "scene_up_direction"]

PathLike = Union[str, os.PathLike]

#: Where a run generates the built-in scene (gsplat_lib.train.trainer.BUILTIN_SCENE_DIR).
_BUILTIN_DATA = "data"


@dataclass(eq=False)
class ViewerScene:
    """Attributes:
    model: the surfels to render.
    train_cameras, test_cameras: the dataset's views, drawn as frusta (may be empty).
    background: RGB in [0, 1] the model is rendered over.
    near, far: the rasterizer's depth range; depth_ratio: surface depth = (1 - r) expected + r median.
    mesh: the run's mesh (``RUN_DIR/mesh/mesh.ply``) when there is one.
    environment: the run's learned environment at infinity (its sky), shown behind the surfels
        in RGB, or None (then ``background``).
    title: a name for the page.
    """

    model: GaussianModel
    train_cameras: List[Camera] = field(default_factory=list)
    test_cameras: List[Camera] = field(default_factory=list)
    background: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    near: float = 0.01
    far: float = 1000.0
    depth_ratio: float = 0.0
    mesh: Optional[TriangleMesh] = None
    environment: Optional[EnvironmentMap] = None
    title: str = "gsplat_lib"

    @property
    def cameras(self) -> List[Camera]:
        return list(self.train_cameras) + list(self.test_cameras)


def load_viewer_scene(path: PathLike, *, device="cpu", data: Optional[PathLike] = None) -> ViewerScene:
    """The scene of a run directory, a checkpoint or a PLY file.

    Args:
        path: a ``gsplat-train`` output directory (its final or latest checkpoint, else its
            ``point_cloud.ply``; its dataset's cameras; its mesh when present), a ``.ckpt``
            checkpoint or a ``.ply`` file (inside a run directory: that run's cameras too).
        device: where the model is loaded and rendered.
        data: a dataset folder whose cameras to show instead of the run's.

    Raises FileNotFoundError for a missing path and ValueError naming the file for one that is
    not a run directory, checkpoint or surfel PLY.
    """
    path = Path(path)
    device = torch.device(device)
    if not path.exists():
        raise FileNotFoundError(f"no run directory, checkpoint or PLY file at {path}")
    trainer_state = {}  # a checkpoint's: the environment map and the data-dependent settings
    if path.is_dir():
        run_root = path
        model, trainer_state = _load_run_model(run_root, device)
    elif path.suffix.lower() == ".ply":
        run_root = _enclosing_run(path)
        model = GaussianModel.from_ply(path, scene_extent=1.0, device=device)
    elif path.suffix.lower() == ".ckpt":
        run_root = _enclosing_run(path)
        checkpoint = load_checkpoint(path, device=device, restore_rng=False)
        model, trainer_state = checkpoint.model, checkpoint.trainer_state
    else:
        raise ValueError(f"{path}: expected a run directory, a .ckpt checkpoint or a .ply file")
    settings = _run_settings(run_root)["settings"] if run_root is not None else {}
    white = bool(settings.get("white_background", False))
    scene = ViewerScene(
        model=model,
        background=(1.0, 1.0, 1.0) if white else (0.0, 0.0, 0.0),
        near=float(settings.get("near", 0.01)),
        far=float(settings.get("far", 1000.0)),
        depth_ratio=stored_depth_ratio(trainer_state, settings),
        environment=environment_of(trainer_state, device),
        title=(run_root or path).resolve().name,
    )
    data_path = Path(data) if data is not None else _run_data(run_root, settings)
    if data_path is not None:
        try:
            dataset = load_scene(
                data_path,
                downscale=int(settings.get("downscale", 1)),
                test_every=int(settings.get("test_every", 8)),
                background=scene.background,
                num_random_points=1,
            )
        except (FileNotFoundError, ValueError) as error:
            if data is not None:
                raise
            # The run's dataset may have moved (or its path was relative to another folder):
            # the model is still worth showing.
            warnings.warn(f"the run's cameras are not shown: {error} (pass --data PATH)", RuntimeWarning, stacklevel=2)
        else:
            scene.train_cameras, scene.test_cameras = list(dataset.train), list(dataset.test)
    if run_root is not None and (run_root / MESH_FILE).is_file():
        scene.mesh = read_mesh_ply(run_root / MESH_FILE)
    return scene


def scene_up_direction(cameras: List[Camera]) -> np.ndarray:
    """[3] unit world direction that the cameras see as up (the mean of their -y axes); +z without cameras."""
    if not cameras:
        return np.array([0.0, 0.0, 1.0])
    up = -np.mean([camera.viewmat[1, :3].astype(np.float64) for camera in cameras], axis=0)
    length = np.linalg.norm(up)
    return up / length if length > 1e-6 else np.array([0.0, 0.0, 1.0])


def _read_settings_file(run_root: Path) -> Optional[dict]:
    """The parsed ``settings.json`` of a run directory, or None when there is none."""
    try:
        settings = json.loads((run_root / "settings.json").read_text())
    except (OSError, ValueError):
        return None
    return settings if isinstance(settings, dict) and isinstance(settings.get("settings"), dict) else None


def _run_settings(run_root: Path) -> dict:
    settings = _read_settings_file(run_root)
    if settings is None:
        raise ValueError(f"{run_root} has no readable settings.json: not a gsplat-train output directory")
    return settings


def _enclosing_run(path: Path) -> Optional[Path]:
    """The run directory a PLY or checkpoint lies in (``RUN/x.ply``, ``RUN/checkpoints/x.ckpt``), if any."""
    for folder in (path.parent, path.parent.parent):
        if _read_settings_file(folder) is not None:
            return folder
    return None


def _run_data(run_root: Optional[Path], settings: dict) -> Optional[Path]:
    if run_root is None:
        return None
    if settings.get("data") is not None:
        return Path(settings["data"])
    builtin = run_root / _BUILTIN_DATA
    return builtin if builtin.is_dir() else None


def _load_run_model(run_root: Path, device: torch.device) -> Tuple[GaussianModel, dict]:
    """(model, the checkpoint's trainer state) of the final checkpoint of a finished run, else
    of its latest complete checkpoint, else its ``point_cloud.ply`` (and {})."""
    run = RunDirectory(run_root, str(_run_settings(run_root).get("fingerprint")))
    finished = run.finished("train")
    if finished is not None and (run_root / finished["final_checkpoint"]).is_file():
        checkpoint = load_checkpoint(run_root / finished["final_checkpoint"], device=device, restore_rng=False)
        return checkpoint.model, checkpoint.trainer_state
    latest = run.latest_checkpoint(device=device)
    if latest is not None:
        return latest[1].model, latest[1].trainer_state
    if (run_root / "point_cloud.ply").is_file():
        return GaussianModel.from_ply(run_root / "point_cloud.ply", scene_extent=1.0, device=device), {}
    raise ValueError(f"{run_root} holds no checkpoint or point_cloud.ply yet")
