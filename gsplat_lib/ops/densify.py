"""Densification kernels: remap every parameter and Adam moment in one pass, plan the rows
of a clone / split / prune step, and accumulate the screen statistics that drive it.

Trainers usually densify with, per tensor and per moment, a boolean index (prune) and a
``torch.cat`` (clone, split): a dozen passes over memory for each of 18 tensors.
:func:`densify_plan` turns the three masks into one row map, and :func:`remap_rows` applies
it to all tensors in one compiled pass (one CUDA launch), so a step reads and writes each
value once. Both backends share the math of ``csrc/core/densify.h``.
"""

from __future__ import annotations

import math
from typing import Dict, List, NamedTuple, Optional, Sequence

import torch

from gsplat_lib import _backend

__all__ = ["DensifyPlan", "accumulate_screen_stats", "densify_plan", "remap_rows"]


def _check_mask(name: str, value: object, rows: Optional[int], device: Optional[torch.device]) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype != torch.bool:
        raise TypeError(f"{name} must have dtype torch.bool, got {value.dtype}")
    if value.dim() != 1 or (rows is not None and value.shape[0] != rows):
        want = "[*]" if rows is None else f"[{rows}]"
        raise ValueError(f"{name} must have shape {want}, got {list(value.shape)}")
    if device is not None and value.device != device:
        raise ValueError(f"{name} must be on {device} like the other inputs, got {value.device}")
    return value.contiguous()


# Integer rows (scene ids) are moved as their bits, viewed as float32 words: remap_rows copies
# bytes and never computes with them.
_ROW_DTYPES = (torch.float32, torch.int32, torch.int64)


