"""Loads the compiled core, picks the backend for a device and checks arguments.

The compiled core (``gsplat_lib._C``) knows nothing of torch (docs/design.md,
decision 1): every op here checks shapes, dtypes and devices, allocates outputs
with torch and passes each buffer as :func:`buffer` describes it (address, element
count, dtype), with sizes, the device index and torch's current CUDA stream. The core
checks every buffer against the field it fills (csrc/bindings/fields.h).
"""

from __future__ import annotations

import functools
from typing import Dict, Optional, Sequence, Tuple, Union

import torch

Dim = Union[int, str, None]

_REBUILD_HINT = (
    "gsplat_lib was built without CUDA. Reinstall it from source on a machine where "
    "nvcc is on PATH (optionally set GSPLAT_LIB_CUDA_ARCHS, e.g. '86-real'): "
    "pip install --force-reinstall --no-deps <path or sdist of gsplat_lib>"
)


@functools.lru_cache(maxsize=None)
def core():
    """The compiled extension module; a clear ImportError if it is missing."""
    try:
        from gsplat_lib import _C
    except ImportError as error:  # pragma: no cover - only hit in a broken install
        raise ImportError(
            "gsplat_lib's compiled core (gsplat_lib._C) could not be imported. Install the "
            "package with `pip install .` from the source tree so the extension is built; "
            f"original error: {error}"
        ) from error
    return _C


def build_info() -> Dict[str, object]:
    """What this build contains: version, whether CUDA was compiled, architectures, compilers."""
    return dict(core().build_info())


def cuda_compiled() -> bool:
    return bool(core().build_info()["cuda"])


def num_threads() -> int:
    """Threads the CPU backend uses: torch's setting, so one knob controls both."""
    return max(1, torch.get_num_threads())


def op(name: str, device: torch.device):
    """The compiled function ``<name>_cpu`` or ``<name>_cuda`` for ``device``."""
    if device.type == "cpu":
        return getattr(core(), f"{name}_cpu")
    if device.type == "cuda":
        if not cuda_compiled():
            raise RuntimeError(f"{name}: got a CUDA tensor but {_REBUILD_HINT}")
        return getattr(core(), f"{name}_cuda")
    raise ValueError(f"{name}: unsupported device {device}; expected cpu or cuda")


def stream_of(device: torch.device) -> int:
    """Handle of torch's current CUDA stream on ``device`` (0 for CPU)."""
    if device.type != "cuda":
        return 0
    return int(torch.cuda.current_stream(device).cuda_stream)


def device_index(device: torch.device) -> int:
    if device.type != "cuda":
        return -1
    return device.index if device.index is not None else torch.cuda.current_device()


# The dtype codes of csrc/bindings/fields.h.
_DTYPE_CODES = {torch.float32: "f", torch.int32: "i", torch.int64: "l", torch.bool: "b", torch.uint8: "B"}


def buffer(tensor: Optional[torch.Tensor]) -> Optional[Tuple[int, int, str]]:
    """A tensor as the compiled core takes it: (address, element count, dtype code); None
    stands for an absent optional input, address 0 for an empty tensor."""
    if tensor is None:
        return None
    if not tensor.is_contiguous():
        raise AssertionError("internal error: compiled ops take contiguous tensors")
    count = tensor.numel()
    return (tensor.data_ptr() if count else 0, count, _DTYPE_CODES[tensor.dtype])


def launch(name: str, device: torch.device, fields: Dict[str, object]) -> None:
    """Runs compiled pass ``<name>_cpu`` or ``<name>_cuda`` on ``fields`` (numbers and buffers)."""
    function = op(name, device)
    if device.type == "cpu":
        function(fields, num_threads())
    else:
        function(fields, device_index(device), stream_of(device))


def check_tensor(
    name: str,
    value: object,
    shape: Sequence[Dim],
    *,
    dtype: Union[torch.dtype, Sequence[torch.dtype]] = torch.float32,
    dims: Optional[Dict[str, int]] = None,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Checks one argument and names it in every error (docs/design.md, decision 6).

    ``shape`` holds ints (exact), ``None`` (any size) or strings: a named size that
    must agree across the arguments sharing ``dims``. Returns ``value`` made contiguous.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    dtypes = (dtype,) if isinstance(dtype, torch.dtype) else tuple(dtype)
    if value.dtype not in dtypes:
        wanted = " or ".join(str(d) for d in dtypes)
        raise TypeError(f"{name} must have dtype {wanted}, got {value.dtype}")
    described = "[" + ", ".join("*" if d is None else str(d) for d in shape) + "]"
    if value.dim() != len(shape):
        raise ValueError(f"{name} must have shape {described}, got {list(value.shape)}")
    for axis, (want, got) in enumerate(zip(shape, value.shape)):
        if want is None:
            continue
        if isinstance(want, str):
            if dims is None:
                raise AssertionError("named dims need a dims dict")
            bound = dims.setdefault(want, int(got))
            if bound != got:
                raise ValueError(
                    f"{name} must have shape {described} with {want}={bound} "
                    f"(from an earlier argument), got {list(value.shape)}"
                )
        elif want != got:
            raise ValueError(f"{name} must have shape {described}, got {list(value.shape)}")
    if device is not None and value.device != device:
        raise ValueError(f"{name} must be on {device} like the other inputs, got {value.device}")
    if value.device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name}: unsupported device {value.device}; expected cpu or cuda")
    return value.contiguous()
