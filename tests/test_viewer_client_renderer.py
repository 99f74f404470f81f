"""A browser's render thread: small frames while moving, one full frame at rest, nothing while idle."""

import threading
import time

import numpy as np
import pytest

from gsplat_lib.viewer.client_renderer import ClientRenderer, FrameRequest
from gsplat_lib.viewer.resolution import AdaptiveResolution


class FakeBrowser:
    """Counts frames; renders take a fixed time per pixel."""

    def __init__(self, width=400, height=200, seconds_per_pixel=1e-7, fail=False):
        self.request = FrameRequest(np.array([1.0, 0, 0, 0]), np.zeros(3), 1.0, width, height)
        self.seconds_per_pixel = seconds_per_pixel
        self.fail = fail
        self.rendered = []  # (width, height)
        self.shown = []  # (shape, moving)
        self.lock = threading.Lock()

    def read_camera(self):
        return self.request

    def render(self, request, width, height):
        time.sleep(width * height * self.seconds_per_pixel)
        with self.lock:
            self.rendered.append((width, height))
        if self.fail:
            raise RuntimeError("out of memory")
        return np.zeros((height, width, 3), np.uint8)

    def show(self, image, moving):
        with self.lock:
            self.shown.append((image.shape, moving))


def _wait_idle(renderer, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not renderer.idle:
        assert time.monotonic() < deadline, "the renderer never came to rest"
        time.sleep(0.01)


@pytest.fixture
def renderers():
    started = []
    yield started
    for renderer in started:
        renderer.stop()


def test_moving_then_resting(renderers):
    browser = FakeBrowser(seconds_per_pixel=1e-6)  # 80 ms for a full 400 x 200 frame
    resolution = AdaptiveResolution(moving_seconds=0.01, min_height=20, smoothing=1.0)
    resolution.record(400, 200, 0.08)
    renderer = ClientRenderer(browser.read_camera, browser.render, browser.show, resolution=resolution, settle_seconds=0.1)
    renderers.append(renderer)
    for _ in range(5):
        renderer.camera_moved()
        time.sleep(0.02)
    _wait_idle(renderer)
    moving = [shape for shape, was_moving in browser.shown if was_moving]
    resting = [shape for shape, was_moving in browser.shown if not was_moving]
    assert moving and all(shape[0] < 200 for shape in moving)  # smaller while moving
    assert resting == [(200, 400, 3)]  # then one full frame
    # Requests during a frame merge: fewer frames than requests, and nothing more while idle.
    count = len(browser.rendered)
    time.sleep(0.3)
    assert len(browser.rendered) == count


def test_refresh_renders_one_full_frame(renderers):
    browser = FakeBrowser()
    renderer = ClientRenderer(browser.read_camera, browser.render, browser.show, max_size=lambda: 100)
    renderers.append(renderer)
    renderer.refresh()
    _wait_idle(renderer)
    assert browser.shown == [((50, 100, 3), False)]  # 400 x 200 scaled to fit 100


def test_no_camera_yet_renders_nothing_and_does_not_spin(renderers):
    calls = []

    def read_camera():
        calls.append(1)
        return None

    browser = FakeBrowser()
    renderer = ClientRenderer(read_camera, browser.render, browser.show)
    renderers.append(renderer)
    renderer.refresh()
    _wait_idle(renderer)
    time.sleep(0.1)
    assert browser.rendered == [] and len(calls) == 1


def test_a_failing_frame_is_reported_once_and_the_thread_lives_on(renderers, capfd):
    browser = FakeBrowser(fail=True)
    renderer = ClientRenderer(browser.read_camera, browser.render, browser.show)
    renderers.append(renderer)
    for _ in range(3):
        renderer.refresh()
        _wait_idle(renderer)
    assert len(browser.rendered) == 3 and browser.shown == []
    assert capfd.readouterr().err.count("RuntimeError: out of memory") == 1
    browser.fail = False
    renderer.refresh()
    _wait_idle(renderer)
    assert len(browser.shown) == 1


def test_stop_ends_the_thread():
    browser = FakeBrowser()
    renderer = ClientRenderer(browser.read_camera, browser.render, browser.show)
    renderer.stop()
    assert not renderer._thread.is_alive()
