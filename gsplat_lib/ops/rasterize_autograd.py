"""The rasterizer's autograd Function: the compiled passes wired into a forward and a backward.

Every buffer goes to the core under the name of the C++ field it fills
(csrc/ops/rasterize/rasterize.h); ``v_<name>`` is the gradient of buffer ``<name>``. An item
is a (camera, surfel) pair, ``c * N + n`` in a dense call, packed by camera with scene ids
(:mod:`gsplat_lib.ops.rasterize_scenes`); a pair is a (tile, item).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional

import numpy as np
import torch

from gsplat_lib import _backend
from gsplat_lib.ops import pair_capacity
from gsplat_lib.ops.host_reads import DeferredRead
from gsplat_lib.ops.rasterize_memory import check_pair_memory

__all__ = ["DeviceChecks", "RasterizeSurfels", "UNUSED_KEY", "bin_pairs", "launch", "pair_grad_width"]

# The key of an emitted-pair slot that holds no pair: after every real key, and its tile
# (key >> 32 = 2^31 - 1) past every tile of a call (fewer than 2^31, checked).
UNUSED_KEY = 2**63 - 1


def launch(name: str, device: torch.device, settings: dict, **buffers: Optional[torch.Tensor]) -> None:
    """Runs compiled pass ``rasterize_<name>`` with the call's ``settings`` and ``buffers``."""
    fields = dict(settings)
    for key, tensor in buffers.items():
        fields[key] = _backend.buffer(tensor)
    _backend.launch(f"rasterize_{name}", device, fields)


def bin_pairs(depths: torch.Tensor, pixel_rects: torch.Tensor, pair_ends: torch.Tensor, settings: dict,
              use_torch: Optional[bool] = None, camera_items: Optional[torch.Tensor] = None):
    """The (tile, item) pairs sorted by key (tile, then depth; stable): (tile_starts, pair_items,
    pair_emit_index), for ``settings["num_pairs"]`` pairs. ``camera_items``: where each camera's
    items start, for packed items.

    CUDA emits the keys and sorts them with torch.sort; the CPU runs its own pass, which gives
    the same result without the keys (tested). On the torch path ``num_pairs`` may be a capacity
    other than the total: the pairs past it are not emitted, and the slots past the total hold
    ``UNUSED_KEY``, which sorts last and lies past every tile, so ``tile_starts`` covers only the
    real pairs (the buffers' tails are then not pairs).
    """
    device = depths.device
    i64 = dict(dtype=torch.int64, device=device)
    num_pairs = settings["num_pairs"]
    num_tiles = settings["num_cameras"] * settings["tiles_x"] * settings["tiles_y"]
    if use_torch is None:
        use_torch = device.type != "cpu"
    if use_torch:
        emitted_keys = torch.full((num_pairs,), UNUSED_KEY, **i64)
        emitted_items = torch.empty(num_pairs, **i64)
        launch("emit_pairs", device, settings, depths=depths, pixel_rects=pixel_rects, pair_ends=pair_ends,
               camera_items=camera_items, emitted_keys=emitted_keys, emitted_items=emitted_items)
        sorted_keys, pair_emit_index = torch.sort(emitted_keys, stable=True)
        tile_starts = torch.searchsorted(sorted_keys >> 32, torch.arange(num_tiles + 1, **i64))
        return tile_starts, emitted_items[pair_emit_index], pair_emit_index
    tile_starts = torch.empty(num_tiles + 1, **i64)
    pair_emit_index = torch.empty(num_pairs, **i64)
    pair_items = torch.empty(num_pairs, **i64)
    launch("bin_pairs", device, settings, depths=depths, pixel_rects=pixel_rects, pair_ends=pair_ends,
           camera_items=camera_items, tile_starts=tile_starts, pair_emit_index=pair_emit_index, pair_items=pair_items)
    return tile_starts, pair_items, pair_emit_index


