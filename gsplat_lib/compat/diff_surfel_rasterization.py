"""Drop-in for hbb1/diff-surfel-rasterization (the 2DGS rasterizer), on gsplat_lib's rasterizer.

The Python API is upstream's: ``GaussianRasterizationSettings``, ``GaussianRasterizer`` (its
``forward`` returns ``(color [3, H, W], radii [N] int32, allmap [7, H, W])``, allmap holding
accumulated depth, alpha, camera-frame normal (3), median depth and distortion) and
``markVisible``, plus ``rasterize_gaussians``. It runs on the CPU and on CUDA, wherever the
tensors are.

``SEMANTICS`` picks the rasterizer's rules: ``"upstream"`` (the default) renders as upstream does
(``rasterize_surfels(semantics="upstream")``, docs/design.md "Faithful mode"), ``"gsplat_lib"``
with gsplat_lib's own (docs/design.md "Rasterizer semantics"; far then also culls). The
environment variable ``GSPLAT_COMPAT_SEMANTICS`` sets it at import, ``gsplat-compat --semantics``
for a script; the README ("Replacing diff-surfel-rasterization and simple-knn") lists what
still differs from upstream.

After backward, ``means2D.grad`` holds the densification statistic of the semantics in NDC
units: columns 0:2 signed, 2:4 (when ``means2D`` is [N, 4], GenFusion's layout) the absolute
sum. Upstream's: dL/dM02, dL/dM12 over the ray-splat pixels times M22 W'/2 (H'/2), W' the image
width its backward recomputes; gsplat_lib's: the screen-translation gradient times W/2 (H/2).
"""

from __future__ import annotations

import os
from typing import NamedTuple, Optional

import torch
import torch.nn as nn

from gsplat_lib.ops.rasterize import rasterize_surfels
from gsplat_lib.compat.precomputed_transform import surfels_from_transforms
from gsplat_lib.compat.screen_statistic import ScreenStatisticLink
from gsplat_lib.compat.upstream_camera import backward_image_size, upstream_camera
from gsplat_lib.ops.rasterize import SEMANTICS as SEMANTICS_CHOICES

__all__ = ["GaussianRasterizationSettings", "GaussianRasterizer", "rasterize_gaussians", "NEAR_PLANE", "FAR_PLANE",
           "SEMANTICS", "SEMANTICS_CHOICES"]

# Upstream's kernels hard-code these (near_n, far_n in auxiliary.h).
NEAR_PLANE = 0.2
FAR_PLANE = 100.0
# The semantics every render of this module uses (read at each call): "upstream" or "gsplat_lib".
SEMANTICS = os.environ.get("GSPLAT_COMPAT_SEMANTICS") or "upstream"


class GaussianRasterizationSettings(NamedTuple):
    image_height: int
    image_width: int
    tanfovx: float
    tanfovy: float
    bg: torch.Tensor
    scale_modifier: float
    viewmatrix: torch.Tensor
    projmatrix: torch.Tensor
    sh_degree: int
    campos: torch.Tensor
    prefiltered: bool
    debug: bool


