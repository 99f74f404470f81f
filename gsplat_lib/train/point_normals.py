"""Initial surfel orientations from the sparse points' local planes.

2DGS starts every surfel at a random rotation. Where the points sample a surface, the plane
through a point and its nearest neighbours is a better start: the surfel lies in the
surface instead of standing across it (on a lawn seen at a grazing angle, a random surfel
stands up and covers the view of what lies behind it until the normal loss flattens it).
The normal is the direction of least spread of the ``k`` nearest neighbours (principal
component analysis), the surfel's first axis the direction of most spread.
"""

from __future__ import annotations

import torch

from gsplat_lib.ops.knn import knn

__all__ = ["plane_rotations", "rotation_to_quaternion"]


def rotation_to_quaternion(rotations: torch.Tensor) -> torch.Tensor:
    """Unit quaternions ``[N, 4]`` (w, x, y, z) of rotation matrices ``[N, 3, 3]`` (columns
    are the rotated axes), by the largest of the four squared components (stable everywhere)."""
    r = rotations
    trace = r[:, 0, 0] + r[:, 1, 1] + r[:, 2, 2]
    squares = torch.stack(  # 4 w^2, 4 x^2, 4 y^2, 4 z^2
        [1 + trace, 1 + 2 * r[:, 0, 0] - trace, 1 + 2 * r[:, 1, 1] - trace, 1 + 2 * r[:, 2, 2] - trace], dim=1
    )
    largest = squares.argmax(dim=1)
    root = squares.gather(1, largest[:, None])[:, 0].clamp_min(1e-12).sqrt()  # 2 |q_largest|
    candidates = torch.stack(
        [
            torch.stack([root * root, r[:, 2, 1] - r[:, 1, 2], r[:, 0, 2] - r[:, 2, 0], r[:, 1, 0] - r[:, 0, 1]], 1),
            torch.stack([r[:, 2, 1] - r[:, 1, 2], root * root, r[:, 0, 1] + r[:, 1, 0], r[:, 0, 2] + r[:, 2, 0]], 1),
            torch.stack([r[:, 0, 2] - r[:, 2, 0], r[:, 0, 1] + r[:, 1, 0], root * root, r[:, 1, 2] + r[:, 2, 1]], 1),
            torch.stack([r[:, 1, 0] - r[:, 0, 1], r[:, 0, 2] + r[:, 2, 0], r[:, 1, 2] + r[:, 2, 1], root * root], 1),
        ],
        dim=1,
    )  # [N, 4 cases, 4]: each row is 2 |q_largest| q for its case
    quats = candidates[torch.arange(len(r)), largest] / (2.0 * root[:, None])
    quats = quats * torch.where(quats[:, :1] < 0, -1.0, 1.0)  # w >= 0
    return torch.nn.functional.normalize(quats, dim=1)


def plane_rotations(points: torch.Tensor, k: int = 8) -> torch.Tensor:
    """Quaternions ``[N, 4]`` whose third axis (the surfel normal) is the normal of the plane
    through each point and its ``k`` nearest neighbours, and whose first axis follows their
    largest spread. ``points``: ``[N, 3]`` float32, N > k."""
    indices, _ = knn(points.contiguous(), k)
    neighbourhood = torch.cat([points[:, None], points[indices.clamp_min(0)]], dim=1).to(torch.float64)
    centred = neighbourhood - neighbourhood.mean(dim=1, keepdim=True)
    covariance = centred.transpose(1, 2) @ centred
    _, axes = torch.linalg.eigh(covariance)  # ascending eigenvalues: normal first, spread last
    t_u, normal = axes[:, :, 2], axes[:, :, 0]
    t_v = torch.linalg.cross(normal, t_u, dim=1)  # (t_u, t_v, normal) right-handed
    return rotation_to_quaternion(torch.stack([t_u, t_v, normal], dim=2)).to(points.dtype)
