"""COLMAP reader and writer: round trips in both formats, camera models,
and the errors a user with a broken dataset gets."""

import struct

import numpy as np
import pytest
from PIL import Image

from gsplat_lib.data import Camera, load_scene
from gsplat_lib.data.images import read_image
from gsplat_lib.data.colmap import (
    ColmapCamera,
    ColmapImage,
    load_colmap,
    qvec_to_rotmat,
    read_colmap_model,
    rotmat_to_qvec,
    write_colmap,
    write_colmap_model,
)

WIDTH, HEIGHT = 12, 8


def random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def make_cameras(count=5, seed=0, width=WIDTH, height=HEIGHT):
    """Cameras with random poses and 8-bit-exact random images."""
    rng = np.random.default_rng(seed)
    cameras = []
    for index in range(count):
        viewmat = np.eye(4)
        viewmat[:3, :3] = random_rotation(rng)
        viewmat[:3, 3] = rng.normal(size=3)
        K = np.array([[20.0 + index, 0.0, 6.5], [0.0, 21.0, 3.75], [0.0, 0.0, 1.0]])
        image = rng.integers(0, 256, size=(height, width, 3)) / 255.0
        cameras.append(
            Camera(
                name=f"img_{index:02d}.png",
                viewmat=viewmat.astype(np.float32),
                K=K.astype(np.float32),
                width=width,
                height=height,
                image=image.astype(np.float32),
            )
        )
    return cameras


def make_points(count=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(count, 3)), rng.integers(0, 256, size=(count, 3)).astype(np.uint8)


def write_pinhole_dataset(folder, model, params, *, binary=False, width=WIDTH, height=HEIGHT, num_images=2):
    """A dataset with one camera of ``model`` and ``num_images`` images."""
    rng = np.random.default_rng(1)
    images = []
    for index in range(num_images):
        name = f"frame_{index}.png"
        pixels = rng.integers(0, 256, size=(height, width, 3)).astype(np.uint8)
        (folder / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / "images" / name)
        images.append(ColmapImage(index + 1, np.array([1.0, 0, 0, 0]), np.array([0, 0, 2.0 + index]), 1, name))
    points, colors = make_points()
    write_colmap_model(
        folder / "sparse" / "0",
        [ColmapCamera(1, model, width, height, np.array(params, dtype=np.float64))],
        images,
        points,
        colors,
        binary=binary,
    )
    return folder


@pytest.mark.parametrize("binary", [False, True])
def test_round_trip(tmp_path, binary):
    cameras = make_cameras()
    points, colors = make_points()
    write_colmap(tmp_path, cameras, points, colors, binary=binary)
    suffix = ".bin" if binary else ".txt"
    assert (tmp_path / "sparse" / "0" / f"cameras{suffix}").is_file()

    scene = load_colmap(tmp_path, test_every=0)
    assert len(scene.train) == len(cameras) and scene.test == []
    for original, loaded in zip(cameras, scene.train):
        assert loaded.name == original.name
        assert (loaded.width, loaded.height) == (WIDTH, HEIGHT)
        assert loaded.viewmat.dtype == np.float32 and loaded.K.dtype == np.float32
        np.testing.assert_allclose(loaded.viewmat, original.viewmat, atol=1e-6)
        np.testing.assert_array_equal(loaded.K, original.K)
        np.testing.assert_array_equal(loaded.image, original.image)
        assert loaded.alpha is None and loaded.depth is None and loaded.normal is None
        np.testing.assert_allclose(loaded.camera_center, original.camera_center, atol=1e-5)
    np.testing.assert_array_equal(scene.points, points.astype(np.float32))
    np.testing.assert_array_equal(scene.point_colors, colors.astype(np.float32) / 255.0)
    assert scene.points.dtype == np.float32 and scene.point_colors.dtype == np.float32


