"""The raw surfel parameters every layer shares: names, shapes and their checks.

``GaussianModel`` owns tensors of this schema, PLY files store it, checkpoints carry it.
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, Tuple

import torch

from gsplat_lib.ops.sh import MAX_SH_DEGREE

__all__ = ["PARAM_NAMES", "PARAM_SHAPES", "check_params", "sh_degree_of"]

#: Raw parameters, in the order of the optimizer's param groups.
PARAM_NAMES = ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest")

#: Each parameter's shape after its leading N (None: any size).
PARAM_SHAPES: Dict[str, Tuple] = {
    "means": (3,),
    "log_scales": (2,),
    "quats": (4,),
    "opacity_logits": (),
    "sh_dc": (1, 3),
    "sh_rest": (None, 3),
}


def check_params(params: Mapping[str, torch.Tensor]) -> None:
    """Checks a dict of raw parameters: names, float32, shapes, one row count, one device.

    Raises:
        ValueError: a missing or unknown name, a wrong shape, row count or device.
        TypeError: a value that is not a float32 tensor.
    """
    missing = [name for name in PARAM_NAMES if name not in params]
    if missing:
        raise ValueError(f"GaussianModel: params lacks {missing}")
    extra = sorted(set(params) - set(PARAM_NAMES))
    if extra:
        raise ValueError(f"GaussianModel: unknown params {extra}")
    count = None
    device = None
    for name in PARAM_NAMES:
        value = params[name]
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"GaussianModel: params[{name!r}] must be a torch.Tensor, got {type(value).__name__}")
        if value.dtype != torch.float32:
            raise TypeError(f"GaussianModel: params[{name!r}] must be float32, got {value.dtype}")
        tail = PARAM_SHAPES[name]
        shape_ok = value.dim() == 1 + len(tail) and all(
            want is None or want == got for want, got in zip(tail, value.shape[1:])
        )
        if not shape_ok:
            described = "[N" + "".join(f", {'*' if d is None else d}" for d in tail) + "]"
            raise ValueError(f"GaussianModel: params[{name!r}] must have shape {described}, got {list(value.shape)}")
        if count is None:
            count, device = value.shape[0], value.device
        elif value.shape[0] != count:
            raise ValueError(f"GaussianModel: params[{name!r}] has {value.shape[0]} rows, 'means' has {count}")
        elif value.device != device:
            raise ValueError(f"GaussianModel: params[{name!r}] is on {value.device}, 'means' on {device}")


def sh_degree_of(num_coefficients: int) -> int:
    """SH degree d with (d + 1)^2 == num_coefficients, else ValueError: only the degrees the
    colours are evaluated for (0 to MAX_SH_DEGREE) are accepted, so that a model refuses
    what its renders would."""
    degree = int(round(math.sqrt(num_coefficients))) - 1
    if degree < 0 or (degree + 1) ** 2 != num_coefficients or degree > MAX_SH_DEGREE:
        raise ValueError(
            f"SH coefficients per colour channel must be a square (d + 1)^2 of a degree d in 0..{MAX_SH_DEGREE} "
            f"(1, 4, 9 or 16), got {num_coefficients}"
        )
    return degree
