"""``gsplat-train --view``: the viewer on the run being trained, with pause and resume from the page.

Frames read the model between two steps (:class:`ModelAccess`), so the run computes the same
bits as without a viewer. While a browser is open, the view is re-rendered as training goes on,
at most as often as keeps the time spent on those frames under ``refresh_share`` of the
training time; with no browser, or with the camera at rest between refreshes, a step costs two
uncontended lock operations. Moving the camera holds training until the camera rests.
"""

from __future__ import annotations

import random
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Callable, Optional

from gsplat_lib import GaussianModel
from gsplat_lib.data import SceneData
from gsplat_lib.train.environment import EnvironmentMap
from gsplat_lib.train.monitor import TrainingMonitor
from gsplat_lib.viewer.dependency import import_viser
from gsplat_lib.viewer.model_access import ModelAccess
from gsplat_lib.viewer.scene import ViewerScene, load_viewer_scene
from gsplat_lib.viewer.server import ViewerServer

__all__ = ["TrainingViewer"]

# How often the step counter on the page is updated.
_STATUS_SECONDS = 0.25


class TrainingViewer(TrainingMonitor):
    """A :class:`TrainingMonitor` that serves the model being trained.

    Args:
        host, port: where to serve (see :class:`ViewerServer`).
        refresh_share: the largest fraction of wall time that re-rendering the view for
            training progress may take (also a control on the page).
        min_refresh_seconds: the shortest time between two such refreshes.
        log: where the address is announced.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        refresh_share: float = 0.03,
        min_refresh_seconds: float = 0.5,
        log: Callable[[str], None] = print,
    ) -> None:
        if not 0.0 <= refresh_share <= 1.0:
            raise ValueError(f"TrainingViewer: refresh_share must be in [0, 1], got {refresh_share}")
        import_viser()  # fail before training starts when the extra is missing
        self.host, self.port = host, port
        self.refresh_share = float(refresh_share)
        self.min_refresh_seconds = float(min_refresh_seconds)
        self.log = log
        self.access = ModelAccess()
        self.viewer: Optional[ViewerServer] = None
        self._status = self._pause = None  # the training controls, once a training run is shown
        self._running = threading.Event()
        self._running.set()
        self._step = 0
        self._iterations = 0
        self._finished = False
        self._last_status = -float("inf")
        self._last_refresh = -float("inf")

    # ------------------------------------------------------------------ TrainingMonitor

    def started(
        self,
        model: GaussianModel,
        scene: SceneData,
        config,
        first_step: int,
        *,
        environment: Optional[EnvironmentMap] = None,
        depth_ratio: float = 0.0,
    ) -> None:
        self._iterations = int(config.iterations)
        self._step = first_step - 1
        shown = ViewerScene(
            model=model,
            train_cameras=list(scene.train),
            test_cameras=list(scene.test),
            background=tuple(float(value) for value in scene.background),
            near=float(config.near),
            far=float(config.far),
            depth_ratio=float(depth_ratio),
            environment=environment,
            title=Path(config.output).name or "training",
        )
        # Starting the server imports modules that draw from Python's global generator, whose
        # state the run has just seeded or restored and will checkpoint.
        state = random.getstate()
        try:
            self._serve(shown, training=True)
        finally:
            random.setstate(state)

    def wait_while_paused(self, should_stop: Callable[[], bool]) -> None:
        while not self._running.wait(0.1):
            if should_stop():
                return

    def changing_model(self) -> AbstractContextManager:
        return self.access.changing()

    def step_finished(self, step: int, model: GaussianModel) -> None:
        self._step = step
        viewer = self.viewer
        if viewer is None or self._status is None:
            return
        now = time.monotonic()
        if now - self._last_status >= _STATUS_SECONDS:
            self._last_status = now
            self._status.content = self._status_text()
        if viewer.num_clients and now - self._last_refresh >= self._refresh_interval():
            self._last_refresh = now
            viewer.refresh()

    def finished(self, model: GaussianModel) -> None:
        self._running.set()
        self._finished = True
        if self._status is None:
            return
        self._pause.disabled = True
        self._status.content = self._status_text()
        self.viewer.refresh()

    # ------------------------------------------------------------------ outside the loop

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def set_paused(self, paused: bool) -> None:
        """Pauses training before its next step, or resumes it (what the page's button does)."""
        if paused:
            self._running.clear()
        else:
            self._running.set()
        if self._status is not None:
            self._pause.label = "Resume training" if paused else "Pause training"
            self._status.content = self._status_text()

    def show_run(self, run_dir, device="cpu") -> None:
        """Serves a finished run directory (when ``gsplat-train --view`` had no step left to train)."""
        if self.viewer is None:
            self._serve(load_viewer_scene(run_dir, device=device), training=False)

    def close(self) -> None:
        self._running.set()
        if self.viewer is not None:
            self.viewer.close()

    # ------------------------------------------------------------------ helpers

    def _serve(self, scene: ViewerScene, training: bool) -> None:
        if self.viewer is not None:  # a second training stage in one process: show its model
            self.viewer.scene = scene
            self.viewer.refresh()
            return
        self.viewer = ViewerServer(scene, host=self.host, port=self.port, access=self.access)
        if training:
            self._add_training_controls()
        self.log(f"viewer: open {self.viewer.url} in a browser")

    def _add_training_controls(self) -> None:
        gui = self.viewer.server.gui
        with gui.add_folder("Training"):
            self._status = gui.add_markdown(self._status_text())
            self._pause = gui.add_button("Pause training", hint="Training waits before its next step.")
            self._share = gui.add_slider(
                "Refresh share (%)", min=0, max=50, step=1, initial_value=round(100 * self.refresh_share),
                hint="At most this much of the time goes to re-rendering the view as training goes on.",
            )

        @self._pause.on_click
        def _(_) -> None:
            self.set_paused(not self.paused)

        @self._share.on_update
        def _(_) -> None:
            self.refresh_share = self._share.value / 100.0

    def _status_text(self) -> str:
        text = f"step {self._step:,} of {self._iterations:,}"
        if self._finished:
            return text + " · finished"
        return text + " · paused" if self.paused else text

    def _refresh_interval(self) -> float:
        frame = self.viewer.last_frame
        if self.refresh_share <= 0:
            return float("inf")
        frame_seconds = frame.seconds if frame is not None else 0.0
        return max(self.min_refresh_seconds, frame_seconds / self.refresh_share)
