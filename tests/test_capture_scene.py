"""The built-in capture-like scene: determinism, exact ground truth (depth, normals, the
geometry interface of mesh evaluation), SfM-like points, the path split, and the written
COLMAP folder."""

import numpy as np
import pytest

from gsplat_lib.data import load_scene
from gsplat_lib.data.capture_scene import (
    FOREGROUND_RADIUS,
    capture_scene_cameras,
    capture_scene_data,
    capture_scene_points,
    capture_scene_viewmats,
    distance_to_surface,
    make_capture_scene,
    sample_surface,
    sky_radiance,
    trace_rays,
)
from ground_truth import back_project

# Small enough to keep the file fast; the geometry does not depend on size.
VIEWS, WIDTH, HEIGHT = 16, 48, 32


@pytest.fixture(scope="module")
def cameras():
    return capture_scene_cameras(VIEWS, WIDTH, HEIGHT, seed=0)


def camera_centre(viewmat):
    return -viewmat[:3, :3].T.astype(np.float64) @ viewmat[:3, 3].astype(np.float64)


def test_deterministic_for_a_seed(cameras):
    again = capture_scene_cameras(VIEWS, WIDTH, HEIGHT, seed=0)
    for a, b in zip(cameras, again):
        for field in ("viewmat", "K", "image", "depth", "normal"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    for a, b in zip(capture_scene_points(cameras, 300, seed=0), capture_scene_points(again, 300, seed=0)):
        np.testing.assert_array_equal(a, b)
    other = capture_scene_cameras(VIEWS, WIDTH, HEIGHT, seed=1)
    assert not np.array_equal(other[1].viewmat, cameras[1].viewmat)  # the seed jitters the path too
    assert not np.array_equal(other[1].image, cameras[1].image)


def test_images_look_like_photos(cameras):
    sky_share = []
    for camera in cameras:
        assert camera.image.shape == (HEIGHT, WIDTH, 3) and camera.image.dtype == np.float32
        assert camera.alpha is None  # a photo: the sky is in the image, nothing is transparent
        assert camera.depth.shape == (HEIGHT, WIDTH, 1) and camera.normal.shape == (HEIGHT, WIDTH, 3)
        assert 0.0 <= camera.image.min() and camera.image.max() <= 1.0
        assert camera.image.mean() > 0.3  # no black background anywhere
        sky_share.append(float((camera.depth == 0).mean()))
        assert camera.width / camera.height == 1.5
    # Every view sees sky and geometry; together about a quarter to a third is sky.
    assert min(sky_share) > 0.05 and max(sky_share) < 0.6
    assert 0.15 < np.mean(sky_share) < 0.45


def test_depth_hits_the_surface_and_sky_pixels_miss(cameras):
    for camera in cameras:
        points, hit = back_project(camera)
        # float32 depths of up to ~60 units: relative error ~1e-7
        depth = camera.depth[hit, 0].astype(np.float64)
        assert np.all(distance_to_surface(points) <= 1e-5 * np.maximum(depth, 1.0))
        rows, cols = np.nonzero(~hit)
        K, viewmat = camera.K.astype(np.float64), camera.viewmat.astype(np.float64)
        directions = np.stack([(cols + 0.5 - K[0, 2]) / K[0, 0], (rows + 0.5 - K[1, 2]) / K[1, 1], np.ones(len(rows))], 1)
        directions = directions @ viewmat[:3, :3]
        origins = np.broadcast_to(camera_centre(viewmat), directions.shape)
        assert not trace_rays(origins, directions).hit.any()


def test_normals_are_unit_and_face_the_camera(cameras):
    for camera in cameras:
        points, hit = back_project(camera)
        normals = camera.normal[hit].astype(np.float64)
        np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
        towards_camera = camera_centre(camera.viewmat) - points
        assert np.all((normals * towards_camera).sum(axis=1) > 0)
        assert np.all(camera.normal[~hit] == 0)


def test_distance_to_surface_known_values():
    points = np.array(
        [
            [0.35, -0.30, 0.45 + 0.45 + 0.2],  # 0.2 above the big sphere's top
            [2.0, 2.0, 0.3],  # 0.3 above the plaza, far from every object
            [2.0, 2.0, -0.25],  # inside the ground slab, 0.25 below its top
            [0.35, -0.30, 0.45],  # the big sphere's centre: 0.45 deep
            [100.0, 0.0, 5.0],  # beyond the ground disk and every hill
        ]
    )
    expected_last = np.hypot(100.0 - 60.0, 5.0)
    np.testing.assert_allclose(distance_to_surface(points), [0.2, 0.3, 0.25, 0.45, expected_last], atol=1e-12)
    with pytest.raises(ValueError, match="points"):
        distance_to_surface(np.zeros((3, 2)))


def test_sample_surface_is_on_the_visible_surface_within_the_radius():
    points = sample_surface(4000, seed=3)
    assert points.shape == (4000, 3)
    np.testing.assert_array_equal(points, sample_surface(4000, seed=3))
    assert not np.array_equal(points, sample_surface(4000, seed=4))
    assert np.all(np.linalg.norm(points, axis=1) <= FOREGROUND_RADIUS)
    assert np.all(distance_to_surface(points) < 1e-9)
    assert np.all(points[:, 2] >= -1e-12)  # nothing below the ground: buried parts are dropped
    # Uniform over area: the plaza and lawn disk (pi 16 = 50.3 minus the objects' footprints)
    # against the objects' exposed surfaces (~6.5): about 88% on the ground.
    on_ground = np.abs(points[:, 2]) < 1e-12
    assert 0.84 < on_ground.mean() < 0.92
    # Each object is sampled: the big sphere (resting on the ground) holds 2.5 of ~56.5.
    big_sphere = np.abs(np.linalg.norm(points - [0.35, -0.30, 0.45], axis=1) - 0.45) < 1e-9
    assert 0.035 < big_sphere.mean() < 0.055
    # Nothing under a box: the yellow box's footprint has no ground points.
    local = (points[on_ground] - [-0.55, -0.60, 0.0]) @ np.array(
        [[np.cos(np.radians(25)), -np.sin(np.radians(25)), 0], [np.sin(np.radians(25)), np.cos(np.radians(25)), 0], [0, 0, 1]]
    )
    assert not np.any((np.abs(local[:, 0]) < 0.24) & (np.abs(local[:, 1]) < 0.19))
    assert sample_surface(0, seed=0).shape == (0, 3)
    with pytest.raises(ValueError, match="count"):
        sample_surface(-1, seed=0)


def test_sparse_points_lie_on_geometry_with_noise_and_outliers(cameras):
    points, colors = capture_scene_points(cameras, 2000, seed=0)
    assert points.shape == (2000, 3) and colors.shape == (2000, 3)
    assert points.dtype == np.float32 and 0.0 <= colors.min() and colors.max() <= 1.0
    distances = distance_to_surface(points.astype(np.float64))
    # Most lie near the surface (noise 0.4% of the depth per axis: ~0.01 in the foreground),
    # none is exact.
    foreground = np.linalg.norm(points, axis=1) < FOREGROUND_RADIUS
    assert np.mean(distances[foreground] < 0.05) > 0.9
    assert np.median(distances) > 1e-4
    # A few percent are outliers well off any surface, between a camera and the geometry.
    assert 0.01 < np.mean(distances > 0.3) < 0.06
    # Only where geometry is: no point in the sky, so every point is under the highest geometry.
    assert points[:, 2].max() < 6.1
    # Far geometry gets points too: SfM sees the hills and buildings.
    assert np.mean(np.linalg.norm(points[:, :2], axis=1) > 8.0) > 0.05


def test_path_not_a_ring_and_test_views_between_training_views():
    viewmats = capture_scene_viewmats(48, seed=0)
    centres = np.stack([camera_centre(viewmat) for viewmat in viewmats])
    radii = np.linalg.norm(centres[:, :2], axis=1)
    assert radii.max() - radii.min() > 0.4  # not a ring
    assert centres[:, 2].max() - centres[:, 2].min() > 0.2
    # Outside every solid and above the ground, on a path: neighbours are close.
    assert np.all(distance_to_surface(centres) > 0.3) and np.all(centres[:, 2] > 0.3)
    steps = np.linalg.norm(np.diff(centres, axis=0, append=centres[:1]), axis=1)
    assert steps.max() < 2.5 * np.median(steps)
    data = capture_scene_data(16, 24, 16, num_points=100)
    assert [camera.name for camera in data.test] == ["view_000.png", "view_008.png"]
    assert len(data.train) == 14 and data.points.shape == (100, 3)
    with pytest.raises(ValueError, match="num_views"):
        capture_scene_viewmats(0)


def test_sky_is_a_gradient_with_a_sun():
    from gsplat_lib.data.capture_scene import SUN_DIRECTION

    horizon, zenith = sky_radiance(np.array([[1.0, -1.0, 0.01], [0.0, 0.0, 1.0]]))
    assert zenith[2] > zenith[0] and horizon.mean() > zenith.mean()
    sun = sky_radiance(SUN_DIRECTION[None])[0]
    assert sun.min() > 0.8
    # Direction only: the length of the direction does not matter.
    np.testing.assert_array_equal(sky_radiance(3.0 * SUN_DIRECTION[None]), sky_radiance(SUN_DIRECTION[None]))


def test_written_folder_loads_with_ground_truth(tmp_path):
    folder = make_capture_scene(tmp_path / "scene", num_views=9, width=24, height=16, num_points=200)
    scene = load_scene(folder)
    assert len(scene.train) == 7 and len(scene.test) == 2
    for camera in scene.train + scene.test:
        assert camera.alpha is None and camera.depth.shape == (16, 24, 1) and camera.normal.shape == (16, 24, 3)
    assert scene.points.shape == (200, 3)