def new_pass_output(*shape: int, device: torch.device) -> torch.Tensor:
    """A float32 buffer a compiled pass fills: the colour image or the pair gradient records.
    The CPU passes write every element of them, so it is left uninitialised there; the CUDA
    backward writes only the records with a hit and its forward sums many-channel colours
    in the image itself, so CUDA gets zeros."""
    allocate = torch.zeros if device.type == "cuda" else torch.empty
    return allocate(*shape, dtype=torch.float32, device=device)


_NUMPY_DTYPES = {torch.float32: np.float32, torch.int32: np.int32}


def zeros(*shape: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """torch.zeros, except that on the CPU no torch op fills it: numpy's zeros come from calloc,
    whose fresh pages are zero already, and a torch fill this size wakes torch's OpenMP threads
    (docs/design.md, "CPU threads and torch")."""
    if device.type != "cpu":
        return torch.zeros(*shape, dtype=dtype, device=device)
    return torch.from_numpy(np.zeros(shape, dtype=_NUMPY_DTYPES[dtype]))


def zero_view(*shape: int, device: torch.device) -> torch.Tensor:
    """One zero viewed as ``shape``: a leaf whose values are never read needs no memory."""
    return torch.zeros((), dtype=torch.float32, device=device).expand(*shape)


def _zeros_if_none(grad: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if grad is None else grad.contiguous()


# The packed items' lists each pass takes (all None in a dense call).
_PROJECT_LISTS = ("camera_items", "item_surfels")
_PROJECT_BACKWARD_LISTS = ("camera_items", "scene_surfels", "scene_surfel_starts", "scene_cameras",
                           "scene_camera_starts")


def _lists(scenes, *names: str) -> Dict[str, Optional[torch.Tensor]]:
    buffers = scenes.buffers() if scenes is not None else {}
    return {name: buffers.get(name) for name in names}


def pair_grad_width(settings: dict) -> int:
    """Floats per pair gradient record: the geometry part of the call's semantics, then D colours."""
    upstream = settings["semantics"] == _backend.core().SEMANTICS["upstream"]
    head = _backend.core().PAIR_GRAD_COLOR_UPSTREAM if upstream else _backend.core().PAIR_GRAD_COLOR
    return head + settings["num_channels"]


def _check_pairs_fit(num_pairs: int, settings: dict, device: torch.device) -> None:
    """ValueError when ``num_pairs`` pairs of the call and their gradient records would not fit."""
    check_pair_memory(num_pairs, settings["num_items"], settings["num_channels"], settings["item_records"], device,
                      record_width=pair_grad_width(settings))


@dataclass
class DeviceChecks:
    """Argument checks computed on the device, read with the call's pair total in one read at the
    end of the forward (no read of their own): ``ok`` [] bool; when it is False, ``fail()`` reads
    the details and raises the error naming the argument."""

    ok: torch.Tensor
    fail: Callable[[], None]


def _forward_pixels(settings: dict, pairs, pixel_inputs: dict):
    """The forward pixel pass over the sorted pairs: the six images, then the saved state and
    evaluated_pairs."""
    tile_starts, pair_items = pairs
    device = tile_starts.device
    C, H, W, D = settings["num_cameras"], settings["height"], settings["width"], settings["num_channels"]
    f32 = dict(dtype=torch.float32, device=device)
    i32 = dict(dtype=torch.int32, device=device)
    outputs = dict(
        out_colors=new_pass_output(C, H, W, D, device=device), out_alphas=torch.empty(C, H, W, 1, **f32),
        out_depths=torch.empty(C, H, W, 1, **f32), out_median_depths=torch.empty(C, H, W, 1, **f32),
        out_normals=torch.empty(C, H, W, 3, **f32), out_distortions=torch.empty(C, H, W, 1, **f32),
        saved_T=torch.empty(C, H, W, **f32), saved_last=torch.empty(C, H, W, **i32),
        saved_median=torch.empty(C, H, W, **i32), saved_sums=torch.empty(C, H, W, 3, **f32),
        evaluated_pairs=torch.empty(C, H, W, **i32),
    )
    launch("forward", device, settings, tile_starts=tile_starts, pair_items=pair_items, **pixel_inputs, **outputs)
    return tuple(outputs.values())


def _bin_within_capacity(depths, pixel_rects, pair_ends, settings, scenes, checks: Optional[DeviceChecks],
                         pixel_inputs: dict):
    """The CUDA schedule's pairs and pixel pass in buffers of the view's pair capacity, queued
    before the host knows the total (docs/design.md, "Pair capacity"): the total and the argument
    checks come back in one deferred read at the end; when the total exceeds the capacity, the
    capacity grows and the pairs and pixels are redone. Returns (settings with the total as
    num_pairs, the sorted pairs cut to the total, the forward pass's outputs)."""
    device = depths.device
    total_tensor = pair_ends[-1:] if pair_ends.numel() else torch.zeros(1, dtype=torch.int64, device=device)
    read = DeferredRead(total_tensor if checks is None else torch.cat((total_tensor, checks.ok.reshape(1).long())))

    def verified_total() -> int:
        values = read.values()
        if checks is not None and not values[1]:
            checks.fail()
        return values[0]

    view = (settings["num_cameras"], settings["width"], settings["height"])

    def grown(total: int) -> int:
        _check_pairs_fit(total, settings, device)
        return pair_capacity.grow(device, view, total)

    total = None
    capacity = pair_capacity.capacity(device, view)
    if capacity == 0:  # the view's first call: no capacity to try, so the total comes first
        total = verified_total()
        capacity = grown(total)
    while True:
        call = dict(settings, num_pairs=capacity)
        tile_starts, pair_items, pair_emit_index = bin_pairs(depths, pixel_rects, pair_ends, call, use_torch=True,
                                                             **_lists(scenes, "camera_items"))
        outputs = _forward_pixels(call, (tile_starts, pair_items), pixel_inputs)
        if total is None:
            total = verified_total()
        if total <= capacity:
            break
        capacity = grown(total)  # the pairs overflowed: grow, then emit and render again
    pairs = (tile_starts, pair_items[:total], pair_emit_index[:total])
    return dict(settings, num_pairs=total), pairs, outputs


class RasterizeSurfels(torch.autograd.Function):
    """Inputs: means, quats, scales, opacities, colors [I, D] (I = C N when dense), viewmats, Ks,
    backgrounds, the screen_grad / screen_absgrad / center_grad leaves, the backward_pairs counter,
    the settings, the packed items (a SceneItems, or None) and the argument checks left to the
    device (DeviceChecks, or None).
    Outputs: the six images, then radii, means2d, depths (of the centres), evaluated_pairs."""

    @staticmethod
    def forward(ctx, means, quats, scales, opacities, colors, viewmats, Ks, backgrounds, screen_grad,
                screen_absgrad, center_grad, backward_pairs, settings, scenes=None, checks=None):
        device = means.device
        C, N = settings["num_cameras"], settings["num_surfels"]
        f32 = dict(dtype=torch.float32, device=device)
        i32 = dict(dtype=torch.int32, device=device)
        i64 = dict(dtype=torch.int64, device=device)
        # Per-item buffers: [C, N, ...] in a dense call, [I, ...] with packed items.
        items = (C, N) if scenes is None else (settings["num_items"],)

        M = torch.empty(*items, 9, **f32)
        normals = torch.empty(*items, 3, **f32)
        means2d = torch.empty(*items, 2, **f32)
        depths = torch.empty(*items, **f32)
        radii = torch.empty(*items, 2, **i32)
        pixel_rects = torch.empty(*items, 4, **i32)
        # Each item's tile count, and their inclusive running sum: where each item's pairs end.
        # The CPU projection writes the running sum itself; on CUDA torch.cumsum makes it.
        counts = torch.empty(settings["num_items"], **i64)
        on_cpu = device.type == "cpu"
        launch("project", device, settings, means=means, quats=quats, scales=scales, opacities=opacities,
               colors=colors, viewmats=viewmats, Ks=Ks, **_lists(scenes, *_PROJECT_LISTS), M=M, normals=normals,
               means2d=means2d, depths=depths, radii=radii, pixel_rects=pixel_rects,
               tile_counts=None if on_cpu else counts, pair_ends=counts if on_cpu else None)
        pair_ends = counts if on_cpu else torch.cumsum(counts, dim=0)
        pixel_inputs = dict(M=M, means2d=means2d, normals=normals, opacities=opacities, colors=colors,
                            backgrounds=backgrounds, pixel_rects=pixel_rects, **_lists(scenes, "item_surfels"))

        # The pair buffers' size: the CUDA schedule uses the device's capacity and checks the total
        # at the end; the CPU's pass reads the total, which is in host memory already.
        if pair_capacity.used(device):
            settings, (tile_starts, pair_items, pair_emit_index), outputs = _bin_within_capacity(
                depths, pixel_rects, pair_ends, settings, scenes, checks, pixel_inputs)
        else:
            num_pairs = int(pair_ends[-1]) if pair_ends.numel() else 0
            _check_pairs_fit(num_pairs, settings, device)
            settings = dict(settings, num_pairs=num_pairs)
            tile_starts, pair_items, pair_emit_index = bin_pairs(depths, pixel_rects, pair_ends, settings,
                                                                 **_lists(scenes, "camera_items"))
            outputs = _forward_pixels(settings, (tile_starts, pair_items), pixel_inputs)
        (out_colors, out_alphas, out_depths, out_median_depths, out_normals, out_distortions, saved_T, saved_last,
         saved_median, saved_sums, evaluated_pairs) = outputs

        ctx.settings = settings
        ctx.scenes = scenes
        ctx.has_backgrounds = backgrounds is not None
        ctx.save_for_backward(means, quats, scales, opacities, colors, viewmats, Ks,
                              backgrounds if backgrounds is not None else torch.empty(0, device=device),
                              M, normals, means2d, radii, pixel_rects, pair_ends, tile_starts, pair_items,
                              pair_emit_index, saved_T, saved_last, saved_median, saved_sums)
        # A diagnostic the backward fills in place (zeros until it runs); an input, not an output,
        # so keeping it on ctx makes no reference cycle.
        ctx.backward_pairs = backward_pairs
        ctx.mark_non_differentiable(radii, means2d, depths, evaluated_pairs)
        # Outputs the loss does not use reach backward as None, not as zero tensors autograd
        # would fill; backward makes the zeros it needs.
        ctx.set_materialize_grads(False)
        return (out_colors, out_alphas, out_depths, out_median_depths, out_normals, out_distortions, radii, means2d,
                depths, evaluated_pairs)

    @staticmethod
    def backward(ctx, v_out_colors, v_out_alphas, v_out_depths, v_out_median_depths, v_out_normals,
                 v_out_distortions, *_unused):
        (means, quats, scales, opacities, colors, viewmats, Ks, backgrounds, M, normals, means2d, radii,
         pixel_rects, pair_ends, tile_starts, pair_items, pair_emit_index, saved_T, saved_last, saved_median,
         saved_sums) = ctx.saved_tensors
        settings, scenes = ctx.settings, ctx.scenes
        device = means.device
        C, N, D = settings["num_cameras"], settings["num_surfels"], settings["num_channels"]
        H, W = settings["height"], settings["width"]
        num_items = settings["num_items"]
        items = (C, N) if scenes is None else (num_items,)
        f32 = dict(dtype=torch.float32, device=device)
        backgrounds = backgrounds if ctx.has_backgrounds else None
        # An unused output's cotangent stays None: the compiled backward reads it as zero.
        v_out_colors = _zeros_if_none(v_out_colors, torch.empty(C, H, W, D, **f32))
        v_out_alphas, v_out_depths, v_out_median_depths, v_out_normals, v_out_distortions = (
            None if v is None else v.contiguous()
            for v in (v_out_alphas, v_out_depths, v_out_median_depths, v_out_normals, v_out_distortions))

        v_colors = torch.empty(*items, D, **f32)
        screen_grad = torch.empty(*items, 2, **f32)
        screen_absgrad = torch.empty(*items, 2, **f32)
        upstream = settings["semantics"] == _backend.core().SEMANTICS["upstream"]
        center_grad = torch.empty(*items, 2, **f32) if upstream else None
        v_means = torch.empty(N, 3, **f32)
        v_quats = torch.empty(N, 4, **f32)
        v_scales = torch.empty(N, 2, **f32)
        v_opacities = torch.empty(N, **f32)
        pixel_inputs = dict(tile_starts=tile_starts, pair_items=pair_items, M=M, means2d=means2d, normals=normals,
                            opacities=opacities, colors=colors, backgrounds=backgrounds, pixel_rects=pixel_rects,
                            saved_T=saved_T, saved_last=saved_last, saved_median=saved_median, saved_sums=saved_sums,
                            v_out_colors=v_out_colors, v_out_alphas=v_out_alphas, v_out_depths=v_out_depths,
                            v_out_median_depths=v_out_median_depths, v_out_normals=v_out_normals,
                            v_out_distortions=v_out_distortions, pair_emit_index=pair_emit_index,
                            backward_pairs=ctx.backward_pairs, **_lists(scenes, "item_surfels"))
        item_outputs = dict(v_colors=v_colors, screen_grad=screen_grad, screen_absgrad=screen_absgrad,
                            center_grad=center_grad)
        surfel_outputs = dict(v_means=v_means, v_quats=v_quats, v_scales=v_scales, v_opacities=v_opacities)
        projection = dict(means=means, quats=quats, scales=scales, viewmats=viewmats, Ks=Ks, radii=radii,
                          **_lists(scenes, *_PROJECT_BACKWARD_LISTS))
        if device.type == "cpu":
            # All three passes in one, camera group by camera group: the records and the item
            # gradients then exist for one group at a time (docs/design.md, "Camera groups").
            launch("backward_by_camera_groups", device, settings, **pixel_inputs, record_ends=pair_ends,
                   **item_outputs, **projection, **surfel_outputs)
        else:
            record_width = pair_grad_width(settings)
            if settings["item_records"]:
                # A record per (camera, surfel) that its pairs add to: each item's records end one further.
                pair_grads = torch.zeros(num_items, record_width, **f32)
                record_ends = torch.arange(1, num_items + 1, dtype=torch.int64, device=device)
            else:
                pair_grads = new_pass_output(settings["num_pairs"], record_width, device=device)
                record_ends = pair_ends
            launch("backward", device, settings, **pixel_inputs, pair_grads=pair_grads)
            v_M = torch.empty(*items, 9, **f32)
            v_opacities_cn = torch.empty(*items, **f32)
            v_normals = torch.empty(*items, 3, **f32)
            launch("reduce", device, settings, record_ends=record_ends, pair_grads=pair_grads, M=M, v_M=v_M,
                   v_opacities_cn=v_opacities_cn, v_normals=v_normals, **item_outputs)
            del pair_grads
            launch("project_backward", device, settings, **projection, v_M=v_M, v_normals=v_normals,
                   v_opacities_cn=v_opacities_cn, **surfel_outputs)

        v_backgrounds = None
        if backgrounds is not None and ctx.needs_input_grad[7]:
            # colour = ... + T_final bg.
            v_backgrounds = (v_out_colors * saved_T.unsqueeze(-1)).sum(dim=(1, 2))
        return (v_means, v_quats, v_scales, v_opacities, v_colors, None, None, v_backgrounds, screen_grad,
                screen_absgrad, center_grad, None, None, None, None)
