"""Shared by every test: the package under test, the CUDA skip, and a small scene for training runs.

Tests of a CUDA path carry the ``cuda`` marker and nothing else; here they are skipped unless
a GPU and a CUDA build of gsplat_lib are both present. Scenes and output lists shared by the
rasterizer tests (and the benchmarks) are in rasterize_scenes.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# `python -m pytest` puts the working directory first on sys.path. From the repo root that is
# the source tree, whose gsplat_lib has no compiled core unless tools/dev_build.sh put one
# there: then the installed package is the one to test, so the root leaves sys.path.
_ROOT = Path(__file__).resolve().parents[1]
if not any((_ROOT / "gsplat_lib").glob("_C*")):
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _ROOT]

try:
    import gsplat_lib

    _CUDA_READY = bool(gsplat_lib.build_info()["cuda"])
except ImportError as error:
    raise pytest.UsageError(
        f"gsplat_lib with its compiled core cannot be imported ({error}): install it (pip install .) or build "
        "it into the source tree (bash tools/dev_build.sh)"
    ) from error

import torch  # noqa: E402  (after the sys.path fix above, like gsplat_lib)

_CUDA_READY = _CUDA_READY and torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if _CUDA_READY:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU and a CUDA build of gsplat_lib")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def small_training_scene(tmp_path_factory):
    """A 48 x 36, 16-view built-in scene on disk (COLMAP), for the tests that run gsplat-train."""
    from gsplat_lib.data import make_synthetic_scene

    return make_synthetic_scene(tmp_path_factory.mktemp("scene"), num_views=16, width=48, height=36, num_points=800)
