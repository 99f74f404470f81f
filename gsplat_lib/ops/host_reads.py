"""Every intentional device-to-host read of the rasterizer and the training step goes through
here, counted, so tests and benchmarks can say how often a step makes the host wait.

Reading a CUDA value makes the host wait until the stream has computed it. ``read_now`` waits
at once, for everything queued so far (a blocking read). A ``DeferredRead`` copies the value
into pinned memory right after it is made and waits only when ``values()`` is called, and then
only for the work queued up to the copy: what was queued after it keeps the GPU busy meanwhile.
On the CPU both just read memory, but count the same, so the CPU tests see the CUDA schedule's
reads.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch

__all__ = ["DeferredRead", "counts", "read_now"]

# blocking: read_now calls; deferred: DeferredRead values read; waited: of those, the ones whose
# copy had not landed yet (the host waited for the stream up to it).
_counts: Dict[str, int] = {"blocking": 0, "deferred": 0, "waited": 0}


def counts() -> Dict[str, int]:
    """A snapshot of the read counters (compare two snapshots)."""
    return dict(_counts)


def read_now(tensor: torch.Tensor) -> list:
    """The values of ``tensor`` as Python numbers (``tolist``), read now: a blocking read."""
    _counts["blocking"] += 1
    return tensor.detach().tolist()


class DeferredRead:
    """A read of ``tensor``'s current values, started now and finished by ``values()``."""

    def __init__(self, tensor: torch.Tensor):
        tensor = tensor.detach()
        self._event: Optional[torch.cuda.Event] = None
        if tensor.device.type == "cuda":
            self._host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self._host.copy_(tensor, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record(torch.cuda.current_stream(tensor.device))
        else:
            self._host = tensor.clone()
        self._values: Optional[List] = None

    def values(self) -> list:
        """The values (``tolist``); the first call waits for the copy if it has not landed."""
        if self._values is None:
            _counts["deferred"] += 1
            if self._event is not None and not self._event.query():
                _counts["waited"] += 1
                self._event.synchronize()
            self._values = self._host.tolist()
        return self._values
