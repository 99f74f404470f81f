"""COLMAP sparse models: read and write ``cameras``, ``images`` and
``points3D`` in both the binary (``.bin``) and text (``.txt``) formats, and
load a COLMAP dataset folder as a :class:`SceneData`.

A COLMAP dataset folder looks like::

    folder/images/<name>            full-resolution images
    folder/images_<s>/<name>        optional, pre-downscaled by s
    folder/sparse/0/cameras.bin     (or .txt; also accepted: folder/sparse/)
    folder/sparse/0/images.bin
    folder/sparse/0/points3D.bin

COLMAP already uses the OpenCV camera convention and the pixel-centre
convention of gsplat_lib (centre of the top-left pixel at (0.5, 0.5)), and its
``qw qx qy qz tx ty tz`` is the world-to-camera rotation and translation, so
poses and intrinsics carry over unchanged. Only pinhole cameras are rendered:
distorted models are accepted when all their distortion parameters are zero,
and otherwise rejected with a message that says to undistort first.

Format reference: colmap/scripts/python/read_write_model.py.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .images import downscale_image, downscale_intrinsics, load_ground_truth, read_image, write_image
from .scene import Camera, PathLike, SceneData, check_background, check_downscale, random_points, scene_extent, split_indices
from .validation import check_intrinsics, check_points, check_viewmat

__all__ = [
    "CAMERA_MODELS",
    "ColmapCamera",
    "ColmapImage",
    "ColmapModel",
    "find_colmap_sparse_dir",
    "read_colmap_model",
    "write_colmap_model",
    "write_colmap",
    "write_colmap_text",
    "write_colmap_binary",
    "load_colmap",
    "qvec_to_rotmat",
    "rotmat_to_qvec",
]


@dataclass(frozen=True)
class _CameraModel:
    model_id: int
    name: str
    num_params: int
    # 1: params start (f, cx, cy); 2: params start (fx, fy, cx, cy).
    num_focal: int
    # Fisheye models are not pinhole even with zero distortion parameters.
    fisheye: bool


_MODEL_LIST = [
    _CameraModel(0, "SIMPLE_PINHOLE", 3, 1, False),
    _CameraModel(1, "PINHOLE", 4, 2, False),
    _CameraModel(2, "SIMPLE_RADIAL", 4, 1, False),
    _CameraModel(3, "RADIAL", 5, 1, False),
    _CameraModel(4, "OPENCV", 8, 2, False),
    _CameraModel(5, "OPENCV_FISHEYE", 8, 2, True),
    _CameraModel(6, "FULL_OPENCV", 12, 2, False),
    _CameraModel(7, "FOV", 5, 2, False),
    _CameraModel(8, "SIMPLE_RADIAL_FISHEYE", 4, 1, True),
    _CameraModel(9, "RADIAL_FISHEYE", 5, 1, True),
    _CameraModel(10, "THIN_PRISM_FISHEYE", 12, 2, True),
    _CameraModel(11, "RAD_TAN_THIN_PRISM_FISHEYE", 16, 2, True),
]
#: COLMAP camera models by name: model id, parameter count, layout.
CAMERA_MODELS: Dict[str, _CameraModel] = {model.name: model for model in _MODEL_LIST}
_MODELS_BY_ID: Dict[int, _CameraModel] = {model.model_id: model for model in _MODEL_LIST}


@dataclass
class ColmapCamera:
    """One entry of ``cameras.bin/txt``; ``params`` in COLMAP's order."""

    camera_id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # [num_params] float64


@dataclass
class ColmapImage:
    """One entry of ``images.bin/txt`` (2D keypoints are not kept)."""

    image_id: int
    qvec: np.ndarray  # [4] float64 (w, x, y, z), world-to-camera rotation
    tvec: np.ndarray  # [3] float64 world-to-camera translation
    camera_id: int
    name: str


