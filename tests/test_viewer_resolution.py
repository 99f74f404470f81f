"""Adaptive frame size: full at rest, within the time budget while moving, aspect kept."""

import pytest

from gsplat_lib.viewer.resolution import AdaptiveResolution


def test_full_size_at_rest_and_before_any_measurement():
    policy = AdaptiveResolution(moving_seconds=0.1)
    assert policy.size(1280, 720, moving=True) == (1280, 720)  # nothing measured yet
    policy.record(1280, 720, 1.0)
    assert policy.size(1280, 720, moving=False) == (1280, 720)


def test_moving_frames_fit_the_budget():
    policy = AdaptiveResolution(moving_seconds=0.1, smoothing=1.0)
    policy.record(1000, 500, 0.5)  # 1 us per pixel: 100k pixels fit in 0.1 s
    width, height = policy.size(1000, 500, moving=True)
    assert width * height <= 100_000 * 1.02
    assert width * height >= 100_000 * 0.95
    assert width / height == pytest.approx(2.0, rel=0.02)


def test_fast_renders_move_at_full_size():
    policy = AdaptiveResolution(moving_seconds=0.1)
    policy.record(640, 480, 0.001)
    assert policy.size(640, 480, moving=True) == (640, 480)


def test_slow_renders_keep_the_minimum_height():
    policy = AdaptiveResolution(moving_seconds=0.01, min_height=64, smoothing=1.0)
    policy.record(1920, 1080, 30.0)
    width, height = policy.size(1920, 1080, moving=True)
    assert height == 64 and width == round(1920 * 64 / 1080)


def test_average_follows_the_newest_frames():
    policy = AdaptiveResolution(smoothing=0.5)
    policy.record(100, 100, 0.01)
    policy.record(100, 100, 0.03)
    assert policy.seconds_per_pixel == pytest.approx(2e-6)
    for width, height, seconds in ((0, 10, 1.0), (10, 10, float("nan")), (10, 10, -1.0)):
        policy.record(width, height, seconds)  # ignored
    assert policy.seconds_per_pixel == pytest.approx(2e-6)


@pytest.mark.parametrize("arguments", [dict(moving_seconds=0), dict(min_height=0), dict(smoothing=0.0), dict(smoothing=1.5)])
def test_bad_settings_are_refused(arguments):
    with pytest.raises(ValueError, match="AdaptiveResolution"):
        AdaptiveResolution(**arguments)
