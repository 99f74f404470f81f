"""Differentiable surfel (2DGS) rasterization, batched over cameras, on CPU and CUDA.

The math is pinned down in docs/design.md ("Rasterizer semantics") and lives once in
``csrc/core``; this module checks the inputs, allocates every buffer with torch, sorts the
tile pairs (its own CPU pass, ``torch.sort`` on CUDA) and wires the compiled passes into autograd.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import torch

from gsplat_lib import _backend
from gsplat_lib._backend import address, check_tensor
from gsplat_lib.ops.sh import sh_to_colors

# Tiles are TILE_SIZE rows high. CUDA runs one 16x16 thread block per tile; the CPU takes
# wider tiles: a splat's rows are then split between tiles less often, so its lane groups
# are fuller and there are fewer (tile, surfel) pairs to sort. Pixels see the same splats in
# the same order either way; only the summation order of the gradients differs.
TILE_SIZE = 16
CPU_TILE_WIDTH = 64
# Floats per (tile, surfel) pair in the backward: dL/dM (9), opacity, normal (3), |stat| (2).
_PAIR_GRAD_BASE = 15
# Lane width of the CPU pixel passes: 0 picks the widest this machine runs (8 with AVX2,
# else 4); 1 runs the scalar form of the math that the CUDA backend compiles. Every width
# gives the same forward bits; tests set this to compare them.
CPU_LANES = 0
# Bytes per tile pair in the forward at its peak (CUDA's; the CPU needs less): keys, ids, the
# sort's outputs and its radix buffers (keys and values again), the tile ids, the gathered ids.
_PAIR_BYTES_FORWARD = 64


@dataclass
class RasterResult:
    """Images are channels-last ``[C, H, W, ...]``; per-surfel tensors are ``[C, N, ...]``."""

    colors: torch.Tensor           # [C, H, W, D]
    alphas: torch.Tensor           # [C, H, W, 1]
    depths: torch.Tensor           # [C, H, W, 1] accumulated hit depth, sum of w z
    median_depths: torch.Tensor    # [C, H, W, 1]
    normals: torch.Tensor          # [C, H, W, 3] camera frame, alpha-weighted (not normalised)
    distortions: torch.Tensor      # [C, H, W, 1]
    radii: torch.Tensor            # [C, N, 2] int32 half extents of the screen box, 0 = culled
    means2d: torch.Tensor          # [C, N, 2] projected centres (pixels)
    depths_surfel: torch.Tensor    # [C, N] camera-space depth of the centres
    screen_grad: torch.Tensor      # [C, N, 2] leaf: .grad = dL/d(screen translation) after backward
    screen_absgrad: torch.Tensor   # [C, N, 2] leaf: .grad = sum of |per-pixel| translation gradients
    evaluated_pairs: torch.Tensor  # [C, H, W] int32 (pixel, surfel) pairs the forward evaluated
    backward_pairs: torch.Tensor   # [C, H, W] int32 pairs the backward evaluated (filled by backward)
    viewmats: torch.Tensor         # [C, 4, 4] the cameras (for normals_world)

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
        """[C, N] bool: the surfel survived culling in that camera."""
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
) -> RasterResult:
    """Renders N surfels into C cameras in one call.

    Args:
        means: ``[N, 3]`` centres. quats: ``[N, 4]`` rotations (w, x, y, z), normalised inside.
        scales: ``[N, 2]`` positive extents along the two tangent axes. opacities: ``[N]`` in [0, 1].
        colors: ``[N, D]`` or per camera ``[C, N, D]``, any D; or give ``sh [N, K, 3]`` and
            ``sh_degree`` instead (view-dependent colour, ``max(SH + 0.5, 0)``).
        viewmats: ``[C, 4, 4]`` world-to-camera (OpenCV). Ks: ``[C, 3, 3]`` pixel intrinsics.
        width, height: image size in pixels. near, far: clipping planes (also the distortion's range).
        backgrounds: ``[C, D]`` colour behind the surfels. scale_modifier: multiplies ``scales``.
        deterministic: ``False`` lets the CUDA backward add each surfel's per-tile gradients
            atomically, in no fixed order: one gradient record per (camera, surfel) instead of
            one per (tile, surfel) pair, so less memory on large images, but gradients that may
            differ in the last bits from run to run. The CPU backend is deterministic either way.

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
    _check_cameras(viewmats, Ks)
    if not isinstance(deterministic, bool):
        raise TypeError(f"deterministic must be a bool, got {type(deterministic).__name__}")

    if (colors is None) == (sh is None):
        raise ValueError("give exactly one of colors [N, D] / [C, N, D] or sh [N, K, 3] with sh_degree")
    if sh is not None:
        sh = check_tensor("sh", sh, ("N", None, 3), dims=dims, device=device)
        if not isinstance(sh_degree, int):
            raise TypeError(f"sh_degree must be an int when sh is given, got {type(sh_degree).__name__}")
        colors_per_camera = sh_to_colors(sh, sh_degree, means, viewmats)
    elif isinstance(colors, torch.Tensor) and colors.dim() == 3:
        colors_per_camera = check_tensor("colors", colors, ("C", "N", None), dims=dims, device=device)
    else:
        colors = check_tensor("colors", colors, ("N", None), dims=dims, device=device)
        colors_per_camera = colors.unsqueeze(0).expand(num_cameras, -1, -1)
    colors_per_camera = colors_per_camera.contiguous()
    num_channels = colors_per_camera.shape[-1]
    if backgrounds is not None:
        backgrounds = check_tensor("backgrounds", backgrounds, (num_cameras, num_channels), device=device)

    _check_image_memory(num_cameras, width, height, num_channels, device)
    tile_width = TILE_SIZE if device.type == "cuda" else CPU_TILE_WIDTH
    if tile_width < 1:  # the upper bound is the compiled core's (it checks and names it)
        raise ValueError(f"tile_width (CPU_TILE_WIDTH) must be at least 1, got {tile_width}")
    tiles_x, tiles_y = -(-width // tile_width), -(-height // TILE_SIZE)
    if num_cameras * tiles_x * tiles_y >= 2**31:
        raise ValueError(
            f"{num_cameras} cameras x {tiles_x * tiles_y} tiles of {tile_width}x{TILE_SIZE} px exceed the 2^31 "
            "tile keys of one call: render fewer cameras per call or smaller images"
        )
    settings = dict(
        num_cameras=num_cameras, num_surfels=num_surfels, num_channels=num_channels, width=width,
        height=height, tile_width=tile_width, tiles_x=tiles_x, tiles_y=tiles_y, near_plane=near, far_plane=far,
        scale_modifier=float(scale_modifier), cpu_lanes=CPU_LANES,
        # The CPU gives each tile to one thread, which writes its pairs' records: no atomics to save.
        item_records=not deterministic and device.type == "cuda",
    )

    track = torch.is_grad_enabled()
    # Leaves whose .grad the backward sets to the densification statistics; their values are
    # never read, so one zero viewed as [C, N, 2] serves (no memory to fill).
    screen_grad = _zero_view(num_cameras, num_surfels, 2, device=device).requires_grad_(track)
    screen_absgrad = _zero_view(num_cameras, num_surfels, 2, device=device).requires_grad_(track)
    # A diagnostic the backward fills in place (zeros until it runs); an input, not an output,
    # so keeping it on ctx makes no reference cycle.
    backward_pairs = _zeros(num_cameras, height, width, dtype=torch.int32, device=device)
    (out_colors, alphas, depths, median_depths, normals, distortions, radii, means2d, depths_surfel,
     evaluated_pairs) = (
        _RasterizeSurfels.apply(
            means, quats, scales, opacities, colors_per_camera, viewmats, Ks, backgrounds,
            screen_grad, screen_absgrad, backward_pairs, settings,
        )
    )
    return RasterResult(
        colors=out_colors, alphas=alphas, depths=depths, median_depths=median_depths, normals=normals,
        distortions=distortions, radii=radii, means2d=means2d, depths_surfel=depths_surfel,
        screen_grad=screen_grad, screen_absgrad=screen_absgrad, evaluated_pairs=evaluated_pairs,
        backward_pairs=backward_pairs, viewmats=viewmats,
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


def _check_cameras(viewmats: torch.Tensor, Ks: torch.Tensor) -> None:
    # Few torch ops: on small renders each one's dispatch cost shows. On the CPU, numpy's
    # checks of these few values cost less still (about 11 us against 24 us, measured).
    if viewmats.device.type == "cpu":
        finite = {"viewmats": viewmats.detach().numpy(), "Ks": Ks.detach().numpy()}
        for name, values in finite.items():
            if not np.isfinite(values).all():
                raise ValueError(f"{name} contains NaN or Inf")
        last_rows = finite["Ks"][:, 2, :].tolist()
    else:
        if not bool(torch.isfinite(torch.cat((viewmats.reshape(-1), Ks.reshape(-1)))).all()):
            name = "viewmats" if not bool(torch.isfinite(viewmats).all()) else "Ks"
            raise ValueError(f"{name} contains NaN or Inf")
        last_rows = Ks[:, 2, :].tolist()
    if any(row != [0.0, 0.0, 1.0] for row in last_rows):
        raise ValueError("Ks must be pinhole intrinsics whose last row is (0, 0, 1)")


def _available_bytes(device: torch.device) -> Optional[int]:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# Requests below this are not checked against free memory: reading it costs more than a
# small render, and an allocation of this size that fails gets torch's own clear error.
_CHECKED_BYTES = 256 * 2**20


def _exceeds_memory(needed: int, device: torch.device) -> Optional[int]:
    """The bytes available when `needed` is more than that (and worth checking), else None."""
    if needed < _CHECKED_BYTES:
        return None
    available = _available_bytes(device)
    return available if available is not None and needed > available else None


def _check_image_memory(num_cameras: int, width: int, height: int, channels: int, device: torch.device) -> None:
    # Outputs, saved state and their gradients: about 2 x (D + 12) floats per pixel.
    needed = 2 * 4 * num_cameras * width * height * (channels + 12)
    available = _exceeds_memory(needed, device)
    if available is not None:
        raise ValueError(
            f"rendering {num_cameras} x {width}x{height} images needs about {needed / 2**30:.1f} GiB but only "
            f"{available / 2**30:.1f} GiB is available on {device}: render smaller images or fewer cameras per call"
        )


def _check_pair_memory(num_pairs: int, num_items: int, channels: int, item_records: bool, device: torch.device) -> None:
    # The backward's gradient records: one per pair, or one per (camera, surfel) item.
    num_records = num_items if item_records else num_pairs
    needed = num_pairs * _PAIR_BYTES_FORWARD + num_records * 4 * (_PAIR_GRAD_BASE + channels)
    available = _exceeds_memory(needed, device)
    if available is not None:
        raise ValueError(
            f"the surfels cover {num_pairs} (tile, surfel) pairs needing about {needed / 2**30:.1f} GiB, but only "
            f"{available / 2**30:.1f} GiB is available on {device}: render fewer cameras per call, smaller "
            "images, or cull oversized surfels"
            + (" (or pass deterministic=False: one gradient record per surfel, not per pair)"
               if device.type == "cuda" and not item_records else "")
        )


def _launch(name: str, device: torch.device, settings: dict, **buffers: Optional[torch.Tensor]) -> None:
    fields = dict(settings)
    for key, tensor in buffers.items():
        fields[key] = address(tensor)
    function = _backend.op(f"rasterize_{name}", device)
    if device.type == "cpu":
        function(fields, _backend.num_threads())
    else:
        function(fields, _backend.device_index(device), _backend.stream_of(device))


def _bin_pairs(depths: torch.Tensor, pixel_rects: torch.Tensor, pair_ends: torch.Tensor, num_pairs: int,
               settings: dict, use_torch: Optional[bool] = None):
    """The (tile, surfel) pairs sorted by key (tile, then depth; stable):
    (tile_starts, sorted_surfels, pair_emit_index).

    CUDA emits the keys and sorts them with torch.sort; the CPU runs its own pass, which gives
    the same result without the keys (tested).
    """
    device = depths.device
    i64 = dict(dtype=torch.int64, device=device)
    num_tiles = settings["num_cameras"] * settings["tiles_x"] * settings["tiles_y"]
    if use_torch is None:
        use_torch = device.type != "cpu"
    if use_torch:
        keys = torch.empty(num_pairs, **i64)
        pair_surfels = torch.empty(num_pairs, **i64)
        _launch("emit_pairs", device, settings, depths=depths, pixel_rects=pixel_rects, pair_ends=pair_ends,
                keys=keys, pair_surfels=pair_surfels)
        sorted_keys, pair_emit_index = torch.sort(keys, stable=True)
        tile_starts = torch.searchsorted(sorted_keys >> 32, torch.arange(num_tiles + 1, **i64))
        return tile_starts, pair_surfels[pair_emit_index], pair_emit_index
    tile_starts = torch.empty(num_tiles + 1, **i64)
    pair_emit_index = torch.empty(num_pairs, **i64)
    sorted_surfels = torch.empty(num_pairs, **i64)
    _launch("bin_pairs", device, dict(settings, num_pairs=num_pairs), depths=depths, pixel_rects=pixel_rects,
            pair_ends=pair_ends, tile_starts=tile_starts, pair_emit_index=pair_emit_index,
            sorted_surfels=sorted_surfels)
    return tile_starts, sorted_surfels, pair_emit_index


def _new_pass_output(*shape: int, device: torch.device) -> torch.Tensor:
    """A float32 buffer a compiled pass fills: the colour image or the pair gradient records.
    The CPU passes write every element of them, so it is left uninitialised there; the CUDA
    backward writes only the records with a hit and its forward sums many-channel colours
    in the image itself, so CUDA gets zeros."""
    allocate = torch.zeros if device.type == "cuda" else torch.empty
    return allocate(*shape, dtype=torch.float32, device=device)


# The backward's pair records [P, 15 + D] live only within one backward call. Allocated afresh
# each time on the CPU, glibc maps a buffer this large anew and every page faults in when the
# backward writes it. So each thread keeps its largest buffer (concurrent backwards each need
# one), as torch's caching allocator does on CUDA. 100k surfels, 512x512, 4 cameras, one
# thread, forward+backward, four alternating rounds: 13-18k -> 2.4-4.8k page faults per call,
# best call 856-1003 -> 811-877 ms.
_workspace = threading.local()


def _pair_grad_records(num_pairs: int, width: int, device: torch.device) -> torch.Tensor:
    if device.type != "cpu":
        return _new_pass_output(num_pairs, width, device=device)
    needed = num_pairs * width
    buffer = getattr(_workspace, "pair_grads", None)
    if buffer is None or buffer.numel() < needed:
        _workspace.pair_grads = None  # release the smaller one before allocating
        # Headroom, so that pair counts creeping up during training do not reallocate each step.
        buffer = torch.empty(needed + needed // 8, dtype=torch.float32)
        _workspace.pair_grads = buffer
    return buffer[:needed].view(num_pairs, width)


_NUMPY_DTYPES = {torch.float32: np.float32, torch.int32: np.int32}


def _zeros(*shape: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """torch.zeros, except that on the CPU no torch op fills it: numpy's zeros come from calloc,
    whose fresh pages are zero already. A torch fill this size runs on torch's OpenMP threads,
    and with OMP_WAIT_POLICY=PASSIVE waking them cost about 0.15 ms a fill on 2 threads
    (measured), a few percent of a 100k-surfel render."""
    if device.type != "cpu":
        return torch.zeros(*shape, dtype=dtype, device=device)
    return torch.from_numpy(np.zeros(shape, dtype=_NUMPY_DTYPES[dtype]))


def _zero_view(*shape: int, device: torch.device) -> torch.Tensor:
    return torch.zeros((), dtype=torch.float32, device=device).expand(*shape)


def _zeros_if_none(grad: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if grad is None else grad.contiguous()


class _RasterizeSurfels(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, opacities, colors, viewmats, Ks, backgrounds, screen_grad,
                screen_absgrad, backward_pairs, settings):
        device = means.device
        C, N, D = settings["num_cameras"], settings["num_surfels"], settings["num_channels"]
        H, W = settings["height"], settings["width"]
        f32 = dict(dtype=torch.float32, device=device)
        i32 = dict(dtype=torch.int32, device=device)
        i64 = dict(dtype=torch.int64, device=device)

        M = torch.empty(C, N, 9, **f32)
        normals_cn = torch.empty(C, N, 3, **f32)
        means2d = torch.empty(C, N, 2, **f32)
        depths_surfel = torch.empty(C, N, **f32)
        radii = torch.empty(C, N, 2, **i32)
        pixel_rects = torch.empty(C, N, 4, **i32)
        # Each item's tile count, and their inclusive running sum: where each item's pairs end.
        # The CPU projection writes the running sum itself; on CUDA torch.cumsum makes it.
        counts = torch.empty(C * N, **i64)
        on_cpu = device.type == "cpu"
        _launch("project", device, settings, means=means, quats=quats, scales=scales, opacities=opacities,
                colors=colors, viewmats=viewmats, Ks=Ks, M=M, normals=normals_cn, means2d=means2d,
                depths=depths_surfel, radii=radii, pixel_rects=pixel_rects,
                tile_counts=None if on_cpu else counts, pair_ends=counts if on_cpu else None)

        # Two phases (decision 1): count the pairs, read the total, allocate, fill.
        pair_ends = counts if on_cpu else torch.cumsum(counts, dim=0)
        num_pairs = int(pair_ends[-1]) if pair_ends.numel() else 0
        _check_pair_memory(num_pairs, C * N, D, settings["item_records"], device)
        tile_starts, sorted_surfels, pair_emit_index = _bin_pairs(depths_surfel, pixel_rects, pair_ends, num_pairs,
                                                                  settings)

        out_colors = _new_pass_output(C, H, W, D, device=device)
        alphas = torch.empty(C, H, W, 1, **f32)
        depths = torch.empty(C, H, W, 1, **f32)
        median_depths = torch.empty(C, H, W, 1, **f32)
        normals = torch.empty(C, H, W, 3, **f32)
        distortions = torch.empty(C, H, W, 1, **f32)
        saved_T = torch.empty(C, H, W, **f32)
        saved_last = torch.empty(C, H, W, **i32)
        saved_median = torch.empty(C, H, W, **i32)
        saved_sums = torch.empty(C, H, W, 3, **f32)
        evaluated_pairs = torch.empty(C, H, W, **i32)
        pixel_inputs = dict(tile_starts=tile_starts, sorted_surfels=sorted_surfels, M=M, means2d=means2d,
                            normals=normals_cn, opacities=opacities, colors=colors, backgrounds=backgrounds,
                            pixel_rects=pixel_rects)
        _launch("forward", device, settings, **pixel_inputs, out_colors=out_colors, out_alphas=alphas,
                out_depths=depths, out_median=median_depths, out_normals=normals, out_distortion=distortions,
                saved_T=saved_T, saved_last=saved_last, saved_median=saved_median, saved_sums=saved_sums,
                out_visited=evaluated_pairs)

        ctx.settings = settings
        ctx.has_backgrounds = backgrounds is not None
        ctx.save_for_backward(means, quats, scales, opacities, colors, viewmats, Ks,
                              backgrounds if backgrounds is not None else torch.empty(0, device=device),
                              M, normals_cn, means2d, radii, pixel_rects, pair_ends, tile_starts, sorted_surfels,
                              pair_emit_index, saved_T, saved_last, saved_median, saved_sums)
        ctx.backward_pairs = backward_pairs
        ctx.mark_non_differentiable(radii, means2d, depths_surfel, evaluated_pairs)
        # Outputs the loss does not use reach backward as None, not as zero tensors autograd
        # would fill; backward makes the zeros it needs.
        ctx.set_materialize_grads(False)
        return (out_colors, alphas, depths, median_depths, normals, distortions, radii, means2d, depths_surfel,
                evaluated_pairs)

    @staticmethod
    def backward(ctx, v_colors, v_alphas, v_depths, v_median, v_normals, v_distortions, *_unused):
        (means, quats, scales, opacities, colors, viewmats, Ks, backgrounds, M, normals_cn, means2d, radii,
         pixel_rects, pair_ends, tile_starts, sorted_surfels, pair_emit_index, saved_T, saved_last, saved_median,
         saved_sums) = ctx.saved_tensors
        settings = ctx.settings
        device = means.device
        C, N, D = settings["num_cameras"], settings["num_surfels"], settings["num_channels"]
        H, W = settings["height"], settings["width"]
        f32 = dict(dtype=torch.float32, device=device)
        backgrounds = backgrounds if ctx.has_backgrounds else None
        # An unused output's cotangent stays None: the compiled backward reads it as zero.
        v_colors = _zeros_if_none(v_colors, torch.empty(C, H, W, D, **f32))
        v_alphas, v_depths, v_median, v_normals, v_distortions = (
            None if v is None else v.contiguous() for v in (v_alphas, v_depths, v_median, v_normals, v_distortions))

        if settings["item_records"]:
            # A record per (camera, surfel) that its pairs add to: each item's records end one further.
            pair_grads = torch.zeros(C * N, _PAIR_GRAD_BASE + D, **f32)
            record_ends = torch.arange(1, C * N + 1, dtype=torch.int64, device=device)
        else:
            pair_grads = _pair_grad_records(sorted_surfels.numel(), _PAIR_GRAD_BASE + D, device)
            record_ends = pair_ends
        _launch("backward", device, settings, tile_starts=tile_starts, sorted_surfels=sorted_surfels, M=M,
                means2d=means2d, normals=normals_cn, opacities=opacities, colors=colors, backgrounds=backgrounds,
                pixel_rects=pixel_rects, saved_T=saved_T, saved_last=saved_last, saved_median=saved_median, saved_sums=saved_sums,
                v_colors=v_colors, v_alphas=v_alphas, v_depths=v_depths, v_median=v_median, v_normals=v_normals,
                v_distortion=v_distortions, pair_emit_index=pair_emit_index, pair_grads=pair_grads,
                out_backward_visited=ctx.backward_pairs)

        v_M = torch.empty(C, N, 9, **f32)
        v_opacities_cn = torch.empty(C, N, **f32)
        v_normals_cn = torch.empty(C, N, 3, **f32)
        v_colors_cn = torch.empty(C, N, D, **f32)
        screen_grad = torch.empty(C, N, 2, **f32)
        screen_absgrad = torch.empty(C, N, 2, **f32)
        _launch("reduce", device, settings, pair_ends=record_ends, pair_grads=pair_grads, M=M, v_M=v_M,
                v_opacities_cn=v_opacities_cn, v_normals_cn=v_normals_cn, v_colors_cn=v_colors_cn,
                screen_grad=screen_grad, screen_absgrad=screen_absgrad)
        del pair_grads

        v_means = torch.empty(N, 3, **f32)
        v_quats = torch.empty(N, 4, **f32)
        v_scales = torch.empty(N, 2, **f32)
        v_opacities = torch.empty(N, **f32)
        _launch("project_backward", device, settings, means=means, quats=quats, scales=scales, viewmats=viewmats,
                Ks=Ks, radii=radii, v_M=v_M, v_normals_cn=v_normals_cn, v_opacities_cn=v_opacities_cn,
                v_means=v_means, v_quats=v_quats, v_scales=v_scales, v_opacities=v_opacities)

        v_backgrounds = None
        if backgrounds is not None and ctx.needs_input_grad[7]:
            # colour = ... + T_final bg.
            v_backgrounds = (v_colors * saved_T.unsqueeze(-1)).sum(dim=(1, 2))
        return (v_means, v_quats, v_scales, v_opacities, v_colors_cn, None, None, v_backgrounds, screen_grad,
                screen_absgrad, None, None)
