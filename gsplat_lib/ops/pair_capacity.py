"""How many (tile, item) pairs the CUDA schedule's pair buffers hold: a capacity kept per
device across calls, so a call allocates them before the pairs are counted and the host never
waits for the count first (docs/design.md, "Pair capacity").

A call emits at most ``capacity`` pairs; when its total turns out larger, the caller grows the
capacity (with headroom, so a slowly rising count does not grow it every step) and redoes the
pair part. The capacity never shrinks.
"""

from __future__ import annotations

from typing import Dict

import torch

__all__ = ["HEADROOM", "USE_ON_CPU", "capacity", "grow", "growths", "reset", "start_at", "used"]

# A grown capacity holds the total that overflowed plus this fraction (and at least MIN_CAPACITY).
HEADROOM = 0.25
MIN_CAPACITY = 4096
# The CPU runs its own binning pass, which needs no capacity; tests set this to run the CUDA
# schedule (emit, sort, capacity, checks read once at the end of the forward) on the CPU.
USE_ON_CPU = False

_capacities: Dict[torch.device, int] = {}
_growths: Dict[torch.device, int] = {}


def used(device: torch.device) -> bool:
    """Whether calls on ``device`` run the CUDA schedule (pair capacity, deferred reads)."""
    return device.type != "cpu" or USE_ON_CPU


def _key(device: torch.device) -> torch.device:
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def capacity(device: torch.device) -> int:
    """The pairs the buffers of the next call on ``device`` hold (0 before the first call)."""
    return _capacities.get(_key(device), 0)


def grow(device: torch.device, needed: int) -> int:
    """Raises the capacity of ``device`` to hold ``needed`` pairs with headroom; returns it."""
    key = _key(device)
    current = _capacities.get(key, 0)
    if needed <= current:
        return current
    grown = max(needed + int(needed * HEADROOM), MIN_CAPACITY)
    _capacities[key] = grown
    _growths[key] = _growths.get(key, 0) + 1
    return grown


def growths(device: torch.device) -> int:
    """How many times the capacity of ``device`` has grown (tests: steady calls do not)."""
    return _growths.get(_key(device), 0)


def reset() -> None:
    """Forgets every capacity and growth count (tests start from none)."""
    _capacities.clear()
    _growths.clear()


def start_at(device: torch.device, pairs: int) -> None:
    """Sets the capacity of ``device`` (tests: one too small on purpose)."""
    _capacities[_key(device)] = int(pairs)
