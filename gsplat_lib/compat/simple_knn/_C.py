"""``distCUDA2(points)``: the mean squared distance of each point to its 3 nearest other points.

On the device of ``points`` (CPU or CUDA, any CUDA device), through gsplat_lib's exact KNN.
Upstream's values wherever they are meaningful (duplicates give 0, as there). With fewer than
4 points upstream averages in FLT_MAX and returns inf or about 1.1e38; here the mean runs over
the neighbours that exist, and a lone point gets 0 (2DGS then clamps it to 1e-7). Non-finite
points raise a ValueError naming them (upstream returns unspecified values).
"""

from __future__ import annotations

import torch

from gsplat_lib.ops.knn import knn

__all__ = ["distCUDA2"]


def distCUDA2(points: torch.Tensor) -> torch.Tensor:
    """``[N]`` float32 from ``points [N, 3]`` float32."""
    indices, sq_dists = knn(points, 3)
    exists = indices >= 0
    total = torch.where(exists, sq_dists, torch.zeros((), dtype=sq_dists.dtype, device=sq_dists.device)).sum(dim=1)
    return total / exists.sum(dim=1).clamp_min(1).to(total.dtype)
