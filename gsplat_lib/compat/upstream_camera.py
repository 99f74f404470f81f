"""Upstream's camera (diff-surfel-rasterization's settings) as gsplat_lib's ``viewmat`` and ``K``.

Upstream stores the world-to-camera matrix transposed (row vectors: ``p_view = [p, 1] @ V``) and
the full projection ``projmatrix = V @ P`` the same way; its kernels map clip coordinates to
pixels with ``x = (ndc_x + 1) W / 2 - 1 / 2``, so pixel centres sit at integers. gsplat_lib puts
the centre of pixel i at i + 0.5: the same picture when the principal point moves by half a
pixel. The intrinsics (focal lengths, principal point, skew) are read from ``projmatrix``, not
from ``tanfovx``/``tanfovy``, so off-centre principal points render as upstream renders them.
"""

from __future__ import annotations

from typing import Tuple

import torch

__all__ = ["ndc_to_pixels", "upstream_intrinsics", "upstream_camera", "backward_image_size"]

# How far from a pinhole a projmatrix may be, relative to its largest entry: float32 rounding of
# V @ P and of the inverse of V stay far below this.
_PINHOLE_TOLERANCE = 1e-5


def ndc_to_pixels(width: int, height: int) -> torch.Tensor:
    """``[4, 3]`` float64, row-vector form: clip (x, y, z, w) to homogeneous pixels (x w, y w, w)
    with pixel centres at integers, as upstream's kernels do."""
    return torch.tensor([[width / 2, 0.0, 0.0], [0.0, height / 2, 0.0], [0.0, 0.0, 0.0],
                         [(width - 1) / 2, (height - 1) / 2, 1.0]], dtype=torch.float64)


def _checked_matrix(name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.shape != (4, 4):
        raise ValueError(f"{name} must have shape [4, 4], got {list(value.shape)}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
    matrix = value.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(matrix).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    return matrix


def upstream_intrinsics(viewmatrix: torch.Tensor, projmatrix: torch.Tensor, width: int,
                        height: int) -> torch.Tensor:
    """``[3, 3]`` float64 camera-to-pixel intrinsics in upstream's pixel convention (centres at
    integers), ``projmatrix`` seen through ``viewmatrix``. Raises ValueError unless the
    projection is a pinhole whose w is a positive multiple of the camera's z."""
    view = _checked_matrix("viewmatrix", viewmatrix)
    full = _checked_matrix("projmatrix", projmatrix)
    if not torch.allclose(view[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64), atol=1e-6):
        raise ValueError("viewmatrix must be a transposed world-to-camera transform whose last column is (0, 0, 0, 1), "
                         f"got {view[:, 3].tolist()}")
    camera_to_pixels = torch.linalg.inv(view) @ full @ ndc_to_pixels(width, height)  # [4, 3] row vectors
    intrinsics = camera_to_pixels[:3].T.clone()
    tolerance = _PINHOLE_TOLERANCE * float(camera_to_pixels.abs().max())
    offset = camera_to_pixels[3]
    w_row = intrinsics[2]
    if float(offset.abs().max()) > tolerance or float(w_row[:2].abs().max()) > tolerance or not float(w_row[2]) > 0:
        raise ValueError(
            "projmatrix must be viewmatrix times a pinhole projection whose w is a positive multiple of the camera z "
            f"(as 2DGS's getProjectionMatrix makes); its camera-to-pixel map here has w row {w_row.tolist()} and "
            f"offset {offset.tolist()}")
    intrinsics = intrinsics / w_row[2]
    intrinsics[2] = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    return intrinsics


def upstream_camera(viewmatrix: torch.Tensor, projmatrix: torch.Tensor, width: int, height: int,
                    device: torch.device) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(viewmat [4, 4], K [3, 3], K_upstream [3, 3])`` float32 on ``device``: gsplat_lib's
    world-to-camera and intrinsics (pixel centres at i + 0.5), and upstream's intrinsics."""
    intrinsics = upstream_intrinsics(viewmatrix, projmatrix, width, height)
    half_pixel = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
    viewmat = viewmatrix.detach().to(device=device, dtype=torch.float32).T.contiguous()
    K = (half_pixel @ intrinsics).to(device=device, dtype=torch.float32)
    return viewmat, K, intrinsics.to(device=device, dtype=torch.float32)


def backward_image_size(width: int, height: int, tanfovx: float, tanfovy: float) -> Tuple[int, int]:
    """The image size upstream's backward scales its statistic by: it recomputes each side from the
    focal length, ``int(focal * tan_half_fov * 2)`` with ``focal = size / (2 tan_half_fov)``, all
    in float32, so a side can come out one pixel short."""
    sizes = torch.tensor([width, height], dtype=torch.float32)
    tangents = torch.tensor([float(tanfovx), float(tanfovy)], dtype=torch.float32)
    focals = sizes / (tangents * 2.0)
    recomputed = (focals * tangents) * 2.0
    return int(recomputed[0]), int(recomputed[1])
