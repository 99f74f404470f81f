"""How close a mesh is to a known surface: accuracy, completeness and Chamfer distance.

The ground truth is given by two functions of the scene (the built-in scenes provide them,
``gsplat_lib.data.synthetic_scene`` for one): ``distance_to_surface(points [P, 3]) -> [P]``,
the unsigned distance to the true surface, and ``sample_surface(count, seed) -> [count, 3]``,
points spread uniformly over it, or over its part within a ball about the origin (the capture
scene's: then the mesh is cropped to the same ball, ``radius``).

- accuracy: mean distance from the mesh (points sampled uniformly by area) to the true surface;
- completeness: mean distance from the true surface to the mesh (exact point-to-triangle
  distances, to the triangles nearest to each point);
- chamfer: their mean, as in the DTU evaluation 2DGS reports.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional

import numpy as np
import torch

from gsplat_lib.ops.knn import knn
from gsplat_lib.mesh.mesh import Mesh

__all__ = ["sample_mesh_surface", "distance_to_mesh", "crop_to_ball", "evaluate_mesh"]

# Candidate triangles per query point: those among its nearest neighbours (centroids and
# other query points together) that are centroids.
_NEIGHBOURS = 16
_QUERY_CHUNK = 4096


def sample_mesh_surface(mesh: Mesh, count: int, seed: int = 0) -> torch.Tensor:
    """``[count, 3]`` float64 points spread uniformly by area over the mesh (CPU)."""
    if mesh.num_faces == 0:
        raise ValueError("sample_mesh_surface: the mesh has no faces")
    corners = mesh.vertices[mesh.faces].detach().cpu().double()
    areas = 0.5 * torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=-1).norm(dim=-1)
    if not float(areas.sum()) > 0:
        raise ValueError("sample_mesh_surface: the mesh has zero area")
    g = torch.Generator().manual_seed(seed)
    faces = torch.multinomial(areas, count, replacement=True, generator=g)
    u, v = torch.rand(count, generator=g, dtype=torch.float64), torch.rand(count, generator=g, dtype=torch.float64)
    flip = u + v > 1.0
    u, v = torch.where(flip, 1.0 - u, u), torch.where(flip, 1.0 - v, v)
    a, b, c = corners[faces, 0], corners[faces, 1], corners[faces, 2]
    return a + u[:, None] * (b - a) + v[:, None] * (c - a)


def _closest_on_triangles(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Closest points of triangles (a, b, c) to points p, all ``[..., 3]`` (Ericson, Real-Time
    Collision Detection 5.1.5: the Voronoi region of a vertex, an edge or the face; the
    regions are tested in its order, later ones first, so earlier ones win on their borders)."""

    def dot(x, y):
        return (x * y).sum(-1, keepdim=True)

    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = dot(ab, ap), dot(ac, ap)
    bp, cp = p - b, p - c
    d3, d4 = dot(ab, bp), dot(ac, bp)
    d5, d6 = dot(ab, cp), dot(ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    tiny = torch.finfo(p.dtype).tiny
    denominator = va + vb + vc
    safe = torch.where(denominator.abs() > tiny, denominator, torch.ones_like(denominator))
    result = a + (vb / safe) * ab + (vc / safe) * ac  # inside the face
    edge_bc = (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)
    w = (d4 - d3) / ((d4 - d3) + (d5 - d6)).clamp_min(tiny)
    result = torch.where(edge_bc, b + w * (c - b), result)
    edge_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    result = torch.where(edge_ac, a + (d2 / (d2 - d6).clamp_min(tiny)) * ac, result)
    result = torch.where((d6 >= 0) & (d5 <= d6), c, result)
    edge_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    result = torch.where(edge_ab, a + (d1 / (d1 - d3).clamp_min(tiny)) * ab, result)
    result = torch.where((d3 >= 0) & (d4 <= d3), b, result)
    return torch.where((d1 <= 0) & (d2 <= 0), a, result)


def distance_to_mesh(points: torch.Tensor, mesh: Mesh) -> torch.Tensor:
    """``[P]`` float64 distance from points ``[P, 3]`` to the mesh: exact point-to-triangle
    distances to the triangles whose centroids are nearest to the point (found by
    :func:`gsplat_lib.knn` over the centroids and the points together; the nearest triangle is
    among them unless triangles differ wildly in size)."""
    if mesh.num_faces == 0:
        return torch.full((points.shape[0],), float("inf"), dtype=torch.float64)
    corners = mesh.vertices[mesh.faces].detach().cpu().double()
    centroids = corners.mean(dim=1)
    points = torch.as_tensor(points, dtype=torch.float64).cpu()
    num_faces = centroids.shape[0]
    together = torch.cat([centroids, points]).float()
    neighbours, _ = knn(together, min(_NEIGHBOURS, together.shape[0] - 1))
    neighbours = neighbours[num_faces:]  # the points' neighbours: centroids (< F) or other points
    candidates = torch.where((neighbours >= 0) & (neighbours < num_faces), neighbours, -1)
    result = torch.empty(points.shape[0], dtype=torch.float64)
    for first in range(0, points.shape[0], _QUERY_CHUNK):
        chunk = points[first : first + _QUERY_CHUNK]
        chosen = candidates[first : first + _QUERY_CHUNK]
        missing = (chosen < 0).all(dim=1)
        if bool(missing.any()):  # every neighbour was another point: search all centroids
            k = min(chosen.shape[1], num_faces)
            found = torch.cdist(chunk[missing], centroids).topk(k, dim=1, largest=False).indices
            chosen[missing] = torch.cat([found, torch.full((found.shape[0], chosen.shape[1] - k), -1)], dim=1)
        valid = chosen >= 0
        tri = corners[chosen.clamp_min(0)]  # [chunk, k, 3, 3]
        nearest = _closest_on_triangles(chunk[:, None, :], tri[:, :, 0], tri[:, :, 1], tri[:, :, 2])
        distance = (nearest - chunk[:, None, :]).norm(dim=-1)
        result[first : first + _QUERY_CHUNK] = torch.where(valid, distance, torch.inf).min(dim=1).values
    return result


def crop_to_ball(mesh: Mesh, radius: float) -> Mesh:
    """The faces of ``mesh`` whose centroid lies within ``radius`` of the origin."""
    if mesh.num_faces == 0:
        return mesh
    centroids = mesh.vertices[mesh.faces].double().mean(dim=1)
    return mesh.select_faces(centroids.norm(dim=1) <= radius)


def evaluate_mesh(
    mesh: Mesh,
    distance_to_surface: Callable[[np.ndarray], np.ndarray],
    sample_surface: Callable[[int, int], np.ndarray],
    *,
    num_samples: int = 10_000,
    seed: int = 0,
    threshold: Optional[float] = None,
    radius: Optional[float] = None,
) -> Dict[str, float]:
    """Accuracy, completeness and Chamfer distance of ``mesh`` against a true surface.

    Args:
        distance_to_surface, sample_surface: the scene's ground truth (module docstring).
        num_samples: points sampled on each surface.
        seed: of both samplings.
        threshold: when given, also the fraction of mesh points within it of the true surface
            (precision), of true points within it of the mesh (recall), and their F-score.
        radius: when ``sample_surface`` covers only the ball of this radius about the origin
            (a scene judged where its cameras look, e.g. the capture scene's
            ``FOREGROUND_RADIUS``), the mesh is cropped to the same ball first (the faces whose
            centroid lies in it), so that both directions measure the same region.
    """
    if radius is not None:
        if not (math.isfinite(radius) and radius > 0):
            raise ValueError(f"evaluate_mesh: radius must be a finite number > 0, got {radius!r}")
        mesh = crop_to_ball(mesh, radius)
    if mesh.num_faces == 0:
        empty = {"accuracy": float("inf"), "completeness": float("inf"), "chamfer": float("inf")}
        if threshold is not None:
            empty.update(precision=0.0, recall=0.0, f_score=0.0, threshold=float(threshold))
        return empty
    mesh_points = sample_mesh_surface(mesh, num_samples, seed).numpy()
    to_truth = np.asarray(distance_to_surface(mesh_points), dtype=np.float64)
    truth_points = np.asarray(sample_surface(num_samples, seed), dtype=np.float64)
    to_mesh = distance_to_mesh(torch.from_numpy(truth_points), mesh).numpy()
    results = {
        "accuracy": float(to_truth.mean()),
        "completeness": float(to_mesh.mean()),
        "chamfer": float(0.5 * (to_truth.mean() + to_mesh.mean())),
        "accuracy_median": float(np.median(to_truth)),
        "completeness_median": float(np.median(to_mesh)),
        "num_samples": int(num_samples),
    }
    if radius is not None:
        results["radius"] = float(radius)
    if threshold is not None:
        precision = float((to_truth < threshold).mean())
        recall = float((to_mesh < threshold).mean())
        results.update(
            threshold=float(threshold),
            precision=precision,
            recall=recall,
            f_score=2.0 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0,
        )
    return results
