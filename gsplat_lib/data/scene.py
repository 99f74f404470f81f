"""The containers every dataset reader fills: posed cameras with their images, and a scene
split into training and test views with initial points.

Conventions (docs/design.md): OpenCV cameras (x right, y down, z forward),
``viewmat`` is the 4x4 world-to-camera matrix, ``K`` the 3x3 intrinsics in
pixels, and the centre of pixel (i, j) is at (i + 0.5, j + 0.5). Images are
channels-last float32 in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from gsplat_lib.cameras import camera_center, radius_around_mean

__all__ = [
    "Camera",
    "SceneData",
    "check_background",
    "check_downscale",
    "random_points",
    "scene_extent",
    "split_indices",
]

PathLike = Union[str, Path]


# eq=False: the generated __eq__ would compare arrays with ==, which raises.
@dataclass(eq=False)
class Camera:
    """One posed, calibrated view with its image.

    Attributes:
        name: image name, unique within a scene (e.g. ``"frame_001.png"``).
        viewmat: [4, 4] float32 world-to-camera matrix (OpenCV axes).
        K: [3, 3] float32 intrinsics in pixels.
        width: image width in pixels.
        height: image height in pixels.
        image: [H, W, 3] float32 in [0, 1]; for sources with alpha, already
            composited over the scene background.
        alpha: [H, W, 1] float32 in [0, 1] when the source has alpha, else None.
        depth: [H, W, 1] float32 ground-truth camera-space z of the surface seen
            through the pixel centre (0 where the ray hits nothing), when known.
        normal: [H, W, 3] float32 ground-truth world-space unit normals (0 where
            the ray hits nothing), when known.
    """

    name: str
    viewmat: np.ndarray
    K: np.ndarray
    width: int
    height: int
    image: np.ndarray
    alpha: Optional[np.ndarray] = None
    depth: Optional[np.ndarray] = None
    normal: Optional[np.ndarray] = None

    @property
    def camera_center(self) -> np.ndarray:
        """[3] float32 camera centre in world coordinates, ``-R^T t``."""
        return camera_center(self.viewmat)


@dataclass(eq=False)
class SceneData:
    """A dataset split into training and test views, with initial points.

    Attributes:
        train: the training cameras.
        test: the test cameras (may be empty).
        points: [P, 3] float32 initial points (COLMAP points3D, or random
            points for NeRF-synthetic data).
        point_colors: [P, 3] float32 in [0, 1].
        scene_extent: 3DGS ``cameras_extent``: 1.1 times the largest distance
            of a training camera centre from their mean. Densification
            thresholds are relative to it.
        background: [3] float32 colour that alpha was composited over.
    """

    train: list
    test: list
    points: np.ndarray
    point_colors: np.ndarray
    scene_extent: float
    background: np.ndarray


def scene_extent(cameras: Sequence[Camera]) -> float:
    """3DGS ``getNerfppNorm`` radius: 1.1 * max distance of the camera centres from their
    mean (1.0 for a single camera, whose distance zero would make every extent-relative
    threshold zero)."""
    return radius_around_mean([cam.camera_center.astype(np.float64) for cam in cameras])


def check_downscale(downscale) -> int:
    """Return ``downscale`` as an int >= 1 or raise ValueError."""
    if isinstance(downscale, bool) or not isinstance(downscale, (int, np.integer)) or downscale < 1:
        raise ValueError(f"downscale must be an integer >= 1, got {downscale!r}")
    return int(downscale)


def check_background(background) -> np.ndarray:
    """Return ``background`` as a [3] float32 array or raise ValueError."""
    array = np.asarray(background, dtype=np.float32)
    if array.shape != (3,) or not np.all(np.isfinite(array)):
        raise ValueError(f"background must be 3 finite numbers (RGB in [0, 1]), got {background!r}")
    return array


def split_indices(count: int, test_every: int) -> Tuple[list, list]:
    """(train, test) index lists: index % test_every == 0 is test (LLFF
    "llffhold"); test_every == 0 puts everything in train."""
    if isinstance(test_every, bool) or not isinstance(test_every, (int, np.integer)) or test_every < 0:
        raise ValueError(f"test_every must be an integer >= 0, got {test_every!r}")
    if test_every == 0:
        return list(range(count)), []
    test = [index for index in range(count) if index % test_every == 0]
    train = [index for index in range(count) if index % test_every != 0]
    return train, test


def random_points(count: int, half_extent: float, center, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """``count`` points uniform in a cube and random colours, as 3DGS does for
    scenes without a point cloud. Returns ([P, 3], [P, 3]) float32."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(-half_extent, half_extent, size=(count, 3)) + np.asarray(center)
    colors = rng.uniform(0.0, 1.0, size=(count, 3))
    return points.astype(np.float32), colors.astype(np.float32)
