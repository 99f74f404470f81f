"""Fused Adam step: every parameter tensor, its gradient and its two moments in one pass.

``torch.optim.Adam`` runs seven elementwise ops per tensor (lerp, mul, addcmul, sqrt, div,
add, addcdiv), each a pass over memory, two of them allocating. :func:`adam_step_` does the
same update for many tensors in one compiled call (one CUDA launch), optionally only on the
rows a mask marks (sparse Adam). The math is ``csrc/core/adam.h``, shared by both backends.

On CPU, with ``match_torch=True`` (the default), the result equals ``torch.optim.Adam``'s
float32 CPU step bit for bit (``foreach`` or not): each tensor's scalars are computed in
double exactly as torch computes them, every multiply-add is rounded as torch's kernels round
it on this CPU (see :func:`torch_fuses_multiply_add`), and the square root of ``exp_avg_sq``
is torch's own: on x86 builds torch takes it from MKL, which is not always correctly rounded,
so the step runs as two compiled passes (moments, then parameters) around ``torch.sqrt``.
``match_torch=False`` runs one compiled pass with the IEEE square root instead: the CUDA
math, bit for bit, and within one rounding of torch per value. CUDA always runs that pass.
"""

from __future__ import annotations

import functools
import math
from typing import Dict, List, NamedTuple, Optional, Sequence

import torch

from gsplat_lib import _backend
from gsplat_lib.ops.densify import _check_mask

__all__ = ["AdamScalars", "adam_step_", "torch_fuses_multiply_add"]

_FULL_PASS, _MOMENTS_PASS, _PARAMETERS_PASS = 0, 1, 2


class AdamScalars(NamedTuple):
    """The hyper-parameters of one tensor's step; ``step`` is its count after this step
    (torch increments ``state["step"]`` first, so the first step has ``step == 1``)."""

    lr: float
    beta1: float
    beta2: float
    eps: float
    step: float


def _coefficients(scalars: AdamScalars) -> Dict[str, float]:
    """The kernel's six scalars (``AdamCoefficients``, csrc/core/adam.h), in double, in the form
    of torch's ``_single_tensor_adam`` (non-capturable): the kernels round each to float once."""
    lr, beta1, beta2, eps, step = scalars
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    step_size = lr / bias_correction1
    bias_correction2_sqrt = bias_correction2**0.5
    return dict(lerp_weight=1 - beta1, beta2=beta2, one_minus_beta2=1 - beta2,
                bias_correction2_sqrt=bias_correction2_sqrt, eps=eps, neg_step_size=-step_size)


def _check_scalars(index: int, scalars: object) -> AdamScalars:
    if not isinstance(scalars, AdamScalars):
        raise TypeError(f"scalars[{index}] must be an AdamScalars, got {type(scalars).__name__}")
    for field, value in zip(AdamScalars._fields, scalars):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"scalars[{index}].{field} must be a finite number, got {value!r}")
    if not 0.0 <= scalars.beta1 < 1.0 or not 0.0 <= scalars.beta2 < 1.0:
        raise ValueError(f"scalars[{index}]: betas must be in [0, 1), got {scalars.beta1}, {scalars.beta2}")
    if scalars.step < 1:
        raise ValueError(f"scalars[{index}].step must be >= 1 (the count after this step), got {scalars.step}")
    return scalars


def _check_float_tensor(name: str, value: object, shape: torch.Size, device: torch.device, in_place: bool) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype != torch.float32:
        raise TypeError(f"{name} must have dtype torch.float32, got {value.dtype}")
    if value.shape != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(value.shape)}")
    if value.device != device:
        raise ValueError(f"{name} must be on {device} like params[0], got {value.device}")
    if value.is_sparse:
        raise TypeError(f"{name} must be a dense tensor")
    if value.is_contiguous():
        return value
    if in_place:
        raise ValueError(f"{name} must be contiguous: it is updated in place")
    return value.contiguous()


