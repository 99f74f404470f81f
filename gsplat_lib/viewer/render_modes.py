"""One frame of the viewer: the model rendered by our rasterizer, shown as RGB, depth, normals or alpha."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from gsplat_lib import GaussianModel
from gsplat_lib.train.environment import EnvironmentMap, render_with_environment
from gsplat_lib.train.images import colorize_depth, colorize_normals
from gsplat_lib.viewer.views import ViewCamera

__all__ = ["RENDER_MODES", "render_view"]

#: The modes :func:`render_view` draws (the viewer adds "Mesh" when the run has one).
RENDER_MODES = ("RGB", "Depth", "Normals", "Alpha")

# Pixels that are less covered than this are background in the depth and normal modes.
_COVERED = 0.5


@torch.no_grad()
def render_view(
    model: GaussianModel,
    view: ViewCamera,
    mode: str = "RGB",
    *,
    background: Sequence[float] = (0.0, 0.0, 0.0),
    near: float = 0.01,
    far: float = 1000.0,
    depth_ratio: float = 0.0,
    environment: Optional[EnvironmentMap] = None,
) -> np.ndarray:
    """``[H, W, 3]`` uint8 image of ``model`` seen by ``view``.

    Args:
        mode: "RGB" (over ``background``, or over ``environment``, the run's sky at infinity,
            as gsplat-render composites it), "Depth" (surface depth through the turbo map, near
            red, far blue), "Normals" (world normals as ``0.5 n + 0.5``) or "Alpha" (grey).
        near, far: the rasterizer's depth range.
        depth_ratio: surface depth = (1 - r) expected depth + r median depth, as in training.
    """
    if mode not in RENDER_MODES:
        raise ValueError(f"render_view: mode must be one of {RENDER_MODES}, got {mode!r}")
    device = model.device
    viewmats = torch.from_numpy(view.viewmat).to(device)[None]
    Ks = torch.from_numpy(view.K).to(device)[None]
    backgrounds = torch.tensor([list(background)], dtype=torch.float32, device=device)
    if mode == "RGB":
        _, colors = render_with_environment(
            model, viewmats, Ks, view.width, view.height, backgrounds, environment, near=near, far=far
        )
        return _to_uint8(colors[0])
    result = model.render(viewmats, Ks, view.width, view.height, backgrounds=backgrounds, near=near, far=far)
    if mode == "Alpha":
        return _to_uint8(result.alphas[0].expand(-1, -1, 3))
    covered = (result.alphas[0] > _COVERED).cpu().numpy()
    if mode == "Depth":
        depth = (1.0 - depth_ratio) * result.expected_depths[0] + depth_ratio * result.median_depths[0]
        return _to_uint8(torch.from_numpy(colorize_depth(depth.cpu().numpy(), covered)))
    return _to_uint8(torch.from_numpy(colorize_normals(result.normals_world[0].cpu().numpy(), covered)))


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.nan_to_num(0.0).clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
