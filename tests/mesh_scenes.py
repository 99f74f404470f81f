"""Analytic depth maps (spheres, planes) seen by orbiting cameras: inputs of the TSDF tests and
of benchmarks/bench_mesh.py. Ray casting in float64; depth is camera-space z, 0 on a miss."""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch

from gsplat_lib.cameras import look_at


def orbit_cameras(
    num_views: int, width: int, height: int, *, distance: float = 2.0, focal: float = None,
    target: Sequence[float] = (0.0, 0.0, 0.0), elevation: float = 0.4, base_elevation: float = 0.0,
    top: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(viewmats [C, 4, 4], Ks [C, 3, 3]) float32 around ``target``, elevations oscillating within
    ``base_elevation`` +- ``elevation`` radians; with ``top``, the last view looks straight down."""
    focal = focal if focal is not None else 0.9 * width
    viewmats = []
    for k in range(num_views):
        target_t = torch.as_tensor(target, dtype=torch.float64)
        if top and k == num_views - 1:
            eye = target_t + torch.tensor([0.0, 0.0, distance], dtype=torch.float64)
            viewmats.append(look_at(eye.tolist(), target, up=(0.0, 1.0, 0.0), dtype=torch.float64))
            continue
        azimuth = 2.0 * math.pi * k / num_views
        tilt = base_elevation + elevation * math.sin(3.0 * azimuth + 0.3)
        offset = torch.tensor(
            [math.cos(azimuth) * math.cos(tilt), math.sin(azimuth) * math.cos(tilt), math.sin(tilt)], dtype=torch.float64
        )
        viewmats.append(look_at((target_t + distance * offset).tolist(), target, up=(0.0, 0.0, 1.0), dtype=torch.float64))
    K = torch.tensor([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])
    return torch.stack(viewmats).float(), K.expand(num_views, 3, 3).contiguous()


def _rays(viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int):
    """World origin [3] and directions [H, W, 3] (camera z = 1) through the pixel centres, float64."""
    viewmat, K = viewmat.double(), K.double()
    rotation, translation = viewmat[:3, :3], viewmat[:3, 3]
    rows, cols = torch.meshgrid(
        torch.arange(height, dtype=torch.float64) + 0.5, torch.arange(width, dtype=torch.float64) + 0.5, indexing="ij"
    )
    camera = torch.stack([(cols - K[0, 2]) / K[0, 0], (rows - K[1, 2]) / K[1, 1], torch.ones_like(rows)], dim=-1)
    return -rotation.T @ translation, camera @ rotation


def sphere_depth(viewmat, K, width, height, center, radius) -> torch.Tensor:
    """[H, W] float64 depth of a sphere."""
    origin, directions = _rays(viewmat, K, width, height)
    oc = origin - torch.as_tensor(center, dtype=torch.float64)
    a = (directions * directions).sum(-1)
    b = (directions * oc).sum(-1)
    c = (oc * oc).sum() - radius * radius
    disc = b * b - a * c
    t = (-b - torch.sqrt(disc.clamp_min(0.0))) / a
    return torch.where((disc > 0) & (t > 0), t, torch.zeros_like(t))


def plane_depth(viewmat, K, width, height, height_z: float, half_size: float) -> torch.Tensor:
    """[H, W] float64 depth of the square z = height_z, |x|, |y| <= half_size, seen from above."""
    origin, directions = _rays(viewmat, K, width, height)
    t = (height_z - origin[2]) / directions[..., 2]
    hit = origin[:2] + t[..., None] * directions[..., :2]
    inside = (t > 0) & (hit.abs() <= half_size).all(dim=-1) & (directions[..., 2] < 0)
    return torch.where(inside, t, torch.zeros_like(t))


def scene_depths(viewmats, Ks, width, height, surfaces) -> torch.Tensor:
    """[C, H, W, 1] float32 nearest depth over ``surfaces``: callables (viewmat, K, W, H) -> [H, W]."""
    maps = []
    for viewmat, K in zip(viewmats, Ks):
        nearest = torch.full((height, width), math.inf, dtype=torch.float64)
        for surface in surfaces:
            depth = surface(viewmat, K, width, height)
            nearest = torch.where((depth > 0) & (depth < nearest), depth, nearest)
        maps.append(torch.where(torch.isfinite(nearest), nearest, torch.zeros_like(nearest)))
    return torch.stack(maps).float()[..., None]


def sphere(center, radius):
    return lambda viewmat, K, width, height: sphere_depth(viewmat, K, width, height, center, radius)


def plane(height_z, half_size):
    return lambda viewmat, K, width, height: plane_depth(viewmat, K, width, height, height_z, half_size)