def _check_rows_tensor(name: str, value: object, device: torch.device,
                       dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """A contiguous tensor of at least one dimension (rows first) on ``device``: float32, int32
    or int64, or ``dtype`` when given."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if dtype is not None and value.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype} like the tensor it replaces, got {value.dtype}")
    if value.dtype not in _ROW_DTYPES:
        raise TypeError(f"{name} must have dtype torch.float32, torch.int32 or torch.int64, got {value.dtype}")
    if value.dim() == 0:
        raise ValueError(f"{name} must have a row dimension, got a 0-d tensor")
    if value.device != device:
        raise ValueError(f"{name} must be on {device} like the other inputs, got {value.device}")
    if not value.is_contiguous():
        # Copying silently would double the memory traffic this op exists to save.
        raise ValueError(f"{name} must be contiguous; call .contiguous() on it first")
    return value


def _as_words(tensor: torch.Tensor) -> torch.Tensor:
    """The same memory as float32 words, rows first (an int64 value is two words)."""
    if tensor.dtype == torch.int64:
        return tensor.unsqueeze(-1).view(torch.float32)
    return tensor.view(torch.float32)


def remap_rows(
    tensors: Sequence[torch.Tensor],
    source: torch.Tensor,
    zero_new: Optional[Sequence[bool]] = None,
    is_new: Optional[torch.Tensor] = None,
    overrides: Optional[Dict[int, torch.Tensor]] = None,
    override_rows: Optional[torch.Tensor] = None,
) -> List[torch.Tensor]:
    """Gathers rows of many tensors at once: ``out_i[r] = tensors[i][source[r]]``.

    Args:
        tensors: contiguous tensors ``[N, *feat_i]`` on one device; each may have its own row
            shape (means ``[N, 3]``, opacities ``[N]``, sh ``[N, 15, 3]``, and each one's
            ``exp_avg`` / ``exp_avg_sq``). float32, or int32 / int64 (the scene ids of a packed
            multi-scene model follow their surfels through clones, splits and prunes).
        source: ``[M]`` int64, values in ``[0, N)``: the input row of each output row.
        zero_new: one bool per tensor (default all False): on rows where ``is_new`` is True
            the output of such a tensor is 0 instead of a copy (Adam moments of new surfels).
        is_new: ``[M]`` bool, the rows created by this step (default: none).
        overrides: ``{i: values}`` with ``values`` of shape ``[M, *feat_i]``: on override rows
            ``out_i[r] = values[r]`` (sampled means, shrunk scales of split children); other
            rows of ``values`` are never read.
        override_rows: ``[M]`` bool, the rows where ``overrides`` apply; default ``is_new``.
            Pass the split children alone (``DensifyPlan.is_split_child``) so that clones
            keep copying their parent.

    Per tensor i and row r the first rule that applies wins: override (``i`` in
    ``overrides`` and ``override_rows[r]``), zero (``zero_new[i]`` and ``is_new[r]``), copy.

    Returns:
        New tensors ``[M, *feat_i]`` in the order of ``tensors``, not requiring grad.
        A pure copy: every value is bit-identical to its origin, on CPU and CUDA alike.
    """
    if isinstance(tensors, torch.Tensor) or not isinstance(tensors, Sequence):
        raise TypeError(f"tensors must be a sequence of torch.Tensor, got {type(tensors).__name__}")
    if not isinstance(source, torch.Tensor):
        raise TypeError(f"source must be a torch.Tensor, got {type(source).__name__}")
    if source.dtype != torch.int64:
        raise TypeError(f"source must have dtype torch.int64, got {source.dtype}")
    if source.dim() != 1:
        raise ValueError(f"source must have shape [M], got {list(source.shape)}")
    device = source.device
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"source: unsupported device {device}; expected cpu or cuda")
    source = source.contiguous()
    num_rows = source.shape[0]

    checked = [_check_rows_tensor(f"tensors[{i}]", t, device) for i, t in enumerate(tensors)]
    num_inputs = checked[0].shape[0] if checked else 0
    for i, t in enumerate(checked):
        if t.shape[0] != num_inputs:
            raise ValueError(
                f"tensors[{i}] must have {num_inputs} rows like tensors[0], got shape {list(t.shape)}"
            )

    if zero_new is None:
        zero_new = [False] * len(checked)
    if isinstance(zero_new, (str, bytes, torch.Tensor)) or not isinstance(zero_new, Sequence):
        raise TypeError(f"zero_new must be a sequence of bool, got {type(zero_new).__name__}")
    if len(zero_new) != len(checked):
        raise ValueError(f"zero_new must have one entry per tensor ({len(checked)}), got {len(zero_new)}")
    for i, flag in enumerate(zero_new):
        if not isinstance(flag, bool):
            raise TypeError(f"zero_new[{i}] must be a bool, got {type(flag).__name__}")

    if is_new is not None:
        is_new = _check_mask("is_new", is_new, num_rows, device)
    if override_rows is not None:
        override_rows = _check_mask("override_rows", override_rows, num_rows, device)
    overrides = {} if overrides is None else overrides
    if not isinstance(overrides, dict):
        raise TypeError(f"overrides must be a dict {{tensor index: values}}, got {type(overrides).__name__}")
    if overrides and is_new is None and override_rows is None:
        raise ValueError("overrides need is_new or override_rows to say which rows they replace")
    if override_rows is None:
        override_rows = is_new
    override_values: List[Optional[torch.Tensor]] = [None] * len(checked)
    for key, values in overrides.items():
        if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key < len(checked):
            raise ValueError(f"overrides keys must be tensor indices in [0, {len(checked)}), got {key!r}")
        name = f"overrides[{key}]"
        values = _check_rows_tensor(name, values, device, checked[key].dtype)
        want = (num_rows, *checked[key].shape[1:])
        if tuple(values.shape) != want:
            raise ValueError(f"{name} must have shape {list(want)}, got {list(values.shape)}")
        override_values[key] = values

    if num_rows > 0:
        if num_inputs == 0 and checked:
            raise ValueError(f"source must be empty when the tensors have no rows, got {num_rows} rows")
        if checked:
            _check_source_range(source, num_inputs)

    with torch.no_grad():
        outputs = [torch.empty((num_rows, *t.shape[1:]), dtype=t.dtype, device=device) for t in checked]
    if num_rows == 0 or not checked:
        return outputs
    row_floats = [math.prod(_as_words(t).shape[1:]) for t in checked]
    args = (
        [_backend.buffer(_as_words(t)) for t in checked],
        [_backend.buffer(_as_words(o)) for o in outputs],
        [None if v is None else _backend.buffer(_as_words(v)) for v in override_values],
        row_floats,
        list(zero_new),
        _backend.buffer(source),
        _backend.buffer(is_new),
        _backend.buffer(override_rows),
        num_inputs,
        num_rows,
    )
    kernel = _backend.op("remap_rows", device)
    if device.type == "cpu":
        kernel(*args, _backend.num_threads())
    else:
        kernel(*args, _backend.device_index(device), _backend.stream_of(device))
    return outputs


def _check_source_range(source: torch.Tensor, num_inputs: int) -> None:
    """ValueError naming the first out-of-range entry; one small reduction, one sync on CUDA."""
    lowest, highest = (int(v) for v in torch.aminmax(source))
    if lowest >= 0 and highest < num_inputs:
        return
    first_bad = int(((source < 0) | (source >= num_inputs)).nonzero()[0, 0])
    raise ValueError(
        f"source must hold row indices in [0, {num_inputs}), got source[{first_bad}] = "
        f"{int(source[first_bad])}"
    )


class DensifyPlan(NamedTuple):
    """The rows of a densified model, in the order of :func:`densify_plan`.

    ``source [M]`` int64: the old row each new row copies; ``is_new [M]`` bool: clones and
    split children (their Adam moments start at zero); ``is_split_child [M]`` bool: the rows
    whose means and scales the caller replaces (``override_rows`` of :func:`remap_rows`);
    the block sizes ``num_survivors + num_clones + num_split_children == M``.
    """

    source: torch.Tensor
    is_new: torch.Tensor
    is_split_child: torch.Tensor
    num_survivors: int
    num_clones: int
    num_split_children: int


def densify_plan(
    keep: torch.Tensor, clone: torch.Tensor, split: torch.Tensor, n_split_children: int = 2
) -> DensifyPlan:
    """Row plan of one clone / split / prune step of 2DGS / 3DGS, for :func:`remap_rows`.

    Args:
        keep: ``[N]`` bool, False for pruned rows. A pruned row leaves no clone and no child.
        clone: ``[N]`` bool: the row stays and one copy of it is appended.
        split: ``[N]`` bool: the row is replaced by ``n_split_children`` children.
            A row may be both cloned and split: it gets its copy and its children.
        n_split_children: children per split row (2 in 2DGS / 3DGS).

    The new rows, in three blocks, each deterministic:

    1. survivors, ``keep & ~split``, in their original order;
    2. clones, one per row of ``keep & clone``, in original order;
    3. split children, child-major like 3DGS's ``.repeat(n, 1)``: the first child of every
       row of ``keep & split`` in original order, then the second child of each, and so on.

    Returns:
        A :class:`DensifyPlan`. On CUDA each of the three ``nonzero`` calls syncs with the
        device (their sizes are needed on the host anyway, to allocate the outputs).
    """
    keep = _check_mask("keep", keep, None, None)
    device = keep.device
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"keep: unsupported device {device}; expected cpu or cuda")
    clone = _check_mask("clone", clone, keep.shape[0], device)
    split = _check_mask("split", split, keep.shape[0], device)
    if isinstance(n_split_children, bool) or not isinstance(n_split_children, int):
        raise TypeError(f"n_split_children must be an int, got {type(n_split_children).__name__}")
    if n_split_children < 1:
        raise ValueError(f"n_split_children must be at least 1, got {n_split_children}")

    survivors = torch.nonzero(keep & ~split).squeeze(1)
    clones = torch.nonzero(keep & clone).squeeze(1)
    split_parents = torch.nonzero(keep & split).squeeze(1)
    source = torch.cat([survivors, clones, split_parents.repeat(n_split_children)])
    num_survivors, num_clones = survivors.shape[0], clones.shape[0]
    num_split_children = split_parents.shape[0] * n_split_children
    rows = torch.arange(source.shape[0], device=device)
    return DensifyPlan(
        source=source,
        is_new=rows >= num_survivors,
        is_split_child=rows >= num_survivors + num_clones,
        num_survivors=num_survivors,
        num_clones=num_clones,
        num_split_children=num_split_children,
    )


def accumulate_screen_stats(
    grad_acc: torch.Tensor,
    absgrad_acc: torch.Tensor,
    count: torch.Tensor,
    max_radii: torch.Tensor,
    screen_grad: torch.Tensor,
    screen_absgrad: torch.Tensor,
    radii: torch.Tensor,
    width: int,
    height: int,
    item_surfels: Optional[torch.Tensor] = None,
) -> None:
    """Adds one step's densification statistics to the accumulators, in place.

    For every surfel n and camera c = 0, 1, ..., C-1 in that order, when the surfel is
    visible in camera c (``radii[c, n]`` has an entry > 0):
    ``grad_acc[n] += |screen_grad[c, n] * (width / 2, height / 2)|`` (Euclidean norm),
    ``absgrad_acc[n]`` likewise with ``screen_absgrad``, ``count[n] += 1`` and
    ``max_radii[n] = max(max_radii[n], max(radii[c, n]))``.

    The rasterizer's screen gradients are per pixel; the factor ``(width / 2, height / 2)``
    makes them gradients per NDC unit, the unit of 2DGS's ``densify_grad_threshold``
    (0.0002), so ``grad_acc / count`` compares with it directly. A loss averaged over a
    batch of C cameras scales each gradient by 1/C: multiply by C beforehand to match
    single-camera training. Cameras are summed in a fixed order per surfel, so the result is
    bit-identical for any thread count and on CPU and CUDA.

    Packed items (a call with scene ids, ``RasterResult.item_surfels``): ``screen_grad``,
    ``screen_absgrad`` and ``radii`` are ``[I, 2]``, row i belongs to surfel ``item_surfels[i]``
    and each surfel's rows are summed in row order, so a packed multi-scene render accumulates
    exactly what a render of each scene alone would.

    Args:
        grad_acc: ``[N]`` float32, sum of gradient norms (NDC units), updated.
        absgrad_acc: ``[N]`` float32, sum of absolute-gradient norms (NDC units), updated.
        count: ``[N]`` int32, number of (step, camera) pairs where the surfel was visible.
        max_radii: ``[N]`` float32, largest screen radius seen, in pixels, updated.
        screen_grad: ``[C, N, 2]`` float32, pixels (``result.screen_grad.grad``).
        screen_absgrad: ``[C, N, 2]`` float32, pixels.
        radii: ``[C, N, 2]`` int32, the rasterizer's radii (0 where culled).
        width: image width in pixels.
        height: image height in pixels.
        item_surfels: ``[I]`` int64 in ``[0, N)`` for packed items, else None.
    """
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    dims: Dict[str, int] = {}
    grad_acc = _check_accumulator("grad_acc", grad_acc, torch.float32, dims, None)
    device = grad_acc.device
    absgrad_acc = _check_accumulator("absgrad_acc", absgrad_acc, torch.float32, dims, device)
    count = _check_accumulator("count", count, torch.int32, dims, device)
    max_radii = _check_accumulator("max_radii", max_radii, torch.float32, dims, device)
    item_shape = ("C", "N", 2) if item_surfels is None else ("I", 2)
    screen_grad = _backend.check_tensor("screen_grad", screen_grad, item_shape, dims=dims, device=device)
    screen_absgrad = _backend.check_tensor("screen_absgrad", screen_absgrad, item_shape, dims=dims, device=device)
    radii = _backend.check_tensor("radii", radii, item_shape, dtype=torch.int32, dims=dims, device=device)
    num_surfels = dims["N"]
    fields = dict(num_surfels=num_surfels, half_width=width / 2.0, half_height=height / 2.0,
                  screen_grad=_backend.buffer(screen_grad), screen_absgrad=_backend.buffer(screen_absgrad),
                  radii=_backend.buffer(radii), grad_acc=_backend.buffer(grad_acc),
                  absgrad_acc=_backend.buffer(absgrad_acc), count=_backend.buffer(count),
                  max_radii=_backend.buffer(max_radii), item_surfels=None, surfel_items=None,
                  surfel_item_starts=None)
    if item_surfels is None:
        num_cameras = dims["C"]
        if num_surfels == 0 or num_cameras == 0:
            return
        fields.update(num_cameras=num_cameras, num_items=num_cameras * num_surfels)
    else:
        item_surfels = _backend.check_tensor("item_surfels", item_surfels, ("I",), dtype=torch.int64, dims=dims,
                                             device=device)
        num_items = dims["I"]
        if num_items == 0:
            return
        lowest, highest = (int(v) for v in torch.aminmax(item_surfels))
        if lowest < 0 or highest >= num_surfels:
            raise ValueError(f"item_surfels must hold surfel indices in [0, {num_surfels}), got values in "
                             f"[{lowest}, {highest}]")
        fields.update(num_cameras=0, num_items=num_items)
        if device.type == "cpu":
            fields.update(item_surfels=_backend.buffer(item_surfels))
        else:  # one thread per surfel: each walks its items, in item order (a stable sort keeps it)
            surfel_items = torch.sort(item_surfels, stable=True).indices
            starts = torch.zeros(num_surfels + 1, dtype=torch.int64, device=device)
            torch.cumsum(torch.bincount(item_surfels, minlength=num_surfels), dim=0, out=starts[1:])
            fields.update(surfel_items=_backend.buffer(surfel_items), surfel_item_starts=_backend.buffer(starts))
    _backend.launch("accumulate_screen_stats", device, fields)


def _check_accumulator(
    name: str, value: object, dtype: torch.dtype, dims: Dict[str, int], device: Optional[torch.device]
) -> torch.Tensor:
    """An accumulator is updated in place, so it must already be contiguous (no silent copy)."""
    checked = _backend.check_tensor(name, value, ("N",), dtype=dtype, dims=dims, device=device)
    if checked is not value:
        raise ValueError(f"{name} must be contiguous: it is updated in place")
    return checked
