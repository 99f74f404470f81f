"""Checks that reject corrupt camera data where it is read, naming the file and the entry.

A pose or focal length that is NaN, a zero quaternion or a point at infinity would
otherwise reach the rasterizer, which culls everything it cannot draw: a run would train on
black images without a word (docs/design.md, decision 6). Values are checked as the float32
they are stored as, so 1e308 is as bad as Inf.
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_rotation", "check_viewmat", "check_intrinsics", "check_points"]

# How far R^T R may be from the identity: loose enough for poses written with a few digits,
# tight enough to reject scaled, sheared or singular matrices.
_ORTHONORMAL_TOLERANCE = 1e-2


def _finite32(values) -> bool:
    with np.errstate(over="ignore"):
        return bool(np.all(np.isfinite(np.asarray(values, dtype=np.float64).astype(np.float32))))


def check_rotation(rotation: np.ndarray, where: str) -> None:
    """ValueError unless ``rotation`` [3, 3] is a finite proper rotation (orthonormal, det +1)."""
    rotation = np.asarray(rotation, dtype=np.float64)
    if not _finite32(rotation):
        raise ValueError(f"{where}: the rotation contains NaN or Inf")
    error = np.abs(rotation.T @ rotation - np.eye(3)).max()
    if error > _ORTHONORMAL_TOLERANCE or np.linalg.det(rotation) < 0:
        raise ValueError(
            f"{where}: the rotation is not a rotation matrix (|R^T R - I| = {error:.3g}, "
            f"det = {np.linalg.det(rotation):.3g}); the pose is corrupt"
        )


def check_viewmat(viewmat: np.ndarray, where: str) -> None:
    """ValueError unless ``viewmat`` [4, 4] is a finite rigid transform with last row (0, 0, 0, 1)."""
    viewmat = np.asarray(viewmat, dtype=np.float64)
    if viewmat.shape != (4, 4):
        raise ValueError(f"{where}: the pose must be a 4x4 matrix, got shape {viewmat.shape}")
    if not _finite32(viewmat):
        raise ValueError(f"{where}: the pose contains NaN or Inf (in float32)")
    if not np.allclose(viewmat[3], (0.0, 0.0, 0.0, 1.0)):
        raise ValueError(f"{where}: the pose's last row must be (0, 0, 0, 1), got {viewmat[3].tolist()}")
    check_rotation(viewmat[:3, :3], where)


def check_intrinsics(K: np.ndarray, where: str) -> None:
    """ValueError unless the focal lengths are finite and > 0 and the principal point finite."""
    K = np.asarray(K, dtype=np.float64)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if not (_finite32((fx, fy)) and fx > 0 and fy > 0):
        raise ValueError(f"{where}: focal lengths must be finite and > 0, got fx={fx}, fy={fy}")
    if not _finite32((cx, cy)):
        raise ValueError(f"{where}: the principal point must be finite, got cx={cx}, cy={cy}")


def check_points(points: np.ndarray, where: str) -> None:
    """ValueError naming the first point with a NaN or Inf coordinate."""
    with np.errstate(over="ignore"):
        bad = np.flatnonzero(~np.all(np.isfinite(np.asarray(points).astype(np.float32)), axis=1))
    if bad.size:
        raise ValueError(
            f"{where}: {bad.size} point(s) have NaN or Inf coordinates (the first is #{bad[0]}: "
            f"{np.asarray(points[bad[0]]).tolist()}); the point cloud is corrupt"
        )
