"""The ``mesh`` stage of a run: fuse the trained model's depth into a mesh, write it with a
preview, and evaluate it where the scene's true geometry is known.

Writes ``OUTPUT/mesh/mesh.ply`` (vertices, faces, vertex colours) and ``OUTPUT/mesh/preview.png``
(the mesh from a test camera: shaded grey on the left, in its colours on the right). Its
results (marker ``stages/mesh.FINISHED.json`` and the ``mesh`` entry of ``metrics.json``) hold
the settings used, sizes, timings and, for the built-in scenes, accuracy, completeness and
Chamfer distance against the analytic surface (the capture scene's within its
``FOREGROUND_RADIUS`` of the origin, the mesh cropped to the ball its true surface is sampled in).
"""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from PIL import Image

from gsplat_lib.data import Camera, SceneData, capture_scene, synthetic_scene
from gsplat_lib.mesh import MeshSettings, evaluate_mesh, mesh_from_model, mesh_preview, save_mesh_ply
from gsplat_lib.model import GaussianModel

__all__ = ["MESH_DIR", "MESH_FILE", "PREVIEW_FILE", "run_mesh_stage", "builtin_ground_truth", "preview_camera"]

MESH_DIR = "mesh"
MESH_FILE = f"{MESH_DIR}/mesh.ply"
PREVIEW_FILE = f"{MESH_DIR}/preview.png"

#: Previews are rendered about this wide (training images are often much smaller).
PREVIEW_WIDTH = 512


#: The ground truth of each built-in scene (``TrainConfig.scene``).
_BUILTIN_GROUND_TRUTH = {"synthetic": synthetic_scene, "capture": capture_scene}


def builtin_ground_truth(scene: str = "synthetic") -> ModuleType:
    """The geometry of the built-in ``scene`` ("synthetic" or "capture"): its module, with
    ``distance_to_surface``, ``sample_surface`` and, where the samples cover only a ball about
    the origin, that ball's ``FOREGROUND_RADIUS`` (the mesh is evaluated within it)."""
    if scene not in _BUILTIN_GROUND_TRUTH:
        raise ValueError(f"scene must be one of {sorted(_BUILTIN_GROUND_TRUTH)}, got {scene!r}")
    return _BUILTIN_GROUND_TRUTH[scene]


def preview_camera(scene: SceneData):
    """(viewmat [4, 4], K [3, 3], width, height) of the first test camera (or training camera),
    scaled up to about PREVIEW_WIDTH pixels wide."""
    camera: Camera = scene.test[0] if scene.test else scene.train[0]
    scale = max(1, round(PREVIEW_WIDTH / camera.width))
    K = camera.K.astype(np.float64).copy()
    K[:2] *= scale
    return torch.from_numpy(camera.viewmat.astype(np.float64)), torch.from_numpy(K), camera.width * scale, camera.height * scale


def run_mesh_stage(
    root: Path,
    model: GaussianModel,
    scene: SceneData,
    settings: MeshSettings,
    *,
    near: float,
    far: float,
    ground_truth: Optional[ModuleType] = None,
    log: Callable[[str], None] = print,
) -> Dict[str, object]:
    """Meshes ``model`` from the training cameras of ``scene`` into ``root/mesh/``; returns the results."""
    cameras: List[Camera] = scene.train
    viewmats = torch.from_numpy(np.stack([camera.viewmat for camera in cameras]))
    Ks = torch.from_numpy(np.stack([camera.K for camera in cameras]))
    sizes = [(camera.width, camera.height) for camera in cameras]
    mesh, info = mesh_from_model(model, viewmats, Ks, sizes, settings, near=near, far=far, log=log)
    mesh = mesh.to("cpu")
    save_mesh_ply(root / MESH_FILE, mesh)
    viewmat, K, width, height = preview_camera(scene)
    image = mesh_preview(mesh, viewmat, K, width, height)
    preview_path = root / PREVIEW_FILE
    temporary = preview_path.with_name(f".{preview_path.name}.partial.png")
    Image.fromarray(np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)).save(temporary)
    temporary.replace(preview_path)
    results: Dict[str, object] = {"mesh": MESH_FILE, "preview": PREVIEW_FILE, **info}
    if ground_truth is not None:
        footprint = float(info["settings"]["pixel_footprint"])
        radius = getattr(ground_truth, "FOREGROUND_RADIUS", None)
        evaluation = evaluate_mesh(
            mesh, ground_truth.distance_to_surface, ground_truth.sample_surface, threshold=footprint, radius=radius
        )
        evaluation["pixel_footprint"] = footprint
        results["evaluation"] = evaluation
        if math.isfinite(evaluation["chamfer"]):
            region = "" if radius is None else f" within {radius:g} of the origin"
            log(
                f"stage mesh: accuracy {evaluation['accuracy']:.4f}, completeness {evaluation['completeness']:.4f}, "
                f"Chamfer {evaluation['chamfer']:.4f}{region} (a pixel covers {footprint:.4f} at the scene centre)"
            )
    log(f"stage mesh: {mesh.num_vertices} vertices, {mesh.num_faces} faces -> {root / MESH_FILE}")
    return results
