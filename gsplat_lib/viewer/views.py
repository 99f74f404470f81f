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

__all__ = ["ViewCamera", "view_from_pose", "camera_pose", "wxyz_to_rotation", "rotation_to_wxyz"]


@dataclass(eq=False)
class ViewCamera:
    """A camera to render: ``viewmat`` [4, 4] and ``K`` [3, 3] float32, ``width`` x ``height`` pixels."""

    viewmat: np.ndarray
    K: np.ndarray
    width: int
    height: int


def wxyz_to_rotation(wxyz: Sequence[float]) -> np.ndarray:
    """[3, 3] rotation of a quaternion (w, x, y, z) (normalised here)."""
    w, x, y, z = np.asarray(wxyz, dtype=np.float64) / np.linalg.norm(wxyz)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotation_to_wxyz(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z), w >= 0, of a [3, 3] rotation.

    The eigenvector of the largest eigenvalue of Bar-Itzhack's symmetric matrix: accurate for
    every rotation, and the nearest rotation's quaternion when ``rotation`` is slightly off.
    """
    (xx, xy, xz), (yx, yy, yz), (zx, zy, zz) = np.asarray(rotation, dtype=np.float64)
    symmetric = np.array(
        [
            [xx + yy + zz, zy - yz, xz - zx, yx - xy],
            [zy - yz, xx - yy - zz, xy + yx, xz + zx],
            [xz - zx, xy + yx, yy - xx - zz, yz + zy],
            [yx - xy, xz + zx, yz + zy, zz - xx - yy],
        ]
    ) / 3.0
    _, vectors = np.linalg.eigh(symmetric)
    quaternion = vectors[:, -1]
    return quaternion if quaternion[0] >= 0 else -quaternion


def view_from_pose(wxyz: Sequence[float], position: Sequence[float], fov_y: float, width: int, height: int) -> ViewCamera:
    """The camera of a camera-to-world pose with vertical field of view ``fov_y`` (radians),
    rendering ``width`` x ``height`` pixels (principal point at the centre)."""
    if width < 1 or height < 1:
        raise ValueError(f"view_from_pose: image size must be positive, got {width} x {height}")
    if not 0.0 < fov_y < math.pi:
        raise ValueError(f"view_from_pose: fov_y must be in (0, pi) radians, got {fov_y}")
    rotation = wxyz_to_rotation(wxyz)
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
    return rotation_to_wxyz(rotation.T), -rotation.T @ translation, fov_y, camera.width / camera.height
