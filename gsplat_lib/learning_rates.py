"""Learning rates of the 2DGS recipe and their schedule: pure functions of the step, so a
checkpoint only needs the step."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Mapping

__all__ = ["LearningRates", "LogLinearSchedule"]


@dataclass(frozen=True)
class LearningRates:
    """Adam learning rates of the 2DGS recipe (hbb1/2d-gaussian-splatting).

    The position rate decays log-linearly from ``means_init`` to ``means_final`` over the
    model's ``max_steps``; both are multiplied by the scene extent.
    """

    means_init: float = 1.6e-4
    means_final: float = 1.6e-6
    sh_dc: float = 0.0025
    sh_rest: float = 0.0025 / 20.0
    opacity_logits: float = 0.05
    log_scales: float = 0.005
    quats: float = 0.001

    @classmethod
    def from_dict(cls, values: Mapping[str, float]) -> "LearningRates":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"learning_rates: unknown entries {sorted(unknown)}")
        return cls(**{k: float(v) for k, v in values.items()})


@dataclass(frozen=True)
class LogLinearSchedule:
    """Learning rate interpolated linearly in log space from ``lr_init`` to ``lr_final``.

    ``lr(step) = exp((1 - t) log(lr_init) + t log(lr_final))`` with ``t = clamp(step /
    max_steps, 0, 1)``: the position schedule of 3DGS / 2DGS (``get_expon_lr_func`` without
    its delay, which those recipes leave off). The value depends on the step alone, in
    Python floats, so a resumed run gets the very same learning rates.
    """

    lr_init: float
    lr_final: float
    max_steps: int

    def __post_init__(self) -> None:
        if not (self.lr_init > 0 and self.lr_final > 0):
            raise ValueError(
                f"LogLinearSchedule: lr_init and lr_final must be > 0, got {self.lr_init}, "
                f"{self.lr_final}"
            )
        if self.max_steps < 1:
            raise ValueError(f"LogLinearSchedule: max_steps must be >= 1, got {self.max_steps}")

    def __call__(self, step: int) -> float:
        t = min(max(step / self.max_steps, 0.0), 1.0)
        return math.exp((1.0 - t) * math.log(self.lr_init) + t * math.log(self.lr_final))
