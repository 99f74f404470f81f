"""Data-parallel training under ``torchrun``: every rank holds the whole model and renders its
share of each step's cameras.

    torchrun --nproc-per-node=2 -m gsplat_lib.train --data scene --output runs/x --batch-size 4

What keeps the ranks one model:

- every rank draws the same cameras (the camera order is seeded) and renders a contiguous
  share of them, ``--batch-size / world size`` each;
- each rank's loss is scaled by its share of the batch and the parameter gradients are summed
  across ranks before Adam, so every rank takes the same step;
- the densification statistics are gathered from every rank, in camera order, before the
  strategy reads them: every rank makes the same decisions, with the statistics one process
  computes for the whole batch;
- a signal on any rank stops every rank at the same step; rank 0 alone writes the run
  directory (settings, checkpoints, markers, PLY, metrics), and every rank resumes from the
  checkpoint it wrote.

gloo on CPU, NCCL on CUDA (one GPU per rank, ``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Iterable, List, Optional, Sequence, TypeVar

import torch
import torch.distributed as dist

__all__ = ["DataParallel"]

T = TypeVar("T")


class DataParallel:
    """The ranks of a data-parallel run; one process alone is rank 0 of 1 and every collective
    is a no-op."""

    def __init__(self, rank: int = 0, world_size: int = 1, device: torch.device = torch.device("cpu"), *,
                 owns_group: bool = False) -> None:
        self.rank = rank
        self.world_size = world_size
        self.device = device  # this rank's device; collectives run on it
        self._owns_group = owns_group

    @classmethod
    def from_environment(cls, device: torch.device) -> "DataParallel":
        """The ranks torchrun started (``WORLD_SIZE`` > 1 in the environment), else one process
        on ``device``. Under torchrun a CUDA run takes GPU ``LOCAL_RANK``; joins the default
        process group, starting it when nobody has."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls(device=device)
        if not dist.is_available():
            raise RuntimeError("torchrun started several ranks, but this torch has no torch.distributed")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        owns_group = not dist.is_initialized()
        if owns_group:
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), device, owns_group=owns_group)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes the run directory and logs."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def finish(self) -> None:
        """Every rank leaves the group together once training is done; rank 0 then evaluates,
        exports and meshes alone, with no group left to time out while the others wait."""
        if self.active:
            dist.barrier()
            self.close()
            if self.is_main:
                self.world_size = 1  # alone from here on: later collectives are no-ops

    def close(self) -> None:
        """Leaves the process group if this object started it."""
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self._owns_group = False

    # ------------------------------------------------------------------ work split

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size % self.world_size != 0:
            raise ValueError(
                f"--batch-size {batch_size} must be a multiple of the number of ranks ({self.world_size}): "
                "it is the total over all ranks, split evenly"
            )

    def share(self, batch: Sequence[T]) -> List[T]:
        """This rank's contiguous share of a step's cameras."""
        per_rank = len(batch) // self.world_size
        return list(batch[self.rank * per_rank : (self.rank + 1) * per_rank])

    # ------------------------------------------------------------------ collectives

    def run_on_main(self, work: Callable[[], T]) -> T:
        """Runs ``work`` on rank 0 while the others wait, and returns its (picklable) result on
        every rank. An error on rank 0 is raised on every rank, rather than leaving the others
        waiting forever."""
        if not self.active:
            return work()
        result, failure = None, None
        if self.is_main:
            try:
                result = work()
            except Exception as error:  # re-raised below, after the others have been told
                failure = error
        message = [None if failure is None else f"{type(failure).__name__}: {failure}", result]
        dist.broadcast_object_list(message, src=0)
        if failure is not None:
            raise failure
        if message[0] is not None:
            raise RuntimeError(f"rank 0 failed: {message[0]}")
        return message[1]

    def sum_gradients(self, tensors: Iterable[torch.Tensor]) -> None:
        """Sums the ``.grad`` of ``tensors`` over the ranks, in place, in one collective."""
        if not self.active:
            return
        grads = [tensor.grad for tensor in tensors if tensor.grad is not None]
        if not grads:
            return
        flat = torch.cat([grad.reshape(-1) for grad in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def gather_statistics(self, result):
        """The rasterizer result as the densification strategy reads it, with every rank's
        cameras: ``screen_grad``/``screen_absgrad`` (their ``.grad``), ``radii`` and the
        shape of ``colors``, concatenated in rank order (the order of the step's cameras)."""
        if not self.active:
            return result

        def gathered(tensor: torch.Tensor) -> torch.Tensor:
            pieces = [torch.empty_like(tensor) for _ in range(self.world_size)]
            dist.all_gather(pieces, tensor.contiguous())
            return torch.cat(pieces)

        def leaf_with_grad(leaf: torch.Tensor) -> torch.Tensor:
            grad = torch.zeros_like(leaf) if leaf.grad is None else leaf.grad
            whole = gathered(grad)
            value = torch.zeros_like(whole, requires_grad=True)
            value.grad = whole
            return value

        colors = result.colors
        return dataclasses.replace(
            result,
            screen_grad=leaf_with_grad(result.screen_grad),
            screen_absgrad=leaf_with_grad(result.screen_absgrad),
            radii=gathered(result.radii),
            colors=colors.new_zeros(()).expand(colors.shape[0] * self.world_size, *colors.shape[1:]),
        )

    def any_signal(self, signal_number: Optional[int]) -> Optional[int]:
        """The largest signal number any rank received (None when none did), so that every rank
        stops at the same step."""
        if not self.active:
            return signal_number
        flag = torch.tensor([signal_number or 0], dtype=torch.int64, device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item()) or None
