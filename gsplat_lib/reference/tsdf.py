"""Pure-PyTorch TSDF fusion: the readable math of ``csrc/core/tsdf.h``, a test oracle.

Everything is float32 and follows the compiled core operation by operation, so the two
agree to the last bits or nearly so. ``grid`` is :attr:`gsplat_lib.mesh.TSDFVolume.grid`:
(spacing, truncation, contracted, centre x, y, z, radius, contracted limit).
"""

from __future__ import annotations

import math

from typing import Optional, Sequence

import torch

__all__ = [
    "contract",
    "uncontract",
    "grid_to_world",
    "truncation_at",
    "integrate_reference",
    "candidate_blocks_reference",
]

_SIDE = 8


def _length(v: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1] + v[..., 2] * v[..., 2])


def contract(u: torch.Tensor) -> torch.Tensor:
    """2DGS: ``u`` inside the unit ball, ``(2 - 1/|u|) u / |u|`` outside; ``[..., 3]``."""
    n = _length(u)[..., None]
    return torch.where(n <= 1.0, u, ((2.0 - 1.0 / n) / n) * u)


def uncontract(y: torch.Tensor) -> torch.Tensor:
    m = _length(y)[..., None]
    far = torch.where(m < 2.0, 1.0 / (m * (2.0 - m)), torch.full_like(m, math.nan))  # |y| >= 2: infinity
    return torch.where(m <= 1.0, y, far * y)


