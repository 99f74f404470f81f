"""NeRF-synthetic (Blender) datasets: ``transforms_{train,val,test}.json``
plus images, read into :class:`SceneData` and written from cameras.

Each JSON holds ``camera_angle_x`` (horizontal field of view, radians) and
``frames``, each with a ``file_path`` (relative, often without extension) and
a ``transform_matrix``: the camera-to-world matrix in the OpenGL/Blender
camera convention (x right, y up, z backward). Instant-NGP style keys
``fl_x``, ``fl_y``, ``cx``, ``cy``, ``w``, ``h`` are honoured at the top level
and per frame when present.

The OpenCV camera (x right, y down, z forward) is the Blender camera with its
y and z axes flipped, so ``c2w_opencv = c2w_blender @ diag(1, -1, -1, 1)``
and ``viewmat = inverse(c2w_opencv)``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .images import downscale_image, downscale_intrinsics, load_ground_truth, read_image, write_image
from .scene import Camera, PathLike, SceneData, check_background, check_downscale, random_points, scene_extent, split_indices
from .validation import check_intrinsics, check_viewmat

__all__ = [
    "BLENDER_TO_OPENCV",
    "load_nerf_synthetic",
    "write_nerf_synthetic",
    "is_nerf_synthetic_dir",
]

#: Right-multiplying a camera-to-world matrix by this flips the camera's y and
#: z axes: Blender/OpenGL camera <-> OpenCV camera (it is its own inverse).
BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])

#: 3DGS initialises Blender scenes with random points in this cube ([-1.3, 1.3]^3).
RANDOM_POINTS_HALF_EXTENT = 1.3

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


def is_nerf_synthetic_dir(folder: PathLike) -> bool:
    """Whether ``folder`` holds ``transforms_train.json`` or ``transforms.json``."""
    folder = Path(folder)
    return (folder / "transforms_train.json").is_file() or (folder / "transforms.json").is_file()


def _resolve_image_path(folder: Path, file_path: str, json_path: Path) -> Path:
    path = folder / file_path
    if path.suffix and path.is_file():
        return path
    for extension in _IMAGE_EXTENSIONS:
        candidate = path.with_name(path.name + extension)
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"image file not found: {path} (from {json_path}; also tried the extensions "
        f"{', '.join(_IMAGE_EXTENSIONS[:3])})"
    )


def _number(value: object, what: str) -> float:
    """``value`` as a finite float, else a ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _intrinsics(meta: dict, frame: dict, width: int, height: int, where: str) -> np.ndarray:
    """[3, 3] float64 K of one frame; per-frame keys override the top level."""

    def key(name):
        return frame.get(name, meta.get(name))

    def focal_from_angle(name: str, size: int) -> float:
        angle = _number(key(name), f"{where}: {name}")
        if not 0.0 < angle < math.pi:
            raise ValueError(f"{where}: {name} must be a field of view in (0, pi) radians, got {angle}")
        return 0.5 * size / math.tan(0.5 * angle)

    if key("fl_x") is not None:
        fl_x = _number(key("fl_x"), f"{where}: fl_x")
    elif key("camera_angle_x") is not None:
        fl_x = focal_from_angle("camera_angle_x", width)
    else:
        raise ValueError(f"{where}: needs camera_angle_x or fl_x to define the focal length")
    if key("fl_y") is not None:
        fl_y = _number(key("fl_y"), f"{where}: fl_y")
    elif key("camera_angle_y") is not None:
        fl_y = focal_from_angle("camera_angle_y", height)
    else:
        fl_y = fl_x
    cx = 0.5 * width if key("cx") is None else _number(key("cx"), f"{where}: cx")
    cy = 0.5 * height if key("cy") is None else _number(key("cy"), f"{where}: cy")
    K = np.array([[fl_x, 0.0, cx], [0.0, fl_y, cy], [0.0, 0.0, 1.0]])
    check_intrinsics(K, where)
    return K


