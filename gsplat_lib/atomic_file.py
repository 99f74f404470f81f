"""Atomic file writes: readers see the old file or the complete new one, never a part."""

from __future__ import annotations

import os
import tempfile
from typing import BinaryIO, Callable, Union

__all__ = ["write_atomically"]

PathLike = Union[str, os.PathLike]


def write_atomically(path: PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Calls ``write(stream)`` on a temporary file next to ``path``, makes it durable and
    renames it over ``path`` (then fsyncs the directory, so the rename survives a crash).

    Args:
        path: destination file; its directory must exist.
        write: writes the whole content to the binary stream it is given.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.", suffix=".partial", dir=directory
    )
    try:
        with os.fdopen(descriptor, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Makes the rename durable; directories cannot be opened for fsync on Windows."""
    if os.name != "posix":
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
