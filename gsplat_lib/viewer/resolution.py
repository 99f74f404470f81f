"""The render size: the full canvas when the camera rests, less while it moves so frames keep up."""

from __future__ import annotations

import math
from typing import Optional, Tuple

__all__ = ["AdaptiveResolution"]


class AdaptiveResolution:
    """Chooses how many pixels to render from how fast recent frames rendered.

    Frame time is modelled as proportional to the pixel count: an exponential average of the
    seconds per pixel of recent frames. While the camera moves, a frame gets the largest size of
    the canvas's aspect predicted to render within ``moving_seconds``; at rest, the full size.

    Args:
        moving_seconds: the frame time aimed at while moving (1/10 s: 10 frames per second).
        min_height: the smallest image height rendered while moving.
        smoothing: weight of the newest frame in the average.
    """

    def __init__(self, moving_seconds: float = 0.1, min_height: int = 64, smoothing: float = 0.3) -> None:
        if not moving_seconds > 0:
            raise ValueError(f"AdaptiveResolution: moving_seconds must be > 0, got {moving_seconds}")
        if min_height < 1:
            raise ValueError(f"AdaptiveResolution: min_height must be >= 1, got {min_height}")
        if not 0.0 < smoothing <= 1.0:
            raise ValueError(f"AdaptiveResolution: smoothing must be in (0, 1], got {smoothing}")
        self.moving_seconds = float(moving_seconds)
        self.min_height = int(min_height)
        self.smoothing = float(smoothing)
        self.seconds_per_pixel: Optional[float] = None

    def record(self, width: int, height: int, seconds: float) -> None:
        """Takes the time one frame of ``width`` x ``height`` pixels took."""
        if width < 1 or height < 1 or not math.isfinite(seconds) or seconds < 0:
            return
        measured = seconds / (width * height)
        if self.seconds_per_pixel is None:
            self.seconds_per_pixel = measured
        else:
            self.seconds_per_pixel += self.smoothing * (measured - self.seconds_per_pixel)

    def size(self, full_width: int, full_height: int, moving: bool) -> Tuple[int, int]:
        """(width, height) to render now, of the aspect of ``full_width`` x ``full_height``."""
        full_width, full_height = max(1, int(full_width)), max(1, int(full_height))
        if not moving or not self.seconds_per_pixel:
            return full_width, full_height
        affordable = self.moving_seconds / self.seconds_per_pixel
        scale = min(1.0, math.sqrt(affordable / (full_width * full_height)))
        height = min(full_height, max(self.min_height, round(full_height * scale)))
        width = max(1, min(full_width, round(full_width * height / full_height)))
        return width, height
