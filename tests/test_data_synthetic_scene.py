"""The built-in synthetic scene: determinism, exact ground truth, and that
both written formats load through load_scene."""

import numpy as np
import pytest

from gsplat_lib.data import load_scene
from gsplat_lib.data import synthetic_scene as scene_module
from gsplat_lib.data.synthetic_scene import (
    distance_to_surface,
    make_synthetic_scene,
    synthetic_scene_cameras,
    synthetic_scene_data,
    synthetic_scene_points,
    synthetic_scene_viewmats,
    trace_rays,
)
from ground_truth import back_project

# Small enough to keep the file fast; the geometry does not depend on size.
VIEWS, WIDTH, HEIGHT = 10, 40, 30


@pytest.fixture(scope="module")
def cameras():
    return synthetic_scene_cameras(VIEWS, WIDTH, HEIGHT, seed=0)


def test_deterministic(cameras):
    again = synthetic_scene_cameras(VIEWS, WIDTH, HEIGHT, seed=0)
    for a, b in zip(cameras, again):
        for field in ("viewmat", "K", "image", "alpha", "depth", "normal"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    points_a = synthetic_scene_points(cameras, 500, seed=0)
    points_b = synthetic_scene_points(again, 500, seed=0)
    for a, b in zip(points_a, points_b):
        np.testing.assert_array_equal(a, b)
    # The seed moves only the sub-pixel jitter: the pixel-centre truth is fixed.
    other = synthetic_scene_cameras(VIEWS, WIDTH, HEIGHT, seed=1)
    assert not np.array_equal(other[1].image, cameras[1].image)
    np.testing.assert_array_equal(other[1].depth, cameras[1].depth)


def test_dtypes_shapes_and_ranges(cameras):
    for camera in cameras:
        assert camera.image.shape == (HEIGHT, WIDTH, 3) and camera.image.dtype == np.float32
        assert camera.alpha.shape == (HEIGHT, WIDTH, 1)
        assert camera.depth.shape == (HEIGHT, WIDTH, 1) and camera.normal.shape == (HEIGHT, WIDTH, 3)
        assert camera.viewmat.dtype == np.float32 and camera.K.dtype == np.float32
        assert 0.0 <= camera.image.min() and camera.image.max() <= 1.0
        # The scene fills a good part of each view and leaves some background.
        coverage = (camera.depth > 0).mean()
        assert 0.3 < coverage < 0.95
        R = camera.viewmat[:3, :3].astype(np.float64)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-6)
        assert np.linalg.det(R) > 0


def test_cameras_look_at_target_upright():
    target = np.array([0.0, 0.0, 0.25, 1.0])
    for viewmat in synthetic_scene_viewmats(8):
        in_camera = viewmat @ target
        assert in_camera[2] > 0
        np.testing.assert_allclose(in_camera[:2], 0.0, atol=1e-9)
        # World up (z) points up in the image, i.e. along camera -y.
        assert (viewmat[:3, :3] @ [0.0, 0.0, 1.0])[1] < 0


def test_depth_lies_on_surfaces(cameras):
    for camera in cameras:
        points, hit = back_project(camera)
        assert np.abs(distance_to_surface(points)).max() < 1e-4
        assert np.all(camera.depth[~hit] == 0) and np.all(camera.normal[~hit] == 0)


def test_normals_unit_facing_camera_and_consistent(cameras):
    centers = scene_module._SPHERE_CENTERS
    radii = scene_module._SPHERE_RADII
    for camera in cameras:
        points, hit = back_project(camera)
        normals = camera.normal[hit].astype(np.float64)
        np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
        view_dirs = points - camera.camera_center.astype(np.float64)
        assert np.all(np.einsum("ij,ij->i", normals, view_dirs) < 0)
        # Upward normals belong to the ground (z = 0), a box top or a sphere's pole.
        up = normals[:, 2] > 1 - 1e-6
        levels = np.concatenate(
            [[0.0], scene_module._BOX_CENTERS[:, 2] + scene_module._BOX_HALF_SIZES[:, 2], centers[:, 2] + radii]
        )
        assert np.abs(points[up, 2][:, None] - levels[None]).min(axis=1).max() < 1e-4
        assert (np.abs(points[up, 2]) < 1e-4).sum() > 0.2 * hit.sum()  # mostly ground
        # Sphere pixels: normal = (p - c) / r.
        for center, radius in zip(centers, radii):
            on = np.abs(np.linalg.norm(points - center, axis=1) - radius) < 1e-5
            on &= np.abs(points[:, 2]) > 1e-3  # not the ground point where a sphere touches it
            np.testing.assert_allclose(normals[on], (points[on] - center) / radius, atol=1e-3)


def test_normals_match_depth_derivatives(cameras):
    """Where a pixel and its four neighbours lie on one plane (same normal,
    same offset along it),
    the cross product of the back-projected neighbour differences is parallel
    to it: the normal maps agree with the depth maps."""
    checked = 0
    for camera in cameras:
        points, hit = back_project(camera)
        grid = np.full((HEIGHT, WIDTH, 3), np.nan)
        grid[hit] = points
        normal = camera.normal.astype(np.float64)
        d_u = grid[1:-1, 2:] - grid[1:-1, :-2]
        d_v = grid[2:, 1:-1] - grid[:-2, 1:-1]
        from_depth = np.cross(d_v, d_u)  # OpenCV: u right, v down -> towards camera
        centre = normal[1:-1, 1:-1]
        flat = hit[1:-1, 1:-1] & hit[1:-1, 2:] & hit[1:-1, :-2] & hit[2:, 1:-1] & hit[:-2, 1:-1]
        centre_point = grid[1:-1, 1:-1]
        neighbours = (
            (slice(1, -1), slice(2, None)),
            (slice(1, -1), slice(None, -2)),
            (slice(2, None), slice(1, -1)),
            (slice(None, -2), slice(1, -1)),
        )
        with np.errstate(invalid="ignore"):
            for rows, cols in neighbours:
                flat &= np.all(np.abs(normal[rows, cols] - centre) < 1e-6, axis=2)
                offset = np.einsum("ijk,ijk->ij", grid[rows, cols] - centre_point, centre)
                flat &= np.abs(offset) < 1e-4
        from_depth = from_depth[flat] / np.linalg.norm(from_depth[flat], axis=1, keepdims=True)
        np.testing.assert_allclose(from_depth, centre[flat], atol=1e-3)
        checked += flat.sum()
    assert checked > 1000