def _given(tensor: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """Upstream passes absent inputs to its extension as empty tensors: both mean "not given"."""
    return None if tensor is None or (isinstance(tensor, torch.Tensor) and tensor.numel() == 0) else tensor


def rasterize_gaussians(means3D, means2D, sh, colors_precomp, opacities, scales, rotations, cov3Ds_precomp,
                        raster_settings):
    """Upstream's functional entry point (empty tensors stand for absent inputs)."""
    return _render(raster_settings, means3D, means2D, opacities, _given(sh), _given(colors_precomp), _given(scales),
                   _given(rotations), _given(cov3Ds_precomp))


class GaussianRasterizer(nn.Module):
    def __init__(self, raster_settings: GaussianRasterizationSettings):
        super().__init__()
        self.raster_settings = raster_settings

    def markVisible(self, positions: torch.Tensor) -> torch.Tensor:
        """[N] bool: the points in front of upstream's near plane (camera z > 0.2)."""
        with torch.no_grad():
            view = self.raster_settings.viewmatrix.to(positions.device, positions.dtype)
            depth = positions @ view[:3, 2] + view[3, 2]
            return depth > NEAR_PLANE

    def forward(self, means3D, means2D, opacities, shs=None, colors_precomp=None, scales=None, rotations=None,
                cov3D_precomp=None):
        if (shs is None) == (colors_precomp is None):
            raise ValueError("Please provide exactly one of either SHs or precomputed colors (shs, colors_precomp)")
        if ((scales is None or rotations is None) and cov3D_precomp is None) or (
                (scales is not None or rotations is not None) and cov3D_precomp is not None):
            raise ValueError("Please provide exactly one of either scale/rotation pair or precomputed 3D covariance "
                             "(scales and rotations, or cov3D_precomp)")
        return _render(self.raster_settings, means3D, means2D, opacities, shs, colors_precomp, scales, rotations,
                       cov3D_precomp)


def _semantics() -> str:
    if SEMANTICS not in SEMANTICS_CHOICES:
        raise ValueError(f"diff_surfel_rasterization.SEMANTICS (or the environment variable GSPLAT_COMPAT_SEMANTICS) "
                         f"must be one of {SEMANTICS_CHOICES}, got {SEMANTICS!r}")
    return SEMANTICS


def _render(settings, means3D, means2D, opacities, shs, colors_precomp, scales, rotations, cov3D_precomp):
    semantics = _semantics()
    upstream = semantics == "upstream"
    if not isinstance(means3D, torch.Tensor) or means3D.dim() != 2 or means3D.shape[1] != 3:
        raise ValueError("means3D must be a tensor of shape [N, 3]")
    num_surfels, device = means3D.shape[0], means3D.device
    width, height = int(settings.image_width), int(settings.image_height)
    if not isinstance(opacities, torch.Tensor) or opacities.shape not in ((num_surfels, 1), (num_surfels,)):
        raise ValueError(f"opacities must have shape [{num_surfels}, 1], got "
                         f"{list(opacities.shape) if isinstance(opacities, torch.Tensor) else type(opacities).__name__}")
    viewmat, K, upstream_K = upstream_camera(settings.viewmatrix, settings.projmatrix, width, height, device)

    if cov3D_precomp is not None:
        if not isinstance(cov3D_precomp, torch.Tensor) or cov3D_precomp.shape not in ((num_surfels, 9),
                                                                                      (num_surfels, 3, 3)):
            raise ValueError(f"cov3D_precomp must have shape [{num_surfels}, 9] (the surfel-to-pixel map, row-major)")
        means, quats, surfel_scales = surfels_from_transforms(cov3D_precomp, viewmat, upstream_K)
        scale_modifier = 1.0  # the map already holds the scales (2DGS applies its modifier before)
    else:
        means, quats, surfel_scales = means3D, rotations, scales
        scale_modifier = float(settings.scale_modifier)

    link = _statistic_link(settings, means2D, width, height, upstream, cov3D_precomp)
    colour_args = dict(colors=colors_precomp) if shs is None else dict(sh=shs, sh_degree=int(settings.sh_degree))
    background = settings.bg.to(device=device, dtype=torch.float32).reshape(1, -1)
    result = rasterize_surfels(
        means, quats, surfel_scales, link.join(opacities.reshape(num_surfels)), viewmats=viewmat[None], Ks=K[None],
        width=width, height=height, near=NEAR_PLANE, far=FAR_PLANE, backgrounds=background,
        scale_modifier=scale_modifier, semantics=semantics, **colour_args)
    link.watch(result)

    color = result.colors[0].permute(2, 0, 1)
    normals = result.normals[0]
    if upstream and cov3D_precomp is not None:
        # Upstream gives every cov3D_precomp surfel the normal (0, 0, 1), turned to face the camera.
        normals = torch.cat([torch.zeros_like(result.alphas[0]).expand(-1, -1, 2), -result.alphas[0]], dim=-1)
    allmap = torch.cat([result.depths[0], result.alphas[0], normals, result.median_depths[0],
                        result.distortions[0]], dim=-1).permute(2, 0, 1)
    radii = result.radii[0].max(dim=-1).values
    return color, radii, allmap


def _statistic_link(settings, means2D, width, height, upstream, cov3D_precomp) -> ScreenStatisticLink:
    """The link that puts the statistic of the semantics into ``means2D.grad`` (module docstring)."""
    ndc = (width / 2.0, height / 2.0)
    if not upstream:
        return ScreenStatisticLink(means2D, ndc, ndc)
    wide, high = backward_image_size(width, height, settings.tanfovx, settings.tanfovy)
    center_chain = None
    if cov3D_precomp is not None:
        # Upstream writes the fallback's gradient back into the given map before reading dL/dM02:
        # through e_x = C*02 / C*22 that adds dL/de_x * (-M22 / C*22), times M22 as the rest.
        with torch.no_grad():
            m = cov3D_precomp.detach().reshape(-1, 3, 3).double()
            c22 = 9.0 * (m[:, 2, 0] ** 2 + m[:, 2, 1] ** 2) - m[:, 2, 2] ** 2
            safe = torch.where(c22 != 0, c22, torch.ones_like(c22))
            center_chain = -m[:, 2, 2] ** 2 / safe
    return ScreenStatisticLink(means2D, (wide / 2.0, high / 2.0), ndc, center_chain)
