"""A look at a mesh without a viewer: a small z-buffer rasterizer in torch that shades the
triangles (grey, and with their vertex colours) from a camera, for PNG previews."""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from gsplat_lib.mesh.mesh import Mesh

__all__ = ["rasterize_mesh", "shade_mesh", "mesh_preview"]

# (triangle, pixel) candidates handled at once: bounds memory on big meshes and close-ups.
_CANDIDATE_CHUNK = 1 << 22
_BACKGROUND = (1.0, 1.0, 1.0)


def rasterize_mesh(
    mesh: Mesh, viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int, near: float = 1e-3
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which triangle each pixel centre sees, nearest first (ties: the lower index).

    Returns ``(face [H, W] int64, -1 where none; barycentric [H, W, 3]; depth [H, W])`` on the
    CPU. Triangles with a vertex closer than ``near`` are skipped (no clipping).
    """
    vertices = mesh.vertices.detach().cpu().double()
    faces = mesh.faces.detach().cpu()
    viewmat, K = viewmat.detach().cpu().double(), K.detach().cpu().double()
    camera = vertices @ viewmat[:3, :3].T + viewmat[:3, 3]
    z = camera[:, 2]
    pixel = torch.stack(
        [K[0, 0] * camera[:, 0] / z + K[0, 2], K[1, 1] * camera[:, 1] / z + K[1, 2]], dim=1
    )
    corner_z = z[faces]
    corners = pixel[faces]  # [F, 3, 2]
    visible = (corner_z > near).all(dim=1)
    low = torch.ceil(corners.min(dim=1).values - 0.5).clamp(min=0)
    high = torch.floor(corners.max(dim=1).values - 0.5)
    high = torch.minimum(high, torch.tensor([width - 1.0, height - 1.0], dtype=torch.float64))
    spans = (high - low + 1).clamp(min=0)
    visible &= (spans > 0).all(dim=1)
    candidates = torch.nonzero(visible)[:, 0]
    best_depth = torch.full((height * width,), float("inf"), dtype=torch.float64)
    best_face = torch.full((height * width,), -1, dtype=torch.int64)
    best_bary = torch.zeros((height * width, 3), dtype=torch.float64)
    counts = (spans[candidates, 0] * spans[candidates, 1]).long()
    ends = torch.cumsum(counts, dim=0)
    first = 0
    while first < candidates.shape[0]:
        start_total = int(ends[first - 1]) if first > 0 else 0
        last = int(torch.searchsorted(ends, start_total + _CANDIDATE_CHUNK, right=True))
        last = max(last, first + 1)
        chunk = candidates[first:last]
        chunk_counts = counts[first:last]
        face = torch.repeat_interleave(chunk, chunk_counts)
        offset = torch.arange(int(chunk_counts.sum())) - torch.repeat_interleave(
            torch.cumsum(chunk_counts, 0) - chunk_counts, chunk_counts
        )
        span_x = spans[face, 0].long()
        px = low[face, 0] + (offset % span_x).double() + 0.5
        py = low[face, 1] + (offset // span_x).double() + 0.5
        a, b, c = corners[face, 0], corners[face, 1], corners[face, 2]
        area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
        w0 = (b[:, 0] - px) * (c[:, 1] - py) - (b[:, 1] - py) * (c[:, 0] - px)
        w1 = (c[:, 0] - px) * (a[:, 1] - py) - (c[:, 1] - py) * (a[:, 0] - px)
        w2 = (a[:, 0] - px) * (b[:, 1] - py) - (a[:, 1] - py) * (b[:, 0] - px)
        safe = torch.where(area != 0, area, torch.ones_like(area))
        bary = torch.stack([w0, w1, w2], dim=1) / safe[:, None]  # either winding
        inside = (area != 0) & (bary >= 0).all(dim=1)
        # Perspective-correct: 1/z is linear in screen space.
        inverse_z = (bary / corner_z[face]).sum(dim=1)
        depth = 1.0 / inverse_z
        target = (py - 0.5).long() * width + (px - 0.5).long()
        face, bary, depth, target = face[inside], bary[inside], depth[inside], target[inside]
        bary = bary / corner_z[face] * depth[:, None]
        # Nearest per pixel, then the lowest face index among the nearest.
        chunk_depth = torch.full_like(best_depth, float("inf")).scatter_reduce(0, target, depth, reduce="amin")
        winner = depth == chunk_depth[target]
        chunk_face = torch.full_like(best_face, np.iinfo(np.int64).max).scatter_reduce(
            0, target[winner], face[winner], reduce="amin"
        )
        chosen = winner & (face == chunk_face[target])  # one candidate per pixel
        pixels, depth, face, bary = target[chosen], depth[chosen], face[chosen], bary[chosen]
        better = depth < best_depth[pixels]  # an earlier chunk wins ties: its faces come first
        best_depth[pixels[better]] = depth[better]
        best_face[pixels[better]] = face[better]
        best_bary[pixels[better]] = bary[better]
        first = last
    return best_face.view(height, width), best_bary.view(height, width, 3), best_depth.view(height, width)


def shade_mesh(
    mesh: Mesh, viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int, use_colors: bool = False
) -> np.ndarray:
    """``[H, W, 3]`` float32 image in [0, 1]: Lambertian shading by a light at the camera plus a
    little ambient, on a white background; grey, or the interpolated vertex colours."""
    seen = rasterize_mesh(mesh, viewmat, K, width, height)
    return _shade(mesh, seen, viewmat, K, use_colors)


def _shade(mesh: Mesh, seen, viewmat: torch.Tensor, K: torch.Tensor, use_colors: bool) -> np.ndarray:
    face, bary, _ = seen
    height, width = face.shape
    hit = face >= 0
    image = torch.tensor(_BACKGROUND, dtype=torch.float64).expand(height, width, 3).clone()
    if not bool(hit.any()):
        return image.numpy().astype(np.float32)
    faces = mesh.faces.detach().cpu()[face[hit]]
    normals = mesh.face_normals().detach().cpu().double()[face[hit]]
    viewmat = viewmat.detach().cpu().double()
    camera_normals = normals @ viewmat[:3, :3].T
    rows, cols = torch.nonzero(hit, as_tuple=True)
    rays = torch.stack(
        [
            (cols + 0.5 - float(K[0, 2])) / float(K[0, 0]),
            (rows + 0.5 - float(K[1, 2])) / float(K[1, 1]),
            torch.ones_like(rows, dtype=torch.float64),
        ],
        dim=1,
    )
    rays = rays / rays.norm(dim=1, keepdim=True)
    lambert = (camera_normals * -rays).sum(dim=1).abs()  # back faces lit alike
    shade = 0.25 + 0.75 * lambert
    if use_colors and mesh.vertex_colors is not None:
        albedo = (mesh.vertex_colors.detach().cpu().double()[faces] * bary[hit][:, :, None]).sum(dim=1)
    else:
        albedo = torch.full((faces.shape[0], 3), 0.8, dtype=torch.float64)
    image[hit] = (albedo * shade[:, None]).clamp(0.0, 1.0)
    return image.numpy().astype(np.float32)


def mesh_preview(mesh: Mesh, viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int) -> np.ndarray:
    """``[H, 2 W, 3]``: the mesh shaded grey (its shape) beside the same view in vertex colours."""
    seen = rasterize_mesh(mesh, viewmat, K, width, height)
    return np.concatenate([_shade(mesh, seen, viewmat, K, False), _shade(mesh, seen, viewmat, K, True)], axis=1)
