"""The viewer's one optional dependency, viser, imported with an error that names the fix."""

from __future__ import annotations

import random
from types import ModuleType

__all__ = ["INSTALL_HINT", "import_viser"]

INSTALL_HINT = "pip install 'gsplat_lib[viewer]'  (or: pip install 'viser>=1.1.1,<2')"


def import_viser() -> ModuleType:
    """The ``viser`` module; ImportError naming the install command when it is missing."""
    try:
        import viser
    except ImportError as error:
        raise ImportError(f"the viewer needs the viser package, which is not installed: {INSTALL_HINT}") from error
    _private_ping_payloads()
    return viser


def _private_ping_payloads() -> None:
    """websockets draws its keepalive pings' payloads from Python's global ``random`` generator,
    whose state a training checkpoint holds: a private generator keeps an open page from
    changing that state (and so the checkpoint's bits)."""
    from websockets.asyncio import connection

    if connection.random is random:
        connection.random = random.Random()
