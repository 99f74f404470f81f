"""What a trained model gives TSDF fusion: surface depth, colour and opacity per camera, and
the bounding sphere of the cameras from which 2DGS derives its mesh defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np
import torch

from gsplat_lib.model import GaussianModel
from gsplat_lib.ops.rasterize import rasterize_surfels

__all__ = ["DepthBatch", "render_depth_maps", "camera_bounding_sphere", "median_pixel_footprint"]


@dataclass(eq=False)
class DepthBatch:
    """Renders of C cameras of one image size.

    Attributes:
        indices: the cameras' positions in the list given to :func:`render_depth_maps`.
        depths: ``[C, H, W, 1]`` surface depth (camera z): ``(1 - r) expected + r median``.
        colors: ``[C, H, W, 3]`` colour of the SH degree-0 (view-independent) part.
        alphas: ``[C, H, W, 1]`` accumulated opacity.
        viewmats: ``[C, 4, 4]``; Ks: ``[C, 3, 3]``.
    """

    indices: Sequence[int]
    depths: torch.Tensor
    colors: torch.Tensor
    alphas: torch.Tensor
    viewmats: torch.Tensor
    Ks: torch.Tensor


@torch.no_grad()
def render_depth_maps(
    model: GaussianModel,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    sizes: Sequence[Tuple[int, int]],
    *,
    depth_ratio: float = 0.0,
    batch_size: int = 8,
    near: float = 0.01,
    far: float = 1000.0,
) -> Iterator[DepthBatch]:
    """Renders the model's surface depth for every camera, ``batch_size`` cameras of one size
    per rasterizer call, in camera order within each size.

    Args:
        model: the trained surfels.
        viewmats: ``[N, 4, 4]`` world-to-camera; Ks: ``[N, 3, 3]`` (on any device; moved to the model's).
        sizes: ``(width, height)`` of each camera.
        depth_ratio: 0 takes the expected depth (2DGS's choice for unbounded scenes), 1 the
            median depth (bounded scenes), values between blend them.
        batch_size: cameras per rasterizer call.
        near, far: the rasterizer's clipping planes.

    Colours are those of SH degree 0, as 2DGS exports meshes (``active_sh_degree = 0``): what
    a surface looks like without view-dependent effects.
    """
    if not 0.0 <= depth_ratio <= 1.0:
        raise ValueError(f"depth_ratio must be in [0, 1], got {depth_ratio!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if len(sizes) != viewmats.shape[0] or Ks.shape[0] != viewmats.shape[0]:
        raise ValueError(
            f"viewmats ({viewmats.shape[0]}), Ks ({Ks.shape[0]}) and sizes ({len(sizes)}) must list the same cameras"
        )
    device = model.device
    viewmats = viewmats.to(device=device, dtype=torch.float32)
    Ks = Ks.to(device=device, dtype=torch.float32)
    sh_dc = model.sh[:, :1].contiguous()
    for size in sorted(set((int(w), int(h)) for w, h in sizes)):
        group = [index for index, other in enumerate(sizes) if (int(other[0]), int(other[1])) == size]
        for first in range(0, len(group), batch_size):
            indices = group[first : first + batch_size]
            result = rasterize_surfels(
                model.means, model.quats, model.scales, model.opacities,
                viewmats=viewmats[indices], Ks=Ks[indices], width=size[0], height=size[1],
                near=near, far=far, sh=sh_dc, sh_degree=0,
            )
            depths = result.expected_depths
            if depth_ratio > 0.0:
                depths = (1.0 - depth_ratio) * depths + depth_ratio * result.median_depths
            yield DepthBatch(indices, depths, result.colors, result.alphas, viewmats[indices], Ks[indices])


def camera_bounding_sphere(viewmats: torch.Tensor) -> Tuple[np.ndarray, float]:
    """2DGS's ``estimate_bounding_sphere``: the point nearest to all optical axes (least
    squares, ``focus_point_fn``) and the smallest distance of a camera centre from it.

    Args:
        viewmats: ``[N, 4, 4]`` world-to-camera matrices.
    Returns ``(center [3] float64, radius)``.
    """
    viewmats = torch.as_tensor(viewmats).detach().cpu().double().numpy()
    rotations, translations = viewmats[:, :3, :3], viewmats[:, :3, 3]
    origins = -np.einsum("nji,nj->ni", rotations, translations)  # -R^T t
    axes = rotations[:, 2, :]  # the camera z axes in world coordinates
    projectors = np.eye(3)[None] - axes[:, :, None] * axes[:, None, :]
    normal = projectors.mean(axis=0)
    if len(viewmats) == 0 or np.linalg.matrix_rank(normal) < 3:
        # Parallel axes (one camera, or all looking the same way): no point is nearest to all.
        center = origins.mean(axis=0) if len(viewmats) else np.zeros(3)
    else:
        center = np.linalg.solve(normal, np.einsum("nij,nj->i", projectors, origins) / len(viewmats))
    distances = np.linalg.norm(origins - center, axis=1)
    radius = float(distances.min()) if len(distances) else 1.0
    return center, radius if radius > 0 else 1.0


def median_pixel_footprint(viewmats: torch.Tensor, Ks: torch.Tensor, center: Optional[np.ndarray] = None) -> float:
    """The world size of a pixel at the scene's centre: median over cameras of
    (distance to ``center``) / (focal length). ``center`` defaults to the cameras' focus."""
    if center is None:
        center = camera_bounding_sphere(viewmats)[0]
    viewmats = torch.as_tensor(viewmats).detach().cpu().double().numpy()
    Ks = torch.as_tensor(Ks).detach().cpu().double().numpy()
    origins = -np.einsum("nji,nj->ni", viewmats[:, :3, :3], viewmats[:, :3, 3])
    distances = np.linalg.norm(origins - np.asarray(center)[None], axis=1)
    focal = 0.5 * (Ks[:, 0, 0] + Ks[:, 1, 1])
    return float(np.median(distances / focal))
