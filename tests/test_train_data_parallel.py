"""Data-parallel training under torchrun (2 CPU ranks, gloo) against one process with the same
total batch: the same densification decisions and surfel counts, parameters equal up to the
order of the float sums; rank 0 alone writes; an interrupted torchrun run resumes under
torchrun bit-identically."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from gsplat_lib.train import cli
from gsplat_lib.train.data_parallel import DataParallel
from gsplat_lib.train.run_dir import read_json
from subprocess_env import python_env

pytestmark = pytest.mark.slow

ITERATIONS = 40


def _arguments(small_training_scene, output, *extra):
    return [
        "--data", str(small_training_scene), "--output", str(output), "--iterations", str(ITERATIONS),
        "--densify-start", "5", "--densify-every", "10", "--reset-every", "30", "--densify-stop", "35",
        "--grad-threshold", "0.001", "--prune-opacity", "0.005", "--batch-size", "2",
        "--checkpoint-every", "10", "--no-progress", "--no-mesh", "--num-threads", "1",
        # Surfels that start in their points' planes (the default) have near-zero normal-loss
        # gradients, in which Adam turns the ranks' other order of sums into lr-sized steps
        # (1e-3 in quaternions, 2e-4 in means after 10 steps); random rotations keep the
        # comparison with one process to 1e-6.
        "--init-rotations", "random", *extra,
    ]


def _torchrun(small_training_scene, output, ranks=2, extra=()):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
               "-m", "gsplat_lib.train", *_arguments(small_training_scene, output, *extra)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=python_env(OMP_NUM_THREADS="1"), cwd=output.parent, start_new_session=True)


def _final(output):
    return torch.load(output / "checkpoints" / f"step_{ITERATIONS:06d}.ckpt", weights_only=True)["content"]


@pytest.fixture(scope="module")
def two_ranks(small_training_scene, tmp_path_factory):
    output = tmp_path_factory.mktemp("two_ranks") / "run"
    process = _torchrun(small_training_scene, output)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    return output, stdout


def test_two_ranks_train_the_model_one_process_trains(small_training_scene, two_ranks, tmp_path):
    output, stdout = two_ranks
    assert stdout.count("test PSNR") == 1  # rank 0 alone reports (and evaluates, exports)
    assert cli.main(_arguments(small_training_scene, tmp_path / "one")) == 0
    one, two = _final(tmp_path / "one"), _final(output)
    assert one["model"]["params"]["means"].shape[0] != 800  # densification happened
    assert two["strategy"]["count"].tolist() == one["strategy"]["count"].tolist()
    for name, value in one["model"]["params"].items():
        assert two["model"]["params"][name].shape == value.shape, name
        torch.testing.assert_close(two["model"]["params"][name], value, rtol=0, atol=1e-5, msg=name)
    assert read_json(output / "metrics.json")["num_views"] == read_json(tmp_path / "one" / "metrics.json")["num_views"]


@pytest.mark.parametrize("background", ["environment", "random"])
def test_two_ranks_train_a_capture_recipe_as_one_process(small_training_scene, tmp_path, background):
    """The environment map's gradients are summed over the ranks like the surfels'; random
    backgrounds are drawn for the whole step and shared out, as one process draws them."""
    extra = ("--background", background)
    process = _torchrun(small_training_scene, tmp_path / "two", extra=extra)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    assert cli.main(_arguments(small_training_scene, tmp_path / "one", *extra)) == 0
    one, two = _final(tmp_path / "one"), _final(tmp_path / "two")
    assert two["strategy"]["count"].tolist() == one["strategy"]["count"].tolist()
    # Without opacity resets (the choice under an environment map) Adam turns the ranks' other
    # order of float sums in near-zero gradients into up to a step of lr: 1.3e-3 for quaternions,
    # measured the same with a constant background. A rank that missed the other's share of
    # the step would be off by far more (and densify otherwise).
    for name, value in one["model"]["params"].items():
        torch.testing.assert_close(two["model"]["params"][name], value, rtol=0, atol=5e-3, msg=name)
    if background == "environment":
        texels = one["trainer_state"]["environment"]["texels"]
        assert texels.std() > 0.01  # it learned
        torch.testing.assert_close(two["trainer_state"]["environment"]["texels"], texels, rtol=0, atol=1e-4)


def test_an_interrupted_torchrun_run_resumes_under_torchrun_bit_identically(small_training_scene, two_ranks, tmp_path):
    output = tmp_path / "run"
    process = _torchrun(small_training_scene, output)
    deadline = time.monotonic() + 300
    while not list((output / "checkpoints").glob("step_*.ckpt")) if (output / "checkpoints").is_dir() else True:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    # To the whole group, as a terminal or a batch system does: through torchrun's agent alone the
    # signal reaches the ranks late on a loaded machine, after they may have finished.
    os.killpg(process.pid, signal.SIGTERM)
    process.communicate(timeout=300)
    assert read_json(output / "stages" / "train.FINISHED.json") is None
    saved = sorted((output / "checkpoints").glob("step_*.ckpt"))
    assert saved and all(int(path.name[5:11]) < ITERATIONS for path in saved)
    process = _torchrun(small_training_scene, output)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    one, two = _final(two_ranks[0]), _final(output)
    for name, value in one["model"]["params"].items():
        assert torch.equal(two["model"]["params"][name], value), name
    assert torch.equal(one["strategy"]["grad_acc"], two["strategy"]["grad_acc"])


def test_a_batch_the_ranks_cannot_share_evenly_is_refused():
    with pytest.raises(ValueError, match="--batch-size 3 must be a multiple of the number of ranks \\(2\\)"):
        DataParallel(0, 2).check_batch_size(3)


def test_ranks_take_contiguous_shares_of_the_batch():
    batch = [7, 3, 9, 1]
    assert DataParallel(0, 2).share(batch) == [7, 3] and DataParallel(1, 2).share(batch) == [9, 1]
    alone = DataParallel()
    assert alone.share(batch) == batch and not alone.active and alone.any_signal(15) == 15
    assert alone.run_on_main(lambda: {"x": 1}) == {"x": 1}


def test_two_ranks_with_appearance_environment_and_validation(small_training_scene, tmp_path):
    """Each rank's images' colour transforms and the environment map behind them get the summed
    gradients (the same transforms and texels as one process); rank 0 alone validates and
    writes the history and best.ckpt."""
    # Opacity resets on: without them Adam turns the ranks' other order of sums into lr-sized
    # steps (see the capture-recipe test above), which would hide a missing sum.
    extra = ("--appearance", "--eval-every", "20", "--background", "environment", "--opacity-reset", "on")
    output = tmp_path / "two"
    process = _torchrun(small_training_scene, output, extra=extra)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    assert cli.main(_arguments(small_training_scene, tmp_path / "one", *extra)) == 0
    one, two = _final(tmp_path / "one"), _final(output)
    for name in ("matrices", "biases"):
        torch.testing.assert_close(
            two["trainer_state"]["appearance"][name], one["trainer_state"]["appearance"][name], rtol=0, atol=1e-5
        )
    assert not torch.equal(one["trainer_state"]["appearance"]["matrices"], torch.eye(3).repeat(14, 1, 1))
    texels = one["trainer_state"]["environment"]["texels"]
    assert texels.std() > 0.01  # it learned
    torch.testing.assert_close(two["trainer_state"]["environment"]["texels"], texels, rtol=0, atol=1e-5)
    history = (output / "metrics_history.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in history] == [20, 40]
    assert (output / "checkpoints" / "best.ckpt").is_file()
