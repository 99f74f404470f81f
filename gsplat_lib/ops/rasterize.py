"""Differentiable surfel (2DGS) rasterization, batched over cameras, on CPU and CUDA.

The math is pinned down in docs/design.md ("Rasterizer semantics") and lives once in
``csrc/core``. This module is the public function and its argument checks; the passes are
wired into autograd in :mod:`gsplat_lib.ops.rasterize_autograd`, and the memory checks are in
:mod:`gsplat_lib.ops.rasterize_memory`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import torch

from gsplat_lib._backend import check_tensor, core
from gsplat_lib.ops.host_reads import read_now
from gsplat_lib.ops import pair_capacity
from gsplat_lib.ops.rasterize_autograd import DeviceChecks, RasterizeSurfels, zero_view, zeros
from gsplat_lib.ops.rasterize_memory import check_image_memory
from gsplat_lib.ops.rasterize_scenes import SceneItems, scene_items
from gsplat_lib.ops.sh import sh_to_colors, sh_to_item_colors

# Tiles are core().TILE_SIZE rows high. CUDA runs one square thread block per tile; the CPU takes
# wider tiles (core().CPU_TILE_WIDTH): a splat's rows are then split between tiles less often,
# so its lane groups are fuller and there are fewer (tile, surfel) pairs to sort. Pixels see the
# same splats in the same order either way; only the summation order of the gradients differs.
# Tests narrow the CPU tiles through this setting (None: the core's width).
CPU_TILE_WIDTH: Optional[int] = None
# Lane width of the CPU pixel passes: 0 picks the widest this machine runs (8 with AVX2,
# else 4); 1 runs the scalar form of the math that the CUDA backend compiles. Every width
# gives the same forward bits; tests set this to compare them.
CPU_LANES = 0
# Scratch bytes of one camera group of the CPU backward (docs/design.md, "Camera groups"); None:
# the core's default. Tests make every camera a group of its own (1) to compare the groupings,
# which give the same bits.
CPU_GROUP_BYTES: Optional[int] = None
# The rasterizer's semantics: gsplat_lib's own (docs/design.md, "Rasterizer semantics") or
# upstream 2DGS's (hbb1/diff-surfel-rasterization e0ed020; "Faithful mode"), which the compat
# layer renders with by default.
SEMANTICS = ("gsplat_lib", "upstream")


@dataclass
class RasterResult:
    """Images are channels-last ``[C, H, W, ...]``; per-(camera, surfel) tensors are ``[C, N, ...]``.

    With scene ids the per-(camera, surfel) tensors are packed instead: ``[I, ...]``, one row per
    item (a camera and a surfel of its scene), by camera, then surfel; ``item_cameras`` and
    ``item_surfels`` say whose each row is (both None without scene ids).
    """

    colors: torch.Tensor           # [C, H, W, D]
    alphas: torch.Tensor           # [C, H, W, 1]
    depths: torch.Tensor           # [C, H, W, 1] accumulated hit depth, sum of w z
    median_depths: torch.Tensor    # [C, H, W, 1]
    normals: torch.Tensor          # [C, H, W, 3] camera frame, alpha-weighted (not normalised)
    distortions: torch.Tensor      # [C, H, W, 1]
    radii: torch.Tensor            # [C, N, 2] (or [I, 2]) int32 half extents of the screen box, 0 = culled
    means2d: torch.Tensor          # [C, N, 2] (or [I, 2]) projected centres (pixels); upstream semantics: e
    depths_surfel: torch.Tensor    # [C, N] (or [I]) camera-space depth of the centres
    screen_grad: torch.Tensor      # [C, N, 2] (or [I, 2]) leaf: .grad = dL/d(screen translation) after backward
    screen_absgrad: torch.Tensor   # [C, N, 2] (or [I, 2]) leaf: .grad = sum of |per-pixel| translation gradients
    evaluated_pairs: torch.Tensor  # [C, H, W] int32 (pixel, surfel) pairs the forward evaluated
    backward_pairs: torch.Tensor   # [C, H, W] int32 pairs the backward evaluated (filled by backward)
    viewmats: torch.Tensor         # [C, 4, 4] the cameras (for normals_world)
    # [C, N, 2] (or [I, 2]) leaf in upstream semantics (None in gsplat_lib's): .grad = dL/d(means2d),
    # the gradient through the screen fallback's centre e (upstream's dL/dmean2D before it is
    # chained into the surfel).
    center_grad: Optional[torch.Tensor] = None
    item_cameras: Optional[torch.Tensor] = None  # [I] int64 with scene ids: the camera of each row
    item_surfels: Optional[torch.Tensor] = None  # [I] int64 with scene ids: the surfel of each row

    # Derived outputs, computed on first use: a caller that never reads them never pays.
    @functools.cached_property
    def expected_depths(self) -> torch.Tensor:
        """[C, H, W, 1] depths / alphas, 0 where nothing is hit."""
        alphas = self.alphas
        return torch.where(alphas > 0, self.depths / alphas.clamp_min(1e-12), torch.zeros_like(self.depths))

    @functools.cached_property
    def normals_world(self) -> torch.Tensor:
        """[C, H, W, 3] the normals in the world frame: W^T n."""
        return torch.einsum("chwi,cij->chwj", self.normals, self.viewmats[:, :3, :3])

    @functools.cached_property
    def visible(self) -> torch.Tensor:
        """[C, N] (or [I]) bool: the surfel survived culling in that camera."""
        return (self.radii > 0).any(dim=-1)


def rasterize_surfels(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    colors: Optional[torch.Tensor] = None,
    viewmats: Optional[torch.Tensor] = None,
    Ks: Optional[torch.Tensor] = None,
    width: Optional[int] = None,
    height: Optional[int] = None,
    near: float = 0.01,
    far: float = 1000.0,
    *,
    sh: Optional[torch.Tensor] = None,
    sh_degree: Optional[int] = None,
    backgrounds: Optional[torch.Tensor] = None,
    scale_modifier: float = 1.0,
    deterministic: bool = True,
    semantics: str = "gsplat_lib",
    scene_ids: Optional[torch.Tensor] = None,
    camera_scene_ids: Optional[torch.Tensor] = None,
) -> RasterResult:
    """Renders N surfels into C cameras in one call; with scene ids, many scenes at once.

    Args:
        means: ``[N, 3]`` centres.
        quats: ``[N, 4]`` rotations (w, x, y, z), normalised inside.
        scales: ``[N, 2]`` positive extents along the two tangent axes.
        opacities: ``[N]`` in [0, 1].
        colors: ``[N, D]`` or per camera ``[C, N, D]``, any D; or give ``sh`` and ``sh_degree``
            instead.
        viewmats: ``[C, 4, 4]`` world-to-camera (OpenCV).
        Ks: ``[C, 3, 3]`` pixel intrinsics.
        width: image width in pixels.
        height: image height in pixels.
        near: near clipping plane (also where the distortion's depth range starts).
        far: far clipping plane (and the end of the distortion's depth range).
        sh: ``[N, K, 3]`` SH coefficients (view-dependent colour, ``max(SH + 0.5, 0)``).
        sh_degree: the SH degree to evaluate, ``(sh_degree + 1)^2 <= K``.
        backgrounds: ``[C, D]`` colour behind the surfels.
        scale_modifier: multiplies ``scales``.
        deterministic: ``False`` lets the CUDA backward add each surfel's per-tile gradients
            atomically, in no fixed order: one gradient record per (camera, surfel) instead of
            one per (tile, surfel) pair, so less memory on large images, but gradients that may
            differ in the last bits from run to run. The CPU backend is deterministic either way.
        semantics: ``"gsplat_lib"`` (docs/design.md, "Rasterizer semantics") or ``"upstream"``:
            upstream 2DGS's rules (hbb1/diff-surfel-rasterization e0ed020; docs/design.md,
            "Faithful mode"): no 3-sigma cut within upstream's 16x16 tiles, the screen fallback
            centred on the ellipse-box centre e (``means2d``) with the ray-splat depth, stop at
            T < 1e-4, far does not cull, upstream's radii (``radii[..., 0] == radii[..., 1]``), alpha's
            0.99 clamp passed through by the backward, and upstream's statistic in
            ``screen_grad`` (dL/dM02, dL/dM12 over the ray-splat pixels times the centre depth,
            pixels) and ``screen_absgrad`` (sum of |dL/de| over the fallback pixels).
        scene_ids: ``[N]`` int64 >= 0, the scene of each surfel; with ``camera_scene_ids``
            ``[C]`` int64, the scene each camera sees. Each camera then renders only its scene's
            surfels (in any order in the inputs; a scene may have no surfels, or several cameras,
            or none): its image and the gradients equal a call with only that scene's surfels and
            cameras. The per-(camera, surfel) outputs come packed, one row per camera and surfel
            of its scene (``RasterResult.item_cameras`` / ``item_surfels``), so the work and the
            memory grow with those pairs, not with C x N. ``colors`` is then ``[N, D]`` (or ``sh``).

    Bad surfels (non-finite, zero or negative scale, zero quaternion, behind the camera, edge-on
    outlines through the camera plane, off screen) are culled; bad cameras and wrong shapes,
    dtypes or devices raise errors naming the argument. Both backends are deterministic by
    default: the same inputs give the same bits, whatever the thread count. Gradients flow to
    means, quats, scales, opacities, colours / SH and backgrounds; cameras get none.
    """
    dims: Dict[str, int] = {}
    means = check_tensor("means", means, ("N", 3), dims=dims)
    device = means.device
    quats = check_tensor("quats", quats, ("N", 4), dims=dims, device=device)
    scales = check_tensor("scales", scales, ("N", 2), dims=dims, device=device)
    opacities = check_tensor("opacities", opacities, ("N",), dims=dims, device=device)
    viewmats = check_tensor("viewmats", viewmats, ("C", 4, 4), dims=dims, device=device)
    Ks = check_tensor("Ks", Ks, ("C", 3, 3), dims=dims, device=device)
    num_cameras, num_surfels = dims["C"], dims["N"]
    width = _check_size("width", width)
    height = _check_size("height", height)
    near, far = _check_planes(near, far)
    if not (isinstance(scale_modifier, (int, float)) and math.isfinite(scale_modifier) and scale_modifier > 0):
        raise ValueError(f"scale_modifier must be a finite number > 0, got {scale_modifier!r}")
    if not isinstance(deterministic, bool):
        raise TypeError(f"deterministic must be a bool, got {type(deterministic).__name__}")
    if semantics not in SEMANTICS:
        raise ValueError(f"semantics must be one of {SEMANTICS}, got {semantics!r}")

    scenes: Optional[SceneItems] = scene_items(scene_ids, camera_scene_ids, num_surfels, num_cameras, device)

    if (colors is None) == (sh is None):
        raise ValueError("give exactly one of colors [N, D] / [C, N, D] or sh [N, K, 3] with sh_degree")
    if sh is not None:
        sh = check_tensor("sh", sh, ("N", None, 3), dims=dims, device=device)
        if not isinstance(sh_degree, int):
            raise TypeError(f"sh_degree must be an int when sh is given, got {type(sh_degree).__name__}")
        if scenes is None:
            item_colors = sh_to_colors(sh, sh_degree, means, viewmats)
        else:
            item_colors = sh_to_item_colors(sh, sh_degree, means, viewmats, scenes.item_cameras, scenes.item_surfels)
    elif isinstance(colors, torch.Tensor) and colors.dim() == 3:
        if scenes is not None:
            raise ValueError("colors: with scene ids give colors [N, D] (or sh), not per camera [C, N, D]")
        item_colors = check_tensor("colors", colors, ("C", "N", None), dims=dims, device=device)
    else:
        colors = check_tensor("colors", colors, ("N", None), dims=dims, device=device)
        # Packed: indexing, whose backward sums each surfel's items in order (so does the dense
        # expand's, up to 4 cameras: docs/design.md).
        item_colors = (colors.unsqueeze(0).expand(num_cameras, -1, -1) if scenes is None
                       else colors[scenes.item_surfels])
    item_colors = item_colors.contiguous()
    num_channels = item_colors.shape[-1]
    if backgrounds is not None:
        backgrounds = check_tensor("backgrounds", backgrounds, (num_cameras, num_channels), device=device)
    checks = _check_cameras(viewmats, Ks, backgrounds)

    check_image_memory(num_cameras, width, height, num_channels, device)
    settings = raster_settings(num_cameras, num_surfels, num_channels, width, height, near, far, device,
                               scale_modifier=float(scale_modifier), deterministic=deterministic,
                               semantics=semantics, scenes=scenes)
    num_items = settings["num_items"]

    track = torch.is_grad_enabled()
    # Leaves whose .grad the backward sets to the densification statistics; their values are
    # never read, so one zero viewed as [C, N, 2] (or [I, 2]) serves (no memory to fill).
    item_shape = (num_cameras, num_surfels) if scenes is None else (num_items,)
    screen_grad = zero_view(*item_shape, 2, device=device).requires_grad_(track)
    screen_absgrad = zero_view(*item_shape, 2, device=device).requires_grad_(track)
    center_grad = zero_view(*item_shape, 2, device=device).requires_grad_(track) if semantics == "upstream" else None
    # A diagnostic the backward fills in place (zeros until it runs).
    backward_pairs = zeros(num_cameras, height, width, dtype=torch.int32, device=device)
    (out_colors, out_alphas, out_depths, out_median_depths, out_normals, out_distortions, radii, means2d, depths,
     evaluated_pairs) = RasterizeSurfels.apply(
        means, quats, scales, opacities, item_colors, viewmats, Ks, backgrounds,
        screen_grad, screen_absgrad, center_grad, backward_pairs, settings, scenes, checks,
    )
    return RasterResult(
        colors=out_colors, alphas=out_alphas, depths=out_depths, median_depths=out_median_depths,
        normals=out_normals, distortions=out_distortions, radii=radii, means2d=means2d, depths_surfel=depths,
        screen_grad=screen_grad, screen_absgrad=screen_absgrad, evaluated_pairs=evaluated_pairs,
        backward_pairs=backward_pairs, viewmats=viewmats, center_grad=center_grad,
        item_cameras=None if scenes is None else scenes.item_cameras,
        item_surfels=None if scenes is None else scenes.item_surfels,
    )


def raster_settings(num_cameras: int, num_surfels: int, num_channels: int, width: int, height: int, near: float,
                    far: float, device: torch.device, *, scale_modifier: float = 1.0,
                    deterministic: bool = True, semantics: str = "gsplat_lib",
                    scenes: Optional[SceneItems] = None) -> Dict[str, object]:
    """The sizes and settings every compiled pass of one call takes (the fields of the core's
    ``Dims``); ``num_pairs`` is set once the projection has counted the pairs. ``scenes``: the
    packed items of a call with scene ids."""
    tile_size = core().TILE_SIZE
    cpu_tile_width = core().CPU_TILE_WIDTH if CPU_TILE_WIDTH is None else CPU_TILE_WIDTH
    tile_width = tile_size if device.type == "cuda" else cpu_tile_width
    if tile_width < 1:  # the upper bound is the compiled core's (it checks and names it)
        raise ValueError(f"tile_width (CPU_TILE_WIDTH) must be at least 1, got {tile_width}")
    tiles_x, tiles_y = -(-width // tile_width), -(-height // tile_size)
    if num_cameras * tiles_x * tiles_y >= 2**31:
        raise ValueError(
            f"{num_cameras} cameras x {tiles_x * tiles_y} tiles of {tile_width}x{tile_size} px exceed the 2^31 "
            "tile keys of one call: render fewer cameras per call or smaller images"
        )
    return dict(
        num_cameras=num_cameras, num_surfels=num_surfels, num_channels=num_channels, width=width, height=height,
        num_items=num_cameras * num_surfels if scenes is None else scenes.num_items,
        num_scenes=0 if scenes is None else scenes.num_scenes,
        tile_width=tile_width, tiles_x=tiles_x, tiles_y=tiles_y, near_plane=near, far_plane=far,
        scale_modifier=scale_modifier, cpu_lanes=CPU_LANES,
        cpu_group_bytes=CPU_GROUP_BYTES or 0, semantics=core().SEMANTICS[semantics], num_pairs=0,
        # The CPU gives each tile to one thread, which writes its pairs' records: no atomics to save.
        item_records=not deterministic and device.type == "cuda",
    )


def _check_size(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _check_planes(near: float, far: float):
    for name, value in (("near", near), ("far", far)):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not 0 < near < far:
        raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
    return float(near), float(far)


def _check_cameras(viewmats: torch.Tensor, Ks: torch.Tensor,
                   backgrounds: Optional[torch.Tensor]) -> Optional[DeviceChecks]:
    """The cameras and backgrounds are finite (they are not culled like surfels: a NaN there
    would reach every pixel), backgrounds within the colour limit, and Ks pinhole intrinsics.

    The CPU checks now; the CUDA schedule computes the checks on the device and returns them,
    for the forward to read with its pair total (no read of their own; the kernels cull what
    bad cameras make until then)."""
    given = {"viewmats": viewmats.detach(), "Ks": Ks.detach()}
    if backgrounds is not None:
        given["backgrounds"] = backgrounds.detach()
    if not pair_capacity.used(viewmats.device):  # numpy: on small renders each torch op's dispatch cost shows
        arrays = {name: value.numpy() for name, value in given.items()}
        finite = [bool(np.isfinite(values).all()) for values in arrays.values()]
        pinhole = bool((arrays["Ks"][:, 2, :] == (0.0, 0.0, 1.0)).all())
        usable = backgrounds is None or bool((np.abs(arrays["backgrounds"]) <= core().COLOR_LIMIT).all())
        _raise_camera_errors(list(given), finite, pinhole, usable)
        return None
    last_row = given["Ks"][:, 2, :]
    flags = [torch.isfinite(value).all() for value in given.values()]
    flags.append(((last_row[:, 0] == 0) & (last_row[:, 1] == 0) & (last_row[:, 2] == 1)).all())
    if backgrounds is not None:
        flags.append((given["backgrounds"].abs() <= core().COLOR_LIMIT).all())
    flags = torch.stack(flags)

    def fail() -> None:
        values = read_now(flags)
        usable = backgrounds is None or values[-1]
        _raise_camera_errors(list(given), values[: len(given)], values[len(given)], usable)
        raise RuntimeError("rasterize_surfels: the camera checks failed on the device but not when read again")

    return DeviceChecks(flags.all(), fail)


def _raise_camera_errors(names, finite, pinhole: bool, usable: bool) -> None:
    for name, ok in zip(names, finite):
        if not ok:
            raise ValueError(f"{name} contains NaN or Inf")
    if not usable:  # colours that large are culled; a background cannot be
        raise ValueError(f"backgrounds holds values beyond +-{core().COLOR_LIMIT:.3g}, where float32 gradients overflow")
    if not pinhole:
        raise ValueError("Ks must be pinhole intrinsics whose last row is (0, 0, 1)")
