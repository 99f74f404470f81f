"""Camera poses between the browser's camera and the rasterizer's.

Both use OpenCV axes (x right, y down, z forward). The browser (viser) gives a camera-to-world
rotation as a unit quaternion (w, x, y, z), a position, a vertical field of view and a canvas
size; the rasterizer takes a world-to-camera ``viewmat`` and pixel intrinsics ``K``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

from gsplat_lib.data import Camera
from gsplat_lib.data.colmap import qvec_to_rotmat, rotmat_to_qvec

__all__ = ["ViewCamera", "view_from_pose", "camera_pose"]


@dataclass(eq=False)
class ViewCamera:
    """A camera to render: ``viewmat`` [4, 4] and ``K`` [3, 3] float32, ``width`` x ``height`` pixels."""

    viewmat: np.ndarray
    K: np.ndarray
    width: int
    height: int


def view_from_pose(wxyz: Sequence[float], position: Sequence[float], fov_y: float, width: int, height: int) -> ViewCamera:
    """The camera of a camera-to-world pose with vertical field of view ``fov_y`` (radians),
    rendering ``width`` x ``height`` pixels (principal point at the centre)."""
    if width < 1 or height < 1:
        raise ValueError(f"view_from_pose: image size must be positive, got {width} x {height}")
    if not 0.0 < fov_y < math.pi:
        raise ValueError(f"view_from_pose: fov_y must be in (0, pi) radians, got {fov_y}")
    rotation = qvec_to_rotmat(wxyz)
    viewmat = np.eye(4)
    viewmat[:3, :3] = rotation.T
    viewmat[:3, 3] = -rotation.T @ np.asarray(position, dtype=np.float64)
    focal = 0.5 * height / math.tan(0.5 * fov_y)
    K = np.array([[focal, 0.0, 0.5 * width], [0.0, focal, 0.5 * height], [0.0, 0.0, 1.0]])
    return ViewCamera(viewmat.astype(np.float32), K.astype(np.float32), int(width), int(height))


def camera_pose(camera: Camera) -> Tuple[np.ndarray, np.ndarray, float, float]:
    """(wxyz, position, vertical fov in radians, aspect width / height) of a dataset camera."""
    rotation = camera.viewmat[:3, :3].astype(np.float64)
    translation = camera.viewmat[:3, 3].astype(np.float64)
    fov_y = 2.0 * math.atan(0.5 * camera.height / float(camera.K[1, 1]))
    return rotmat_to_qvec(rotation.T), -rotation.T @ translation, fov_y, camera.width / camera.height