def adam_step_(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    exp_avgs: Sequence[torch.Tensor],
    exp_avg_sqs: Sequence[torch.Tensor],
    scalars: Sequence[AdamScalars],
    *,
    visible_rows: Optional[torch.Tensor] = None,
    match_torch: bool = True,
) -> None:
    """One Adam step (no weight decay, no amsgrad) of many tensors, in place, in one call.

    Args:
        params: float32 contiguous tensors on one device, updated in place (use
            ``p.detach()`` or ``torch.no_grad()`` for leaves that require grad).
        grads: float32 tensors, ``grads[i]`` shaped like ``params[i]``.
        exp_avgs, exp_avg_sqs: float32 contiguous first and second moments, updated in place.
        scalars: one :class:`AdamScalars` per tensor (learning rate, betas, eps, step count).
        visible_rows: ``[R]`` bool, every tensor having R rows (its first dimension): only
            rows marked True are updated; the others keep their parameters and both moments
            (sparse Adam, docs/design.md). None: every row.
        match_torch: on CPU, equal ``torch.optim.Adam`` bit for bit (two compiled passes
            around ``torch.sqrt``); False: one pass with the IEEE sqrt. Ignored on CUDA, which
            always runs the one pass.
    """
    lists = {"params": params, "grads": grads, "exp_avgs": exp_avgs, "exp_avg_sqs": exp_avg_sqs, "scalars": scalars}
    for name, value in lists.items():
        if isinstance(value, (torch.Tensor, str, bytes)) or not isinstance(value, Sequence):
            raise TypeError(f"{name} must be a sequence, got {type(value).__name__}")
        if len(value) != len(params):
            raise ValueError(f"{name} must have one entry per parameter ({len(params)}), got {len(value)}")
    if not params:
        return
    if not isinstance(params[0], torch.Tensor):
        raise TypeError(f"params[0] must be a torch.Tensor, got {type(params[0]).__name__}")
    device = params[0].device
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"params[0]: unsupported device {device}; expected cpu or cuda")
    checked_params, checked_grads, checked_avgs, checked_avg_sqs = [], [], [], []
    for i, param in enumerate(params):
        shape = param.shape if isinstance(param, torch.Tensor) else torch.Size()
        checked_params.append(_check_float_tensor(f"params[{i}]", param, shape, device, True))
        checked_grads.append(_check_float_tensor(f"grads[{i}]", grads[i], shape, device, False))
        checked_avgs.append(_check_float_tensor(f"exp_avgs[{i}]", exp_avgs[i], shape, device, True))
        checked_avg_sqs.append(_check_float_tensor(f"exp_avg_sqs[{i}]", exp_avg_sqs[i], shape, device, True))
    _check_no_overlap(checked_params, checked_grads, checked_avgs, checked_avg_sqs)
    coefficients = [_coefficients(_check_scalars(i, s)) for i, s in enumerate(scalars)]

    if visible_rows is not None:
        visible_rows = _check_visible_rows(visible_rows, checked_params, device)
    segments = [
        _Segment(p, g, m, v, visible_rows, c)
        for p, g, m, v, c in zip(checked_params, checked_grads, checked_avgs, checked_avg_sqs, coefficients)
    ]
    fused_multiply_add = torch_fuses_multiply_add()
    if device.type == "cuda" or not match_torch:
        _run_pass(_FULL_PASS, segments, device, fused_multiply_add)
        return
    # Moments, torch's sqrt and parameters batch by batch, so that the second and third
    # passes find the batch's values still in cache; the sqrt goes to one reused buffer.
    batches = _batches(segments, _VALUES_PER_BATCH)
    if not batches:  # every tensor is empty
        return
    scratch = torch.empty(max(sum(c.param.numel() for c in batch) for batch in batches), dtype=torch.float32)
    for batch in batches:
        _run_pass(_MOMENTS_PASS, batch, device, fused_multiply_add)
        exp_avg_sq_sqrts = []
        offset = 0
        for chunk in batch:
            size = chunk.exp_avg_sq.numel()
            out = scratch[offset : offset + size].view(chunk.exp_avg_sq.shape)
            exp_avg_sq_sqrts.append(torch.sqrt(chunk.exp_avg_sq, out=out))
            offset += size
        _run_pass(_PARAMETERS_PASS, batch, device, fused_multiply_add, exp_avg_sq_sqrts)


def _check_no_overlap(params, grads, exp_avgs, exp_avg_sqs) -> None:
    """ValueError when a tensor the step writes shares memory with any other argument (the
    kernels read each value once and write it once, assuming no aliasing)."""
    spans = []
    for kind, tensors, written in (("params", params, True), ("grads", grads, False),
                                   ("exp_avgs", exp_avgs, True), ("exp_avg_sqs", exp_avg_sqs, True)):
        for i, t in enumerate(tensors):
            if t.numel() > 0:
                spans.append((t.data_ptr(), t.data_ptr() + 4 * t.numel(), f"{kind}[{i}]", written))
    for a in range(len(spans)):
        for b in range(a + 1, len(spans)):
            (start_a, end_a, name_a, written_a), (start_b, end_b, name_b, written_b) = spans[a], spans[b]
            if (written_a or written_b) and start_a < end_b and start_b < end_a:
                raise ValueError(f"{name_a} and {name_b} share memory; the step updates {name_a if written_a else name_b} in place")


# Values per batch of the CPU path that matches torch: 1 MiB per array, five arrays in cache.
_VALUES_PER_BATCH = 1 << 18


def _batches(segments: Sequence["_Segment"], limit: int) -> List[List["_Segment"]]:
    """The segments cut into chunks of whole rows, grouped into batches of at most ``limit``
    values (a chunk of one row wider than that is a batch of its own)."""
    batches: List[List[_Segment]] = []
    size = 0
    for segment in segments:
        for chunk in segment.chunks(limit):
            values = chunk.param.numel()
            if not batches or size + values > limit:
                batches.append([])
                size = 0
            batches[-1].append(chunk)
            size += values
    return batches


