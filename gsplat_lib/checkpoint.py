"""Exact-resume checkpoints (docs/design.md, decision 5).

A checkpoint holds everything the next training step reads: the parameters, the Adam
state (moments, per-tensor step counts, current learning rates, param groups), the
strategy's accumulators (including ``max_radii2D``) and random generator, the active SH
degree, the scene extent and schedule settings, the step, the states of the global RNGs
(torch CPU, torch CUDA when initialised, numpy's global generator, Python's ``random``),
the caller's ``trainer_state`` and ``config``, and a format version.

The file is a ``torch.save`` archive of plain containers, loadable with
``torch.load(path, weights_only=True)``::

    {"format": "gsplat_lib.checkpoint", "version": 1, "digest": "<blake2b hex>",
     "content": {"step", "model", "strategy", "rng", "trainer_state", "config",
                 "library_version"}}

``digest`` hashes every value of ``content`` (tensor bytes included): torch's zip reader
does not notice a flipped byte inside a tensor, this does. Files are written atomically, so
a crash while saving leaves the previous checkpoint intact. Loading validates the whole
file before it builds anything, and every problem is a ``ValueError`` naming the file.

This module knows the model and the strategy only through their state dicts: the model
class is the caller's (``GaussianModel.load_checkpoint``), the strategy class is found by
the name it saved (:class:`gsplat_lib.strategy.Strategy`).
"""

from __future__ import annotations

import hashlib
import os
import random
from typing import Dict, Mapping, NamedTuple, Optional, Union

import numpy as np
import torch

from gsplat_lib._version import __version__
from gsplat_lib.atomic_file import write_atomically
from gsplat_lib.strategy_base import Strategy

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "Checkpoint",
    "capture_rng_states",
    "restore_checkpoint",
    "restore_rng_states",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "gsplat_lib.checkpoint"
#: Bump when the layout changes; older files stay readable, newer ones are refused.
CHECKPOINT_VERSION = 1

PathLike = Union[str, os.PathLike]


class Checkpoint(NamedTuple):
    """What ``GaussianModel.load_checkpoint`` (:func:`restore_checkpoint`) returns.

    ``model``: the restored GaussianModel with its optimizer state; ``strategy``: the
    restored :class:`~gsplat_lib.strategy.Strategy` (accumulators and generator) or None if
    none was saved;
    ``trainer_state`` and ``config``: the caller's dicts as saved; ``step``: the step the
    checkpoint was taken after (continue with ``step + 1``).
    """

    model: object
    strategy: Optional[Strategy]
    trainer_state: Dict[str, object]
    step: int
    config: Dict[str, object]


# ---------------------------------------------------------------------- RNG states


def capture_rng_states() -> Dict[str, object]:
    """The states of torch's CPU (and, when initialised, CUDA) generators, numpy's global
    generator and Python's ``random``, as weights_only-safe values."""
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    py_version, py_internal, py_gauss_next = random.getstate()
    cuda_states = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda_states = [state.clone() for state in torch.cuda.get_rng_state_all()]
    return {
        "torch_cpu": torch.get_rng_state(),
        "torch_cuda": cuda_states,
        "numpy": {
            "bit_generator": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_cached),
        },
        "python": [int(py_version), [int(v) for v in py_internal], py_gauss_next],
    }


def _check_rng_states(states: Mapping[str, object]) -> None:
    cpu = states["torch_cpu"]
    if not isinstance(cpu, torch.Tensor) or cpu.dtype != torch.uint8 or cpu.shape != torch.get_rng_state().shape:
        raise ValueError(f"rng.torch_cpu must be a uint8 tensor of {torch.get_rng_state().numel()} bytes")
    if not isinstance(states["torch_cuda"], list):
        raise ValueError("rng.torch_cuda must be a list")
    numpy_state = states["numpy"]
    if numpy_state["bit_generator"] != "MT19937":
        raise ValueError(f"rng.numpy.bit_generator must be 'MT19937', got {numpy_state['bit_generator']!r}")
    keys = numpy_state["keys"]
    if not isinstance(keys, torch.Tensor) or keys.shape != (624,):
        raise ValueError("rng.numpy.keys must be a tensor of 624 entries")
    python_state = states["python"]
    if not (isinstance(python_state, list) and len(python_state) == 3 and len(python_state[1]) == 625):
        raise ValueError("rng.python must be [version, 625 ints, gauss_next]")
    if python_state[0] != random.getstate()[0]:
        raise ValueError(f"rng.python has state version {python_state[0]!r}, this Python's is {random.getstate()[0]}")


def restore_rng_states(states: Mapping[str, object]) -> None:
    """Sets the global generators to :func:`capture_rng_states`'s states, all or none: when
    one cannot be set, those already set go back and a ValueError says why.

    CUDA states are restored when CUDA is available (for as many devices as both have);
    a checkpoint taken on a machine without CUDA leaves the CUDA generators untouched.
    """
    _check_rng_states(states)
    previous = capture_rng_states()
    try:
        _set_rng_states(states)
    except (TypeError, ValueError, RuntimeError, IndexError, OverflowError) as error:
        _set_rng_states(previous)
        raise ValueError(f"the saved random generator states cannot be restored: {error}") from error


