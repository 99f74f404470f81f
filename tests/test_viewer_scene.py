"""What the viewer loads (run directories, checkpoints, PLY files, meshes) and the frames it renders."""

import shutil

import numpy as np
import pytest
import torch

from gsplat_lib import GaussianModel, load_checkpoint
from gsplat_lib.train.trainer import render_camera
from gsplat_lib.viewer import RENDER_MODES, load_viewer_scene, render_view
from gsplat_lib.viewer.views import camera_pose, view_from_pose
from viewer_helpers import small_scene, train_small_run, write_mesh_ply


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    scene_dir = small_scene(tmp_path_factory.mktemp("scene"))
    return train_small_run(tmp_path_factory.mktemp("run"), scene_dir, 12, "--no-mesh")  # a run without a mesh


def _final_model(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "step_000012.ckpt", restore_rng=False).model


def test_a_run_directory(run_dir):
    scene = load_viewer_scene(run_dir)
    torch.testing.assert_close(scene.model.means, _final_model(run_dir).means, rtol=0, atol=0)
    assert scene.model.active_sh_degree == _final_model(run_dir).active_sh_degree
    assert len(scene.train_cameras) == 7 and len(scene.test_cameras) == 1  # every 8th view is a test view
    assert scene.background == (0.0, 0.0, 0.0) and scene.near == 0.01 and scene.far == 1000.0
    assert scene.mesh is None and scene.title == run_dir.name


def test_the_runs_mesh_is_loaded(run_dir, tmp_path):
    copy = tmp_path / "with_mesh"
    shutil.copytree(run_dir, copy)
    write_mesh_ply(copy / "mesh" / "mesh.ply", [[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]], np.full((3, 3), 200, np.uint8))
    mesh = load_viewer_scene(copy).mesh
    assert mesh is not None and mesh.faces.shape == (1, 3) and mesh.colors[0, 0] == 200


def test_ply_and_checkpoint_files(run_dir, tmp_path):
    inside = load_viewer_scene(run_dir / "point_cloud.ply")
    assert len(inside.cameras) == 8  # a PLY in a run directory brings the run's cameras
    torch.testing.assert_close(inside.model.means, _final_model(run_dir).means)
    bare = tmp_path / "model.ply"
    shutil.copy(run_dir / "point_cloud.ply", bare)
    alone = load_viewer_scene(bare)
    assert alone.cameras == [] and alone.title == "model.ply"
    with_data = load_viewer_scene(bare, data=_data_of(run_dir))
    assert len(with_data.cameras) == 8
    checkpoint = load_viewer_scene(run_dir / "checkpoints" / "step_000010.ckpt")
    assert len(checkpoint.cameras) == 8 and checkpoint.model.num_surfels > 0


def _data_of(run_dir):
    import json

    return json.loads((run_dir / "settings.json").read_text())["settings"]["data"]


def test_an_unfinished_run_shows_its_latest_checkpoint(run_dir, tmp_path):
    copy = tmp_path / "unfinished"
    shutil.copytree(run_dir, copy)
    for stage in ("train", "evaluate", "export"):
        (copy / "stages" / f"{stage}.FINISHED.json").unlink()
    (copy / "checkpoints" / "step_000012.ckpt").unlink()
    (copy / "point_cloud.ply").unlink()
    expected = load_checkpoint(copy / "checkpoints" / "step_000010.ckpt", restore_rng=False).model
    torch.testing.assert_close(load_viewer_scene(copy).model.means, expected.means, rtol=0, atol=0)
    shutil.rmtree(copy / "checkpoints")
    with pytest.raises(ValueError, match="no checkpoint or point_cloud.ply"):
        load_viewer_scene(copy)


def test_a_moved_dataset_leaves_the_model_without_cameras(run_dir, tmp_path):
    import json

    copy = tmp_path / "moved"
    shutil.copytree(run_dir, copy)
    settings = json.loads((copy / "settings.json").read_text())
    settings["settings"]["data"] = str(tmp_path / "gone")
    (copy / "settings.json").write_text(json.dumps(settings))
    with pytest.warns(RuntimeWarning, match="cameras are not shown.*--data"):
        scene = load_viewer_scene(copy)
    assert scene.cameras == [] and scene.model.num_surfels > 0
    with pytest.raises(ValueError, match="gone"):  # a dataset asked for by name must load
        load_viewer_scene(copy, data=tmp_path / "gone")


def test_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        load_viewer_scene(tmp_path / "missing")
    with pytest.raises(ValueError, match="settings.json"):
        load_viewer_scene(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="notes.txt"):
        load_viewer_scene(text)


def test_render_modes(run_dir):
    scene = load_viewer_scene(run_dir)
    camera = scene.test_cameras[0]
    wxyz, position, fov_y, _ = camera_pose(camera)
    view = view_from_pose(wxyz, position, fov_y, camera.width, camera.height)
    frames = {mode: render_view(scene.model, view, mode) for mode in RENDER_MODES}
    for mode, frame in frames.items():
        assert frame.shape == (36, 48, 3) and frame.dtype == np.uint8, mode
        assert frame.std() > 3, f"{mode} is blank"
    # RGB is the rasterizer's colour image of the dataset camera.
    result = scene.model.render(
        torch.from_numpy(camera.viewmat)[None], torch.from_numpy(camera.K)[None], 48, 36,
        backgrounds=torch.zeros(1, 3), near=0.01, far=1000.0,
    )
    expected = (result.colors[0].detach().clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    assert np.abs(frames["RGB"].astype(int) - expected.astype(int)).max() <= 1
    alpha = frames["Alpha"][..., 0]
    np.testing.assert_array_equal(frames["Alpha"][..., 1], alpha)
    uncovered = alpha < 100
    assert uncovered.any()
    assert (frames["Depth"][uncovered] == 0).all() and (frames["Normals"][uncovered] == 0).all()
    with pytest.raises(ValueError, match="mode"):
        render_view(scene.model, view, "X-ray")


def test_a_run_with_an_environment_map_shows_it_behind_the_surfels(tmp_path):
    """A capture-like run's RGB frames are the surfels over its learned sky, as gsplat-render
    draws them, not over the black background."""
    run = train_small_run(tmp_path / "run", small_scene(tmp_path / "scene"), 12, "--background", "environment", "--no-mesh")
    scene = load_viewer_scene(run)
    assert scene.environment is not None
    camera = scene.test_cameras[0]
    view = view_from_pose(*camera_pose(camera)[:3], camera.width, camera.height)
    frame = render_view(scene.model, view, "RGB", environment=scene.environment)
    with torch.no_grad():
        rendered = render_camera(scene.model, camera, (0.0, 0.0, 0.0), environment=scene.environment)
    expected = (rendered["rgb"].clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    assert np.abs(frame.astype(int) - expected.astype(int)).max() <= 1
    uncovered = rendered["alpha"][..., 0].numpy() < 0.05
    assert uncovered.any() and frame[uncovered].mean() > 20  # the sky, where black was before
    assert render_view(scene.model, view, "RGB")[uncovered].mean() < 5  # without it: the black background


def test_a_model_without_cameras_renders_from_anywhere():
    means = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.0, 0.0]])
    model = GaussianModel.from_points(means, torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), scene_extent=1.0)
    view = view_from_pose([1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -2.0], 1.0, 32, 24)  # looking down +z at them
    assert render_view(model, view, "Alpha").max() > 0