@pytest.mark.parametrize("binary", [False, True])
def test_raw_model_round_trip(tmp_path, binary):
    cameras = make_cameras(count=3)
    points, colors = make_points()
    write_colmap(tmp_path, cameras, points, colors, binary=binary, write_images=False)
    model = read_colmap_model(tmp_path / "sparse" / "0")
    # Cameras 0 and 1 differ in fx, so three COLMAP cameras.
    assert sorted(model.cameras) == [1, 2, 3]
    assert all(camera.model == "PINHOLE" for camera in model.cameras.values())
    for image_id, camera in enumerate(cameras, start=1):
        image = model.images[image_id]
        assert image.name == camera.name
        np.testing.assert_allclose(qvec_to_rotmat(image.qvec), camera.viewmat[:3, :3], atol=1e-6)
        np.testing.assert_allclose(image.tvec, camera.viewmat[:3, 3], atol=0)
    np.testing.assert_array_equal(model.points, points)
    np.testing.assert_array_equal(model.colors, colors)


def test_identical_intrinsics_share_a_camera(tmp_path):
    cameras = make_cameras(count=3)
    for camera in cameras:
        camera.K = cameras[0].K.copy()
    write_colmap(tmp_path, cameras, *make_points(), write_images=False)
    model = read_colmap_model(tmp_path / "sparse" / "0")
    assert len(model.cameras) == 1
    assert {image.camera_id for image in model.images.values()} == {1}


def test_quaternion_round_trip_including_half_turns():
    rng = np.random.default_rng(3)
    rotations = [random_rotation(rng) for _ in range(20)]
    rotations += [np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]), np.diag([-1.0, -1.0, 1.0]), np.eye(3)]
    for rotation in rotations:
        qvec = rotmat_to_qvec(rotation)
        assert qvec[0] >= 0 and abs(np.linalg.norm(qvec) - 1.0) < 1e-12
        np.testing.assert_allclose(qvec_to_rotmat(qvec), rotation, atol=1e-12)


