"""Turns between a training loop that changes a model and viewers that read it.

The trainer holds :meth:`ModelAccess.changing` around each step; a viewer renders inside
:meth:`ModelAccess.reading`, so it sees the model between two steps and never in the middle of
one (densification replaces every tensor). A reader that is waiting goes before the next step,
so a trainer that steps in a tight loop cannot starve the viewer; with no reader, a step only
takes and releases an uncontended lock twice.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["ModelAccess"]


class ModelAccess:
    """One writer (the training step) or one reader (a frame) at a time; waiting readers first."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers_waiting = 0
        self._busy = False

    @contextmanager
    def changing(self) -> Iterator[None]:
        """Held while a training step changes the model."""
        with self._condition:
            while self._busy or self._readers_waiting:
                self._condition.wait()
            self._busy = True
        try:
            yield
        finally:
            self._release()

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Held while a frame reads the model."""
        with self._condition:
            self._readers_waiting += 1
            try:
                while self._busy:
                    self._condition.wait()
            finally:
                self._readers_waiting -= 1
            self._busy = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        with self._condition:
            self._busy = False
            self._condition.notify_all()
