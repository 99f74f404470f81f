"""A learned environment at infinity: what a pixel sees behind every surfel.

Outdoor captures show a sky (and whatever is far enough to have no parallax) in many pixels
that no surfel should cover: SfM has no points there, and surfels that grow over it settle
at some finite depth, as a haze in front of the cameras. An :class:`EnvironmentMap` gives
those pixels a colour that depends on the viewing direction only, composited behind the
surfels exactly as the rasterizer's background is::

    colour = surfel colour (over black) + (1 - alpha) * environment(direction)

It is a cube map: six ``R x R`` faces of RGB texels, read bilinearly within a face, so no
direction is singular and no "up" axis of the scene is needed. The colour is the sum of a
pyramid of such maps (``R``, ``R / 2``, ... down to 4 texels a face): the coarse levels,
which many pixels train, carry the smooth gradient and fill directions that no training
pixel saw (the top of a held-out view that looks higher than its neighbours); the fine
levels add what the images resolve. It starts grey (0.5 on the coarsest level, 0 on the
others), and its texels are trained by their own Adam optimizer. Its state (texels, moments,
step count) is part of the training checkpoint, so a resumed run continues it exactly.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from gsplat_lib.data import Camera
from gsplat_lib.model import GaussianModel
from gsplat_lib.ops.rasterize import RasterResult

__all__ = [
    "EnvironmentMap",
    "environment_of",
    "render_with_environment",
    "pixel_directions",
    "face_resolution_for",
    "pyramid_resolutions",
]

_MIN_RESOLUTION, _MAX_RESOLUTION = 8, 256
_COARSEST_LEVEL = 4
# (u, v) of a face are these two axes, in this order, for the major axes x, y, z.
_FACE_AXES = ((1, 2), (0, 2), (0, 1))


def pyramid_resolutions(resolution: int) -> List[int]:
    """Face resolutions of the levels, finest first: ``resolution``, then halved (rounded up)
    while above the coarsest level's 4."""
    levels = [resolution]
    while levels[-1] > _COARSEST_LEVEL:
        levels.append(max(_COARSEST_LEVEL, (levels[-1] + 1) // 2))
    return levels


def _texel_weights(directions: torch.Tensor, resolution: int):
    """Flat indices ``[M, 4]`` (within a ``[6 R R]`` map) of the four texels around each
    direction ``[M, 3]`` and their bilinear weights ``[M, 4]``."""
    axis = directions.abs().argmax(dim=-1)  # the face: major axis ...
    major = directions.gather(-1, axis[:, None])[:, 0]
    face = 2 * axis + (major < 0).long()  # ... and its sign
    other = torch.tensor(_FACE_AXES, device=directions.device)[axis]
    uv = directions.gather(-1, other) / major.abs().clamp_min(1e-30)[:, None]
    r = resolution
    position = ((uv.clamp(-1.0, 1.0) + 1.0) * 0.5 * r - 0.5).clamp(0.0, r - 1.0)
    low = position.floor().clamp(max=r - 2).long()
    fraction = position - low
    u0, v0 = low[:, 0], low[:, 1]
    fu, fv = fraction[:, 0], fraction[:, 1]
    base = (face * r + v0) * r + u0
    indices = torch.stack([base, base + 1, base + r, base + r + 1], dim=-1)
    weights = torch.stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv], dim=-1)
    return indices, weights


def _texel_directions(resolution: int, device) -> torch.Tensor:
    """``[6 R R, 3]`` directions through the texel centres of a cube map, in texel order."""
    r = resolution
    centres = (torch.arange(r, dtype=torch.float32, device=device) + 0.5) / r * 2.0 - 1.0
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    faces = []
    for face in range(6):
        axis, sign = face // 2, 1.0 - 2.0 * (face % 2)
        direction = torch.empty(r, r, 3, device=device)
        direction[..., axis] = sign
        direction[..., _FACE_AXES[axis][0]] = u
        direction[..., _FACE_AXES[axis][1]] = v
        faces.append(direction.reshape(-1, 3))
    return torch.cat(faces)