class _Segment(NamedTuple):
    """Rows of one tensor and its state, flattened to [rows * row_floats]."""

    param: torch.Tensor
    grad: torch.Tensor
    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor
    visible_rows: Optional[torch.Tensor]
    coefficients: Dict[str, float]

    @property
    def num_rows(self) -> int:
        return self.param.shape[0] if self.param.dim() > 0 else 1

    @property
    def row_floats(self) -> int:
        return self.param.numel() // self.num_rows if self.num_rows > 0 else 0

    def chunks(self, values_per_chunk: int) -> List["_Segment"]:
        """The segment cut into runs of whole rows of about ``values_per_chunk`` values."""
        rows, width = self.num_rows, self.row_floats
        step = max(1, values_per_chunk // max(width, 1))
        flat = [t.view(-1) for t in (self.param, self.grad, self.exp_avg, self.exp_avg_sq)]
        pieces = []
        for first in range(0, rows, step):
            last = min(rows, first + step)
            views = [t[first * width : last * width].view(last - first, width) for t in flat]
            mask = None if self.visible_rows is None else self.visible_rows[first:last]
            pieces.append(_Segment(*views, mask, self.coefficients))
        return pieces

    def fields(self, exp_avg_sq_sqrt: Optional[torch.Tensor]) -> Dict[str, object]:
        """The segment as the compiled step takes it (``AdamTensor``, csrc/ops/adam/adam.h)."""
        return dict(
            self.coefficients, num_rows=self.num_rows, row_floats=self.row_floats,
            param=_backend.buffer(self.param), grad=_backend.buffer(self.grad), exp_avg=_backend.buffer(self.exp_avg),
            exp_avg_sq=_backend.buffer(self.exp_avg_sq), exp_avg_sq_sqrt=_backend.buffer(exp_avg_sq_sqrt),
            visible_rows=_backend.buffer(self.visible_rows),
        )


def _run_pass(
    pass_kind: int,
    segments: Sequence[_Segment],
    device: torch.device,
    fused_multiply_add: bool,
    exp_avg_sq_sqrts: Optional[Sequence[torch.Tensor]] = None,
) -> None:
    """One compiled pass over every segment, in one call."""
    sqrts = exp_avg_sq_sqrts if exp_avg_sq_sqrts is not None else [None] * len(segments)
    _backend.launch("adam_step", device, {
        "pass": pass_kind, "fused_multiply_add": fused_multiply_add,
        "tensors": [segment.fields(sqrt) for segment, sqrt in zip(segments, sqrts)],
    })


def _check_visible_rows(visible_rows: object, params: Sequence[torch.Tensor], device: torch.device) -> torch.Tensor:
    visible_rows = _check_mask("visible_rows", visible_rows, None, device)
    for i, param in enumerate(params):
        if param.dim() == 0 or param.shape[0] != visible_rows.shape[0]:
            raise ValueError(
                f"visible_rows has {visible_rows.shape[0]} rows but params[{i}] has shape {list(param.shape)}: "
                "every tensor must have that many rows"
            )
    return visible_rows


@functools.lru_cache(maxsize=None)
def torch_fuses_multiply_add() -> bool:
    """Whether torch's CPU lerp and addcmul (the moments of ``torch.optim.Adam``) round their
    multiply-add once, as its AVX2 / AVX-512 kernels do, or twice, as its baseline kernels do.

    Decided once per process by running torch's moment update and ours both ways on the same
    4096 values and keeping the rounding that gives torch's bits.
    """
    generator = torch.Generator().manual_seed(0)
    grad = torch.randn(4096, generator=generator) * 1e-2
    exp_avg = torch.randn(4096, generator=generator) * 1e-3
    exp_avg_sq = torch.rand(4096, generator=generator) * 1e-4
    beta1, beta2 = 0.9, 0.999
    expected_avg = exp_avg.clone().lerp_(grad, 1 - beta1)
    expected_avg_sq = exp_avg_sq.clone().mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    coefficients = _coefficients(AdamScalars(1e-3, beta1, beta2, 1e-15, 1.0))
    for fused in (True, False):
        avg, avg_sq = exp_avg.clone(), exp_avg_sq.clone()
        segment = _Segment(torch.zeros(4096), grad, avg, avg_sq, None, coefficients)
        _run_pass(_MOMENTS_PASS, [segment], torch.device("cpu"), fused)
        if torch.equal(avg, expected_avg) and torch.equal(avg_sq, expected_avg_sq):
            return fused
    raise RuntimeError(
        "gsplat_lib's fused Adam cannot reproduce this torch build's CPU Adam moments with either "
        "rounding of a multiply-add; use torch.optim.Adam (GaussianModel(..., fused_adam=False))"
    )
