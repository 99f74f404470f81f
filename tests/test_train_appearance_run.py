"""gsplat-train --appearance on the photo-collection variant of the built-in scene (CPU, 48 x 36,
16 views, 300 steps): the identity transform trains bit-for-bit like the plain trainer, the
transforms resume exactly, metrics.json follows NeRF-W's half-image protocol, and --appearance
beats the plain run on held-out PSNR by a measured margin. --eval-every writes the validation
history and checkpoints/best.ckpt, changes no training bit, and resumes exactly."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from gsplat_lib.data import load_scene
from gsplat_lib.data.photo_collection import make_photo_collection
from gsplat_lib.io.ply import load_ply
from gsplat_lib.model import GaussianModel
from gsplat_lib.train import TrainConfig, cli
from gsplat_lib.train.appearance_eval import FULL_IMAGE_PROTOCOL, HALF_IMAGE_PROTOCOL, half_image_scores
from gsplat_lib.train.environment import EnvironmentMap
from gsplat_lib.train.run_dir import read_json
from gsplat_lib.train.trainer import render_camera
from run_checks import assert_identical

pytestmark = pytest.mark.slow

ITERATIONS = 300


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photo_collection(tmp_path_factory.mktemp("photos"), num_views=16, width=48, height=36, num_points=800)


def _train(photos, output, *extra):
    arguments = [
        "--data", str(photos), "--output", str(output), "--iterations", str(ITERATIONS),
        "--checkpoint-every", "75", "--keep-checkpoints", "10", "--no-progress", "--no-mesh", "--num-threads", "1",
        # The margins below were measured from random rotations; from the points' planes (the
        # default) this short run's plain model gains more from a colour fit after training and
        # the margin of the model trained with appearance shrinks to 0.1 dB (docs/design.md).
        "--init-rotations", "random", *extra,
    ]
    threads = torch.get_num_threads()  # one thread: ~20x faster than torch's default on a loaded 2-core machine
    try:
        assert cli.main(arguments) == 0
    finally:
        torch.set_num_threads(threads)
    return output


@pytest.fixture(scope="module")
def plain(photos, tmp_path_factory):
    return _train(photos, tmp_path_factory.mktemp("plain"))


@pytest.fixture(scope="module")
def with_appearance(photos, tmp_path_factory):
    return _train(photos, tmp_path_factory.mktemp("appearance"), "--appearance")


def _content(output, step=ITERATIONS):
    return torch.load(output / "checkpoints" / f"step_{step:06d}.ckpt", map_location="cpu", weights_only=True)["content"]


def _resumed_from_step_150(photos, finished, folder, *extra):
    """A copy of a finished run cut back to its step-150 checkpoint (as after a kill -9), re-run."""
    shutil.copytree(finished, folder)
    for path in (folder / "checkpoints").glob("step_*.ckpt"):
        if int(path.name[5:11]) > 150:
            path.unlink()
    shutil.rmtree(folder / "stages")
    (folder / "metrics.json").unlink()
    return _train(photos, folder, *extra)


def test_identity_appearance_trains_bit_for_bit_like_the_plain_trainer(photos, plain, tmp_path):
    identity = _train(photos, tmp_path / "identity", "--appearance", "--lr-appearance", "0")
    reference, content = _content(plain), _content(identity)
    for part in ("model", "strategy", "rng"):
        assert_identical(reference[part], content[part], part)
    transforms = content["trainer_state"]["appearance"]
    assert torch.equal(transforms["matrices"], torch.eye(3).repeat(14, 1, 1)) and not transforms["biases"].any()
    assert reference["trainer_state"]["appearance"] is None


def test_resumed_appearance_run_is_bit_identical(photos, with_appearance, tmp_path):
    resumed = _resumed_from_step_150(photos, with_appearance, tmp_path / "resumed", "--appearance")
    assert_identical(_content(with_appearance), _content(resumed))
    assert read_json(resumed / "metrics.json")["psnr"] == read_json(with_appearance / "metrics.json")["psnr"]


def test_metrics_and_renders_follow_the_half_image_protocol(with_appearance, plain):
    results = read_json(with_appearance / "metrics.json")
    assert results["protocol"] == HALF_IMAGE_PROTOCOL and results["split"] == "test"
    assert set(results["mean_appearance"]) == {"psnr", "ssim"}
    for view in results["per_view"]:
        assert {"psnr", "ssim", "mean_appearance", "fitted"} <= set(view)
    # Each view's scores are those of the fitted transform on its right half, and its render is
    # the whole view under that transform.
    assert results["psnr"] == pytest.approx(_half_image_psnr_of(with_appearance), abs=1e-9)
    assert (with_appearance / "renders" / "test" / "view_000_rgb.png").is_file()
    assert read_json(plain / "metrics.json")["protocol"] == FULL_IMAGE_PROTOCOL
    assert "mean_appearance" not in read_json(plain / "metrics.json")


def _half_image_psnr_of(output):
    """The half-image protocol applied to a run's final model (for a plain run: a colour fit after the fact)."""
    final = GaussianModel.load_checkpoint(output / "checkpoints" / f"step_{ITERATIONS:06d}.ckpt", restore_rng=False)
    scene = load_scene(read_json(output / "settings.json")["config"]["data"])
    scores = [
        half_image_scores(render_camera(final.model, camera, scene.background)["rgb"], torch.from_numpy(camera.image))
        for camera in scene.test
    ]
    return sum(score["psnr"] for score in scores) / len(scores)


