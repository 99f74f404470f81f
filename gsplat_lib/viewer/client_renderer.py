"""One browser's frames: a thread that renders its camera whenever the camera or the picture changes.

Only the newest camera counts: requests that arrive during a frame merge into the next one.
While the camera moves, frames are small enough to keep up (:class:`AdaptiveResolution`);
``settle_seconds`` after the last move, one frame at the full size follows. Nothing is rendered
while nothing changes.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np

from gsplat_lib.viewer.resolution import AdaptiveResolution

__all__ = ["ClientRenderer", "FrameRequest", "FrameStats"]


@dataclass
class FrameRequest:
    """What a frame needs from the browser: its camera pose and canvas, read when the frame starts."""

    wxyz: np.ndarray
    position: np.ndarray
    fov_y: float
    width: int
    height: int


@dataclass
class FrameStats:
    """The last frame: its size, its render time (without encoding and sending) and whether moving."""

    width: int
    height: int
    seconds: float
    moving: bool


class ClientRenderer:
    """Renders frames for one browser on its own thread.

    Args:
        read_camera: the browser's current camera, or None when it has not reported one yet.
        render: renders a request at a (width, height) and returns [H, W, 3] uint8, or None when
            there is nothing to show (the frame is skipped).
        show: sends a frame to the browser (``moving`` frames may be encoded more coarsely).
        max_size: the largest (width, height) rendered: the canvas is scaled down to fit.
        settle_seconds: how long after the last move the camera counts as resting.
        on_frame: called with the :class:`FrameStats` of each frame shown.
    """

    def __init__(
        self,
        read_camera: Callable[[], Optional[FrameRequest]],
        render: Callable[[FrameRequest, int, int], Optional[np.ndarray]],
        show: Callable[[np.ndarray, bool], None],
        *,
        max_size: Callable[[], int] = lambda: 1920,
        resolution: Optional[AdaptiveResolution] = None,
        settle_seconds: float = 0.25,
        on_frame: Callable[[FrameStats], None] = lambda stats: None,
        name: str = "gsplat-view-renderer",
    ) -> None:
        self._read_camera = read_camera
        self._render = render
        self._show = show
        self._max_size = max_size
        self.resolution = resolution or AdaptiveResolution()
        self.settle_seconds = float(settle_seconds)
        self._on_frame = on_frame
        self._wake = threading.Condition()
        self._generation = 0  # bumped by every request; a full frame of the newest one ends the work
        self._shown_generation = 0
        self._last_move = -float("inf")
        self._running = True
        self._last_error: Optional[str] = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def camera_moved(self) -> None:
        """The camera changed: render small frames now, a full one once it rests."""
        with self._wake:
            self._last_move = time.monotonic()
            self._generation += 1
            self._wake.notify()

    def refresh(self) -> None:
        """The picture changed (model, mode, size limit): render a full frame."""
        with self._wake:
            self._generation += 1
            self._wake.notify()

    def stop(self, timeout: float = 5.0) -> None:
        with self._wake:
            self._running = False
            self._wake.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def idle(self) -> bool:
        """True when the newest request has had its full-size frame (or its failed attempt)."""
        with self._wake:
            return self._shown_generation == self._generation

    # ------------------------------------------------------------------ the thread

    def _next_work(self) -> Optional[Tuple[int, bool]]:
        """Waits for work; returns (generation, moving), or None when stopped."""
        with self._wake:
            while self._running:
                if self._shown_generation != self._generation:
                    resting_in = self._last_move + self.settle_seconds - time.monotonic()
                    return self._generation, resting_in > 0
                self._wake.wait()
            return None

    def _loop(self) -> None:
        while True:
            work = self._next_work()
            if work is None:
                return
            generation, moving = work
            self._frame(moving)
            with self._wake:
                if not moving and generation == self._generation:
                    self._shown_generation = generation
                elif moving and generation == self._generation:
                    # Nothing newer came during the frame: rest, then draw the full frame.
                    self._wake.wait(self.settle_seconds)

    def _frame(self, moving: bool) -> None:
        """Renders and shows one frame (none while the browser has reported no camera)."""
        try:
            request = self._read_camera()
            if request is None:
                return
            width, height = _fit(request.width, request.height, self._max_size())
            width, height = self.resolution.size(width, height, moving)
            start = time.perf_counter()
            image = self._render(request, width, height)
            seconds = time.perf_counter() - start
            if image is None:
                return
            self.resolution.record(width, height, seconds)
            if not self._running:  # the browser left or the viewer closed during the frame
                return
            self._show(image, moving)
            self._on_frame(FrameStats(width, height, seconds, moving))
            self._last_error = None
        except Exception as error:  # a failed frame must not end the viewer; report each new error once
            message = f"{type(error).__name__}: {error}"
            if message != self._last_error:
                print(f"gsplat-view: a frame failed: {message}", file=sys.stderr)
                self._last_error = message


def _fit(width: int, height: int, max_size: int) -> Tuple[int, int]:
    """(width, height) scaled down, aspect kept, so that neither side exceeds ``max_size``."""
    width, height = max(1, int(width)), max(1, int(height))
    scale = min(1.0, max_size / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))
