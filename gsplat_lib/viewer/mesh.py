"""A triangle mesh with vertex colours, read from a PLY file (the mesh stage's ``mesh/mesh.ply``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

__all__ = ["TriangleMesh", "read_mesh_ply", "MESH_FILE"]

#: Where a run directory keeps its mesh, relative to the run's root.
MESH_FILE = Path("mesh") / "mesh.ply"

_FACE_PROPERTIES = ("vertex_indices", "vertex_index")


@dataclass(eq=False)
class TriangleMesh:
    """Attributes:
    vertices: [V, 3] float32 world positions.
    faces: [F, 3] int64 vertex indices, counter-clockwise seen from the front.
    colors: [V, 3] uint8 vertex colours, or None when the file has none.
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: Optional[np.ndarray] = None


def read_mesh_ply(path: Union[str, os.PathLike]) -> TriangleMesh:
    """Reads a PLY mesh: ``vertex`` x, y, z (and red, green, blue as 0-255 integers or 0-1 floats),
    ``face`` ``vertex_indices`` (or ``vertex_index``) lists; polygons are split into triangle fans.

    Raises ValueError naming the file when it is not such a mesh or an index is out of range.
    """
    from plyfile import PlyData

    path = Path(path)
    try:
        ply = PlyData.read(str(path))
    except FileNotFoundError:
        raise
    except Exception as error:  # plyfile raises several types for malformed files
        raise ValueError(f"{path}: not a readable PLY file ({error})") from error
    names = [element.name for element in ply.elements]
    if "vertex" not in names or "face" not in names:
        raise ValueError(f"{path}: a mesh PLY needs 'vertex' and 'face' elements, found {names}")
    vertex = ply["vertex"].data
    missing = [axis for axis in "xyz" if axis not in vertex.dtype.names]
    if missing:
        raise ValueError(f"{path}: the vertices lack {missing}")
    vertices = np.stack([np.asarray(vertex[axis], dtype=np.float32) for axis in "xyz"], axis=1)
    if not np.isfinite(vertices).all():
        raise ValueError(f"{path}: vertex positions contain NaN or infinity")
    colors = _vertex_colors(vertex, path)
    face = ply["face"].data
    field = next((name for name in _FACE_PROPERTIES if name in face.dtype.names), None)
    if field is None:
        raise ValueError(f"{path}: the faces have none of the properties {_FACE_PROPERTIES}")
    faces = _triangulate(face[field], path)
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"{path}: face indices must lie in [0, {len(vertices) - 1}]")
    return TriangleMesh(vertices=vertices, faces=faces, colors=colors)


def _vertex_colors(vertex: np.ndarray, path: Path) -> Optional[np.ndarray]:
    channels = ("red", "green", "blue")
    if not all(name in vertex.dtype.names for name in channels):
        return None
    values = np.stack([np.asarray(vertex[name]) for name in channels], axis=1)
    if np.issubdtype(values.dtype, np.floating):
        if not np.isfinite(values).all():
            raise ValueError(f"{path}: vertex colours contain NaN or infinity")
        values = np.round(np.clip(values, 0.0, 1.0) * 255.0)
    return np.clip(values, 0, 255).astype(np.uint8)


def _triangulate(polygons: np.ndarray, path: Path) -> np.ndarray:
    if len(polygons) == 0:
        return np.zeros((0, 3), dtype=np.int64)
    sizes = np.fromiter((len(polygon) for polygon in polygons), dtype=np.int64, count=len(polygons))
    if sizes.size and sizes.min() < 3:
        raise ValueError(f"{path}: a face has {sizes.min()} vertices; faces need at least 3")
    if (sizes == 3).all():
        return np.stack(polygons).astype(np.int64).reshape(-1, 3)
    triangles = []
    for polygon in polygons:
        polygon = np.asarray(polygon, dtype=np.int64)
        # A fan around the first vertex keeps the polygon's winding.
        for corner in range(1, len(polygon) - 1):
            triangles.append((polygon[0], polygon[corner], polygon[corner + 1]))
    return np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
