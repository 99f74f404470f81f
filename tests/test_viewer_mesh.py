"""Mesh PLY files as the mesh stage writes them: vertices, polygon faces, vertex colours."""

import numpy as np
import pytest

from gsplat_lib.viewer.mesh import read_mesh_ply
from viewer_helpers import write_mesh_ply

SQUARE = [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 0.5, 1]]


def test_triangles_and_uchar_colours(tmp_path):
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30], [1, 2, 3]], np.uint8)
    path = write_mesh_ply(tmp_path / "mesh.ply", SQUARE, [[0, 1, 4], [1, 2, 4]], colors)
    mesh = read_mesh_ply(path)
    np.testing.assert_array_equal(mesh.vertices, np.asarray(SQUARE, np.float32))
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 4], [1, 2, 4]])
    np.testing.assert_array_equal(mesh.colors, colors)
    assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int64


def test_polygons_become_fans_and_float_colours_bytes(tmp_path):
    colors = np.array([[1.0, 0.5, 0.0]] * 5, np.float32)
    path = write_mesh_ply(tmp_path / "mesh.ply", SQUARE, [[0, 1, 2, 3], [0, 1, 4]], colors, face_property="vertex_index")
    mesh = read_mesh_ply(path)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [0, 1, 4]])
    np.testing.assert_array_equal(mesh.colors[0], [255, 128, 0])


def test_no_colours_and_no_faces(tmp_path):
    mesh = read_mesh_ply(write_mesh_ply(tmp_path / "mesh.ply", SQUARE, []))
    assert mesh.colors is None and mesh.faces.shape == (0, 3)


@pytest.mark.parametrize(
    "faces, message", [([[0, 1, 5]], "face indices"), ([[0, 1]], "at least 3"), ([[-1, 0, 1]], "face indices")]
)
def test_bad_faces_are_refused(tmp_path, faces, message):
    path = write_mesh_ply(tmp_path / "mesh.ply", SQUARE, faces)
    with pytest.raises(ValueError, match=message):
        read_mesh_ply(path)


def test_not_a_mesh(tmp_path):
    from plyfile import PlyData, PlyElement

    points = tmp_path / "points.ply"
    vertex = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(points))
    with pytest.raises(ValueError, match="points.ply.*'face'"):
        read_mesh_ply(points)
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"not a ply at all")
    with pytest.raises(ValueError, match="garbage.ply"):
        read_mesh_ply(garbage)
    with pytest.raises(FileNotFoundError):
        read_mesh_ply(tmp_path / "missing.ply")
