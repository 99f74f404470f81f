"""Defaults that depend on the data: is the scene bounded (objects seen from around them)
or unbounded (a capture with a far background and a sky), and what the recipe does then.

The decision reads only the cameras and the initial points, as a user's COLMAP folder has
them: a scene is unbounded when a tenth or more of its sparse points lie farther from the
cameras' centre than twice the cameras' own radius (SfM points on hills, buildings or
walls far behind the objects). docs/design.md has the measurements behind each value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Mapping, Tuple

import numpy as np

from gsplat_lib.data import SceneData

__all__ = ["SceneDefaults", "resolve_scene_defaults", "stored_depth_ratio", "UNBOUNDED_POINT_RATIO"]

#: Unbounded when the 90th percentile of the points' distance from the cameras' centre
#: exceeds this many camera radii.
UNBOUNDED_POINT_RATIO = 2.0


@dataclass(frozen=True)
class SceneDefaults:
    """What a run uses where its config says auto (None), and what that was chosen from."""

    unbounded: bool
    camera_radius: float
    point_radius: float
    background: str
    opacity_reset: bool
    prune_faint_opacity: float
    prune_world_size_by: str
    cameras_center: Tuple[float, float, float]
    lambda_distortion: float
    depth_ratio: float

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        kind = "unbounded" if self.unbounded else "bounded"
        return (
            f"scene: {kind} (90% of the points within {self.point_radius:.2f} of the cameras' centre, "
            f"cameras within {self.camera_radius:.2f}): background {self.background}, "
            f"opacity reset {'on' if self.opacity_reset else 'off'}, prune faint below {self.prune_faint_opacity:g}, "
            f"world-size prune by {self.prune_world_size_by}, "
            f"lambda_distortion {self.lambda_distortion:g}, depth_ratio {self.depth_ratio:g}"
        )


def resolve_scene_defaults(config, scene: SceneData) -> SceneDefaults:
    """The :class:`SceneDefaults` of a :class:`TrainConfig` on ``scene``: the config's own
    values where set, the data's defaults where it says auto."""
    cameras = scene.train if scene.train else scene.test
    centres = np.stack([camera.camera_center.astype(np.float64) for camera in cameras])
    centre = centres.mean(axis=0)
    camera_radius = float(np.linalg.norm(centres - centre, axis=1).max()) if len(centres) > 1 else 0.0
    if len(scene.points):
        point_radius = float(np.percentile(np.linalg.norm(scene.points.astype(np.float64) - centre, axis=1), 90))
    else:
        point_radius = 0.0
    unbounded = point_radius > UNBOUNDED_POINT_RATIO * max(camera_radius, 1e-12)
    has_alpha = any(camera.alpha is not None for camera in cameras)

    background = config.background
    if background == "auto":
        background = "environment" if unbounded and not has_alpha else "constant"
    opacity_reset = config.opacity_reset == "on" or (config.opacity_reset == "auto" and background != "environment")
    prune_faint_opacity = config.prune_faint_opacity
    if prune_faint_opacity is None:
        prune_faint_opacity = 0.0 if opacity_reset else 0.1
    prune_world_size_by = config.prune_world_size_by
    if prune_world_size_by == "auto":
        prune_world_size_by = "distance" if unbounded else "extent"
    lambda_distortion = config.lambda_distortion
    if lambda_distortion is None:
        lambda_distortion = 0.0
    depth_ratio = config.depth_ratio
    if depth_ratio is None:
        depth_ratio = 0.0
    return SceneDefaults(
        unbounded=unbounded,
        camera_radius=camera_radius,
        point_radius=point_radius,
        background=background,
        opacity_reset=opacity_reset,
        prune_faint_opacity=float(prune_faint_opacity),
        prune_world_size_by=prune_world_size_by,
        cameras_center=tuple(float(value) for value in centre),
        lambda_distortion=float(lambda_distortion),
        depth_ratio=float(depth_ratio),
    )


def stored_depth_ratio(trainer_state: Mapping[str, object], settings: Mapping[str, object]) -> float:
    """The surface-depth ratio a run trained with: the one its checkpoints' trainer state holds
    (resolved from the data), else the one of its ``settings.json`` (older runs), else 0."""
    resolved = trainer_state.get("scene_defaults") or {}
    value = resolved.get("depth_ratio", settings.get("depth_ratio"))
    return float(value) if value is not None else 0.0
