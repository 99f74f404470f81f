"""The losses of the 2DGS recipe, in torch, on channels-last images ``[C, H, W, D]``.

- :func:`l1_loss`: mean absolute error.
- :func:`ssim` / :func:`dssim_loss`: structural similarity with an 11 x 11 Gaussian window
  (sigma 1.5) and zero padding, as 3DGS / 2DGS compute it; D-SSIM = 1 - SSIM.
- :func:`depth_to_normals` and :func:`normal_consistency_loss`: the rendered normals against
  the normals of the rendered depth surface (2DGS eq. 14).
- :func:`distortion_loss`: the mean of the rasterizer's per-pixel depth distortion.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "SSIM_WINDOW_SIZE",
    "SSIM_SIGMA",
    "l1_loss",
    "ssim",
    "dssim_loss",
    "surface_depth",
    "depth_to_points",
    "depth_to_normals",
    "normal_consistency_loss",
    "distortion_loss",
]

SSIM_WINDOW_SIZE = 11
SSIM_SIGMA = 1.5
_SSIM_C1 = 0.01**2
_SSIM_C2 = 0.03**2


def l1_loss(rendered: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |rendered - target| over every element; both ``[C, H, W, D]``."""
    _check_same_shape(rendered, target)
    return (rendered - target).abs().mean()


def _gaussian_window(channels: int, device: torch.device) -> torch.Tensor:
    """[channels, 1, 11, 11] normalised separable Gaussian, one copy per channel (grouped conv)."""
    offsets = torch.arange(SSIM_WINDOW_SIZE, dtype=torch.float32, device=device) - SSIM_WINDOW_SIZE // 2
    profile = torch.exp(-(offsets**2) / (2.0 * SSIM_SIGMA**2))
    profile = profile / profile.sum()
    window = profile[:, None] * profile[None, :]
    return window.expand(channels, 1, SSIM_WINDOW_SIZE, SSIM_WINDOW_SIZE).contiguous()


def ssim_map(rendered: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel, per-channel SSIM ``[C, H, W, D]`` of two ``[C, H, W, D]`` images in [0, 1]."""
    _check_same_shape(rendered, target)
    if rendered.dim() != 4:
        raise ValueError(f"ssim: images must be [C, H, W, D], got {list(rendered.shape)}")
    channels = rendered.shape[-1]
    window = _gaussian_window(channels, rendered.device)
    x = rendered.permute(0, 3, 1, 2)
    y = target.permute(0, 3, 1, 2)
    pad = SSIM_WINDOW_SIZE // 2

    def blur(image: torch.Tensor) -> torch.Tensor:
        return F.conv2d(image, window, padding=pad, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    sigma_xx = blur(x * x) - mu_xx
    sigma_yy = blur(y * y) - mu_yy
    sigma_xy = blur(x * y) - mu_xy
    numerator = (2.0 * mu_xy + _SSIM_C1) * (2.0 * sigma_xy + _SSIM_C2)
    denominator = (mu_xx + mu_yy + _SSIM_C1) * (sigma_xx + sigma_yy + _SSIM_C2)
    return (numerator / denominator).permute(0, 2, 3, 1)


def ssim(rendered: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean SSIM (a scalar) of two ``[C, H, W, D]`` images in [0, 1]; 1 for identical images."""
    return ssim_map(rendered, target).mean()


def dssim_loss(rendered: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - SSIM."""
    return 1.0 - ssim(rendered, target)


def surface_depth(expected_depths: torch.Tensor, median_depths: torch.Tensor, depth_ratio: float) -> torch.Tensor:
    """The depth surface of 2DGS: ``(1 - r) expected + r median``, ``[C, H, W, 1]``."""
    if depth_ratio == 0.0:
        return expected_depths
    if depth_ratio == 1.0:
        return median_depths
    return (1.0 - depth_ratio) * expected_depths + depth_ratio * median_depths


def depth_to_points(depths: torch.Tensor, Ks: torch.Tensor) -> torch.Tensor:
    """Camera-frame points ``[C, H, W, 3]`` of a depth map ``[C, H, W, 1]`` (camera z).

    Pixel (i, j) is back-projected through its centre (i + 0.5, j + 0.5): the point is
    ``z K^-1 (i + 0.5, j + 0.5, 1)``. ``Ks`` is ``[C, 3, 3]``.
    """
    height, width = depths.shape[1:3]
    cols = torch.arange(width, dtype=depths.dtype, device=depths.device) + 0.5
    rows = torch.arange(height, dtype=depths.dtype, device=depths.device) + 0.5
    fx, fy = Ks[:, 0, 0].view(-1, 1, 1), Ks[:, 1, 1].view(-1, 1, 1)
    cx, cy = Ks[:, 0, 2].view(-1, 1, 1), Ks[:, 1, 2].view(-1, 1, 1)
    z = depths[..., 0]
    x = (cols.view(1, 1, width) - cx) / fx * z
    y = (rows.view(1, height, 1) - cy) / fy * z
    return torch.stack([x, y, z], dim=-1)


def depth_to_normals(depths: torch.Tensor, Ks: torch.Tensor) -> torch.Tensor:
    """Unit normals ``[C, H, W, 3]`` (camera frame) of the surface of a depth map ``[C, H, W, 1]``.

    Central differences of the back-projected points, ``n = normalize(dP/dy x dP/dx)``
    (image rows x columns), which faces the camera like the rasterizer's normals. The
    one-pixel border, where central differences are undefined, is 0 (as in 2DGS).
    """
    points = depth_to_points(depths, Ks)
    along_rows = points[:, 2:, 1:-1] - points[:, :-2, 1:-1]
    along_cols = points[:, 1:-1, 2:] - points[:, 1:-1, :-2]
    interior = F.normalize(torch.linalg.cross(along_rows, along_cols, dim=-1), dim=-1)
    return F.pad(interior, (0, 0, 1, 1, 1, 1))


def normal_consistency_loss(
    rendered_normals: torch.Tensor,
    surface_depths: torch.Tensor,
    alphas: torch.Tensor,
    Ks: torch.Tensor,
) -> torch.Tensor:
    """2DGS's normal consistency: ``mean(1 - n_rendered . (alpha n_depth))``.

    Args:
        rendered_normals: ``[C, H, W, 3]`` the rasterizer's alpha-weighted normals
            (``RasterResult.normals``, camera frame; the dot product is the same in the
            world frame).
        surface_depths: ``[C, H, W, 1]`` from :func:`surface_depth`.
        alphas: ``[C, H, W, 1]``; weights the depth normals (no gradient through it), so
            empty pixels cost a constant and pull nothing.
        Ks: ``[C, 3, 3]``.
    """
    depth_normals = depth_to_normals(surface_depths, Ks) * alphas.detach()
    return (1.0 - (rendered_normals * depth_normals).sum(dim=-1)).mean()


def distortion_loss(distortions: torch.Tensor) -> torch.Tensor:
    """Mean of the per-pixel depth distortion ``[C, H, W, 1]`` (2DGS eq. 13)."""
    return distortions.mean()


def _check_same_shape(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {list(a.shape)} vs {list(b.shape)}")
