"""Camera helpers in the library's convention: OpenCV axes (x right, y down, z forward),
world-to-camera ``viewmat [4, 4]``."""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["look_at"]


def look_at(
    eye: Sequence[float],
    target: Sequence[float] = (0.0, 0.0, 0.0),
    up: Sequence[float] = (0.0, 1.0, 0.0),
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """World-to-camera ``[4, 4]`` of a camera at ``eye`` looking at ``target``.

    ``up`` is the world direction that appears upwards in the image (it must not be parallel to
    the viewing direction). Computed in float64, returned as ``dtype``.
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
    rotation = torch.stack([right, down, forward])  # rows: the camera axes in world coordinates
    viewmat = torch.eye(4, dtype=torch.float64)
    viewmat[:3, :3] = rotation
    viewmat[:3, 3] = -rotation @ eye_t
    return viewmat.to(dtype)