def pixel_directions(viewmats: torch.Tensor, Ks: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """World directions ``[C, H, W, 3]`` (not normalised) of the rays through pixel centres.

    Args:
        viewmats: ``[C, 4, 4]`` world-to-camera; Ks: ``[C, 3, 3]``.
    """
    cols = torch.arange(width, dtype=viewmats.dtype, device=viewmats.device) + 0.5
    rows = torch.arange(height, dtype=viewmats.dtype, device=viewmats.device) + 0.5
    fx, fy = Ks[:, 0, 0].view(-1, 1, 1), Ks[:, 1, 1].view(-1, 1, 1)
    cx, cy = Ks[:, 0, 2].view(-1, 1, 1), Ks[:, 1, 2].view(-1, 1, 1)
    x = ((cols.view(1, 1, width) - cx) / fx).expand(-1, height, width)
    y = ((rows.view(1, height, 1) - cy) / fy).expand(-1, height, width)
    camera = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # [C, H, W, 3]
    return torch.einsum("chwj,cjk->chwk", camera, viewmats[:, :3, :3])  # R^T d, row form


def face_resolution_for(cameras: Sequence[Camera]) -> int:
    """Texels per cube face edge matching the images' angular resolution: a face spans 90
    degrees, which the widest-focal camera sees as ``fx * pi / 2`` pixels."""
    focal = max(float(camera.K[0, 0]) for camera in cameras)
    return int(min(max(math.ceil(focal * math.pi / 2.0), _MIN_RESOLUTION), _MAX_RESOLUTION))


class EnvironmentMap:
    """A pyramid of RGB cube maps with its own Adam optimizer.

    Args:
        resolution: texels per face edge of the finest level (>= 2).
        lr: Adam learning rate of the texels (colour units per step).
        device: where the texels live.
    """

    def __init__(self, resolution: int, lr: float = 0.002, device="cpu") -> None:
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
            raise ValueError(f"EnvironmentMap: resolution must be an int >= 2, got {resolution!r}")
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"EnvironmentMap: lr must be a finite number > 0, got {lr!r}")
        self.resolution = resolution
        self.lr = float(lr)
        self.levels = pyramid_resolutions(resolution)
        sizes = [6 * r * r for r in self.levels]
        self.offsets = [sum(sizes[:index]) for index in range(len(sizes))]
        texels = torch.zeros(sum(sizes), 3, device=device)
        texels[self.offsets[-1] :] = 0.5  # a grey start on the coarsest level
        self.texels = torch.nn.Parameter(texels)
        self.optimizer = torch.optim.Adam([self.texels], lr=self.lr, eps=1e-15)

    # ------------------------------------------------------------------ lookup

    def __call__(self, directions: torch.Tensor) -> torch.Tensor:
        """Colours ``[..., 3]`` seen along world ``directions [..., 3]`` (any length)."""
        shape = directions.shape
        flat = directions.reshape(-1, 3).detach()
        colors = None
        for resolution, offset in zip(self.levels, self.offsets):
            indices, weights = _texel_weights(flat, resolution)
            # embedding's backward sums each texel's gradient in a fixed order (indexing's
            # accumulates in parallel, which changes the bits from run to run).
            level = (torch.nn.functional.embedding(indices + offset, self.texels) * weights[..., None]).sum(dim=1)
            colors = level if colors is None else colors + level
        return colors.reshape(*shape[:-1], 3)

    def render(self, viewmats: torch.Tensor, Ks: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """The environment behind every pixel of C cameras, ``[C, H, W, 3]``."""
        return self(pixel_directions(viewmats, Ks, width, height))

    # ------------------------------------------------------------------ training

    def step(self) -> None:
        """One Adam step of the texels (after ``loss.backward()``), then clears their gradient."""
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------ persistence

    def state_dict(self) -> Dict[str, object]:
        return {
            "resolution": self.resolution,
            "lr": self.lr,
            "texels": self.texels.detach().cpu().clone(),
            "optimizer": self.optimizer.state_dict(),
        }

    @classmethod
    def from_state_dict(cls, state: Dict[str, object], device="cpu") -> "EnvironmentMap":
        environment = cls(int(state["resolution"]), lr=float(state["lr"]), device=device)
        texels = state["texels"]
        if not isinstance(texels, torch.Tensor) or tuple(texels.shape) != tuple(environment.texels.shape):
            raise ValueError(
                f"environment state: texels must be a tensor of shape {list(environment.texels.shape)}, got "
                f"{list(texels.shape) if isinstance(texels, torch.Tensor) else type(texels).__name__}"
            )
        with torch.no_grad():
            environment.texels.copy_(texels.to(device))
        environment.optimizer.load_state_dict(state["optimizer"])
        return environment

    @torch.no_grad()
    def to_image(self) -> np.ndarray:
        """The six faces at the finest resolution side by side, ``[R, 6 R, 3]`` float32 (+x,
        -x, +y, -y, +z, -z; each face's rows follow its second axis)."""
        r = self.resolution
        faces = self(_texel_directions(r, self.texels.device)).cpu().reshape(6, r, r, 3)
        return faces.permute(1, 0, 2, 3).reshape(r, 6 * r, 3).numpy().astype(np.float32)


def environment_of(trainer_state: Dict[str, object], device) -> Optional[EnvironmentMap]:
    """The environment map a training checkpoint's trainer state holds, or None."""
    state = trainer_state.get("environment")
    return None if state is None else EnvironmentMap.from_state_dict(state, device=device)


def render_with_environment(
    model: GaussianModel,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    backgrounds: torch.Tensor,
    environment: Optional[EnvironmentMap] = None,
    **options,
) -> Tuple[RasterResult, torch.Tensor]:
    """``(result, colours [C, H, W, 3])`` of ``model.render`` (``options``: near, far, ...):
    the surfels over ``backgrounds [C, 3]``, or, with an ``environment``, over black with the
    environment added where they leave light through, ``(1 - alpha) env(direction)``."""
    if environment is not None:
        backgrounds = torch.zeros_like(backgrounds)
    result = model.render(viewmats, Ks, width, height, backgrounds=backgrounds, **options)
    colors = result.colors
    if environment is not None:
        colors = colors + (1.0 - result.alphas) * environment.render(viewmats, Ks, width, height)
    return result, colors
