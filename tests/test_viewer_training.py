"""gsplat-train --view: the run stays bit-identical while frames are rendered during it, pauses and
resumes from the viewer, and the command serves the page until Ctrl-C."""

import sys
import threading
import time

import pytest

pytest.importorskip("viser", reason="the viewer extra is not installed: pip install 'gsplat_lib[viewer]'")

from gsplat_lib.train import TrainConfig, Trainer  # noqa: E402
from gsplat_lib.viewer import TrainingViewer  # noqa: E402
from gsplat_lib.viewer.client_renderer import FrameRequest  # noqa: E402
from gsplat_lib.viewer.views import camera_pose  # noqa: E402
from run_checks import assert_identical, final_content  # noqa: E402  (whole checkpoints, wall time aside)
from viewer_helpers import free_port, serve_until_ctrl_c, small_scene  # noqa: E402

ITERATIONS = 30


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return small_scene(tmp_path_factory.mktemp("scene"))


def _config(scene_dir, output):
    # Densification (which replaces every tensor of the model) happens while frames are drawn.
    return TrainConfig(
        data=str(scene_dir), output=str(output), iterations=ITERATIONS, densify_start=3, densify_every=8,
        reset_every=24, densify_stop=25, grad_threshold=0.0005, checkpoint_every=10, progress=False,
    )


def test_frames_during_training_change_no_bit(scene_dir, tmp_path):
    Trainer(_config(scene_dir, tmp_path / "plain"), log=lambda message: None).run()

    monitor = TrainingViewer(port=free_port(), log=lambda message: None)
    frames = []
    done = threading.Event()

    def draw_frames():
        while monitor.viewer is None and not done.is_set():
            time.sleep(0.001)
        camera = monitor.viewer.scene.train_cameras[0]
        wxyz, position, fov_y, _ = camera_pose(camera)
        request = FrameRequest(wxyz, position, fov_y, camera.width, camera.height)
        while not done.is_set():
            frames.append(monitor.viewer.render(request, 40, 30))

    drawer = threading.Thread(target=draw_frames)
    drawer.start()
    try:
        Trainer(_config(scene_dir, tmp_path / "viewed"), log=lambda message: None, monitor=monitor).run()
    finally:
        done.set()
        drawer.join(30)
        monitor.close()
    assert len(frames) > ITERATIONS  # frames came between the steps, not only before or after
    assert_identical(final_content(tmp_path / "plain", ITERATIONS), final_content(tmp_path / "viewed", ITERATIONS), "checkpoint")


def test_pause_and_resume(scene_dir, tmp_path):
    monitor = TrainingViewer(port=free_port(), log=lambda message: None)
    monitor.set_paused(True)
    assert monitor.paused
    # A stop request ends the wait at once, so Ctrl-C works while paused.
    started = time.monotonic()
    monitor.wait_while_paused(lambda: True)
    assert time.monotonic() - started < 1.0
    results = {}
    trainer = Trainer(_config(scene_dir, tmp_path / "run"), log=lambda message: None, monitor=monitor)
    thread = threading.Thread(target=lambda: results.update(trainer.run()))
    try:
        thread.start()
        deadline = time.monotonic() + 60
        while monitor.viewer is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(1.0)
        assert monitor._step == 0 and thread.is_alive()  # waiting before step 1
        assert "paused" in monitor._status.content
        monitor.set_paused(False)
        thread.join(120)
    finally:
        monitor.set_paused(False)
        thread.join(120)
        monitor.close()
    assert results["iterations"] == ITERATIONS
    assert results["train_seconds"] < 60  # the second paused is not counted as training time
    assert monitor._pause.disabled and "finished" in monitor._status.content


def test_gsplat_train_view_serves_the_page_until_ctrl_c(scene_dir, tmp_path):
    port = free_port()
    arguments = [
        "-m", "gsplat_lib.train", "--data", str(scene_dir), "--output", str(tmp_path / "run"), "--iterations", "6",
        "--no-progress", "--view", "--view-port", str(port),
    ]
    output = serve_until_ctrl_c(arguments, "the viewer stays open", tmp_path, port)
    assert f"viewer: open http://localhost:{port}" in output
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_a_missing_viser_names_the_install_command(monkeypatch):
    from gsplat_lib.viewer.dependency import import_viser

    monkeypatch.setitem(sys.modules, "viser", None)  # what an absent package looks like to import
    with pytest.raises(ImportError, match=r"pip install 'gsplat_lib\[viewer\]'"):
        import_viser()
    with pytest.raises(ImportError, match="viewer"):
        TrainingViewer()
    from gsplat_lib.train import cli

    assert cli.main(["--output", "unused", "--view"]) == 1