def _set_rng_states(states: Mapping[str, object]) -> None:
    torch.set_rng_state(states["torch_cpu"].clone())
    if states["torch_cuda"] and torch.cuda.is_available():
        for index, state in enumerate(states["torch_cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state.clone(), device=index)
    numpy_state = states["numpy"]
    np.random.set_state(
        (
            numpy_state["bit_generator"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


# ---------------------------------------------------------------------- portable values


def _portable(value: object, where: str) -> object:
    """A copy of ``value`` with tensors moved to the CPU; TypeError on anything that
    ``torch.load(weights_only=True)`` would refuse."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {key: _portable(item, f"{where}[{key!r}]") for key, item in value.items()}
    if isinstance(value, list):
        return [_portable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, tuple):
        return tuple(_portable(item, f"{where}[{i}]") for i, item in enumerate(value))
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"{where}: a checkpoint holds only tensors, dicts, lists, tuples, str, int, float, bool "
        f"and None (so it loads with weights_only=True); got {type(value).__name__}"
    )


def _digest(content: object) -> str:
    hasher = hashlib.blake2b(digest_size=16)
    _feed(hasher, content)
    return hasher.hexdigest()


def _feed(hasher, value: object) -> None:
    if isinstance(value, torch.Tensor):
        flat = value.detach().reshape(-1).contiguous()
        hasher.update(f"T{flat.dtype}{tuple(value.shape)}|".encode())
        if flat.numel():
            hasher.update(flat.view(torch.uint8).numpy())
    elif isinstance(value, dict):
        hasher.update(f"D{len(value)}|".encode())
        for key, item in value.items():
            _feed(hasher, key)
            _feed(hasher, item)
    elif isinstance(value, (list, tuple)):
        hasher.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)}|".encode())
        for item in value:
            _feed(hasher, item)
    else:
        hasher.update(f"{type(value).__name__}:{value!r}|".encode())


# ---------------------------------------------------------------------- save


def save_checkpoint(
    path: PathLike,
    model,
    *,
    step: int,
    strategy: Optional[Strategy] = None,
    trainer_state: Optional[Mapping[str, object]] = None,
    config: Optional[Mapping[str, object]] = None,
) -> None:
    """Writes an exact-resume checkpoint of ``model`` after ``step``, atomically.

    Args:
        path: destination file; its directory must exist. An existing file is replaced
            only once the new one is complete on disk.
        model: the GaussianModel, with its optimizer (what its ``state_dict()`` gives is saved).
        step: the last completed step.
        strategy: the densification strategy, whose accumulators and generator are saved.
        trainer_state: the caller's extra state (e.g. a data loader position); values must
            be tensors, dicts, lists, tuples, str, int, float, bool or None.
        config: the run's configuration, same value types.
    """
    path = os.fspath(path)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"save_checkpoint: step must be an int >= 0, got {step!r}")
    content = {
        "step": step,
        "model": model.state_dict(),
        "strategy": None if strategy is None else strategy.state_dict(),
        "rng": capture_rng_states(),
        "trainer_state": _portable(dict(trainer_state or {}), "trainer_state"),
        "config": _portable(dict(config or {}), "config"),
        "library_version": __version__,
    }
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "digest": _digest(content),
        "content": content,
    }
    write_atomically(path, lambda stream: torch.save(payload, stream))


# ---------------------------------------------------------------------- load


def restore_checkpoint(
    path: PathLike,
    model_class,
    *,
    device: Union[str, torch.device] = "cpu",
    restore_rng: bool = True,
) -> Checkpoint:
    """Reads a checkpoint of :func:`save_checkpoint` and rebuilds the model (through
    ``model_class.from_state_dict``) and the strategy on ``device``.

    With ``restore_rng`` (the default) the global RNGs (torch, numpy, Python) are set to
    their saved states, which an exact resume needs; this happens only after the whole file
    has been validated and the model built.

    Raises:
        FileNotFoundError: no such file.
        ValueError (naming the file): truncated, corrupted, foreign (not a gsplat_lib
            checkpoint), written by a newer format version, or inconsistent.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_checkpoint: no checkpoint file at {path!r}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"{path}: cannot be read as a gsplat_lib checkpoint (truncated, corrupted or not a "
            f"torch.save file): {error}"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a gsplat_lib checkpoint (no '{CHECKPOINT_FORMAT}' format marker)")
    version = payload.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{path}: invalid checkpoint format version {version!r}")
    if version > CHECKPOINT_VERSION:
        raise ValueError(
            f"{path}: checkpoint format version {version} was written by a newer gsplat_lib; "
            f"this one reads versions up to {CHECKPOINT_VERSION}. Upgrade gsplat_lib."
        )
    content = payload.get("content")
    if not isinstance(content, dict) or payload.get("digest") != _digest(content):
        raise ValueError(f"{path}: checkpoint is corrupted (its content does not match its digest)")
    try:
        step = content["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        model = model_class.from_state_dict(content["model"], device=device)
        strategy = None
        if content["strategy"] is not None:
            strategy = Strategy.restore(content["strategy"], device=device)
            strategy.check_model(model)
        _check_rng_states(content["rng"])
        trainer_state = content["trainer_state"]
        config = content["config"]
        if not isinstance(trainer_state, dict) or not isinstance(config, dict):
            raise ValueError("trainer_state and config must be dicts")
        if restore_rng:
            restore_rng_states(content["rng"])  # the last step: all or nothing
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, OverflowError) as error:
        detail = f"missing entry {error}" if isinstance(error, KeyError) else str(error)
        raise ValueError(f"{path}: inconsistent checkpoint: {detail}") from error
    return Checkpoint(model=model, strategy=strategy, trainer_state=trainer_state, step=step, config=config)
