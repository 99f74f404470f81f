"""Subprocesses in tests must import the gsplat_lib under test (the installed one in CI)."""

import os
from pathlib import Path

import gsplat_lib

PACKAGE_PARENT = str(Path(gsplat_lib.__file__).resolve().parents[1])


def python_env(**extra: str) -> dict:
    """Environment whose PYTHONPATH finds the gsplat_lib this process imported. Run such a
    subprocess with cwd outside the checkout: `python -c` / `-m` put the working directory first
    on sys.path, where the source tree (without its compiled core) would shadow the package."""
    return {**os.environ, "PYTHONPATH": PACKAGE_PARENT, **extra}
