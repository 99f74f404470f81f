"""PNG renders of a view: RGB, depth through a turbo colour map, normals as colours.

Arrays are numpy float32 ``[H, W, ...]``; files are 8-bit PNGs written by
:func:`gsplat_lib.data.write_image`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

from gsplat_lib.data import write_image

__all__ = ["turbo_colormap", "colorize_depth", "colorize_normals", "write_rgb", "write_depth", "write_normals"]

PathLike = Union[str, Path]

# Polynomial fit of Google's Turbo colour map (Anton Mikhailov, 2019; the fit by Ruofei Du):
# each channel is a degree-5 polynomial of t in [0, 1], coefficients of t^0 .. t^5.
_TURBO_COEFFICIENTS = np.array(
    [
        [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
        [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
        [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
    ],
    dtype=np.float64,
)


def turbo_colormap(values: np.ndarray) -> np.ndarray:
    """``[...]`` values in [0, 1] (clipped) to ``[..., 3]`` float32 RGB: dark blue (0) to dark red (1)."""
    t = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    powers = np.stack([t**k for k in range(6)], axis=-1)
    return np.clip(powers @ _TURBO_COEFFICIENTS.T, 0.0, 1.0).astype(np.float32)


def colorize_depth(
    depth: np.ndarray,
    mask: Optional[np.ndarray] = None,
    value_range: Optional[Tuple[float, float]] = None,
) -> np.ndarray:
    """``[H, W, 1]`` depth to ``[H, W, 3]`` turbo colours, near red, far blue, black outside ``mask``.

    Args:
        depth: camera-space depth.
        mask: ``[H, W, 1]`` bool, the pixels to colour (default: depth > 0).
        value_range: (near, far) mapped to the ends of the map; default: the 2nd and 98th
            percentiles of the masked depths, so that a few outliers do not flatten the image.
    """
    depth = np.asarray(depth, dtype=np.float32)[..., 0]
    mask = (depth > 0) if mask is None else np.asarray(mask, dtype=bool)[..., 0]
    image = np.zeros(depth.shape + (3,), dtype=np.float32)
    if not mask.any():
        return image
    if value_range is None:
        low, high = np.percentile(depth[mask], [2.0, 98.0])
    else:
        low, high = value_range
    scale = max(float(high - low), 1e-8)
    closeness = np.clip(1.0 - (depth[mask] - low) / scale, 0.0, 1.0)
    # The map's two dark ends are left out so that far never looks like the black background.
    image[mask] = turbo_colormap(0.1 + 0.8 * closeness)
    return image


def colorize_normals(normals: np.ndarray, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """``[H, W, 3]`` normals (any length) to colours ``0.5 n / |n| + 0.5``, black outside ``mask`` [H, W, 1]."""
    normals = np.asarray(normals, dtype=np.float32)
    length = np.linalg.norm(normals, axis=-1, keepdims=True)
    unit = normals / np.maximum(length, 1e-8)
    image = 0.5 * unit + 0.5
    keep = length > 0 if mask is None else (np.asarray(mask, dtype=bool) & (length > 0))
    return np.where(keep, image, 0.0).astype(np.float32)


def write_rgb(path: PathLike, image: np.ndarray) -> None:
    """``[H, W, 3]`` colours in [0, 1] (clipped) as a PNG."""
    write_image(path, np.asarray(image, dtype=np.float32))


def write_depth(path: PathLike, depth: np.ndarray, alpha: np.ndarray, value_range=None) -> None:
    """``[H, W, 1]`` depth as a turbo PNG, coloured where ``alpha`` ``[H, W, 1]`` exceeds 0.5."""
    write_image(path, colorize_depth(depth, np.asarray(alpha) > 0.5, value_range))


def write_normals(path: PathLike, normals: np.ndarray, alpha: np.ndarray) -> None:
    """``[H, W, 3]`` normals as a PNG, coloured where ``alpha`` ``[H, W, 1]`` exceeds 0.5."""
    write_image(path, colorize_normals(normals, np.asarray(alpha) > 0.5))