def test_trace_rays_known_hits():
    origins = np.array([[0.0, 0.0, 5.0], [0.35, -0.25, 5.0], [5.0, 5.0, 5.0]])
    directions = np.array([[0.0, 0.0, -1.0], [0.0, 0.0, -2.0], [0.0, 0.0, 1.0]])
    hits = trace_rays(origins, directions)
    assert hits.primitive[2] == -1 and np.isinf(hits.t[2])
    # Straight down onto the top of the big sphere (centre z 0.42, radius 0.42).
    np.testing.assert_allclose(hits.points[1], [0.35, -0.25, 0.84], atol=1e-12)
    np.testing.assert_allclose(hits.t[1], (5.0 - 0.84) / 2.0)
    np.testing.assert_allclose(hits.normals[1], [0.0, 0.0, 1.0], atol=1e-12)
    assert hits.primitive[0] >= 0


def test_colmap_output_loads_with_split_and_ground_truth(tmp_path, cameras):
    folder = make_synthetic_scene(tmp_path / "scene", num_views=VIEWS, width=WIDTH, height=HEIGHT, num_points=400)
    scene = load_scene(folder)
    assert [camera.name for camera in scene.test] == ["view_000.png", "view_008.png"]
    assert len(scene.train) == VIEWS - 2
    by_name = {camera.name: camera for camera in cameras}
    for loaded in scene.train + scene.test:
        original = by_name[loaded.name]
        np.testing.assert_allclose(loaded.viewmat, original.viewmat, atol=1e-6)
        np.testing.assert_allclose(loaded.K, original.K, rtol=1e-6)
        np.testing.assert_allclose(loaded.image, original.image, atol=0.5 / 255 + 1e-6)
        np.testing.assert_array_equal(loaded.depth, original.depth)
        np.testing.assert_array_equal(loaded.normal, original.normal)
    assert scene.points.shape == (400, 3)
    assert distance_to_surface(scene.points).max() < 1e-5
    assert np.all((scene.point_colors >= 0) & (scene.point_colors <= 1))
    assert scene.point_colors.std() > 0.05  # real surface colours, not a constant


def test_nerf_output_loads_with_same_split(tmp_path, cameras):
    folder = make_synthetic_scene(tmp_path / "scene", num_views=VIEWS, width=WIDTH, height=HEIGHT, fmt="nerf")
    scene = load_scene(folder, num_random_points=100)
    assert [camera.name for camera in scene.test] == ["test/view_000.png", "test/view_008.png"]
    assert len(scene.train) == VIEWS - 2
    by_stem = {camera.name[:-4]: camera for camera in cameras}
    for loaded in scene.train + scene.test:
        original = by_stem[loaded.name.split("/")[1][:-4]]
        np.testing.assert_allclose(loaded.viewmat, original.viewmat, atol=1e-5)
        np.testing.assert_allclose(loaded.alpha, original.alpha, atol=0.5 / 255 + 1e-6)
        np.testing.assert_allclose(loaded.image, original.image, atol=1.0 / 255)
        np.testing.assert_array_equal(loaded.depth, original.depth)


def test_binary_output_and_downscale_drops_mismatched_ground_truth(tmp_path):
    folder = make_synthetic_scene(tmp_path / "scene", num_views=3, width=20, height=16, binary=True)
    assert (folder / "sparse" / "0" / "images.bin").is_file()
    scene = load_scene(folder, downscale=2, test_every=0)
    assert scene.train[0].image.shape == (8, 10, 3)
    assert scene.train[0].depth is None and scene.train[0].normal is None


def test_command_line_entry(tmp_path, capsys):
    scene_module.main([str(tmp_path / "out"), "--views", "2", "--width", "16", "--height", "12"])
    assert "wrote the synthetic scene" in capsys.readouterr().out
    assert len(load_scene(tmp_path / "out", test_every=0).train) == 2


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="fmt"):
        make_synthetic_scene(tmp_path, fmt="ply")
    with pytest.raises(ValueError, match="width"):
        synthetic_scene_cameras(2, 0, 10)


def test_in_memory_scene_data_matches_written_split(tmp_path, cameras):
    data = synthetic_scene_data(VIEWS, WIDTH, HEIGHT, num_points=300)
    assert [camera.name for camera in data.test] == ["view_000.png", "view_008.png"]
    assert len(data.train) == VIEWS - 2 and data.points.shape == (300, 3)
    np.testing.assert_array_equal(data.train[0].image, cameras[1].image)
    loaded = load_scene(make_synthetic_scene(tmp_path, num_views=VIEWS, width=WIDTH, height=HEIGHT, num_points=300))
    assert data.scene_extent == pytest.approx(loaded.scene_extent, rel=1e-5)
    np.testing.assert_allclose(data.points, loaded.points, atol=1e-6)
