"""Resumable training runs: interrupted (SIGINT, kill -9) and resumed runs end bit-identical
to an uninterrupted one; finished stages are skipped; other settings are refused; --force
starts over. CPU, a small built-in scene (48 x 36, 16 views), 80 steps, two cameras a step,
with densification, an opacity reset, SH growth, normal consistency and distortion all
inside the run.

(The runs of one test load the compiled extension in two processes: rebuilding it while the
tests run makes them compare two different binaries.)"""

import shutil
import signal
import subprocess
import sys
import time

import pytest

from gsplat_lib.train import cli
from gsplat_lib.train.run_dir import read_json
from run_checks import assert_identical, final_content
from subprocess_env import python_env

pytestmark = pytest.mark.slow

ITERATIONS = 80


def _arguments(small_training_scene, output, *extra):
    return [
        "--data", str(small_training_scene), "--output", str(output), "--iterations", str(ITERATIONS),
        "--densify-start", "5", "--densify-every", "15", "--reset-every", "45", "--densify-stop", "70",
        "--grad-threshold", "0.001", "--prune-opacity", "0.005", "--lambda-distortion", "10", "--batch-size", "2",
        "--checkpoint-every", "10", "--no-progress", "--no-mesh", *extra,
    ]


def _train_in_process(small_training_scene, output, *extra):
    assert cli.main(_arguments(small_training_scene, output, *extra)) == 0


def _start_subprocess(small_training_scene, output):
    return subprocess.Popen(
        [sys.executable, "-m", "gsplat_lib.train", *_arguments(small_training_scene, output)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=python_env(), cwd=output.parent,
    )


def _wait_for_checkpoint(process, output, min_step, timeout=240.0):
    """Blocks until a checkpoint of step >= min_step exists (fails if the process ends first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = [int(p.name[5:11]) for p in (output / "checkpoints").glob("step_*.ckpt")] if (output / "checkpoints").is_dir() else []
        if steps and max(steps) >= min_step:
            return max(steps)
        assert process.poll() is None, f"training ended early: {process.communicate()}"
        time.sleep(0.02)
    process.kill()
    pytest.fail("no checkpoint appeared in time")


def _final_content(output):
    return final_content(output, ITERATIONS)


@pytest.fixture(scope="module")
def reference(small_training_scene, tmp_path_factory):
    """An uninterrupted run's directory."""
    output = tmp_path_factory.mktemp("reference")
    _train_in_process(small_training_scene, output)
    return output


def test_uninterrupted_run_finishes_every_stage(reference):
    for stage in ("train", "evaluate", "export"):
        marker = read_json(reference / "stages" / f"{stage}.FINISHED.json")
        assert marker["finished"] is True and marker["stage"] == stage
    content = _final_content(reference)
    assert content["step"] == ITERATIONS
    assert content["model"]["config"]["active_sh_degree"] == 3
    count = content["model"]["params"]["means"].shape[0]
    assert count != 800  # densification changed the model
    assert content["strategy"]["config"]["reset_every"] == 45
    assert len(list((reference / "checkpoints").glob("step_*.ckpt"))) == 2  # keep-checkpoints


def test_sigint_then_resume_is_bit_identical(small_training_scene, reference, tmp_path):
    process = _start_subprocess(small_training_scene, tmp_path)
    _wait_for_checkpoint(process, tmp_path, 10)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 128 + signal.SIGINT, stderr
    assert "SIGINT received: stopped after step" in stderr and "Re-run the same command" in stderr
    assert read_json(tmp_path / "stages" / "train.FINISHED.json") is None
    stopped = max(int(p.name[5:11]) for p in (tmp_path / "checkpoints").glob("step_*.ckpt"))
    assert stopped < ITERATIONS
    _train_in_process(small_training_scene, tmp_path)
    assert_identical(_final_content(reference), _final_content(tmp_path))


def test_kill_9_then_resume_is_bit_identical(small_training_scene, reference, tmp_path):
    process = _start_subprocess(small_training_scene, tmp_path)
    _wait_for_checkpoint(process, tmp_path, 30)
    process.kill()
    process.communicate(timeout=60)
    assert read_json(tmp_path / "stages" / "train.FINISHED.json") is None
    _train_in_process(small_training_scene, tmp_path)
    assert_identical(_final_content(reference), _final_content(tmp_path))
    assert not list((tmp_path / "checkpoints").glob("*.partial"))


def test_finished_run_is_skipped(small_training_scene, reference, capsys):
    markers = {stage: (reference / "stages" / f"{stage}.FINISHED.json").read_text() for stage in ("train", "evaluate", "export")}
    final = (reference / "checkpoints" / f"step_{ITERATIONS:06d}.ckpt").stat().st_mtime_ns
    _train_in_process(small_training_scene, reference)
    out = capsys.readouterr().out
    for stage in ("train", "evaluate", "export"):
        assert f"stage {stage}: already finished" in out
        assert (reference / "stages" / f"{stage}.FINISHED.json").read_text() == markers[stage]
    assert (reference / "checkpoints" / f"step_{ITERATIONS:06d}.ckpt").stat().st_mtime_ns == final


def test_changed_settings_are_refused(small_training_scene, reference, capsys):
    assert cli.main(_arguments(small_training_scene, reference, "--lambda-dssim", "0.3")) == 1
    err = capsys.readouterr().err
    assert "different settings" in err and "lambda_dssim: 0.2 -> 0.3" in err and "--force" in err


def test_force_redoes_every_stage_identically(small_training_scene, reference, tmp_path, capsys):
    output = tmp_path / "run"
    shutil.copytree(reference, output)
    _train_in_process(small_training_scene, output, "--force")
    out = capsys.readouterr().out
    assert "already finished" not in out and f"stage train: {ITERATIONS} steps" in out
    assert "stage evaluate: PSNR" in out and "stage export: wrote" in out
    assert_identical(_final_content(reference), _final_content(output))


def test_force_starts_over_with_other_settings(small_training_scene, tmp_path, capsys):
    output = tmp_path / "run"
    assert cli.main(_arguments(small_training_scene, output, "--iterations", "3")) == 0
    assert cli.main(_arguments(small_training_scene, output, "--iterations", "4")) == 1
    assert cli.main(_arguments(small_training_scene, output, "--iterations", "4", "--force")) == 0
    assert read_json(output / "stages" / "train.FINISHED.json")["results"]["iterations"] == 4
    assert [p.name for p in (output / "checkpoints").iterdir()] == ["step_000004.ckpt"]