@dataclass
class ColmapModel:
    """A whole sparse model as read from disk."""

    cameras: Dict[int, ColmapCamera]
    images: Dict[int, ColmapImage]
    points: np.ndarray  # [P, 3] float64
    colors: np.ndarray  # [P, 3] uint8
    # Files the model was read from, for error messages.
    cameras_file: Optional[Path] = None
    images_file: Optional[Path] = None
    points_file: Optional[Path] = None


# ---------------------------------------------------------------------------
# Rotations


def qvec_to_rotmat(qvec: np.ndarray) -> np.ndarray:
    """[3, 3] float64 rotation of a (w, x, y, z) quaternion (normalised here)."""
    w, x, y, z = np.asarray(qvec, dtype=np.float64) / np.linalg.norm(qvec)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotmat_to_qvec(rotation: np.ndarray) -> np.ndarray:
    """[4] float64 (w, x, y, z) unit quaternion of a rotation matrix, w >= 0.

    Uses the eigenvector method (as COLMAP's script does), which stays
    accurate for every rotation including 180-degree ones.
    """
    rxx, ryx, rzx, rxy, ryy, rzy, rxz, ryz, rzz = np.asarray(rotation, dtype=np.float64).flat
    symmetric = (
        np.array(
            [
                [rxx - ryy - rzz, 0, 0, 0],
                [ryx + rxy, ryy - rxx - rzz, 0, 0],
                [rzx + rxz, rzy + ryz, rzz - rxx - ryy, 0],
                [ryz - rzy, rzx - rxz, rxy - ryx, rxx + ryy + rzz],
            ]
        )
        / 3.0
    )
    eigenvalues, eigenvectors = np.linalg.eigh(symmetric)
    qvec = eigenvectors[[3, 0, 1, 2], np.argmax(eigenvalues)]
    return -qvec if qvec[0] < 0 else qvec


# ---------------------------------------------------------------------------
# Binary reading with context in every error


