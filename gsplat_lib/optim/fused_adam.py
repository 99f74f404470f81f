"""FusedAdam: ``torch.optim.Adam`` as one compiled pass over all its tensors.

A drop-in ``torch.optim.Optimizer``: the same constructor arguments (those it supports),
param groups with the same keys and values, and a ``state_dict`` with exactly Adam's layout
(per parameter ``step`` as a float32 CPU tensor, ``exp_avg``, ``exp_avg_sq``), so a state
saved by one loads into the other. On CPU every step equals ``torch.optim.Adam``'s bit for
bit (:func:`gsplat_lib.ops.adam.adam_step_`). ``step(visible_rows=mask)`` is sparse Adam.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import torch

from gsplat_lib.ops.adam import AdamScalars, adam_step_

__all__ = ["FusedAdam"]

# torch.optim.Adam's group options that FusedAdam keeps at Adam's defaults (so that the
# param groups of the two optimizers are the same), and the values it supports.
_FIXED_OPTIONS = {
    "weight_decay": 0,
    "amsgrad": False,
    "maximize": False,
    "foreach": None,
    "capturable": False,
    "differentiable": False,
    "fused": None,
    "decoupled_weight_decay": False,
}
# Options whose other values would change the math; the others only choose torch's kernels.
_MATH_OPTIONS = ("weight_decay", "amsgrad", "maximize", "capturable", "differentiable")


def _scalar_dtype() -> torch.dtype:
    """The dtype torch.optim.Adam gives ``state["step"]`` (torch.optim.optimizer._get_scalar_dtype)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


class FusedAdam(torch.optim.Optimizer):
    """Adam (Kingma & Ba), every tensor of every group in one compiled call per device.

    Args:
        params: parameters or param-group dicts, as for ``torch.optim.Adam``; float32 and
            contiguous, on CPU or CUDA.
        lr: learning rate (a float; each group may set its own and change it between steps).
        betas: (beta1, beta2), each in [0, 1).
        eps: added to the denominator.
        match_torch: on CPU, equal ``torch.optim.Adam`` bit for bit (default). False: one
            compiled pass with the IEEE square root, faster, within one rounding of torch
            per value and bit-identical to the CUDA step. CUDA always runs that one pass.

    Weight decay, amsgrad, maximize, capturable and differentiable are not supported: the
    groups carry ``torch.optim.Adam``'s defaults for them, and other values are a
    ValueError at the next step.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        *,
        match_torch: bool = True,
    ) -> None:
        if isinstance(lr, torch.Tensor) or not lr >= 0.0:
            raise ValueError(f"FusedAdam: lr must be a float >= 0, got {lr!r}")
        if not eps >= 0.0:
            raise ValueError(f"FusedAdam: eps must be >= 0, got {eps!r}")
        for index, beta in enumerate(betas):
            if isinstance(beta, torch.Tensor) or not 0.0 <= beta < 1.0:
                raise ValueError(f"FusedAdam: betas[{index}] must be a float in [0, 1), got {beta!r}")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, **_FIXED_OPTIONS}
        super().__init__(params, defaults)
        self.match_torch = bool(match_torch)

    @torch.no_grad()
    def step(
        self, closure: Optional[Callable[[], float]] = None, *, visible_rows: Optional[torch.Tensor] = None
    ) -> Optional[float]:
        """One Adam step of every parameter that has a gradient.

        Args:
            closure: re-evaluates the model and returns the loss (as for any optimizer).
            visible_rows: ``[R]`` bool (sparse Adam): only rows marked True are updated;
                the others keep their parameters and both moments, though every tensor's
                step count still advances. Every parameter must have R rows. This changes
                results (docs/design.md); None updates every row, as torch.optim.Adam does.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # One call per device: parameters, gradients, moments and scalars of every group.
        batches: Dict[torch.device, Tuple[List[torch.Tensor], ...]] = {}
        for group in self.param_groups:
            self._check_group(group)
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError("FusedAdam does not support sparse gradients")
                state = self.state[param]
                if len(state) == 0:
                    state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["step"] += 1
                scalars = AdamScalars(group["lr"], beta1, beta2, group["eps"], float(state["step"]))
                batch = batches.setdefault(param.device, ([], [], [], [], []))
                for values, item in zip(batch, (param, param.grad, state["exp_avg"], state["exp_avg_sq"], scalars)):
                    values.append(item)
        for device, (params, grads, exp_avgs, exp_avg_sqs, scalars) in batches.items():
            mask = None if visible_rows is None else visible_rows.to(device)
            adam_step_(params, grads, exp_avgs, exp_avg_sqs, scalars, visible_rows=mask, match_torch=self.match_torch)
            # The compiled step writes through raw pointers: tell autograd the values changed,
            # as torch's in-place ops do, so a stale graph still holding them fails loudly.
            for param in params:
                torch.autograd.graph.increment_version(param)
        return loss

    @staticmethod
    def _check_group(group: dict) -> None:
        for option in _MATH_OPTIONS:
            if group.get(option, _FIXED_OPTIONS[option]) != _FIXED_OPTIONS[option]:
                raise ValueError(
                    f"FusedAdam supports {option}={_FIXED_OPTIONS[option]!r} only, got {group[option]!r}; "
                    "use torch.optim.Adam"
                )
        if isinstance(group["lr"], torch.Tensor):
            raise ValueError("FusedAdam: lr must be a Python float, not a tensor")