def _center(grid: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(grid[3:6], dtype=torch.float32, device=like.device)


def grid_to_world(q: torch.Tensor, grid: Sequence[float]) -> torch.Tensor:
    """World positions ``[..., 3]`` of grid points ``q`` (voxel units)."""
    p = grid[0] * q
    if not grid[2]:
        return p
    return _center(grid, q) + grid[6] * uncontract(p)


def _world_to_grid_space(x: torch.Tensor, grid: Sequence[float]) -> torch.Tensor:
    if not grid[2]:
        return x
    inv = 1.0 / torch.tensor(grid[6], dtype=torch.float32)
    return contract((x - _center(grid, x)) * inv)


def truncation_at(y: torch.Tensor, grid: Sequence[float]) -> torch.Tensor:
    """``[...]`` truncation (world) at grid-space points ``y [..., 3]``: scaled by the
    contraction's radial stretch ``1 / (2 - |y|)^2`` outside the unit ball."""
    trunc = torch.full(y.shape[:-1], grid[1], dtype=torch.float32, device=y.device)
    if not grid[2]:
        return trunc
    m = _length(y)
    gap = 2.0 - m
    return torch.where(m <= 1.0, trunc, trunc * (1.0 / (gap * gap)))


def _project(viewmat: torch.Tensor, K: torch.Tensor, world: torch.Tensor):
    rotation, translation = viewmat[:3, :3], viewmat[:3, 3]
    p = torch.stack(
        [
            rotation[r, 0] * world[..., 0] + rotation[r, 1] * world[..., 1] + rotation[r, 2] * world[..., 2]
            + translation[r]
            for r in range(3)
        ],
        dim=-1,
    )
    inv_z = 1.0 / p[..., 2]
    u = K[0, 0] * (p[..., 0] * inv_z) + K[0, 2]
    v = K[1, 1] * (p[..., 1] * inv_z) + K[1, 2]
    return p, u, v, inv_z


def integrate_reference(
    block_coords: torch.Tensor,
    tsdf: torch.Tensor,
    weight: torch.Tensor,
    color: Optional[torch.Tensor],
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    depths: torch.Tensor,
    colors: Optional[torch.Tensor],
    grid: Sequence[float],
):
    """Fuses views in order into the voxels of blocks ``[B, 3]``; returns new
    ``(tsdf [B, 512], weight [B, 512], color [B, 512, 3] or None)``.

    Per view a voxel at world x takes the depth ``d`` of the pixel holding its projection
    and, when ``d > 0`` and the signed distance along the ray ``sdf = (d - z) |p| / z`` is at
    least ``-trunc``, fuses ``min(1, sdf / trunc)`` and the pixel colour into running means
    (divisions as products with reciprocals, like the core).
    ``depths`` is ``[C, H, W]``, ``colors`` ``[C, H, W, 3]``.
    """
    local = torch.arange(_SIDE**3)
    offsets = torch.stack([local % _SIDE, (local // _SIDE) % _SIDE, local // _SIDE**2], dim=1)
    q = (block_coords[:, None, :] * _SIDE + offsets[None]).to(torch.float32)
    world = grid_to_world(q, grid)
    trunc = truncation_at(grid[0] * q, grid)
    inv_trunc = 1.0 / trunc
    tsdf, weight = tsdf.clone(), weight.clone()
    color = None if color is None else color.clone()
    height, width = depths.shape[1:]
    for c in range(depths.shape[0]):
        p, u, v, inv_z = _project(viewmats[c], Ks[c], world)
        inside = (p[..., 2] > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
        col = torch.floor(torch.where(inside, u, 0.0)).long()
        row = torch.floor(torch.where(inside, v, 0.0)).long()
        d = depths[c][row, col]
        sdf = (d - p[..., 2]) * (_length(p) * inv_z)
        fuse = inside & (d > 0) & (d <= 3.0e38) & (sdf >= -trunc)
        value = torch.clamp(sdf * inv_trunc, max=1.0)
        following = weight + 1.0
        inv_following = 1.0 / following  # the core multiplies by reciprocals, as here
        tsdf = torch.where(fuse, (tsdf * weight + value) * inv_following, tsdf)
        if color is not None and colors is not None:
            rgb = colors[c][row, col]
            color = torch.where(fuse[..., None], (color * weight[..., None] + rgb) * inv_following[..., None], color)
        weight = torch.where(fuse, following, weight)
    return tsdf, weight, color


def _camera_to_world(rotation: torch.Tensor, translation: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``R^T (p - t)`` for camera points ``[..., 3]``, summed in the core's order."""
    d = p - translation
    return torch.stack(
        [rotation[0, j] * d[..., 0] + rotation[1, j] * d[..., 1] + rotation[2, j] * d[..., 2] for j in range(3)], dim=-1
    )


def candidate_blocks_reference(
    depths: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor, grid: Sequence[float]
) -> torch.Tensor:
    """``[K, 3]`` int32 blocks (unique, sorted by x, y, z) that fusing ``depths [C, H, W]``
    allocates: for every pixel with depth, the box of blocks around the ray segment of
    sdf in ``[-trunc, trunc]`` (one more voxel on the high side, so every cube of the band
    has its eight corners)."""
    found = []
    height, width = depths.shape[1:]
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    for c in range(depths.shape[0]):
        rotation, translation = viewmats[c, :3, :3], viewmats[c, :3, 3]
        K = Ks[c]
        d = depths[c]
        ray = torch.stack(
            [(cols + 0.5 - K[0, 2]) / K[0, 0], (rows + 0.5 - K[1, 2]) / K[1, 1], torch.ones_like(d)], dim=-1
        )
        surface = _camera_to_world(rotation, translation, d[..., None] * ray)
        y = _world_to_grid_space(surface, grid)
        valid = (d > 0) & (d <= 3.0e38)
        if grid[2]:
            valid &= _length(y) <= grid[7]
        trunc = truncation_at(y, grid)
        origin = _camera_to_world(rotation, translation, torch.zeros(3))
        toward = surface - origin
        scale = (trunc / _length(toward))[..., None]
        ends = torch.stack([surface, surface - scale * toward, surface + scale * toward])
        coords = _world_to_grid_space(ends, grid) * (1.0 / torch.tensor(grid[0], dtype=torch.float32))
        low = torch.floor(coords.min(dim=0).values).long()
        high = torch.floor(coords.max(dim=0).values).long() + 1
        low_block = torch.div(low, _SIDE, rounding_mode="floor")[valid]
        high_block = torch.div(high, _SIDE, rounding_mode="floor")[valid]
        extent = int((high_block - low_block).max()) + 1 if low_block.numel() else 0
        steps = torch.arange(extent)
        offsets = torch.stack(torch.meshgrid(steps, steps, steps, indexing="ij"), dim=-1).reshape(-1, 3)
        blocks = low_block[:, None, :] + offsets[None]
        inside = (blocks <= high_block[:, None, :]).all(dim=-1)
        found.append(blocks[inside])
    if not found:
        return torch.zeros((0, 3), dtype=torch.int32)
    return torch.unique(torch.cat(found).to(torch.int32), dim=0)
