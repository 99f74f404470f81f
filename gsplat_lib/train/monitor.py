"""What the training loop tells an observer (a viewer), and where the observer may hold it.

The loop calls, in order: :meth:`TrainingMonitor.started` once the model exists, then for every
step :meth:`wait_while_paused`, the step inside :meth:`changing_model`, :meth:`step_finished`;
and :meth:`finished` after the last step. This base class does nothing, so a run without an
observer pays nothing. An observer only reads the model: a run with one computes the same bits.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, ContextManager, Optional

from gsplat_lib.data import SceneData
from gsplat_lib.model import GaussianModel
from gsplat_lib.train.environment import EnvironmentMap

__all__ = ["TrainingMonitor"]


class TrainingMonitor:
    """Hooks of the training loop; override the ones you need."""

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
        """Training begins (or resumes) at ``first_step`` with ``model`` on ``scene``; ``config`` is
        the TrainConfig. Pixels the surfels leave uncovered see ``environment`` when there is one
        (trained with the model, in the same steps); surface depth is ``(1 - depth_ratio)``
        expected + ``depth_ratio`` median depth (the data-dependent value the run uses)."""

    def wait_while_paused(self, should_stop: Callable[[], bool]) -> None:
        """Called before each step; returns when training may go on, or at once when ``should_stop()``."""

    def changing_model(self) -> ContextManager[None]:
        """Held around each step, while the step changes the model."""
        return nullcontext()

    def step_finished(self, step: int, model: GaussianModel) -> None:
        """Step ``step`` is done (the model holds its result)."""

    def finished(self, model: GaussianModel) -> None:
        """The last step is done."""
