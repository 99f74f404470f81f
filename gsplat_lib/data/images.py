"""Image files and resampling shared by the dataset readers: read, write, downscale (with
the matching intrinsics), and the ground-truth arrays the synthetic scene writes."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from gsplat_lib.data.scene import PathLike

__all__ = ["downscale_image", "downscale_intrinsics", "load_ground_truth", "read_image", "write_image"]


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
