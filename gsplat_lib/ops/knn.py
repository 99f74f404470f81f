"""Exact k-nearest neighbours of a point cloud, and the 3DGS / 2DGS scale initialisation.

The search is exact and runs on the CPU (``torch.get_num_threads()`` threads) or on the
CUDA device of ``points`` (on torch's current stream). It lays the points out for a
bounding-box tree balanced by point count (kd-tree median splits on the CPU, a Morton
sort on the GPU), so it stays fast on clustered clouds, and walks it with the same
code on both devices; ``csrc/core/knn.h`` describes the algorithm and why it is exact.

Precision: a squared distance is computed in float32 exactly as a brute-force reference
written the obvious way would, ``((a.x-b.x)**2 + (a.y-b.y)**2) + (a.z-b.z)**2`` with each
operation rounded to float32, the same on both backends (no fused multiply-adds). So it
is within a few float32 ulps, relative, of float64 brute force on the same inputs, also
for huge coordinates (1e6 and beyond): differences of nearby float32 values are exact.
What float32 cannot give is finer input: near 1e6 coordinates are spaced by 0.0625, so
points closer than that were already merged when they were stored as float32.
"""

from __future__ import annotations

from typing import Tuple

import torch

from gsplat_lib import _backend
from gsplat_lib.ops.rasterize_memory import exceeds_memory

__all__ = ["knn", "knn_dist2"]

# Points per tree leaf: results do not depend on it, only speed does.
_LEAF_SIZE = 16

# Non-finite rows named in the error message.
_ROWS_SHOWN = 8


def _check_points(points: object) -> torch.Tensor:
    points = _backend.check_tensor("points", points, (None, 3))
    max_points = _backend.core().KNN_MAX_POINTS  # int32 indices inside the kernels
    if points.shape[0] > max_points:
        raise ValueError(f"points: at most {max_points} points are supported, got {points.shape[0]}")
    finite_rows = torch.isfinite(points).all(dim=1)
    if not bool(finite_rows.all()):
        bad = torch.nonzero(~finite_rows).flatten()
        shown = bad[:_ROWS_SHOWN].tolist()
        more = ", ..." if bad.numel() > _ROWS_SHOWN else ""
        raise ValueError(
            f"points has {bad.numel()} non-finite row(s) (NaN or Inf), e.g. rows "
            f"[{', '.join(str(r) for r in shown)}{more}]; remove or fix them before knn"
        )
    return points.detach()


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise ValueError(f"k must be an int >= 1, got {k!r} ({type(k).__name__})")
    if k < 1 or k > 2**31 - 1:
        raise ValueError(f"k must be an int >= 1 (and below 2^31), got {k}")
    return k


