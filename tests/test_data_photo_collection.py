"""The photo-collection variant of the synthetic scene: per-photo exposure and white balance,
optional transient occluders, written as COLMAP data that load_scene reads."""

import json

import numpy as np
import pytest

from gsplat_lib.data import load_scene
from gsplat_lib.data.photo_collection import APPEARANCE_FILE, make_photo_collection, photo_collection_cameras

SIZE = dict(num_views=6, width=24, height=18, supersample=1)


def test_photos_are_the_scene_under_per_photo_gains():
    scene, photos, truth = photo_collection_cameras(**SIZE, exposure_stops=0.5, white_balance_stops=0.3)
    gains = np.array([entry["gain"] for entry in truth])
    # Green carries the exposure alone, red and blue add their white balance.
    assert np.all(np.abs(np.log2(gains[:, 1])) <= 0.5)
    assert np.all(np.abs(np.log2(gains[:, [0, 2]] / gains[:, [1]])) <= 0.3)
    assert len(np.unique(gains[:, 1])) == len(photos)  # every photo its own exposure
    for original, photo, gain in zip(scene, photos, gains):
        expected = np.clip(original.image * gain, 0.0, 1.0).astype(np.float32)
        np.testing.assert_array_equal(photo.image, expected)
        np.testing.assert_array_equal(photo.viewmat, original.viewmat)
    assert all(entry["occluder"] is None for entry in truth)
    again = photo_collection_cameras(**SIZE)[1]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(photos, again))


def test_occluders_only_in_every_nth_photo():
    scene, photos, truth = photo_collection_cameras(**SIZE, occluder_every=3)
    occluded = [view for view, entry in enumerate(truth) if entry["occluder"] is not None]
    assert occluded == [1, 4]
    for view in occluded:
        x, y, radius = truth[view]["occluder"]
        disc = photos[view].image[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2].reshape(-1, 3)
        assert np.all(disc == disc[0])  # one flat colour over the disc's centre
        assert 0 <= x - radius and x + radius <= 24 and 0 <= y - radius and y + radius <= 18


def test_written_collection_loads_with_its_truth(tmp_path):
    folder = make_photo_collection(tmp_path / "photos", **SIZE, num_points=200, occluder_every=2)
    truth = json.loads((folder / APPEARANCE_FILE).read_text())["photos"]
    loaded = load_scene(folder, test_every=3)
    cameras = sorted(loaded.train + loaded.test, key=lambda camera: camera.name)
    _, photos, expected_truth = photo_collection_cameras(**SIZE, occluder_every=2)
    assert truth == expected_truth
    for camera, photo in zip(cameras, photos):
        assert camera.name == photo.name
        np.testing.assert_allclose(camera.image, photo.image, atol=0.5 / 255 + 1e-6)
    assert len(loaded.points) == 200


@pytest.mark.parametrize(
    "kwargs, name",
    [({"exposure_stops": -1.0}, "exposure_stops"), ({"white_balance_stops": float("nan")}, "white_balance_stops"),
     ({"occluder_every": -2}, "occluder_every"), ({"occluder_every": 1.5}, "occluder_every")],
)
def test_bad_settings_are_refused(kwargs, name):
    with pytest.raises(ValueError, match=name):
        photo_collection_cameras(**SIZE, **kwargs)