class _BinaryReader:
    """Sequential little-endian reader whose errors name the file, the byte
    offset and the field, instead of a bare ``struct.error``."""

    def __init__(self, path: Path):
        self.path = path
        self.data = path.read_bytes()
        self.offset = 0

    def _need(self, size: int, what: str) -> None:
        if self.offset + size > len(self.data):
            raise ValueError(
                f"{self.path}: file is truncated or corrupt: reading {what} needs "
                f"{size} bytes at byte {self.offset}, but the file has {len(self.data)} bytes"
            )

    def read(self, fmt: str, what: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        self._need(size, what)
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += size
        return values

    def read_doubles(self, count: int, what: str) -> np.ndarray:
        self._need(8 * count, what)
        values = np.frombuffer(self.data, dtype="<f8", count=count, offset=self.offset)
        self.offset += 8 * count
        return values.astype(np.float64)

    def skip(self, size: int, what: str) -> None:
        self._need(size, what)
        self.offset += size

    def read_string(self, what: str) -> str:
        end = self.data.find(b"\0", self.offset)
        if end < 0:
            raise ValueError(
                f"{self.path}: file is truncated or corrupt: {what} at byte {self.offset} "
                "has no terminating NUL"
            )
        try:
            text = self.data[self.offset : end].decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{self.path}: {what} at byte {self.offset} is not UTF-8 text") from None
        self.offset = end + 1
        return text

    def check_count(self, count: int, min_record_size: int, what: str) -> None:
        """A corrupt count must not allocate: ``count`` records need at least this many bytes."""
        remaining = len(self.data) - self.offset
        if count * min_record_size > remaining:
            raise ValueError(
                f"{self.path}: file is truncated or corrupt: {what} is {count}, but only "
                f"{remaining} bytes follow (at least {min_record_size} per record)"
            )


def _model_from_id(model_id: int, path: Path, camera_id: int) -> _CameraModel:
    if model_id not in _MODELS_BY_ID:
        raise ValueError(
            f"{path}: camera {camera_id} has unknown COLMAP camera model id {model_id} "
            f"(known ids: 0..{max(_MODELS_BY_ID)})"
        )
    return _MODELS_BY_ID[model_id]


def _read_cameras_binary(path: Path) -> Dict[int, ColmapCamera]:
    reader = _BinaryReader(path)
    (num_cameras,) = reader.read("Q", "the camera count")
    reader.check_count(num_cameras, struct.calcsize("<iiQQ"), "the camera count")
    cameras = {}
    for index in range(num_cameras):
        camera_id, model_id, width, height = reader.read("iiQQ", f"camera #{index}")
        model = _model_from_id(model_id, path, camera_id)
        params = reader.read_doubles(model.num_params, f"the parameters of camera {camera_id}")
        cameras[camera_id] = ColmapCamera(camera_id, model.name, int(width), int(height), params)
    return cameras


def _read_images_binary(path: Path) -> Dict[int, ColmapImage]:
    reader = _BinaryReader(path)
    (num_images,) = reader.read("Q", "the image count")
    # Each image also has a NUL-terminated name and a keypoint count.
    reader.check_count(num_images, struct.calcsize("<idddddddi") + 1 + 8, "the image count")
    images = {}
    for index in range(num_images):
        image_id, qw, qx, qy, qz, tx, ty, tz, camera_id = reader.read("idddddddi", f"image #{index}")
        name = reader.read_string(f"the name of image {image_id}")
        (num_points2d,) = reader.read("Q", f"the keypoint count of image {name}")
        # Each keypoint is (double x, double y, int64 point3D_id).
        reader.check_count(num_points2d, 24, f"the keypoint count of image {name}")
        reader.skip(24 * num_points2d, f"the keypoints of image {name}")
        images[image_id] = ColmapImage(
            image_id, np.array([qw, qx, qy, qz]), np.array([tx, ty, tz]), camera_id, name
        )
    return images


def _read_points3d_binary(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    reader = _BinaryReader(path)
    (num_points,) = reader.read("Q", "the point count")
    reader.check_count(num_points, struct.calcsize("<QdddBBBdQ"), "the point count")
    points = np.empty((num_points, 3), dtype=np.float64)
    colors = np.empty((num_points, 3), dtype=np.uint8)
    for index in range(num_points):
        _, x, y, z, r, g, b, _, track_length = reader.read("QdddBBBdQ", f"point #{index}")
        # Each track element is (int32 image_id, int32 point2D_idx).
        reader.check_count(track_length, 8, f"the track length of point #{index}")
        reader.skip(8 * track_length, f"the track of point #{index}")
        points[index] = (x, y, z)
        colors[index] = (r, g, b)
    return points, colors


def _text_records(path: Path):
    """Yield (line number, fields) for every non-comment, non-empty line."""
    for line_number, line in enumerate(_read_lines(path), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield line_number, line.split()


def _read_lines(path: Path) -> list:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text (byte {error.start})") from None


def _parse_error(path: Path, line_number: int, expected: str, fields) -> ValueError:
    return ValueError(
        f"{path}:{line_number}: malformed line, expected {expected}, got {' '.join(fields)!r}"
    )


def _read_cameras_text(path: Path) -> Dict[int, ColmapCamera]:
    cameras = {}
    for line_number, fields in _text_records(path):
        expected = "CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]"
        if len(fields) < 4:
            raise _parse_error(path, line_number, expected, fields)
        model_name = fields[1]
        try:
            camera_id, width, height = int(fields[0]), int(fields[2]), int(fields[3])
            params = np.array([float(value) for value in fields[4:]], dtype=np.float64)
        except ValueError:
            raise _parse_error(path, line_number, expected, fields) from None
        if model_name not in CAMERA_MODELS:
            raise ValueError(
                f"{path}:{line_number}: camera {camera_id} has unknown COLMAP camera model "
                f"{model_name!r} (known: {', '.join(CAMERA_MODELS)})"
            )
        if len(params) != CAMERA_MODELS[model_name].num_params:
            raise ValueError(
                f"{path}:{line_number}: camera model {model_name} takes "
                f"{CAMERA_MODELS[model_name].num_params} parameters, got {len(params)}"
            )
        cameras[camera_id] = ColmapCamera(camera_id, model_name, width, height, params)
    return cameras


def _read_images_text(path: Path) -> Dict[int, ColmapImage]:
    images = {}
    expected = "IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME"
    lines = _read_lines(path)
    line_index = 0
    while line_index < len(lines):
        line = lines[line_index].strip()
        line_index += 1
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 10:
            raise _parse_error(path, line_index, expected, fields)
        try:
            image_id = int(fields[0])
            qvec = np.array([float(value) for value in fields[1:5]])
            tvec = np.array([float(value) for value in fields[5:8]])
            camera_id = int(fields[8])
        except ValueError:
            raise _parse_error(path, line_index, expected, fields) from None
        images[image_id] = ColmapImage(image_id, qvec, tvec, camera_id, " ".join(fields[9:]))
        # The next line holds the image's keypoints (possibly empty): skip it
        # unread, since an empty keypoint line must not be taken as a comment.
        line_index += 1
    return images


def _read_points3d_text(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    points, colors = [], []
    expected = "POINT3D_ID X Y Z R G B ERROR TRACK[]"
    for line_number, fields in _text_records(path):
        if len(fields) < 8:
            raise _parse_error(path, line_number, expected, fields)
        try:
            points.append([float(value) for value in fields[1:4]])
            colors.append([int(value) for value in fields[4:7]])
        except ValueError:
            raise _parse_error(path, line_number, expected, fields) from None
    return (
        np.array(points, dtype=np.float64).reshape(-1, 3),
        np.array(colors, dtype=np.uint8).reshape(-1, 3),
    )


def _model_file(sparse_dir: Path, stem: str) -> Tuple[Path, bool]:
    """(path, is_binary) of ``stem``.bin or ``stem``.txt; binary wins if both exist."""
    for suffix, binary in ((".bin", True), (".txt", False)):
        candidate = sparse_dir / (stem + suffix)
        if candidate.is_file():
            return candidate, binary
    raise FileNotFoundError(f"COLMAP model file not found: {sparse_dir / stem}.bin (or .txt)")


def find_colmap_sparse_dir(folder: PathLike) -> Optional[Path]:
    """The folder holding ``cameras.bin/txt`` of a COLMAP dataset: ``sparse/0``,
    else ``sparse``, else None."""
    folder = Path(folder)
    for candidate in (folder / "sparse" / "0", folder / "sparse"):
        if (candidate / "cameras.bin").is_file() or (candidate / "cameras.txt").is_file():
            return candidate
    return None


def read_colmap_model(sparse_dir: PathLike) -> ColmapModel:
    """Read ``cameras``, ``images`` and ``points3D`` (binary or text) from a
    sparse model folder.

    Raises:
        FileNotFoundError: a model file is missing.
        ValueError: a file is truncated or malformed, or a camera model is
            unknown; the message names the file.
    """
    sparse_dir = Path(sparse_dir)
    cameras_file, binary = _model_file(sparse_dir, "cameras")
    cameras = _read_cameras_binary(cameras_file) if binary else _read_cameras_text(cameras_file)
    images_file, binary = _model_file(sparse_dir, "images")
    images = _read_images_binary(images_file) if binary else _read_images_text(images_file)
    points_file, binary = _model_file(sparse_dir, "points3D")
    points, colors = _read_points3d_binary(points_file) if binary else _read_points3d_text(points_file)
    return ColmapModel(cameras, images, points, colors, cameras_file, images_file, points_file)


# ---------------------------------------------------------------------------
# Writing


def write_colmap_model(
    sparse_dir: PathLike,
    cameras: Sequence[ColmapCamera],
    images: Sequence[ColmapImage],
    points: np.ndarray,
    colors: np.ndarray,
    *,
    binary: bool = False,
) -> Path:
    """Write a sparse model (``cameras``, ``images``, ``points3D``) to
    ``sparse_dir``, in COLMAP's binary or text format.

    Args:
        points: [P, 3] point positions.
        colors: [P, 3] uint8, or float in [0, 1] (rounded to 8 bits).

    Images are written without keypoints and points without tracks: enough
    for every reader of camera poses and initial points.
    """
    sparse_dir = Path(sparse_dir)
    sparse_dir.mkdir(parents=True, exist_ok=True)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    colors = np.asarray(colors)
    if colors.dtype != np.uint8:
        colors = np.round(np.clip(colors, 0.0, 1.0) * 255.0).astype(np.uint8)
    colors = colors.reshape(-1, 3)
    if len(colors) != len(points):
        raise ValueError(f"colors has {len(colors)} rows but points has {len(points)}")
    for camera in cameras:
        if camera.model not in CAMERA_MODELS:
            raise ValueError(f"unknown COLMAP camera model {camera.model!r}")
    if binary:
        _write_binary(sparse_dir, cameras, images, points, colors)
    else:
        _write_text(sparse_dir, cameras, images, points, colors)
    return sparse_dir


def _write_binary(sparse_dir, cameras, images, points, colors) -> None:
    with open(sparse_dir / "cameras.bin", "wb") as file:
        file.write(struct.pack("<Q", len(cameras)))
        for camera in cameras:
            model = CAMERA_MODELS[camera.model]
            file.write(struct.pack("<iiQQ", camera.camera_id, model.model_id, camera.width, camera.height))
            file.write(np.asarray(camera.params, dtype="<f8").tobytes())
    with open(sparse_dir / "images.bin", "wb") as file:
        file.write(struct.pack("<Q", len(images)))
        for image in images:
            file.write(struct.pack("<i4d3di", image.image_id, *image.qvec, *image.tvec, image.camera_id))
            file.write(image.name.encode("utf-8") + b"\0")
            file.write(struct.pack("<Q", 0))
    with open(sparse_dir / "points3D.bin", "wb") as file:
        file.write(struct.pack("<Q", len(points)))
        for index, (point, color) in enumerate(zip(points, colors)):
            file.write(struct.pack("<Q3d3BdQ", index + 1, *point, *color, 0.0, 0))


def _write_text(sparse_dir, cameras, images, points, colors) -> None:
    with open(sparse_dir / "cameras.txt", "w", encoding="utf-8") as file:
        file.write("# Camera list with one line of data per camera:\n")
        file.write("#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n")
        file.write(f"# Number of cameras: {len(cameras)}\n")
        for camera in cameras:
            params = " ".join(repr(float(value)) for value in camera.params)
            file.write(f"{camera.camera_id} {camera.model} {camera.width} {camera.height} {params}\n")
    with open(sparse_dir / "images.txt", "w", encoding="utf-8") as file:
        file.write("# Image list with two lines of data per image:\n")
        file.write("#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n")
        file.write("#   POINTS2D[] as (X, Y, POINT3D_ID)\n")
        file.write(f"# Number of images: {len(images)}\n")
        for image in images:
            pose = " ".join(repr(float(value)) for value in (*image.qvec, *image.tvec))
            file.write(f"{image.image_id} {pose} {image.camera_id} {image.name}\n\n")
    with open(sparse_dir / "points3D.txt", "w", encoding="utf-8") as file:
        file.write("# 3D point list with one line of data per point:\n")
        file.write("#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n")
        file.write(f"# Number of points: {len(points)}\n")
        for index, (point, color) in enumerate(zip(points, colors)):
            xyz = " ".join(repr(float(value)) for value in point)
            file.write(f"{index + 1} {xyz} {color[0]} {color[1]} {color[2]} 0.0\n")


def write_colmap(
    folder: PathLike,
    cameras: Sequence[Camera],
    points: np.ndarray,
    colors: np.ndarray,
    *,
    binary: bool = False,
    write_images: bool = True,
) -> Path:
    """Write cameras as a COLMAP dataset: ``images/<name>`` (PNG) and a
    PINHOLE sparse model in ``sparse/0``.

    Cameras with identical intrinsics and size share one COLMAP camera, as in
    a real reconstruction. Returns ``folder``.

    Args:
        cameras: posed views; each ``image`` is written to ``images/<name>``.
        points: [P, 3] initial points; colors: [P, 3] in [0, 1] or uint8.
    """
    folder = Path(folder)
    colmap_cameras, colmap_images, intrinsics_ids = [], [], {}
    for image_id, camera in enumerate(cameras, start=1):
        K = np.asarray(camera.K, dtype=np.float64)
        params = (K[0, 0], K[1, 1], K[0, 2], K[1, 2])
        key = (params, camera.width, camera.height)
        if key not in intrinsics_ids:
            intrinsics_ids[key] = len(intrinsics_ids) + 1
            colmap_cameras.append(
                ColmapCamera(intrinsics_ids[key], "PINHOLE", camera.width, camera.height, np.array(params))
            )
        viewmat = np.asarray(camera.viewmat, dtype=np.float64)
        colmap_images.append(
            ColmapImage(
                image_id, rotmat_to_qvec(viewmat[:3, :3]), viewmat[:3, 3].copy(), intrinsics_ids[key], camera.name
            )
        )
        if write_images:
            write_image(folder / "images" / camera.name, camera.image)
    write_colmap_model(folder / "sparse" / "0", colmap_cameras, colmap_images, points, colors, binary=binary)
    return folder


def write_colmap_text(folder: PathLike, cameras: Sequence[Camera], points, colors, **kwargs) -> Path:
    """:func:`write_colmap` with a text model."""
    return write_colmap(folder, cameras, points, colors, binary=False, **kwargs)


def write_colmap_binary(folder: PathLike, cameras: Sequence[Camera], points, colors, **kwargs) -> Path:
    """:func:`write_colmap` with a binary model."""
    return write_colmap(folder, cameras, points, colors, binary=True, **kwargs)


# ---------------------------------------------------------------------------
# Loading a dataset


def intrinsics_from_colmap(camera: ColmapCamera, source: Optional[Path] = None) -> np.ndarray:
    """[3, 3] float64 pinhole K of a COLMAP camera.

    Raises:
        ValueError: fisheye model, or a distorted model with non-zero
            distortion parameters: the images must be undistorted first.
    """
    model = CAMERA_MODELS[camera.model]
    params = np.asarray(camera.params, dtype=np.float64)
    where = f"{source}: " if source is not None else ""
    undistort_hint = (
        "gsplat_lib renders pinhole cameras only; undistort the images first with "
        "`colmap image_undistorter --image_path IMAGES --input_path SPARSE --output_path OUT "
        "--output_type COLMAP` and load OUT"
    )
    if model.fisheye:
        raise ValueError(f"{where}camera {camera.camera_id} uses the fisheye model {model.name}; {undistort_hint}")
    if model.num_focal == 1:
        fx = fy = params[0]
        cx, cy = params[1], params[2]
        distortion = params[3:]
    else:
        fx, fy, cx, cy = params[:4]
        distortion = params[4:]
    if np.any(distortion != 0.0):
        raise ValueError(
            f"{where}camera {camera.camera_id} uses the distorted model {model.name} with non-zero "
            f"distortion parameters {distortion.tolist()}; {undistort_hint}"
        )
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    check_intrinsics(K, f"{where}camera {camera.camera_id}")
    return K


def _viewmat(image: ColmapImage, source: Optional[Path]) -> np.ndarray:
    where = f"{source}: image {image.name}"
    qvec = np.asarray(image.qvec, dtype=np.float64)
    if not np.all(np.isfinite(qvec)) or not np.linalg.norm(qvec) > 0:
        raise ValueError(f"{where}: the rotation quaternion {qvec.tolist()} is zero or not finite")
    viewmat = np.eye(4)
    viewmat[:3, :3] = qvec_to_rotmat(qvec)
    viewmat[:3, 3] = image.tvec
    check_viewmat(viewmat, where)
    return viewmat


def load_colmap(
    folder: PathLike,
    *,
    downscale: int = 1,
    test_every: int = 8,
    background=(0.0, 0.0, 0.0),
    num_random_points: int = 100_000,
    seed: int = 0,
) -> SceneData:
    """Load a COLMAP dataset folder (see the module docstring).

    Images are sorted by name and every ``test_every``-th one (index 0, 8,
    16, ...) goes to the test split. With ``downscale`` = s > 1 the images come
    from ``images_<s>/`` when it exists (K scaled by the actual size ratio),
    else they are box-filtered from ``images/`` (K divided by s, sizes
    floor(w / s) x floor(h / s)). A model without points gets
    ``num_random_points`` random points around the cameras.

    Raises:
        ValueError: no sparse model, empty model, distorted camera, image size
            not matching its camera, malformed model files.
        FileNotFoundError: an image file is missing.
    """
    folder = Path(folder)
    downscale = check_downscale(downscale)
    sparse_dir = find_colmap_sparse_dir(folder)
    if sparse_dir is None:
        raise ValueError(
            f"{folder}: no COLMAP model found (looked for sparse/0/cameras.bin|txt and sparse/cameras.bin|txt)"
        )
    model = read_colmap_model(sparse_dir)
    if not model.images:
        raise ValueError(f"{model.images_file}: the COLMAP model has no images")
    background = check_background(background)

    prescaled_dir = folder / f"images_{downscale}"
    use_prescaled = downscale > 1 and prescaled_dir.is_dir()
    image_dir = prescaled_dir if use_prescaled else folder / "images"

    cameras = []
    for colmap_image in sorted(model.images.values(), key=lambda image: image.name):
        if colmap_image.camera_id not in model.cameras:
            raise ValueError(
                f"{model.images_file}: image {colmap_image.name} refers to camera "
                f"{colmap_image.camera_id}, which {model.cameras_file} does not define"
            )
        colmap_camera = model.cameras[colmap_image.camera_id]
        K = intrinsics_from_colmap(colmap_camera, model.cameras_file)
        image_path = image_dir / colmap_image.name
        pixels, alpha = read_image(image_path, background)
        height, width = pixels.shape[:2]
        if use_prescaled:
            # Resizing tools round w / s either way; accept both and scale K by
            # the exact ratio they resized by.
            expected_w, expected_h = colmap_camera.width / downscale, colmap_camera.height / downscale
            if abs(width - expected_w) >= 1.0 or abs(height - expected_h) >= 1.0:
                raise ValueError(
                    f"{image_path}: image is {width}x{height}, but its camera {colmap_camera.camera_id} "
                    f"is {colmap_camera.width}x{colmap_camera.height}, i.e. about "
                    f"{expected_w:g}x{expected_h:g} in {prescaled_dir.name}/"
                )
            K[0] *= width / colmap_camera.width
            K[1] *= height / colmap_camera.height
        else:
            if (width, height) != (colmap_camera.width, colmap_camera.height):
                raise ValueError(
                    f"{image_path}: image is {width}x{height}, but its camera {colmap_camera.camera_id} "
                    f"is {colmap_camera.width}x{colmap_camera.height}"
                )
            pixels = downscale_image(pixels, downscale)
            alpha = downscale_image(alpha, downscale) if alpha is not None else None
            K = downscale_intrinsics(K, downscale)
            height, width = pixels.shape[:2]
        depth, normal = load_ground_truth(folder, colmap_image.name, height, width)
        cameras.append(
            Camera(
                name=colmap_image.name,
                viewmat=_viewmat(colmap_image, model.images_file).astype(np.float32),
                K=np.asarray(K, dtype=np.float32),
                width=int(width),
                height=int(height),
                image=pixels,
                alpha=alpha,
                depth=depth,
                normal=normal,
            )
        )

    train_ids, test_ids = split_indices(len(cameras), test_every)
    train = [cameras[index] for index in train_ids]
    test = [cameras[index] for index in test_ids]
    extent = scene_extent(train if train else cameras)
    if len(model.points) > 0:
        check_points(model.points, str(model.points_file))
        points = model.points.astype(np.float32)
        point_colors = model.colors.astype(np.float32) / 255.0
    else:
        centers = np.stack([camera.camera_center for camera in cameras])
        points, point_colors = random_points(num_random_points, extent, centers.mean(axis=0), seed)
    return SceneData(train, test, points, point_colors, extent, background)