def knn(points: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest other points of every point, exactly.

    Args:
        points: ``[N, 3]`` float32, finite, on the CPU or a CUDA device.
        k: neighbours per point, ``>= 1``.

    Returns:
        ``(indices, sq_dists)``: ``indices [N, k]`` int64 and ``sq_dists [N, k]`` float32 on
        the device of ``points``, each row ascending by squared distance, ties broken by the
        lower index, so the result is unique and deterministic. A point is never its own
        neighbour; other points at the same position are neighbours at distance 0. When a
        point has fewer than ``k`` other points (``N <= k``), the missing columns hold index
        ``-1`` and squared distance ``+inf``. ``N = 0`` gives ``[0, k]`` outputs.

    Raises:
        TypeError: ``points`` is not a float32 tensor.
        ValueError: ``points`` is not ``[N, 3]`` or has non-finite rows (the message gives
            their count and the first few indices), ``k`` is not an int ``>= 1``, or the
            ``[N, k]`` outputs would not fit in the device's free memory.
    """
    points = _check_points(points)
    k = _check_k(k)
    # The outputs (int64 indices, float32 distances) are allocated whole: refuse a k they cannot hold.
    needed = points.shape[0] * k * 12
    available = exceeds_memory(needed, points.device)
    if available is not None:
        raise ValueError(
            f"k={k} neighbours of {points.shape[0]} points need [N, k] outputs of {needed / 2**30:.1f} GiB, but "
            f"only {available / 2**30:.1f} GiB is available on {points.device}: ask for fewer neighbours"
        )
    return _search(points, k, "kd" if points.device.type == "cpu" else "morton")


def _tree_order(points: torch.Tensor, order: str) -> torch.Tensor:
    """``[N]`` int64 permutation that lays the points out for the search tree.

    ``"kd"`` (CPU only): median splits on the tree's leaf boundaries, the tightest boxes.
    ``"morton"`` (both devices): codes computed by the core, sorted by torch on the device.
    The order changes speed only, never the result.
    """
    device = points.device
    num_points = points.shape[0]
    if order == "kd":
        scratch = torch.empty((num_points, 4), dtype=torch.float32, device=device)
        permutation = torch.empty(num_points, dtype=torch.int64, device=device)
        _backend.launch("knn_kd_order", device, dict(
            num_points=num_points, leaf_size=_LEAF_SIZE, points=_backend.buffer(points),
            scratch=_backend.buffer(scratch), order=_backend.buffer(permutation)))
        return permutation
    bounds = torch.stack(torch.aminmax(points, dim=0)).contiguous()  # [2, 3]: min, max
    codes = torch.empty(num_points, dtype=torch.int64, device=device)
    _backend.launch("knn_morton_codes", device, dict(
        num_points=num_points, points=_backend.buffer(points), bounds=_backend.buffer(bounds),
        codes=_backend.buffer(codes)))
    # Stable: equal codes (duplicates) stay in index order, which the tree uses to skip them.
    return torch.sort(codes, stable=True).indices


def _search(points: torch.Tensor, k: int, order: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """knn on checked ``points`` with the tree laid out in ``order`` ("kd" or "morton")."""
    device = points.device
    num_points = points.shape[0]
    indices = torch.empty((num_points, k), dtype=torch.int64, device=device)
    sq_dists = torch.empty((num_points, k), dtype=torch.float32, device=device)
    if num_points == 0:
        return indices, sq_dists
    permutation = _tree_order(points, order)
    num_nodes = _backend.core().knn_num_tree_nodes(num_points, _LEAF_SIZE)
    sorted_points = torch.empty((num_points, 4), dtype=torch.float32, device=device)
    sorted_index = torch.empty(num_points, dtype=torch.int32, device=device)
    nodes = torch.empty((num_nodes, 8), dtype=torch.int32, device=device)
    _backend.launch("knn_search", device, dict(
        num_points=num_points, k=k, leaf_size=_LEAF_SIZE, num_nodes=num_nodes, points=_backend.buffer(points),
        order=_backend.buffer(permutation), sorted_points=_backend.buffer(sorted_points),
        sorted_index=_backend.buffer(sorted_index), nodes=_backend.buffer(nodes), indices=_backend.buffer(indices),
        sq_dists=_backend.buffer(sq_dists)))
    return indices, sq_dists


def knn_dist2(points: torch.Tensor, k: int = 3, min_dist2: float = 1e-7) -> torch.Tensor:
    """Mean squared distance of every point to its ``k`` nearest other points, floored.

    This is what 3DGS / 2DGS take ``log(sqrt(.))`` of to initialise scales. The mean runs
    over the neighbours that exist (fewer than ``k`` when ``N <= k``) and the result is
    floored at ``min_dist2``, so duplicate points never give ``log(0)``; a lone point
    (``N = 1``) gets ``min_dist2``. Means of distances beyond the float32 range are ``+inf``.

    Args:
        points: ``[N, 3]`` float32, finite, on the CPU or a CUDA device.
        k: neighbours per point, ``>= 1``.
        min_dist2: floor of the result, a finite number ``> 0``.

    Returns:
        ``[N]`` float32 on the device of ``points`` (``[0]`` when ``N = 0``).
    """
    if isinstance(min_dist2, bool) or not isinstance(min_dist2, (int, float)):
        raise ValueError(f"min_dist2 must be a finite number > 0, got {min_dist2!r}")
    if not (0.0 < float(min_dist2) < float("inf")):
        raise ValueError(f"min_dist2 must be a finite number > 0, got {min_dist2!r}")
    indices, sq_dists = knn(points, k)
    exists = indices >= 0
    count = exists.sum(dim=1)
    total = torch.where(exists, sq_dists, torch.zeros((), dtype=sq_dists.dtype, device=sq_dists.device)).sum(dim=1)
    mean = total / count.clamp_min(1).to(total.dtype)
    return mean.clamp_min(float(min_dist2))
