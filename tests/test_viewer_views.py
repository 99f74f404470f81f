"""Viewer camera math: the browser's pose to viewmat / K, and dataset cameras back to poses."""

import math

import numpy as np
import pytest

from gsplat_lib.data import Camera
from gsplat_lib.data.colmap import qvec_to_rotmat, rotmat_to_qvec
from gsplat_lib.viewer.views import camera_pose, view_from_pose


def test_view_from_pose_projects_like_a_pinhole():
    wxyz = rotmat_to_qvec(qvec_to_rotmat([0.9, 0.1, -0.3, 0.2]))
    position = np.array([1.0, -2.0, 0.5])
    fov_y, width, height = math.radians(50.0), 200, 100
    view = view_from_pose(wxyz, position, fov_y, width, height)
    rotation = qvec_to_rotmat(wxyz)  # camera-to-world, OpenCV axes
    # A point straight ahead lands in the image centre; one at the top edge of the field of view on row 0.
    for camera_point, pixel in (([0.0, 0.0, 3.0], (100.0, 50.0)), ([0.0, -3.0 * math.tan(fov_y / 2), 3.0], (100.0, 0.0))):
        world = rotation @ np.array(camera_point) + position
        camera = view.viewmat[:3, :3].astype(np.float64) @ world + view.viewmat[:3, 3]
        np.testing.assert_allclose(camera, camera_point, atol=1e-5)
        projected = view.K.astype(np.float64) @ camera
        np.testing.assert_allclose(projected[:2] / projected[2], pixel, atol=1e-3)
    assert view.viewmat.dtype == np.float32 and view.K.dtype == np.float32
    assert (view.width, view.height) == (200, 100)


def test_dataset_camera_round_trip():
    rotation = qvec_to_rotmat([0.3, -0.5, 0.7, 0.2])
    centre = np.array([0.4, 1.5, -2.0])
    viewmat = np.eye(4)
    viewmat[:3, :3] = rotation.T
    viewmat[:3, 3] = -rotation.T @ centre
    K = np.array([[80.0, 0, 48.0], [0, 80.0, 36.0], [0, 0, 1]])
    camera = Camera("a.png", viewmat.astype(np.float32), K.astype(np.float32), 96, 72, np.zeros((72, 96, 3), np.float32))
    wxyz, position, fov_y, aspect = camera_pose(camera)
    np.testing.assert_allclose(position, centre, atol=1e-5)
    assert aspect == pytest.approx(96 / 72)
    view = view_from_pose(wxyz, position, fov_y, 96, 72)
    np.testing.assert_allclose(view.viewmat, camera.viewmat, atol=1e-5)
    np.testing.assert_allclose(view.K, camera.K, atol=1e-4)


@pytest.mark.parametrize("fov_y, width, height", [(0.0, 10, 10), (math.pi, 10, 10), (1.0, 0, 10), (1.0, 10, -1)])
def test_view_from_pose_rejects_bad_values(fov_y, width, height):
    with pytest.raises(ValueError, match="view_from_pose"):
        view_from_pose([1, 0, 0, 0], [0, 0, 0], fov_y, width, height)