def _camera_to_world(frame: dict, where: str) -> np.ndarray:
    """The frame's ``transform_matrix`` as a [4, 4] float64 rigid transform, or a ValueError."""
    try:
        c2w = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: transform_matrix must be a 4x4 (or 3x4) array of numbers") from None
    if c2w.shape == (3, 4):
        c2w = np.vstack([c2w, [0.0, 0.0, 0.0, 1.0]])
    if c2w.shape != (4, 4):
        raise ValueError(f"{where}: transform_matrix must be 4x4, got {c2w.shape}")
    check_viewmat(c2w, f"{where}: transform_matrix")
    return c2w


def _load_split(
    folder: Path, json_path: Path, downscale: int, background: np.ndarray
) -> list:
    with open(json_path, "r", encoding="utf-8") as file:
        try:
            meta = json.load(file)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{json_path}: not valid JSON: {error}") from error
    if not isinstance(meta, dict):
        raise ValueError(f"{json_path}: must hold a JSON object with 'frames', got a {type(meta).__name__}")
    frames = meta.get("frames")
    if not isinstance(frames, list):
        raise ValueError(f"{json_path}: has no 'frames' list")
    cameras = []
    for index, frame in enumerate(frames):
        where = f"{json_path}: frame {index}"
        if not isinstance(frame, dict):
            raise ValueError(f"{where} must be a JSON object, got {frame!r}")
        if "file_path" not in frame or "transform_matrix" not in frame:
            raise ValueError(f"{where} needs 'file_path' and 'transform_matrix'")
        if not isinstance(frame["file_path"], str):
            raise ValueError(f"{where}: file_path must be a string, got {frame['file_path']!r}")
        c2w_blender = _camera_to_world(frame, where)
        image_path = _resolve_image_path(folder, frame["file_path"], json_path)
        pixels, alpha = read_image(image_path, background)
        height, width = pixels.shape[:2]
        declared = (frame.get("w", meta.get("w")), frame.get("h", meta.get("h")))
        if declared[0] is not None and declared[1] is not None:
            declared = (_number(declared[0], f"{where}: w"), _number(declared[1], f"{where}: h"))
            if declared != (width, height):
                raise ValueError(
                    f"{image_path}: image is {width}x{height}, but {json_path} declares "
                    f"{declared[0]:g}x{declared[1]:g}"
                )
        K = _intrinsics(meta, frame, width, height, where)
        viewmat = np.linalg.inv(c2w_blender @ BLENDER_TO_OPENCV)

        pixels = downscale_image(pixels, downscale)
        alpha = downscale_image(alpha, downscale) if alpha is not None else None
        K = downscale_intrinsics(K, downscale)
        height, width = pixels.shape[:2]
        # Name relative to the dataset folder, without "./", e.g. "train/r_0.png".
        name = image_path.relative_to(folder).as_posix()
        depth, normal = load_ground_truth(folder, name, height, width)
        cameras.append(
            Camera(
                name=name,
                viewmat=viewmat.astype(np.float32),
                K=K.astype(np.float32),
                width=int(width),
                height=int(height),
                image=pixels,
                alpha=alpha,
                depth=depth,
                normal=normal,
            )
        )
    return cameras


