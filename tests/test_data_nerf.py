"""NeRF-synthetic reader and writer: round trip, the Blender -> OpenCV camera
convention, alpha compositing, downscaling and the test split."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from gsplat_lib.cameras import look_at
from gsplat_lib.data import Camera, load_scene
from gsplat_lib.data.images import downscale_image, downscale_intrinsics
from gsplat_lib.data.nerf_synthetic import load_nerf_synthetic, write_nerf_synthetic

WIDTH, HEIGHT = 10, 8


def make_cameras(count, seed=0, with_alpha=True):
    rng = np.random.default_rng(seed)
    K = np.array([[12.0, 0.0, WIDTH / 2], [0.0, 12.0, HEIGHT / 2], [0.0, 0.0, 1.0]], np.float32)
    cameras = []
    for index in range(count):
        angle = 2 * math.pi * index / count
        eye = 4.0 * np.array([math.cos(angle), math.sin(angle), 0.5])
        alpha = rng.integers(0, 256, size=(HEIGHT, WIDTH, 1)) / 255.0 if with_alpha else None
        straight = rng.integers(0, 256, size=(HEIGHT, WIDTH, 3)) / 255.0
        image = straight * alpha if with_alpha else straight  # composited over black
        cameras.append(
            Camera(
                name=f"r_{index}.png",
                viewmat=look_at(eye, up=(0.0, 0.0, 1.0)).numpy(),
                K=K.copy(),
                width=WIDTH,
                height=HEIGHT,
                image=image.astype(np.float32),
                alpha=None if alpha is None else alpha.astype(np.float32),
            )
        )
    return cameras


def write_blender_scene(folder, frames, camera_angle_x=0.8, size=(WIDTH, HEIGHT), rgba=(255, 0, 0, 255)):
    """A minimal Blender-style dataset: one constant RGBA PNG per frame,
    ``file_path`` without extension, as the original scenes have it."""
    (folder / "train").mkdir(parents=True, exist_ok=True)
    entries = []
    for index, c2w in enumerate(frames):
        pixels = np.broadcast_to(np.array(rgba, np.uint8), (size[1], size[0], 4))
        Image.fromarray(np.ascontiguousarray(pixels)).save(folder / "train" / f"r_{index}.png")
        entries.append(
            {"file_path": f"./train/r_{index}", "rotation": 0.1, "transform_matrix": np.asarray(c2w).tolist()}
        )
    (folder / "transforms_train.json").write_text(json.dumps({"camera_angle_x": camera_angle_x, "frames": entries}))


def test_round_trip(tmp_path):
    cameras = make_cameras(6)
    background = (0.2, 0.4, 0.6)
    composited = []
    for camera in cameras:
        composited.append(camera.image + (1.0 - camera.alpha) * np.array(background, np.float32))
        camera.image = composited[-1].astype(np.float32)
    write_nerf_synthetic(tmp_path, cameras[:4], cameras[4:], background=background)
    assert (tmp_path / "transforms_test.json").is_file()

    scene = load_nerf_synthetic(tmp_path, background=background)
    assert [camera.name for camera in scene.train] == [f"train/r_{i}.png" for i in range(4)]
    assert [camera.name for camera in scene.test] == ["test/r_4.png", "test/r_5.png"]
    for original, loaded in zip(cameras, scene.train + scene.test):
        np.testing.assert_allclose(loaded.viewmat, original.viewmat, atol=1e-6)
        np.testing.assert_allclose(loaded.K, original.K, rtol=1e-6)
        np.testing.assert_array_equal(loaded.alpha, original.alpha)
        # Straight colour is stored in 8 bits, then multiplied back by alpha.
        np.testing.assert_allclose(loaded.image, original.image, atol=0.6 / 255)
    np.testing.assert_array_equal(scene.background, np.array(background, np.float32))


def blender_camera_at_plus_z():
    """c2w of a Blender camera at +z with identity rotation: it looks down -z,
    at the origin."""
    c2w = np.eye(4)
    c2w[2, 3] = 4.0
    return c2w


def test_blender_to_opencv_convention(tmp_path):
    c2w = blender_camera_at_plus_z()
    write_blender_scene(tmp_path, [c2w])
    camera = load_nerf_synthetic(tmp_path, test_every=0).train[0]
    origin_cam = camera.viewmat @ np.array([0.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(origin_cam[:3], [0.0, 0.0, 4.0], atol=1e-6)
    np.testing.assert_allclose(camera.camera_center, [0.0, 0.0, 4.0], atol=1e-6)

    def project(point):
        p = camera.viewmat[:3, :3] @ point + camera.viewmat[:3, 3]
        uvw = camera.K @ p
        return uvw[:2] / uvw[2]

    # World +x is image right; world +y (Blender camera up) is image up (smaller v).
    u, v = project(np.array([0.5, 0.0, 0.0]))
    assert u > camera.K[0, 2] and v == pytest.approx(camera.K[1, 2])
    u, v = project(np.array([0.0, 0.5, 0.0]))
    assert v < camera.K[1, 2] and u == pytest.approx(camera.K[0, 2])


def test_intrinsics_from_camera_angle_x_and_overrides(tmp_path):
    write_blender_scene(tmp_path, [np.eye(4)], camera_angle_x=0.6911112070083618)
    camera = load_nerf_synthetic(tmp_path, test_every=0).train[0]
    focal = 0.5 * WIDTH / math.tan(0.5 * 0.6911112070083618)
    np.testing.assert_allclose(camera.K, [[focal, 0, WIDTH / 2], [0, focal, HEIGHT / 2], [0, 0, 1]], rtol=1e-6)

    meta = json.loads((tmp_path / "transforms_train.json").read_text())
    meta.update(fl_x=9.0, fl_y=11.0, cx=4.0, cy=3.5)
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    camera = load_nerf_synthetic(tmp_path, test_every=0).train[0]
    np.testing.assert_allclose(camera.K, [[9.0, 0, 4.0], [0, 11.0, 3.5], [0, 0, 1]])


def test_alpha_composited_over_background(tmp_path):
    write_blender_scene(tmp_path, [np.eye(4)], rgba=(255, 0, 0, 51))
    camera = load_scene(tmp_path, test_every=0, background=(0.0, 1.0, 0.0)).train[0]
    np.testing.assert_allclose(camera.alpha, 0.2, atol=1e-6)
    np.testing.assert_allclose(camera.image[0, 0], [0.2, 0.8, 0.0], atol=1e-6)
    assert camera.alpha.shape == (HEIGHT, WIDTH, 1) and camera.image.dtype == np.float32


def test_downscale_K_consistent_with_pixel_centres(tmp_path):
    write_blender_scene(tmp_path, [blender_camera_at_plus_z()], size=(13, 9))
    full = load_nerf_synthetic(tmp_path, test_every=0).train[0]
    half = load_nerf_synthetic(tmp_path, test_every=0, downscale=2).train[0]
    assert (half.width, half.height) == (6, 4) and half.image.shape == (4, 6, 3)
    for point in ([0.3, -0.2, 0.1], [-0.5, 0.4, -0.3]):
        p = full.viewmat[:3, :3] @ np.array(point, np.float32) + full.viewmat[:3, 3]
        uv_full = (full.K @ p)[:2] / p[2]
        uv_half = (half.K @ p)[:2] / p[2]
        np.testing.assert_allclose(uv_half, uv_full / 2, rtol=1e-6)


def test_box_filter_matches_pixel_centre_convention():
    """Downscaled pixel i covers full pixels 2i and 2i+1: its centre, i + 0.5,
    maps to 2i + 1 in the full image, the midpoint of their centres."""
    ramp = np.tile(np.arange(8, dtype=np.float32)[None, :, None] + 0.5, (4, 1, 1))  # value = u of pixel centre
    small = downscale_image(ramp, 2)
    np.testing.assert_allclose(small[0, :, 0], 2 * (np.arange(4) + 0.5))
    K = np.array([[10.0, 0, 4.0], [0, 10.0, 2.0], [0, 0, 1]], np.float32)
    np.testing.assert_allclose(downscale_intrinsics(K, 2), [[5.0, 0, 2.0], [0, 5.0, 1.0], [0, 0, 1]])


def test_every_eighth_split_without_test_json(tmp_path):
    frames = []
    for index in range(10):
        c2w = np.eye(4)
        c2w[0, 3] = index
        frames.append(c2w)
    write_blender_scene(tmp_path, frames)
    scene = load_scene(tmp_path)
    assert [camera.name for camera in scene.test] == ["train/r_0.png", "train/r_8.png"]
    assert len(scene.train) == 8
    assert len(load_scene(tmp_path, test_every=0).train) == 10


def test_transforms_json_layout(tmp_path):
    write_blender_scene(tmp_path, [np.eye(4), np.eye(4)])
    (tmp_path / "transforms_train.json").rename(tmp_path / "transforms.json")
    scene = load_scene(tmp_path, test_every=2)
    assert len(scene.train) == 1 and len(scene.test) == 1


def test_random_initial_points(tmp_path):
    write_blender_scene(tmp_path, [np.eye(4)])
    scene = load_scene(tmp_path, num_random_points=1000, seed=5)
    assert scene.points.shape == (1000, 3) and scene.points.dtype == np.float32
    assert np.all(np.abs(scene.points) <= 1.3)
    assert np.all((scene.point_colors >= 0) & (scene.point_colors <= 1))
    np.testing.assert_array_equal(scene.points, load_scene(tmp_path, num_random_points=1000, seed=5).points)
    assert not np.array_equal(scene.points, load_scene(tmp_path, num_random_points=1000, seed=6).points)


def test_missing_image_is_named(tmp_path):
    write_blender_scene(tmp_path, [np.eye(4), np.eye(4)])
    (tmp_path / "train" / "r_1.png").unlink()
    with pytest.raises(FileNotFoundError, match="r_1"):
        load_scene(tmp_path)


def test_declared_size_mismatch(tmp_path):
    write_blender_scene(tmp_path, [np.eye(4)])
    meta = json.loads((tmp_path / "transforms_train.json").read_text())
    meta.update(w=20, h=8)
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"r_0.png.*10x8.*20x8"):
        load_scene(tmp_path)


def test_malformed_json(tmp_path):
    (tmp_path / "transforms_train.json").write_text("{not json")
    with pytest.raises(ValueError, match="transforms_train.json"):
        load_scene(tmp_path)
    (tmp_path / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.5}))
    with pytest.raises(ValueError, match="frames"):
        load_scene(tmp_path)


def test_rgb_images_without_alpha(tmp_path):
    cameras = make_cameras(2, with_alpha=False)
    write_nerf_synthetic(tmp_path, cameras)
    scene = load_scene(tmp_path, test_every=0)
    assert scene.test == []
    for original, loaded in zip(cameras, scene.train):
        assert loaded.alpha is None
        np.testing.assert_array_equal(loaded.image, original.image)


def test_bad_background(tmp_path):
    write_blender_scene(tmp_path, [np.eye(4)])
    with pytest.raises(ValueError, match="background"):
        load_scene(tmp_path, background=(1.0, 0.0))


# ---------------------------------------------------------------------------
# Corrupt transforms: a ValueError naming the file (and the frame), never a raw traceback


def _valid_c2w():
    return np.linalg.inv(look_at((0.0, -4.0, 1.0), up=(0.0, 0.0, 1.0)).double().numpy()) @ np.diag([1.0, -1, -1, 1])


def _write_meta(folder, meta):
    write_blender_scene(folder, [_valid_c2w()])
    (folder / "transforms_train.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "meta, message",
    [
        ([1, 2], "must hold a JSON object"),
        ({"camera_angle_x": 0.8, "frames": [7]}, "frame 0 must be a JSON object"),
        ({"camera_angle_x": 0.8, "frames": [{"file_path": 3, "transform_matrix": []}]}, "file_path must be a string"),
        ({"camera_angle_x": 0.8, "frames": [{"file_path": "./train/r_0", "transform_matrix": "eye"}]},
         "transform_matrix must be a 4x4"),
        ({"camera_angle_x": 0.8, "frames": [{"file_path": "./train/r_0", "transform_matrix": [[1, 0], [0]]}]},
         "transform_matrix must be a 4x4"),
        ({"camera_angle_x": 0.8, "frames": [{"file_path": "./train/r_0", "transform_matrix": np.zeros((4, 4)).tolist()}]},
         "last row must be"),
        ({"camera_angle_x": 0.8, "frames": [{"file_path": "./train/r_0", "transform_matrix": np.diag([1.0, 1, 0, 1]).tolist()}]},
         "not a rotation matrix"),
    ],
)
def test_malformed_frames_name_file(tmp_path, meta, message):
    _write_meta(tmp_path, meta)
    with pytest.raises(ValueError, match=rf"transforms_train\.json.*{message}"):
        load_nerf_synthetic(tmp_path)


@pytest.mark.parametrize(
    "keys, message",
    [
        ({"camera_angle_x": 0}, "camera_angle_x must be a field of view"),
        ({"camera_angle_x": 4.0}, "camera_angle_x must be a field of view"),
        ({"camera_angle_x": float("nan")}, "camera_angle_x must be a finite number"),
        ({"camera_angle_x": "wide"}, "camera_angle_x must be a finite number"),
        ({"fl_x": float("nan")}, "fl_x must be a finite number"),
        ({"fl_x": 0.0}, "focal lengths must be finite and > 0"),
        ({"fl_x": -5.0}, "focal lengths must be finite and > 0"),
        ({"camera_angle_x": 0.8, "cx": float("inf")}, "cx must be a finite number"),
        ({"camera_angle_x": 0.8, "w": "ten", "h": 8}, "w must be a finite number"),
    ],
)
def test_bad_intrinsics_name_file(tmp_path, keys, message):
    frame = {"file_path": "./train/r_0", "transform_matrix": _valid_c2w().tolist()}
    _write_meta(tmp_path, {**keys, "frames": [frame]})
    with pytest.raises(ValueError, match=rf"transforms_train\.json: frame 0: {message}"):
        load_nerf_synthetic(tmp_path)


@pytest.mark.parametrize("row, column, value", [(0, 3, float("nan")), (1, 1, float("inf")), (2, 0, float("nan"))])
def test_non_finite_transform_matrix_names_file(tmp_path, row, column, value):
    c2w = _valid_c2w()
    c2w[row, column] = value
    frame = {"file_path": "./train/r_0", "transform_matrix": c2w.tolist()}
    _write_meta(tmp_path, {"camera_angle_x": 0.8, "frames": [frame]})
    with pytest.raises(ValueError, match=r"transforms_train\.json: frame 0: transform_matrix: the pose contains NaN"):
        load_nerf_synthetic(tmp_path)


def test_non_utf8_json_names_file(tmp_path):
    write_blender_scene(tmp_path, [_valid_c2w()])
    (tmp_path / "transforms_train.json").write_bytes(b'{"frames": "\xff"}')
    with pytest.raises(ValueError, match=r"transforms_train\.json: not valid JSON"):
        load_nerf_synthetic(tmp_path)
