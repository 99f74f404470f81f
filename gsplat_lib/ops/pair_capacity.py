"""How many (tile, item) pairs the CUDA schedule's pair buffers hold: a capacity kept across
calls, so a call allocates them before the pairs are counted and the host never waits for the
count first (docs/design.md, "Pair capacity").

A capacity belongs to a device and a view (cameras, width, height): the pair count follows the
image size, so a training loop, its held-out renders and a viewer's frames on one GPU each keep
their own, and a small render never sorts a large render's buffers. A call emits at most
``capacity`` pairs; when its total turns out larger, the caller grows the capacity (with
headroom, so a slowly rising count does not grow it every step) and redoes the pair part. A
capacity never shrinks; the views least recently used are forgotten past MAX_VIEWS a device.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Hashable, Optional, Tuple

import torch

__all__ = ["HEADROOM", "MAX_VIEWS", "USE_ON_CPU", "capacity", "grow", "growths", "reset", "start_at", "used"]

# A grown capacity holds the total that overflowed plus this fraction (and at least MIN_CAPACITY).
HEADROOM = 0.25
MIN_CAPACITY = 4096
# Views a device keeps a capacity for (a forgotten view starts again with one read of its total).
MAX_VIEWS = 16
# The CPU runs its own binning pass, which needs no capacity; tests set this to run the CUDA
# schedule (emit, sort, capacity, checks read once at the end of the forward) on the CPU.
USE_ON_CPU = False

_capacities: Dict[torch.device, "OrderedDict[Hashable, int]"] = {}
_starts: Dict[torch.device, int] = {}
_growths: Dict[torch.device, int] = {}


def used(device: torch.device) -> bool:
    """Whether calls on ``device`` run the CUDA schedule (pair capacity, deferred reads)."""
    return device.type != "cpu" or USE_ON_CPU


def _key(device: torch.device) -> torch.device:
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def capacity(device: torch.device, view: Optional[Tuple[int, int, int]] = None) -> int:
    """The pairs the buffers of the next call on ``device`` for ``view`` (cameras, width, height)
    hold: 0 when that view has none yet (and no start_at). Without a view: the largest of the
    device's."""
    views = _capacities.get(_key(device), OrderedDict())
    if view is None:
        return max(views.values(), default=_starts.get(_key(device), 0))
    if view in views:
        views.move_to_end(view)
        return views[view]
    return _starts.get(_key(device), 0)


def grow(device: torch.device, view: Tuple[int, int, int], needed: int) -> int:
    """Raises the capacity of ``device`` for ``view`` to hold ``needed`` pairs with headroom;
    returns it."""
    key = _key(device)
    views = _capacities.setdefault(key, OrderedDict())
    current = views.get(view, _starts.get(key, 0))
    if needed > current:
        current = max(needed + int(needed * HEADROOM), MIN_CAPACITY)
        _growths[key] = _growths.get(key, 0) + 1
    views[view] = current
    views.move_to_end(view)
    while len(views) > MAX_VIEWS:
        views.popitem(last=False)
    return current


def growths(device: torch.device) -> int:
    """How many times a capacity of ``device`` has grown (tests: steady calls do not)."""
    return _growths.get(_key(device), 0)


def reset() -> None:
    """Forgets every capacity and growth count (tests start from none)."""
    _capacities.clear()
    _starts.clear()
    _growths.clear()


def start_at(device: torch.device, pairs: int) -> None:
    """The capacity every view of ``device`` starts with, instead of a read of its first total
    (tests: one too small on purpose)."""
    _starts[_key(device)] = int(pairs)
