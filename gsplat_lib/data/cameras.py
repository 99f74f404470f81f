"""Camera and scene containers shared by every dataset reader, plus the
image helpers (read, write, downscale) the readers have in common.

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

__all__ = [
    "Camera",
    "SceneData",
    "scene_extent",
    "downscale_image",
    "split_indices",
    "random_points",
    "load_ground_truth",
    "downscale_intrinsics",
    "read_image",
    "write_image",
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
        width, height: image size in pixels.
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
        rotation = self.viewmat[:3, :3].astype(np.float64)
        translation = self.viewmat[:3, 3].astype(np.float64)
        return (-rotation.T @ translation).astype(np.float32)


@dataclass(eq=False)
class SceneData:
    """A dataset split into training and test views, with initial points.

    Attributes:
        train, test: the cameras of each split (``test`` may be empty).
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
    """3DGS ``getNerfppNorm`` radius: 1.1 * max distance of the camera centres
    from their mean.

    With a single camera that distance is zero, which would make every
    extent-relative threshold zero; 1.0 is returned instead.
    """
    if len(cameras) == 0:
        return 1.0
    centers = np.stack([cam.camera_center.astype(np.float64) for cam in cameras])
    radius = 1.1 * float(np.linalg.norm(centers - centers.mean(axis=0), axis=1).max())
    return radius if radius > 0.0 else 1.0


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


def downscale_image(image: np.ndarray, factor: int) -> np.ndarray:
    """Box-filter (area average) an [H, W, C] image by an integer factor.

    The output is [H // factor, W // factor, C]: the bottom and right
    remainders are cropped, so output pixel (i, j) is exactly the average of
    input pixels [i*s, i*s + s) x [j*s, j*s + s) and the pixel-centre
    convention maps continuous coordinates by u' = u / s
    (see :func:`downscale_intrinsics`).
    """
    if factor == 1:
        return image
    height, width = image.shape[0] // factor, image.shape[1] // factor
    cropped = image[: height * factor, : width * factor]
    blocks = cropped.reshape(height, factor, width, factor, image.shape[2])
    return blocks.mean(axis=(1, 3), dtype=np.float64).astype(np.float32)


def downscale_intrinsics(K: np.ndarray, factor: float) -> np.ndarray:
    """[3, 3] intrinsics of an image downscaled by ``factor``: fx, fy, cx, cy
    divided by ``factor``.

    With pixel centres at i + 0.5, a point at continuous coordinate u in the
    full image lands at u / s in the image box-filtered by s, so the whole
    first two rows scale (no half-pixel shift).
    """
    scaled = np.array(K, dtype=np.float64)
    scaled[:2] /= factor
    return scaled.astype(np.float32)


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


def load_ground_truth(folder: Path, name: str, height: int, width: int):
    """(depth [H, W, 1], normal [H, W, 3]) from ``folder/gt/<stem>_depth.npy``
    and ``..._normal.npy`` when present with a matching size, else None.

    Only the synthetic scene writes these; they are not resampled, so a
    downscaled load without a matching ground truth gets None.
    """
    stem = Path(name).stem
    arrays = []
    for suffix, channels in (("_depth.npy", 1), ("_normal.npy", 3)):
        path = folder / "gt" / (stem + suffix)
        array = np.load(path).astype(np.float32) if path.is_file() else None
        if array is not None and array.shape != (height, width, channels):
            array = None
        arrays.append(array)
    return tuple(arrays)


def read_image(
    path: PathLike, background: Sequence[float] = (0.0, 0.0, 0.0)
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Read an image file as float32 RGB in [0, 1].

    Greyscale is replicated to three channels. An alpha channel is composited
    over ``background`` (straight, non-premultiplied alpha as PNG stores it).

    Returns:
        (image [H, W, 3] float32, alpha [H, W, 1] float32 or None)

    Raises:
        FileNotFoundError: the file does not exist (message names it).
        ValueError: the file cannot be decoded as an image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as pil_image:
            pil_image.load()
            pixels, max_value = _pil_to_array(pil_image)
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from error

    pixels = pixels.astype(np.float32) / np.float32(max_value)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    channels = pixels.shape[2]
    if channels in (2, 4):
        color, alpha = pixels[:, :, :-1], pixels[:, :, -1:]
    else:
        color, alpha = pixels, None
    if color.shape[2] == 1:
        color = np.repeat(color, 3, axis=2)
    if alpha is not None:
        bg = np.asarray(background, dtype=np.float32).reshape(1, 1, 3)
        color = color * alpha + bg * (1.0 - alpha)
    return np.ascontiguousarray(color, dtype=np.float32), alpha


def _pil_to_array(pil_image) -> Tuple[np.ndarray, float]:
    """Pixels of a PIL image and the value that means 1.0.

    Palette and other exotic modes are converted to RGB(A); 16-bit greyscale
    keeps its precision.
    """
    mode = pil_image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(pil_image), 255.0
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # PIL stores 16-bit PNG greyscale as I;16 or I (int32).
        return np.asarray(pil_image).astype(np.float64), 65535.0
    if mode == "F":
        return np.asarray(pil_image), 1.0
    has_alpha = "A" in mode or "transparency" in pil_image.info
    return np.asarray(pil_image.convert("RGBA" if has_alpha else "RGB")), 255.0


def write_image(path: PathLike, image: np.ndarray, alpha: Optional[np.ndarray] = None) -> None:
    """Write an [H, W, 3] float image in [0, 1] as an 8-bit PNG (RGBA when
    ``alpha`` [H, W, 1] is given). Values are clipped and rounded."""
    from PIL import Image

    pixels = np.asarray(image, dtype=np.float32)
    if alpha is not None:
        pixels = np.concatenate([pixels, np.asarray(alpha, dtype=np.float32)], axis=2)
    quantised = np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(quantised).save(path)
