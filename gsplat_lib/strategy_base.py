"""The densification strategy protocol (:class:`Strategy`): the per-step hook a trainer
calls, and a state that checkpoints save and restore without knowing the strategy's class."""

from __future__ import annotations

import abc
from dataclasses import fields
from typing import Dict

import torch

__all__ = ["Strategy", "check_int_fields", "strategy_config", "strategy_from_state", "restore_generator"]


class Strategy(abc.ABC):
    """A densification strategy (clone, split, prune, reset; MCMC-like schemes alike).

    Called once per training step after ``optimizer.step()``, it reads the render's statistics
    and changes the model through ``GaussianModel.apply_row_plan`` / ``reset_opacity``. Every
    subclass is registered under its class name, which :meth:`state_dict` records, so a
    checkpoint restores it with :meth:`restore`.
    """

    _by_name: Dict[str, type] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        Strategy._by_name[cls.__name__] = cls

    @abc.abstractmethod
    def step_post_backward(self, model, result, step: int):
        """One step's hook: ``model`` (a GaussianModel), the rasterizer's ``result`` after
        ``loss.backward()``, the ``step`` counting from 1."""

    @abc.abstractmethod
    def state_dict(self) -> Dict[str, object]:
        """Config and state as weights_only-safe values, with ``"name"``: the class name."""

    @classmethod
    @abc.abstractmethod
    def from_state_dict(cls, state: Dict[str, object], device="cpu") -> "Strategy":
        """The strategy :meth:`state_dict` described, its tensors on ``device``."""

    def check_model(self, model) -> None:
        """ValueError when this strategy's state does not fit ``model`` (e.g. its surfel count)."""

    @staticmethod
    def restore(state: Dict[str, object], device="cpu") -> "Strategy":
        """The registered strategy named by ``state["name"]``, rebuilt from ``state``."""
        strategy_class = Strategy._by_name.get(state.get("name"))
        if strategy_class is None:
            raise ValueError(f"unknown strategy {state.get('name')!r}; known: {sorted(Strategy._by_name)}")
        return strategy_class.from_state_dict(state, device=device)


# ---------------------------------------------------------------------- helpers of dataclass strategies


def check_int_fields(strategy, names) -> None:
    """TypeError naming the first of ``names`` whose value on the (dataclass) strategy is not an int."""
    for name in names:
        value = getattr(strategy, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{type(strategy).__name__}: {name} must be an int, got {type(value).__name__}")


def strategy_config(strategy) -> Dict[str, object]:
    """The constructor arguments of a dataclass strategy (its init fields)."""
    return {f.name: getattr(strategy, f.name) for f in fields(strategy) if f.init}


def strategy_from_state(cls, state: Dict[str, object], device="cpu"):
    """An instance of the strategy class ``cls`` built from the ``config`` of its
    ``state_dict()``, then given the rest of that state (``load_state_dict``)."""
    if state.get("name") != cls.__name__:
        raise ValueError(f"strategy state is of {state.get('name')!r}, not {cls.__name__}")
    strategy = cls(**state["config"])
    strategy.load_state_dict(state, device=device)
    return strategy


def restore_generator(generator: torch.Generator, state: Dict[str, object]) -> None:
    """Sets ``generator`` to the ``generator_state`` of a strategy's state dict (ValueError if
    it is not a uint8 tensor)."""
    generator_state = state.get("generator_state")
    if not isinstance(generator_state, torch.Tensor) or generator_state.dtype != torch.uint8:
        raise ValueError("strategy state: generator_state must be a uint8 tensor")
    generator.set_state(generator_state.clone())
