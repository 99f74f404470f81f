"""Upstream's ``cov3D_precomp`` (2DGS's ``--compute_cov3D_python`` path) as surfels.

There it is not a covariance but each surfel's 3x3 map M from its tangent plane (u, v, 1) to
homogeneous pixels, row-major: ``M = K [W t_u s_u | W t_v s_v | p_c]`` with upstream's K. K and
the view give back the centre, the two scaled axes and so scales and a rotation, which
``rasterize_surfels`` takes; autograd carries the gradients back to M. Axes that are not
orthogonal (a sheared splat, which 2DGS never makes) are made orthogonal, keeping u.
"""

from __future__ import annotations

from typing import Tuple

import torch

__all__ = ["surfels_from_transforms", "rotation_to_quaternion"]

_MIN_LENGTH = 1e-30


def rotation_to_quaternion(rotation: torch.Tensor) -> torch.Tensor:
    """``[N, 4]`` (w, x, y, z), not normalised, of rotations ``[N, 3, 3]``: of the four standard
    candidates (each 4 q_i times q) the one with the largest |q_i|, so never near zero."""
    r = rotation
    trace_terms = torch.stack([
        1 + r[:, 0, 0] + r[:, 1, 1] + r[:, 2, 2], 1 + r[:, 0, 0] - r[:, 1, 1] - r[:, 2, 2],
        1 - r[:, 0, 0] + r[:, 1, 1] - r[:, 2, 2], 1 - r[:, 0, 0] - r[:, 1, 1] + r[:, 2, 2]], -1)
    wx, wy, wz = r[:, 2, 1] - r[:, 1, 2], r[:, 0, 2] - r[:, 2, 0], r[:, 1, 0] - r[:, 0, 1]
    xy, xz, yz = r[:, 0, 1] + r[:, 1, 0], r[:, 0, 2] + r[:, 2, 0], r[:, 1, 2] + r[:, 2, 1]
    candidates = torch.stack([
        torch.stack([trace_terms[:, 0], wx, wy, wz], -1),
        torch.stack([wx, trace_terms[:, 1], xy, xz], -1),
        torch.stack([wy, xy, trace_terms[:, 2], yz], -1),
        torch.stack([wz, xz, yz, trace_terms[:, 3]], -1)], 1)  # [N, 4 candidates, 4]
    best = trace_terms.detach().argmax(-1)
    return candidates[torch.arange(r.shape[0], device=r.device), best]


def _safe_unit(vectors: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(unit vectors, lengths); zero or non-finite vectors give the x axis (a length-0 surfel,
    which the rasterizer culls) with no NaN in any gradient."""
    length2 = (vectors * vectors).sum(-1, keepdim=True)
    usable = torch.isfinite(length2) & (length2 > _MIN_LENGTH)
    axis = torch.zeros_like(vectors)
    axis[..., 0] = 1.0
    safe = torch.where(usable, vectors, axis)
    length = torch.linalg.vector_norm(safe, dim=-1, keepdim=True)
    return safe / length, torch.where(usable, length, torch.zeros_like(length)).squeeze(-1)


def surfels_from_transforms(transforms: torch.Tensor, viewmat: torch.Tensor,
                            upstream_K: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(means [N, 3], quats [N, 4], scales [N, 2])`` of ``transforms [N, 9]`` (row-major M in
    upstream's pixel convention), given gsplat_lib's ``viewmat`` and upstream's ``K``."""
    homography = transforms.reshape(-1, 3, 3)
    camera = torch.linalg.solve(upstream_K.to(homography.dtype), homography)  # columns: a, b, p_c
    rotation_wc = viewmat[:3, :3].to(homography.dtype)
    world = rotation_wc.T @ camera  # columns: W^T a, W^T b, W^T p_c
    means = world[:, :, 2] - (rotation_wc.T @ viewmat[:3, 3].to(homography.dtype))
    t_u, s_u = _safe_unit(world[:, :, 0])
    axis_v = world[:, :, 1]
    t_v, _ = _safe_unit(axis_v - (axis_v * t_u).sum(-1, keepdim=True) * t_u)
    _, s_v = _safe_unit(axis_v)
    t_w = torch.linalg.cross(t_u, t_v, dim=-1)
    quats = rotation_to_quaternion(torch.stack([t_u, t_v, t_w], -1))
    return means, quats, torch.stack([s_u, s_v], -1)
