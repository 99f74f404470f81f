"""How much memory a render needs against what the device has."""

from __future__ import annotations

from typing import Optional

import torch

from gsplat_lib import _backend

__all__ = ["CHECKED_BYTES", "available_bytes", "exceeds_memory", "check_image_memory", "check_pair_memory"]

# Requests below this are not checked against free memory: reading it costs more than a
# small render, and an allocation of this size that fails gets torch's own clear error.
CHECKED_BYTES = 256 * 2**20
# Bytes per tile pair in the forward at its peak (CUDA's; the CPU needs less): keys, ids, the
# sort's outputs and its radix buffers (keys and values again), the tile ids, the gathered ids.
PAIR_BYTES_FORWARD = 64


def available_bytes(device: torch.device) -> Optional[int]:
    """Free memory on ``device`` (CUDA: the driver's count; CPU: MemAvailable), None if unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def exceeds_memory(needed: int, device: torch.device) -> Optional[int]:
    """The bytes available when `needed` is more than that (and worth checking), else None."""
    if needed < CHECKED_BYTES:
        return None
    available = available_bytes(device)
    return available if available is not None and needed > available else None


def check_image_memory(num_cameras: int, width: int, height: int, channels: int, device: torch.device) -> None:
    """ValueError when the images of a render would not fit on ``device``."""
    # Outputs, saved state and their gradients: about 2 x (D + 12) floats per pixel.
    needed = 2 * 4 * num_cameras * width * height * (channels + 12)
    available = exceeds_memory(needed, device)
    if available is not None:
        raise ValueError(
            f"rendering {num_cameras} x {width}x{height} images needs about {needed / 2**30:.1f} GiB but only "
            f"{available / 2**30:.1f} GiB is available on {device}: render smaller images or fewer cameras per call"
        )


def check_pair_memory(num_pairs: int, num_items: int, channels: int, item_records: bool,
                      device: torch.device, record_width: Optional[int] = None) -> None:
    """ValueError when the tile pairs of a render and their gradient records (one per pair, or
    one per (camera, surfel) item, with ``channels`` colours; ``record_width`` floats each, by
    default gsplat_lib semantics') would not fit on ``device``."""
    num_records = num_items if item_records else num_pairs
    if record_width is None:
        record_width = _backend.core().PAIR_GRAD_COLOR + channels
    needed = num_pairs * PAIR_BYTES_FORWARD + num_records * 4 * record_width
    available = exceeds_memory(needed, device)
    if available is not None:
        raise ValueError(
            f"the surfels cover {num_pairs} (tile, surfel) pairs needing about {needed / 2**30:.1f} GiB, but only "
            f"{available / 2**30:.1f} GiB is available on {device}: render fewer cameras per call, smaller "
            "images, or cull oversized surfels"
            + (" (or pass deterministic=False: one gradient record per surfel, not per pair)"
               if device.type == "cuda" and not item_records else "")
        )
