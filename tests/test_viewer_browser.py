"""The viewer as a person uses it: headless Chromium opens the page, sees the scene, switches render
modes, and pauses and resumes training from the page.

Skipped with the reason when Chromium (Debian: apt-get install chromium) or the Python packages
(pip install '.[test]') are missing; .ci/run installs them. The browser is the system's, never one
that a tool downloads.
"""

import shutil
import threading
import time

import numpy as np
import pytest

pytest.importorskip("viser", reason="the viewer extra is not installed: pip install 'gsplat_lib[viewer]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install '.[test]'")

from PIL import Image  # noqa: E402

from gsplat_lib.train import Trainer, TrainConfig  # noqa: E402
from gsplat_lib.viewer import TrainingViewer, ViewerServer, load_viewer_scene, render_view  # noqa: E402
from gsplat_lib.viewer.views import view_from_pose  # noqa: E402
from viewer_helpers import free_port, launch_browser, small_scene, untrained_run, write_mesh_ply  # noqa: E402

MESH_COLOR = (255, 0, 255)


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return small_scene(tmp_path_factory.mktemp("scene"))


@pytest.fixture(scope="module")
def run_dir(scene_dir, tmp_path_factory):
    run = untrained_run(tmp_path_factory.mktemp("run"), scene_dir)
    # A mesh as the mesh stage writes it: a magenta square just above the scene's ground.
    corners = [[-1.0, -1.0, 0.02], [1.0, -1.0, 0.02], [1.0, 1.0, 0.02], [-1.0, 1.0, 0.02]]
    write_mesh_ply(run / "mesh" / "mesh.ply", corners, [[0, 1, 2], [0, 2, 3]], np.array([MESH_COLOR] * 4, np.uint8))
    return run


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        context, profile = launch_browser(playwright)
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def _screenshot(page, path):
    page.screenshot(path=str(path))
    return np.asarray(Image.open(path).convert("RGB"))


def _scene_region(image):
    """The part of the page that shows the scene: below the control panel and the browser's notice,
    away from the axes in the corner."""
    return image[190:400, 60:600]


def _client_view(server):
    (client,) = server.server.get_clients().values()
    camera = client.camera
    return view_from_pose(camera.wxyz, camera.position, camera.fov, camera.image_width, camera.image_height)


def _wait_for_page_to_match(page, server, mode, path, timeout=20.0):
    """Screenshots until the page shows a render of its camera in ``mode`` in the scene region
    (the browser paints a frame a moment after it arrives, and may report its camera again once
    laid out); returns the last screenshot and the fraction of pixels that agree."""
    scene = server.scene
    deadline = time.monotonic() + timeout
    while True:
        _wait_until(server.idle, what="the full-size frame")
        view = _client_view(server)
        expected = render_view(scene.model, view, mode, background=scene.background)
        shot = _screenshot(page, path)
        difference = np.abs(_scene_region(shot).astype(int) - _scene_region(expected).astype(int)).max(axis=2)
        # JPEG and the drawn camera frusta leave some pixels off; the frame itself agrees.
        agreement = float((difference <= 40).mean())
        if agreement > 0.9 or time.monotonic() > deadline:
            Image.fromarray(expected).save(path.with_name(path.stem + "_expected.png"))
            assert (view.width, view.height) == (640, 480)
            assert _scene_region(expected).std() > 10 and _scene_region(shot).std() > 10, "the page is blank"
            return shot, agreement
        time.sleep(0.25)


def _wait_until(condition, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_the_page_shows_the_scene_and_switches_modes(browser, run_dir, tmp_path):
    scene = load_viewer_scene(run_dir)
    with ViewerServer(scene, port=free_port()) as server:
        page = browser.new_page()
        started = time.monotonic()
        page.goto(server.url)
        assert server.wait_for_frames(1, timeout=30), "no frame was rendered for the page"
        _wait_until(server.idle, what="the full-size frame")
        first_frame_seconds = time.monotonic() - started

        _, agreement = _wait_for_page_to_match(page, server, "RGB", tmp_path / "rgb.png")
        assert agreement > 0.9, f"the page differs from a render of its camera ({agreement:.0%} agree)"

        frames = server.frames_shown
        page.get_by_label("Render mode").click()
        page.get_by_role("option", name="Depth").click()
        _wait_until(lambda: server.mode == "Depth" and server.frames_shown > frames and server.idle, what="a depth frame")
        _, agreement = _wait_for_page_to_match(page, server, "Depth", tmp_path / "depth.png")
        assert agreement > 0.9, f"the depth page differs from a depth render ({agreement:.0%} agree)"

        page.get_by_label("Render mode").click()
        page.get_by_role("option", name="Mesh").click()
        _wait_until(lambda: server.mode == "Mesh", what="the mesh mode")
        deadline = time.monotonic() + 20
        while True:
            region = _scene_region(_screenshot(page, tmp_path / "mesh.png")).astype(int)
            # Shaded magenta: red and blue well above green.
            magenta = ((region[..., 0] - region[..., 1] > 60) & (region[..., 2] - region[..., 1] > 60)).mean()
            if magenta > 0.1 or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        assert magenta > 0.1, f"the mesh is not visible ({magenta:.1%} of the region is magenta)"
        page.close()
    print(f"first full frame on the page after {first_frame_seconds:.1f} s")


class _StoppableViewer(TrainingViewer):
    """Ends training from the test (a person would press Ctrl-C in the terminal)."""

    stop_requested = False

    def step_finished(self, step, model):
        super().step_finished(step, model)
        if self.stop_requested:
            raise InterruptedError("the test is over")


def test_training_pauses_and_resumes_from_the_page(browser, scene_dir, tmp_path):
    monitor = _StoppableViewer(port=free_port(), log=lambda message: None)
    config = TrainConfig(data=str(scene_dir), output=str(tmp_path / "run"), iterations=1_000_000, progress=False)
    ended = []

    def train():
        try:
            Trainer(config, log=lambda message: None, monitor=monitor).run()
        except InterruptedError as stop:
            ended.append(stop)

    trainer = threading.Thread(target=train)
    trainer.start()
    try:
        _wait_until(lambda: monitor.viewer is not None, timeout=60, what="the training viewer")
        page = browser.new_page()
        page.goto(monitor.viewer.url)
        assert monitor.viewer.wait_for_frames(1, timeout=30)
        _wait_until(lambda: monitor._step > 5, what="training steps")

        page.get_by_role("button", name="Pause training").click()
        _wait_until(lambda: monitor.paused, what="the pause")
        page.get_by_text("paused").wait_for(timeout=10_000)
        time.sleep(0.3)  # the step in progress ends
        step = monitor._step
        time.sleep(1.0)
        assert monitor._step == step, "training went on while paused"

        page.get_by_role("button", name="Resume training").click()
        _wait_until(lambda: monitor._step > step + 3, what="training to resume")
        shot = _screenshot(page, tmp_path / "training.png")
        assert _scene_region(shot).std() > 10, "the training page is blank"
        page.close()
    finally:
        monitor.stop_requested = True
        monitor.set_paused(False)
        trainer.join(60)
        monitor.close()
    assert ended, "training did not stop"
