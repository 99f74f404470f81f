"""gsplat-train's errors: bad option values, a run that prunes everything, a full disk, a
folder that cannot be written, SIGTERM before the training loop. Each ends with one line on
stderr and an exit status, never a traceback, and what was saved before stays loadable."""

import errno
import os
import signal

import pytest
import torch

from gsplat_lib import GaussianModel
from gsplat_lib.data import make_synthetic_scene
from gsplat_lib.train import Trainer, cli
from random_params import random_params


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return make_synthetic_scene(tmp_path_factory.mktemp("scene"), num_views=4, width=24, height=18, num_points=200)


def _arguments(scene_dir, output, *extra):
    return ["--data", str(scene_dir), "--output", str(output), "--iterations", "12", "--checkpoint-every", "4",
            "--no-progress", "--no-mesh", *extra]


def _one_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


@pytest.mark.parametrize("flag, value, message", [
    ("--grad-threshold", "nan", "grad_threshold must be a finite number >= 0"),
    ("--prune-opacity", "1", "prune_opacity must be a finite number in [0, 1)"),
    ("--lr-opacity", "-0.1", "lr_opacity must be a finite number >= 0"),
    ("--lr-means-final", "0", "lr_means_final must be a finite number > 0"),
    ("--percent-dense", "inf", "percent_dense must be a finite number >= 0"),
    ("--far", "nan", "far must be a finite number > 0"),
    ("--sh-degree", "4", "sh_degree must be in [0, 3]"),
    ("--depth-ratio", "nan", "depth_ratio must be a finite number in [0, 1]"),  # None (the default): from the data
    ("--prune-faint-opacity", "-0.1", "prune_faint_opacity must be a finite number >= 0"),
    ("--lr-environment", "0", "lr_environment must be a finite number > 0"),
    ("--noise-lr", "inf", "noise_lr must be a finite number >= 0"),
])
def test_bad_option_values_are_named(tmp_path, capsys, flag, value, message):
    assert cli.main(["--output", str(tmp_path / "run"), flag, value]) == 2
    assert message in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_negative_flags_say_what_they_do(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--no-progress Do not show a progress bar." in help_text
    assert "--no-mesh Skip the mesh stage" in help_text


def test_a_run_that_prunes_every_surfel_stops_with_the_setting_to_change(scene_dir, tmp_path, capsys):
    arguments = _arguments(scene_dir, tmp_path / "run", "--prune-opacity", "0.99", "--densify-start", "1",
                           "--densify-every", "2")
    assert cli.main(arguments) == 1
    line = _one_line(capsys.readouterr().err)
    assert "every surfel was pruned" in line and "--prune-opacity" in line


def test_a_full_disk_stops_with_one_line_and_the_last_checkpoint_resumes(scene_dir, tmp_path, capsys, monkeypatch):
    output = tmp_path / "run"
    real_save = torch.save
    saves = []

    def save_until_the_disk_is_full(obj, stream, *args, **kwargs):
        saves.append(1)
        if len(saves) >= 2:
            stream.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, stream, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_the_disk_is_full)
    assert cli.main(_arguments(scene_dir, output)) == 1
    line = _one_line(capsys.readouterr().err)
    assert "No space left on device" in line and "re-run the same command" in line
    checkpoints = sorted((output / "checkpoints").glob("*.ckpt"))
    assert [path.name for path in checkpoints] == ["step_000004.ckpt"]
    assert not list((output / "checkpoints").glob("*.partial"))
    assert GaussianModel.load_checkpoint(checkpoints[0], restore_rng=False).step == 4

    monkeypatch.setattr(torch, "save", real_save)  # space freed: the same command resumes and finishes
    assert cli.main(_arguments(scene_dir, output)) == 0
    assert "resum" in capsys.readouterr().out.lower()


def test_an_output_that_cannot_be_a_folder_is_named(scene_dir, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert cli.main(_arguments(scene_dir, blocker / "run")) == 1
    assert str(blocker) in _one_line(capsys.readouterr().err)
    assert blocker.read_text() == "not a folder"


def test_a_read_only_folder_is_reported(scene_dir, tmp_path, capsys, monkeypatch):
    # As root, permissions do not stop writes: the refusal is simulated where files are created.
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system", str(tmp_path / "run"))

    monkeypatch.setattr("tempfile.mkstemp", refuse)
    assert cli.main(_arguments(scene_dir, tmp_path / "run")) == 1
    line = _one_line(capsys.readouterr().err)
    assert "Read-only file system" in line and str(tmp_path / "run") in line


def test_sigterm_before_the_training_loop_exits_143_with_a_message(scene_dir, tmp_path, capsys, monkeypatch):
    load_scene = Trainer._load_scene

    def terminated_while_loading(self):
        os.kill(os.getpid(), signal.SIGTERM)
        return load_scene(self)

    monkeypatch.setattr(Trainer, "_load_scene", terminated_while_loading)
    handler = signal.getsignal(signal.SIGTERM)
    assert cli.main(_arguments(scene_dir, tmp_path / "run")) == 128 + signal.SIGTERM
    assert "terminated; re-run the same command" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is handler


def test_gsplat_render_into_a_folder_it_cannot_make_says_so_in_one_line(tmp_path, capsys):
    from gsplat_lib.io import save_ply
    from gsplat_lib.train import render_cli

    save_ply(tmp_path / "model.ply", random_params(count=20, sh_degree=0))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    arguments = [str(tmp_path / "model.ply"), "--orbit", "1", "--width", "16", "--height", "12",
                 "--output", str(blocker / "renders")]
    assert render_cli.main(arguments) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("gsplat-render: error:") and str(blocker) in line


def test_a_device_torch_does_not_know_is_named(tmp_path, capsys):
    assert cli.main(["--output", str(tmp_path / "run"), "--device", "tpu"]) == 2
    assert "device 'tpu' is not a torch device" in _one_line(capsys.readouterr().err)