def test_appearance_beats_the_plain_run_on_held_out_psnr(with_appearance, plain):
    trained = read_json(with_appearance / "metrics.json")
    baseline = read_json(plain / "metrics.json")
    # Measured (CPU, this scene and schedule): plain 18.94 dB; --appearance 23.69 dB under the
    # half-image protocol, 19.64 dB with the mean appearance over whole views; the plain model
    # under the half-image protocol (a colour fit after training) 22.79 dB.
    assert trained["psnr"] >= baseline["psnr"] + 3.5, (trained["psnr"], baseline["psnr"])
    assert trained["mean_appearance"]["psnr"] >= baseline["psnr"] + 0.4
    # Not only the evaluation's colour fit: the model trained with appearance is better under it.
    assert trained["psnr"] >= _half_image_psnr_of(plain) + 0.5


# ---------------------------------------------------------------------- validation during training


@pytest.fixture(scope="module")
def validated(photos, tmp_path_factory):
    return _train(photos, tmp_path_factory.mktemp("validated"), "--appearance", "--eval-every", "50", "--export", "best")


def _history(output):
    return [json.loads(line) for line in (output / "metrics_history.jsonl").read_text().splitlines()]


def test_validation_keeps_a_history_and_the_best_checkpoint(validated, with_appearance):
    history = _history(validated)
    assert [entry["step"] for entry in history] == [50, 100, 150, 200, 250, 300]
    best = max(history, key=lambda entry: entry["psnr"])
    results = read_json(validated / "metrics.json")
    assert results["best"] == {"step": best["step"], "psnr": best["psnr"]}
    best_checkpoint = torch.load(validated / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["content"]
    assert best_checkpoint["step"] == best["step"]
    assert best_checkpoint["trainer_state"]["validation"]["best"] == results["best"]
    # The last validation scores the final model as the evaluate stage does (2 test views, both scored).
    assert history[-1]["psnr"] == pytest.approx(results["psnr"], abs=1e-6)
    # Validation reads the model only: training is the same bits as without it.
    for part in ("model", "strategy", "rng"):
        assert_identical(_content(with_appearance)[part], _content(validated)[part], part)
    # --export best: the PLY holds the best checkpoint's surfels.
    exported = load_ply(validated / "point_cloud.ply")
    assert torch.equal(exported["means"], best_checkpoint["model"]["params"]["means"])


def test_resumed_validation_rewrites_the_same_history_and_best(photos, validated, tmp_path):
    resumed = _resumed_from_step_150(
        photos, validated, tmp_path / "resumed", "--appearance", "--eval-every", "50", "--export", "best"
    )
    assert _history(resumed) == _history(validated)
    assert read_json(resumed / "metrics.json")["best"] == read_json(validated / "metrics.json")["best"]
    assert_identical(_content(validated), _content(resumed))
    best = [torch.load(output / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["content"]
            for output in (validated, resumed)]
    assert_identical(best[0], best[1])


def test_appearance_over_an_environment_map(photos, tmp_path):
    """Both learn in one run (the transform maps the render composited over the map), both ride
    in the checkpoints, validation renders over the map as the evaluate stage does, and
    --export best writes the best checkpoint's map."""
    run = _train(
        photos, tmp_path / "run", "--appearance", "--background", "environment", "--eval-every", "30", "--export", "best"
    )
    state = _content(run)["trainer_state"]
    assert state["environment"]["texels"].std() > 0.01
    assert not torch.equal(state["appearance"]["matrices"], torch.eye(3).repeat(14, 1, 1))
    history, results = _history(run), read_json(run / "metrics.json")
    assert history[-1]["psnr"] == pytest.approx(results["psnr"], abs=1e-6)
    best = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["content"]
    assert best["step"] < ITERATIONS  # (measured: 270) so the map written is not the last one
    best_map = EnvironmentMap.from_state_dict(best["trainer_state"]["environment"], device="cpu").to_image()
    written = np.asarray(Image.open(run / "environment.png"), dtype=np.float32) / 255.0
    assert np.abs(written - best_map.clip(0.0, 1.0)).max() <= 0.5 / 255 + 1e-6


def test_export_best_needs_validation(tmp_path, capsys):
    with pytest.raises(ValueError, match="eval_every"):
        TrainConfig(output=str(tmp_path), export="best")
    with pytest.raises(ValueError, match="export"):
        TrainConfig(output=str(tmp_path), export="first", eval_every=10)
    with pytest.raises(ValueError, match="eval_every"):
        TrainConfig(output=str(tmp_path), eval_every=-1)


def test_validation_scalars_reach_tensorboard_when_it_is_installed(validated):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(validated / "tensorboard"))
    events.Reload()
    logged = [(event.step, event.value) for event in events.Scalars("validation/psnr")]
    assert logged == [(entry["step"], pytest.approx(entry["psnr"], abs=1e-5)) for entry in _history(validated)]
