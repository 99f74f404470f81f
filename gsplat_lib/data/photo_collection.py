"""A "photo collection" of the built-in synthetic scene: every photo has its own exposure and white
balance, and some may show a transient occluder (a passer-by) that no other photo sees.

The geometry, cameras and points are those of :mod:`gsplat_lib.data.synthetic_scene`; only the
photos change. Photo ``k`` is the scene's image times a per-channel gain
``2^e_k * (2^r_k, 1, 2^b_k)`` (exposure ``e_k`` uniform in +-``exposure_stops``, white balance
``r_k``, ``b_k`` uniform in +-``white_balance_stops``), clipped to [0, 1] like a sensor. With
``occluder_every = N > 0`` every N-th photo (1, N + 1, 2N + 1, ...: never a default test view,
which are 0, 8, 16, ...) gets a flat-coloured disc somewhere in the frame. The gains are
drawn from ``seed`` and written to ``appearance.json`` beside the COLMAP data, so tests and
readers know the truth.

Run ``python -m gsplat_lib.data.photo_collection OUT_DIR`` to write it and look at it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from .colmap import write_colmap
from .scene import Camera, PathLike
from .synthetic_scene import (
    DEFAULT_SCENE_HEIGHT,
    DEFAULT_SCENE_NUM_POINTS,
    DEFAULT_SCENE_NUM_VIEWS,
    DEFAULT_SCENE_SUPERSAMPLE,
    DEFAULT_SCENE_WIDTH,
    synthetic_scene_cameras,
    synthetic_scene_points,
)

__all__ = [
    "APPEARANCE_FILE",
    "DEFAULT_EXPOSURE_STOPS",
    "DEFAULT_WHITE_BALANCE_STOPS",
    "photo_collection_cameras",
    "make_photo_collection",
]

#: The per-photo truth written beside the data.
APPEARANCE_FILE = "appearance.json"
#: Exposures spread over +- this many stops.
DEFAULT_EXPOSURE_STOPS = 0.5
#: Red and blue gains relative to green spread over +- this many stops.
DEFAULT_WHITE_BALANCE_STOPS = 0.3
#: Radius of a transient occluder, as a fraction of the image's smaller side.
_OCCLUDER_RADIUS = 0.18


def _stops(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 4:
        raise ValueError(f"{name} must be a number of stops in [0, 4], got {value!r}")
    return float(value)


def photo_collection_cameras(
    num_views: int = DEFAULT_SCENE_NUM_VIEWS,
    width: int = DEFAULT_SCENE_WIDTH,
    height: int = DEFAULT_SCENE_HEIGHT,
    *,
    seed: int = 0,
    supersample: int = DEFAULT_SCENE_SUPERSAMPLE,
    exposure_stops: float = DEFAULT_EXPOSURE_STOPS,
    white_balance_stops: float = DEFAULT_WHITE_BALANCE_STOPS,
    occluder_every: int = 0,
) -> Tuple[List[Camera], List[Camera], List[Dict[str, object]]]:
    """Renders the scene and makes its photos.

    Returns (the scene's cameras as rendered, the same cameras with the photos as images,
    one dict per photo: ``name``, ``gain`` [r, g, b] and ``occluder``, the disc's
    ``[centre x, centre y, radius]`` in pixels or None).
    """
    exposure_stops = _stops("exposure_stops", exposure_stops)
    white_balance_stops = _stops("white_balance_stops", white_balance_stops)
    if isinstance(occluder_every, bool) or not isinstance(occluder_every, int) or occluder_every < 0:
        raise ValueError(f"occluder_every must be an integer >= 0, got {occluder_every!r}")
    scene = synthetic_scene_cameras(num_views, width, height, seed=seed, supersample=supersample)
    rng = np.random.default_rng([seed, 3])  # independent of the scene's own streams
    rows, cols = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    photos, truth = [], []
    for view, camera in enumerate(scene):
        exposure = rng.uniform(-exposure_stops, exposure_stops)
        red, blue = rng.uniform(-white_balance_stops, white_balance_stops, size=2)
        gain = 2.0 ** (exposure + np.array([red, 0.0, blue]))
        image = np.clip(camera.image * gain, 0.0, 1.0)
        occluder = None
        if occluder_every > 0 and view % occluder_every == 1 % occluder_every:
            radius = _OCCLUDER_RADIUS * min(width, height)
            centre = rng.uniform([radius, radius], [width - radius, height - radius])
            color = rng.uniform(0.1, 0.9, size=3)
            inside = (cols - centre[0]) ** 2 + (rows - centre[1]) ** 2 <= radius**2
            image = np.where(inside[:, :, None], color, image)
            occluder = [float(centre[0]), float(centre[1]), float(radius)]
        photos.append(
            Camera(
                name=camera.name, viewmat=camera.viewmat, K=camera.K, width=width, height=height,
                image=image.astype(np.float32), alpha=camera.alpha, depth=camera.depth, normal=camera.normal,
            )
        )
        truth.append({"name": camera.name, "gain": [float(g) for g in gain], "occluder": occluder})
    return scene, photos, truth


def make_photo_collection(
    folder: PathLike,
    *,
    num_views: int = DEFAULT_SCENE_NUM_VIEWS,
    width: int = DEFAULT_SCENE_WIDTH,
    height: int = DEFAULT_SCENE_HEIGHT,
    seed: int = 0,
    num_points: int = DEFAULT_SCENE_NUM_POINTS,
    supersample: int = DEFAULT_SCENE_SUPERSAMPLE,
    exposure_stops: float = DEFAULT_EXPOSURE_STOPS,
    white_balance_stops: float = DEFAULT_WHITE_BALANCE_STOPS,
    occluder_every: int = 0,
    binary: bool = False,
) -> Path:
    """Writes the photo collection as a COLMAP dataset (``images/``, ``sparse/0``) with
    ``appearance.json`` (the per-photo truth); returns ``folder``. The points3D carry the
    scene's own colours (as an average over many photos would)."""
    folder = Path(folder)
    scene, photos, truth = photo_collection_cameras(
        num_views, width, height, seed=seed, supersample=supersample, exposure_stops=exposure_stops,
        white_balance_stops=white_balance_stops, occluder_every=occluder_every,
    )
    points, colors = synthetic_scene_points(scene, num_points, seed=seed)
    write_colmap(folder, photos, points, colors, binary=binary)
    (folder / APPEARANCE_FILE).write_text(json.dumps({"photos": truth}, indent=1) + "\n")
    return folder


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gsplat_lib.data.photo_collection",
        description="Write the synthetic scene as a photo collection (per-photo exposure and white balance).",
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--views", type=int, default=DEFAULT_SCENE_NUM_VIEWS)
    parser.add_argument("--width", type=int, default=DEFAULT_SCENE_WIDTH)
    parser.add_argument("--height", type=int, default=DEFAULT_SCENE_HEIGHT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exposure-stops", type=float, default=DEFAULT_EXPOSURE_STOPS)
    parser.add_argument("--white-balance-stops", type=float, default=DEFAULT_WHITE_BALANCE_STOPS)
    parser.add_argument("--occluder-every", type=int, default=0, help="every N-th photo shows a transient disc (0: none)")
    args = parser.parse_args(argv)
    folder = make_photo_collection(
        args.out_dir, num_views=args.views, width=args.width, height=args.height, seed=args.seed,
        exposure_stops=args.exposure_stops, white_balance_stops=args.white_balance_stops,
        occluder_every=args.occluder_every,
    )
    print(f"wrote the photo collection ({args.views} views, {args.width}x{args.height}) to {folder}")


if __name__ == "__main__":
    main()