def test_text_reader_skips_comments_and_keypoint_lines(tmp_path):
    """A text model as COLMAP writes it, with keypoints and tracks."""
    sparse = tmp_path / "sparse" / "0"
    sparse.mkdir(parents=True)
    (sparse / "cameras.txt").write_text("# comment\n1 PINHOLE 12 8 20 21 6 4\n")
    (sparse / "images.txt").write_text(
        "# Image list with two lines of data per image:\n"
        "1 1 0 0 0 0 0 3 1 a.png\n"
        "1.5 2.5 -1 3.0 4.0 7\n"
        "2 1 0 0 0 0 0 4 1 b.png\n"
        "\n"
    )
    (sparse / "points3D.txt").write_text("# points\n7 1 2 3 255 128 0 0.5 1 1 2 0\n")
    model = read_colmap_model(sparse)
    assert [image.name for image in model.images.values()] == ["a.png", "b.png"]
    np.testing.assert_array_equal(model.points, [[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(model.colors, [[255, 128, 0]])


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize(
    "model, params, expected_K",
    [
        ("PINHOLE", [20.0, 22.0, 6.0, 4.5], [[20.0, 0, 6.0], [0, 22.0, 4.5], [0, 0, 1]]),
        ("SIMPLE_PINHOLE", [20.0, 6.0, 4.5], [[20.0, 0, 6.0], [0, 20.0, 4.5], [0, 0, 1]]),
        ("OPENCV", [20.0, 22.0, 6.0, 4.5, 0.0, 0.0, 0.0, 0.0], [[20.0, 0, 6.0], [0, 22.0, 4.5], [0, 0, 1]]),
        ("SIMPLE_RADIAL", [20.0, 6.0, 4.5, 0.0], [[20.0, 0, 6.0], [0, 20.0, 4.5], [0, 0, 1]]),
    ],
)
def test_pinhole_and_undistorted_models(tmp_path, binary, model, params, expected_K):
    write_pinhole_dataset(tmp_path, model, params, binary=binary)
    scene = load_colmap(tmp_path, test_every=0)
    for camera in scene.train:
        np.testing.assert_array_equal(camera.K, np.array(expected_K, dtype=np.float32))


@pytest.mark.parametrize(
    "model, params",
    [
        ("OPENCV", [20.0, 22.0, 6.0, 4.5, 0.1, 0.0, 0.0, 0.0]),
        ("SIMPLE_RADIAL", [20.0, 6.0, 4.5, -0.02]),
        ("FULL_OPENCV", [20.0, 22.0, 6.0, 4.5] + [0.0] * 7 + [1e-3]),
    ],
)
def test_distorted_model_asks_for_undistortion(tmp_path, model, params):
    write_pinhole_dataset(tmp_path, model, params)
    with pytest.raises(ValueError, match=rf"distorted model {model}.*colmap image_undistorter"):
        load_colmap(tmp_path)


def test_fisheye_model_is_rejected_even_without_distortion(tmp_path):
    write_pinhole_dataset(tmp_path, "OPENCV_FISHEYE", [20.0, 22.0, 6.0, 4.5, 0.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="fisheye.*image_undistorter"):
        load_colmap(tmp_path)


def test_missing_image_file_is_named(tmp_path):
    write_pinhole_dataset(tmp_path, "PINHOLE", [20.0, 22.0, 6.0, 4.5])
    (tmp_path / "images" / "frame_1.png").unlink()
    with pytest.raises(FileNotFoundError, match="frame_1.png"):
        load_colmap(tmp_path)


def test_wrong_image_size_names_image_and_sizes(tmp_path):
    write_pinhole_dataset(tmp_path, "PINHOLE", [20.0, 22.0, 6.0, 4.5])
    Image.fromarray(np.zeros((9, 12, 3), np.uint8)).save(tmp_path / "images" / "frame_0.png")
    with pytest.raises(ValueError, match=r"frame_0.png.*12x9.*12x8"):
        load_colmap(tmp_path)


@pytest.mark.parametrize("binary", [False, True])
def test_empty_model_names_images_file(tmp_path, binary):
    write_pinhole_dataset(tmp_path, "PINHOLE", [20.0, 22.0, 6.0, 4.5], binary=binary, num_images=0)
    suffix = "bin" if binary else "txt"
    with pytest.raises(ValueError, match=rf"images\.{suffix}.*no images"):
        load_colmap(tmp_path)


def test_unknown_camera_model_id_names_file(tmp_path):
    write_pinhole_dataset(tmp_path, "PINHOLE", [20.0, 22.0, 6.0, 4.5], binary=True)
    cameras_bin = tmp_path / "sparse" / "0" / "cameras.bin"
    cameras_bin.write_bytes(struct.pack("<QiiQQ4d", 1, 1, 42, WIDTH, HEIGHT, 20.0, 22.0, 6.0, 4.5))
    with pytest.raises(ValueError, match=r"cameras\.bin.*unknown COLMAP camera model id 42"):
        load_colmap(tmp_path)


def test_unknown_camera_model_name_in_text(tmp_path):
    write_pinhole_dataset(tmp_path, "PINHOLE", [20.0, 22.0, 6.0, 4.5])
    (tmp_path / "sparse" / "0" / "cameras.txt").write_text("1 WEIRD_MODEL 12 8 1 2 3\n")
    with pytest.raises(ValueError, match=r"cameras\.txt:1.*WEIRD_MODEL"):
        load_colmap(tmp_path)


@pytest.mark.parametrize("stem", ["cameras", "images", "points3D"])
def test_truncated_binary_file_gives_clear_error(tmp_path, stem):
    write_pinhole_dataset(tmp_path, "PINHOLE", [20.0, 22.0, 6.0, 4.5], binary=True)
    path = tmp_path / "sparse" / "0" / f"{stem}.bin"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match=rf"{stem}\.bin: file is truncated"):
        load_colmap(tmp_path)


def test_malformed_text_line_names_file_and_line(tmp_path):
    write_pinhole_dataset(tmp_path, "PINHOLE", [20.0, 22.0, 6.0, 4.5])
    (tmp_path / "sparse" / "0" / "points3D.txt").write_text("# header\n1 0.5 oops 2 3 4 5 0\n")
    with pytest.raises(ValueError, match=r"points3D\.txt:2: malformed"):
        load_colmap(tmp_path)


def test_llff_hold_split_sorted_by_name(tmp_path):
    cameras = make_cameras(count=10)
    write_colmap(tmp_path, cameras[::-1], *make_points())  # written in reverse order
    scene = load_scene(tmp_path)
    assert [camera.name for camera in scene.test] == ["img_00.png", "img_08.png"]
    assert [camera.name for camera in scene.train] == [f"img_{i:02d}.png" for i in range(10) if i % 8]
    centers = np.stack([camera.camera_center for camera in scene.train]).astype(np.float64)
    expected = 1.1 * np.linalg.norm(centers - centers.mean(0), axis=1).max()
    assert scene.scene_extent == pytest.approx(expected, rel=1e-5)
    np.testing.assert_array_equal(scene.background, np.zeros(3, np.float32))


def test_downscale_box_filters_and_scales_K(tmp_path):
    cameras = make_cameras(count=2, width=13, height=9)
    write_colmap(tmp_path, cameras, *make_points())
    scene = load_colmap(tmp_path, downscale=2, test_every=0)
    for original, loaded in zip(cameras, scene.train):
        assert (loaded.width, loaded.height) == (6, 4) and loaded.image.shape == (4, 6, 3)
        expected = original.image[:8, :12].reshape(4, 2, 6, 2, 3).mean(axis=(1, 3))
        np.testing.assert_allclose(loaded.image, expected, atol=1e-6)
        np.testing.assert_allclose(loaded.K[:2], original.K[:2] / 2)


def test_downscale_uses_prescaled_folder(tmp_path):
    cameras = make_cameras(count=2, width=13, height=9)
    write_colmap(tmp_path, cameras, *make_points())
    (tmp_path / "images_2").mkdir()
    for camera in cameras:
        # 13 / 2 and 9 / 2 rounded up, as resizing tools may do.
        Image.fromarray(np.full((5, 7, 3), 200, np.uint8)).save(tmp_path / "images_2" / camera.name)
    scene = load_colmap(tmp_path, downscale=2, test_every=0)
    for original, loaded in zip(cameras, scene.train):
        assert (loaded.width, loaded.height) == (7, 5)
        np.testing.assert_allclose(loaded.image, 200 / 255, atol=1e-6)
        np.testing.assert_allclose(loaded.K[0], original.K[0] * 7 / 13, rtol=1e-6)
        np.testing.assert_allclose(loaded.K[1], original.K[1] * 5 / 9, rtol=1e-6)
    Image.fromarray(np.zeros((3, 7, 3), np.uint8)).save(tmp_path / "images_2" / cameras[0].name)
    with pytest.raises(ValueError, match=r"img_00.png.*7x3.*13x9"):
        load_colmap(tmp_path, downscale=2)


def test_bad_downscale_and_test_every(tmp_path):
    write_colmap(tmp_path, make_cameras(count=2), *make_points())
    for bad in (0, 1.5, -2):
        with pytest.raises(ValueError, match="downscale"):
            load_colmap(tmp_path, downscale=bad)
    with pytest.raises(ValueError, match="test_every"):
        load_colmap(tmp_path, test_every=-1)


def test_model_without_points_gets_random_points(tmp_path):
    write_colmap(tmp_path, make_cameras(count=3), np.zeros((0, 3)), np.zeros((0, 3), np.uint8))
    scene = load_colmap(tmp_path, num_random_points=50, seed=3)
    assert scene.points.shape == (50, 3) and scene.point_colors.shape == (50, 3)
    again = load_colmap(tmp_path, num_random_points=50, seed=3)
    np.testing.assert_array_equal(scene.points, again.points)


def test_sparse_folder_without_subfolder_is_accepted(tmp_path):
    write_colmap(tmp_path, make_cameras(count=2), *make_points())
    (tmp_path / "sparse" / "0").rename(tmp_path / "model")
    (tmp_path / "sparse").rmdir()
    (tmp_path / "model").rename(tmp_path / "sparse")
    assert len(load_scene(tmp_path, test_every=0).train) == 2


def test_unknown_layout_names_path(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(ValueError, match=rf"{tmp_path}.*sparse/0/cameras.*transforms_train.json"):
        load_scene(tmp_path)


def test_read_image_modes(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey).save(tmp_path / "grey.png")
    image, alpha = read_image(tmp_path / "grey.png")
    assert image.shape == (3, 4, 3) and alpha is None
    np.testing.assert_allclose(image[..., 1], grey / 255.0, atol=1e-7)

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = [[0, 255], [51, 204]]
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    image, alpha = read_image(tmp_path / "rgba.png", background=(0.0, 0.0, 1.0))
    expected_alpha = np.array([[0, 1.0], [0.2, 0.8]], np.float32)
    np.testing.assert_allclose(alpha[..., 0], expected_alpha, atol=1e-6)
    np.testing.assert_allclose(image[..., 0], expected_alpha, atol=1e-6)
    np.testing.assert_allclose(image[..., 2], 1.0 - expected_alpha, atol=1e-6)

    grey16 = (np.arange(6, dtype=np.uint16).reshape(2, 3) * 10000).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    image, _ = read_image(tmp_path / "grey16.png")
    np.testing.assert_allclose(image[..., 0], grey16 / 65535.0, atol=1e-6)

    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.png"):
        read_image(tmp_path / "broken.png")


# ---------------------------------------------------------------------------
# Corrupt models: a clear error naming the file, never a silent load or a raw traceback


def test_huge_point_count_is_rejected_before_allocating(tmp_path):
    folder = write_pinhole_dataset(tmp_path, "PINHOLE", [20, 20, 6, 4], binary=True)
    path = folder / "sparse" / "0" / "points3D.bin"
    data = bytearray(path.read_bytes())
    data[:8] = struct.pack("<Q", 2**62)
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"points3D\.bin.*point count"):
        read_colmap_model(folder / "sparse" / "0")


def test_non_utf8_image_name_names_file(tmp_path):
    folder = write_pinhole_dataset(tmp_path, "PINHOLE", [20, 20, 6, 4], binary=True)
    path = folder / "sparse" / "0" / "images.bin"
    data = path.read_bytes()
    name_at = data.index(b"frame_0.png")
    path.write_bytes(data[:name_at] + b"\xff\xfe" + data[name_at + 2 :])
    with pytest.raises(ValueError, match=r"images\.bin.*not UTF-8"):
        read_colmap_model(folder / "sparse" / "0")


def test_non_utf8_text_file_names_file(tmp_path):
    folder = write_pinhole_dataset(tmp_path, "PINHOLE", [20, 20, 6, 4])
    path = folder / "sparse" / "0" / "images.txt"
    path.write_bytes(path.read_bytes().replace(b"frame_0.png", b"\xff\xfe.png"))
    with pytest.raises(ValueError, match=r"images\.txt.*not UTF-8"):
        read_colmap_model(folder / "sparse" / "0")


def _replace_image_pose(folder, qvec, tvec):
    model = read_colmap_model(folder / "sparse" / "0")
    images = sorted(model.images.values(), key=lambda image: image.image_id)
    images[0] = ColmapImage(images[0].image_id, np.array(qvec, float), np.array(tvec, float), 1, images[0].name)
    write_colmap_model(folder / "sparse" / "0", list(model.cameras.values()), images, model.points, model.colors)


@pytest.mark.parametrize(
    "qvec, tvec, message",
    [
        ((0, 0, 0, 0), (0, 0, 2), "quaternion"),
        ((float("nan"), 0, 0, 0), (0, 0, 2), "quaternion"),
        ((1, 0, 0, 0), (float("nan"), 0, 2), "pose contains NaN or Inf"),
        ((1, 0, 0, 0), (0, float("inf"), 2), "pose contains NaN or Inf"),
        ((1, 0, 0, 0), (0, 1e300, 2), "pose contains NaN or Inf"),
    ],
)
def test_corrupt_pose_names_file_and_image(tmp_path, qvec, tvec, message):
    folder = write_pinhole_dataset(tmp_path, "PINHOLE", [20, 20, 6, 4])
    _replace_image_pose(folder, qvec, tvec)
    with pytest.raises(ValueError, match=rf"images\.txt: image frame_0\.png.*{message}"):
        load_colmap(folder)


@pytest.mark.parametrize("focal", [float("nan"), 0.0, -20.0, float("inf")])
def test_bad_focal_length_names_file_and_camera(tmp_path, focal):
    folder = write_pinhole_dataset(tmp_path, "PINHOLE", [focal, 20, 6, 4])
    with pytest.raises(ValueError, match=r"cameras\.txt: camera 1: focal lengths must be finite and > 0"):
        load_colmap(folder)


def test_non_finite_points_name_file(tmp_path):
    folder = write_pinhole_dataset(tmp_path, "PINHOLE", [20, 20, 6, 4], binary=True)
    model = read_colmap_model(folder / "sparse" / "0")
    points = model.points.copy()
    points[3, 1] = float("nan")
    write_colmap_model(
        folder / "sparse" / "0", list(model.cameras.values()), list(model.images.values()), points, model.colors,
        binary=True,
    )
    with pytest.raises(ValueError, match=r"points3D\.bin: 1 point\(s\) have NaN or Inf.*#3"):
        load_colmap(folder)
