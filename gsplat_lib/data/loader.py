"""``load_scene``: open a dataset folder whatever its format."""

from __future__ import annotations

from pathlib import Path

from .scene import PathLike, SceneData
from .colmap import find_colmap_sparse_dir, load_colmap
from .nerf_synthetic import is_nerf_synthetic_dir, load_nerf_synthetic

__all__ = ["load_scene", "detect_format"]


def detect_format(path: PathLike) -> str:
    """``"colmap"`` or ``"nerf"`` for a dataset folder.

    A COLMAP folder has ``sparse/0/`` (or ``sparse/``) with
    ``cameras.bin|txt``; a NeRF-synthetic folder has ``transforms_train.json``
    (or ``transforms.json``).

    Raises:
        ValueError: neither layout is found (the message names the path and
            what was looked for).
    """
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"dataset path {path} is not a directory")
    if find_colmap_sparse_dir(path) is not None:
        return "colmap"
    if is_nerf_synthetic_dir(path):
        return "nerf"
    raise ValueError(
        f"{path}: unknown dataset layout; looked for a COLMAP model "
        "(sparse/0/cameras.bin|txt or sparse/cameras.bin|txt, with images/) and for "
        "NeRF-synthetic transforms (transforms_train.json or transforms.json)"
    )


def load_scene(
    path: PathLike,
    *,
    downscale: int = 1,
    test_every: int = 8,
    background=(0.0, 0.0, 0.0),
    num_random_points: int = 100_000,
    seed: int = 0,
) -> SceneData:
    """Load a COLMAP or NeRF-synthetic dataset folder.

    Args:
        path: dataset folder (format detected by :func:`detect_format`).
        downscale: integer factor; images are area-averaged (or taken from
            COLMAP's ``images_<s>/``) and K is scaled to match.
        test_every: every ``test_every``-th view (index 0, 8, ...) is a test
            view; 0 disables the split. NeRF data with ``transforms_test.json``
            uses that file instead.
        background: RGB in [0, 1] that alpha is composited over.
        num_random_points: random initial points for data without a point
            cloud (NeRF-synthetic, or a COLMAP model without points).
        seed: seed of those random points.

    Returns:
        :class:`SceneData` with float32 images [H, W, 3], OpenCV
        world-to-camera ``viewmat`` and pixel ``K``.
    """
    kwargs = dict(
        downscale=downscale,
        test_every=test_every,
        background=background,
        num_random_points=num_random_points,
        seed=seed,
    )
    if detect_format(path) == "colmap":
        return load_colmap(path, **kwargs)
    return load_nerf_synthetic(path, **kwargs)
