"""``cuda_on_cpu()``: run CUDA-only research code on the CPU by sending its CUDA requests there.

While active, in the thread that entered it:
- ``tensor.cuda()``, ``tensor.to("cuda" / torch.device("cuda") / a device index)`` and
  ``module.cuda()`` / ``module.to("cuda")`` give CPU tensors (copies, as a real transfer would);
  ``device="cuda"`` in any torch function (``torch.zeros``, ``torch.tensor``, ``*_like``,
  ``new_*``, ...) gives CPU tensors; ``pin_memory()`` returns the tensor;
- ``torch.cuda``: ``is_available()`` is True, ``device_count()`` 1, ``current_device()`` 0;
  ``set_device``, ``synchronize``, ``empty_cache``, ``reset_peak_memory_stats`` do nothing;
  ``Event(enable_timing=True)`` times on the host clock; the memory queries return 0 and
  ``mem_get_info()`` the host's free and total memory; ``get_device_name()`` says it is the CPU;
- ``torch.load`` maps CUDA tensors to the CPU.

Limits: ``torch.device("cuda")`` objects stay CUDA devices (comparisons with a tensor's device,
``tensor.is_cuda`` are False); other threads than the entering one, CUDA streams, graphs,
``torch.cuda.amp`` / autocast on "cuda", custom CUDA extensions, ``torch.Generator(device="cuda")``,
legacy ``torch.cuda.FloatTensor`` types and ``tensor.type("torch.cuda...")`` are not redirected.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Iterator

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["cuda_on_cpu", "CudaToCpuMode", "HostEvent"]


def _is_cuda_device(value: object) -> bool:
    if isinstance(value, torch.device):
        return value.type == "cuda"
    if isinstance(value, str):
        return value.split(":")[0] == "cuda"
    return isinstance(value, int) and not isinstance(value, bool)  # a device index means a CUDA device


class CudaToCpuMode(TorchFunctionMode):
    """Rewrites CUDA device arguments of torch calls to the CPU."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.cuda:
            return args[0].to("cpu", copy=True)
        if func is torch.Tensor.pin_memory:
            return args[0]
        redirected = False
        if "device" in kwargs and _is_cuda_device(kwargs["device"]):
            kwargs["device"] = "cpu"
            redirected = True
        if func is torch.Tensor.to and len(args) > 1 and _is_cuda_device(args[1]):
            args = (args[0], "cpu") + tuple(args[2:])
            redirected = True
        if redirected and func is torch.Tensor.to and len(args) < 5:
            kwargs.setdefault("copy", True)  # to("cuda") from the CPU always makes a new tensor
        return func(*args, **kwargs)


class HostEvent:
    """``torch.cuda.Event`` stand-in: ``record()`` reads the host clock."""

    def __init__(self, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False):
        self.enable_timing = enable_timing
        self._time = None

    def record(self, stream=None) -> None:
        self._time = time.perf_counter()

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        pass

    def wait(self, stream=None) -> None:
        pass

    def elapsed_time(self, end_event: "HostEvent") -> float:
        """Milliseconds from this event's record() to end_event's."""
        if not self.enable_timing or not end_event.enable_timing:
            raise RuntimeError("both events need enable_timing=True")
        if self._time is None or end_event._time is None:
            raise RuntimeError("both events must be recorded before elapsed_time")
        return (end_event._time - self._time) * 1000.0


def _host_memory() -> tuple:
    page = os.sysconf("SC_PAGE_SIZE")
    return os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page


def _returning(value):
    """A new function returning ``value`` whatever its arguments: one object per stand-in, since
    torch._dynamo, which torch.optim imports, rejects one function under two torch.cuda names."""
    def stand_in(*args, **kwargs):
        return value() if callable(value) else value
    return stand_in


_CUDA_STAND_INS = {
    "is_available": _returning(True),
    "device_count": _returning(1),
    "current_device": _returning(0),
    "set_device": _returning(None),
    "synchronize": _returning(None),
    "empty_cache": _returning(None),
    "reset_peak_memory_stats": _returning(None),
    "memory_allocated": _returning(0),
    "max_memory_allocated": _returning(0),
    "memory_reserved": _returning(0),
    "max_memory_reserved": _returning(0),
    "mem_get_info": _returning(_host_memory),
    "get_device_name": _returning("CPU (gsplat-compat --cpu)"),
    "Event": HostEvent,
}


@contextlib.contextmanager
def cuda_on_cpu() -> Iterator[None]:
    """Within the block, CUDA requests of this thread go to the CPU (see the module docstring)."""
    saved = {name: getattr(torch.cuda, name) for name in _CUDA_STAND_INS}
    original_load = torch.load

    def load_on_cpu(*args, **kwargs):
        location = kwargs.get("map_location", args[1] if len(args) > 1 else None)
        if location is None or _is_cuda_device(location):
            if len(args) > 1:
                args = (args[0], "cpu") + tuple(args[2:])
            else:
                kwargs["map_location"] = "cpu"
        return original_load(*args, **kwargs)

    try:
        for name, value in _CUDA_STAND_INS.items():
            setattr(torch.cuda, name, value)
        torch.load = load_on_cpu
        with CudaToCpuMode():
            yield
    finally:
        for name, value in saved.items():
            setattr(torch.cuda, name, value)
        torch.load = original_load
