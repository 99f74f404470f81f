"""Camera math in the library's convention: OpenCV axes (x right, y down, z forward),
world-to-camera ``viewmat [4, 4]``, intrinsics ``K [3, 3]`` in pixels."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

__all__ = ["camera_center", "look_at", "radius_around_mean"]


def look_at(
    eye: Sequence[float],
    target: Sequence[float] = (0.0, 0.0, 0.0),
    up: Sequence[float] = (0.0, 1.0, 0.0),
    dtype: torch.dtype = torch.float32,
    roll_deg: float = 0.0,
) -> torch.Tensor:
    """World-to-camera ``[4, 4]`` of a camera at ``eye`` looking at ``target``.

    ``up`` is the world direction that appears upwards in the image (it must not be parallel to
    the viewing direction); ``roll_deg`` then turns the image axes about the viewing direction
    (positive: the image x axis towards image y, as a hand-held camera tilts). Computed in
    float64, returned as ``dtype``.
    """
    eye_t = torch.as_tensor(eye, dtype=torch.float64)
    forward = torch.as_tensor(target, dtype=torch.float64) - eye_t
    forward = forward / forward.norm()
    right = torch.linalg.cross(forward, torch.as_tensor(up, dtype=torch.float64))
    norm = right.norm()
    if not norm > 0:
        raise ValueError(f"up {tuple(up)} is parallel to the viewing direction from {tuple(eye)} to {tuple(target)}")
    right = right / norm
    down = torch.linalg.cross(forward, right)
    if roll_deg != 0.0:
        cos, sin = math.cos(math.radians(roll_deg)), math.sin(math.radians(roll_deg))
        right, down = cos * right + sin * down, cos * down - sin * right
    rotation = torch.stack([right, down, forward])  # rows: the camera axes in world coordinates
    viewmat = torch.eye(4, dtype=torch.float64)
    viewmat[:3, :3] = rotation
    viewmat[:3, 3] = -rotation @ eye_t
    return viewmat.to(dtype)


def camera_center(viewmat: np.ndarray) -> np.ndarray:
    """[3] float32 camera centre in world coordinates, ``-R^T t``, of a ``[4, 4]`` viewmat."""
    rotation = viewmat[:3, :3].astype(np.float64)
    translation = viewmat[:3, 3].astype(np.float64)
    return (-rotation.T @ translation).astype(np.float32)


def radius_around_mean(points: np.ndarray) -> float:
    """1.1 times the largest distance of ``points [P, 3]`` from their mean: 3DGS's scene
    extent (``getNerfppNorm``) of its camera centres. 1.0 when that is zero (one point, or
    none), which would make every extent-relative threshold zero."""
    if len(points) == 0:
        return 1.0
    points = np.asarray(points, dtype=np.float64)
    radius = 1.1 * float(np.linalg.norm(points - points.mean(axis=0), axis=1).max())
    return radius if radius > 0.0 else 1.0
