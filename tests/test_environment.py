"""EnvironmentMap: pixel directions, cube-map lookup, the pyramid's start from images,
training, determinism and its state round trip."""

import math

import numpy as np
import pytest
import torch

from gsplat_lib.data import Camera
from gsplat_lib.data.capture_scene import sky_radiance
from gsplat_lib.cameras import look_at
from gsplat_lib.data.raytraced import intrinsics
from gsplat_lib.train.environment import EnvironmentMap, face_resolution_for, pixel_directions, pyramid_resolutions


def camera_looking(azimuth_deg, elevation_deg, width=24, height=16, image=None):
    direction = np.array([
        math.cos(math.radians(elevation_deg)) * math.cos(math.radians(azimuth_deg)),
        math.cos(math.radians(elevation_deg)) * math.sin(math.radians(azimuth_deg)),
        math.sin(math.radians(elevation_deg)),
    ])
    viewmat = look_at(np.zeros(3), direction, up=(0.0, 0.0, 1.0), dtype=torch.float64).numpy()
    K = intrinsics(width, height, 70.0)
    if image is None:
        directions = pixel_directions(
            torch.from_numpy(viewmat[None]).float(), torch.from_numpy(K[None]).float(), width, height
        )[0].reshape(-1, 3)
        image = sky_radiance(directions.double().numpy()).reshape(height, width, 3)
    return Camera("v.png", viewmat.astype(np.float32), K.astype(np.float32), width, height, image.astype(np.float32))


def test_pixel_directions_go_through_pixel_centres():
    camera = camera_looking(30.0, 10.0)
    directions = pixel_directions(
        torch.from_numpy(camera.viewmat)[None], torch.from_numpy(camera.K)[None], camera.width, camera.height
    )[0]
    # Back into the camera: x / z and y / z are the pixel centre's normalised coordinates.
    in_camera = directions @ torch.from_numpy(camera.viewmat[:3, :3]).T
    K = camera.K
    for row, col in ((0, 0), (7, 11), (15, 23)):
        x, y, z = in_camera[row, col].tolist()
        assert x / z == pytest.approx((col + 0.5 - K[0, 2]) / K[0, 0], abs=1e-6)
        assert y / z == pytest.approx((row + 0.5 - K[1, 2]) / K[1, 1], abs=1e-6)


def test_pyramid_levels_and_resolution_from_the_images():
    assert pyramid_resolutions(148) == [148, 74, 37, 19, 10, 5, 4]
    assert pyramid_resolutions(4) == [4]
    assert face_resolution_for([camera_looking(0, 0, width=120, height=80)]) == math.ceil(
        0.5 * 120 / math.tan(math.radians(35.0)) * math.pi / 2
    )


def test_lookup_is_bilinear_within_a_face_and_sums_the_levels():
    environment = EnvironmentMap(8)
    with torch.no_grad():
        environment.texels.zero_()
        environment.texels[: 6 * 64] = torch.arange(6 * 64, dtype=torch.float32)[:, None]  # finest level
    # On the +x face, (u, v) = (y, z) / x: a direction through the middle of four texels.
    r = 8
    u_centre = lambda i: (i + 0.5) / r * 2 - 1  # noqa: E731
    between = torch.tensor([[1.0, 0.5 * (u_centre(2) + u_centre(3)), 0.5 * (u_centre(4) + u_centre(5))]])
    expected = np.mean([(4 * r + 2), (4 * r + 3), (5 * r + 2), (5 * r + 3)])
    with torch.no_grad():
        assert float(environment(between)[0, 0]) == pytest.approx(expected, rel=1e-6)
        environment.texels[6 * 64 :] = 1.0  # every coarser level adds 1
        assert float(environment(between)[0, 0]) == pytest.approx(expected + len(environment.levels) - 1, rel=1e-6)
        other_face = float(environment(-between)[0, 0])
    # The length of the direction does not matter; -x reads another face.
    assert torch.equal(environment(3.0 * between), environment(between))
    assert other_face != pytest.approx(expected + len(environment.levels) - 1)


def test_training_fits_a_sky_deterministically_and_resumes_exactly():
    generator = torch.Generator().manual_seed(0)
    directions = torch.randn(4000, 3, generator=generator)
    directions[:, 2] = directions[:, 2].abs()
    target = torch.from_numpy(sky_radiance(directions.double().numpy())).float()

    def train(environment, steps):
        losses = []
        for _ in range(steps):
            loss = (environment(directions) - target).abs().mean()
            loss.backward()
            environment.step()
            losses.append(float(loss.detach()))
        return losses

    first, again, second = EnvironmentMap(16, lr=0.01), EnvironmentMap(16, lr=0.01), EnvironmentMap(16, lr=0.01)
    losses = train(first, 60)
    assert losses[-1] < 0.3 * losses[0]
    train(again, 60)
    assert torch.equal(again.texels, first.texels)
    train(second, 30)
    resumed = EnvironmentMap.from_state_dict(second.state_dict())
    train(resumed, 30)
    assert torch.equal(resumed.texels, first.texels)  # bit for bit, through a state round trip
    image = first.to_image()
    assert image.shape == (16, 96, 3) and image.dtype == np.float32


def test_bad_arguments():
    with pytest.raises(ValueError, match="resolution"):
        EnvironmentMap(1)
    with pytest.raises(ValueError, match="lr"):
        EnvironmentMap(8, lr=0.0)
    state = EnvironmentMap(8).state_dict()
    state["texels"] = torch.zeros(5, 3)
    with pytest.raises(ValueError, match="texels"):
        EnvironmentMap.from_state_dict(state)