def load_nerf_synthetic(
    folder: PathLike,
    *,
    downscale: int = 1,
    test_every: int = 8,
    background=(0.0, 0.0, 0.0),
    num_random_points: int = 100_000,
    seed: int = 0,
) -> SceneData:
    """Load a NeRF-synthetic folder.

    The test split is ``transforms_test.json`` when present, else every
    ``test_every``-th frame of the training JSON (index 0, 8, ...; JSON order).
    ``transforms_val.json`` is not used. A folder with only
    ``transforms.json`` (Instant-NGP layout) is split by the same rule. RGBA
    images are composited over ``background`` and keep their alpha. The
    initial points are ``num_random_points`` uniform in [-1.3, 1.3]^3 with
    random colours (3DGS's initialisation for Blender scenes).

    Raises:
        ValueError: no transforms JSON, malformed JSON, empty training split.
        FileNotFoundError: an image file is missing.
    """
    folder = Path(folder)
    downscale = check_downscale(downscale)
    background = check_background(background)
    train_json = folder / "transforms_train.json"
    if not train_json.is_file():
        train_json = folder / "transforms.json"
    if not train_json.is_file():
        raise ValueError(f"{folder}: no transforms_train.json or transforms.json found")
    cameras = _load_split(folder, train_json, downscale, background)
    if not cameras:
        raise ValueError(f"{train_json}: has no frames")
    test_json = folder / "transforms_test.json"
    if train_json.name == "transforms_train.json" and test_json.is_file():
        train, test = cameras, _load_split(folder, test_json, downscale, background)
    else:
        train_ids, test_ids = split_indices(len(cameras), test_every)
        train = [cameras[index] for index in train_ids]
        test = [cameras[index] for index in test_ids]
    points, point_colors = random_points(num_random_points, RANDOM_POINTS_HALF_EXTENT, np.zeros(3), seed)
    return SceneData(train, test, points, point_colors, scene_extent(train if train else cameras), background)


def _frame_entry(camera: Camera, reference_K: np.ndarray, file_path: str) -> dict:
    c2w_blender = np.linalg.inv(np.asarray(camera.viewmat, dtype=np.float64)) @ BLENDER_TO_OPENCV
    entry = {"file_path": file_path, "transform_matrix": c2w_blender.tolist()}
    K = np.asarray(camera.K, dtype=np.float64)
    if not np.array_equal(K, reference_K):
        entry.update(fl_x=K[0, 0], fl_y=K[1, 1], cx=K[0, 2], cy=K[1, 2])
    entry.update(w=int(camera.width), h=int(camera.height))
    return entry


def write_nerf_synthetic(
    folder: PathLike,
    train: Sequence[Camera],
    test: Sequence[Camera] = (),
    *,
    background=(0.0, 0.0, 0.0),
) -> Path:
    """Write cameras as a NeRF-synthetic dataset: ``train/<stem>.png``,
    ``test/<stem>.png``, ``transforms_train.json`` and, when ``test`` is not
    empty, ``transforms_test.json``. Returns ``folder``.

    A camera with ``alpha`` is written as RGBA with straight colour
    ``(image - (1 - alpha) * background) / alpha`` so that compositing over
    ``background`` on load gives ``image`` back (up to 8-bit rounding).
    ``file_path`` entries have no extension, like the Blender scenes.
    Intrinsics go to the top level (``camera_angle_x`` plus ``fl_x`` ...);
    frames whose K differs get per-frame keys.
    """
    folder = Path(folder)
    background = np.asarray(background, dtype=np.float32).reshape(1, 1, 3)
    reference = train[0] if train else (test[0] if test else None)
    if reference is None:
        raise ValueError("write_nerf_synthetic needs at least one camera")
    reference_K = np.asarray(reference.K, dtype=np.float64)
    for split, cameras in (("train", train), ("test", test)):
        if split == "test" and not cameras:
            continue
        frames = []
        for camera in cameras:
            stem = Path(camera.name).stem
            if camera.alpha is not None:
                alpha = np.asarray(camera.alpha, dtype=np.float32)
                with np.errstate(divide="ignore", invalid="ignore"):
                    straight = (camera.image - (1.0 - alpha) * background) / alpha
                straight = np.where(alpha > 0.0, straight, 0.0)
                write_image(folder / split / f"{stem}.png", straight, alpha)
            else:
                write_image(folder / split / f"{stem}.png", camera.image)
            frames.append(_frame_entry(camera, reference_K, f"./{split}/{stem}"))
        meta = {
            "camera_angle_x": 2.0 * math.atan(0.5 * reference.width / float(reference_K[0, 0])),
            "fl_x": reference_K[0, 0],
            "fl_y": reference_K[1, 1],
            "cx": reference_K[0, 2],
            "cy": reference_K[1, 2],
            "frames": frames,
        }
        with open(folder / f"transforms_{split}.json", "w", encoding="utf-8") as file:
            json.dump(meta, file, indent=2)
    return folder
