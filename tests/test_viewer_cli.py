"""gsplat-view on the command line: it serves a run until Ctrl-C, and bad input gets an error naming it."""

import sys

import pytest
import torch

from gsplat_lib.viewer import cli
from viewer_helpers import free_port, serve_until_ctrl_c, small_scene, untrained_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return untrained_run(tmp_path_factory.mktemp("run"), small_scene(tmp_path_factory.mktemp("scene")))


def test_serves_a_run_until_ctrl_c(run_dir, tmp_path):
    pytest.importorskip("viser", reason="the viewer extra is not installed: pip install 'gsplat_lib[viewer]'")
    port = free_port()
    arguments = ["-m", "gsplat_lib.viewer.cli", str(run_dir), "--port", str(port)]
    output = serve_until_ctrl_c(arguments, f"open http://localhost:{port}", tmp_path, port)
    assert "400 surfels, 8 cameras, rendering on cpu" in output


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["{missing}"], "no run directory, checkpoint or PLY file"),
        (["{run}", "--port", "70000"], "--port"),
        (["{run}", "--device", "tpu"], "device"),
    ],
)
def test_bad_arguments(run_dir, tmp_path, capsys, arguments, message):
    pytest.importorskip("viser", reason="the viewer extra is not installed: pip install 'gsplat_lib[viewer]'")
    arguments = [value.format(missing=tmp_path / "missing", run=run_dir) for value in arguments]
    assert cli.main(arguments) == 1
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_gpu(run_dir, capsys):
    pytest.importorskip("viser", reason="the viewer extra is not installed: pip install 'gsplat_lib[viewer]'")
    assert cli.main([str(run_dir), "--device", "cuda"]) == 1
    assert "--device cuda" in capsys.readouterr().err


def test_without_viser_it_names_the_install_command(run_dir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "viser", None)
    assert cli.main([str(run_dir)]) == 1
    assert "pip install 'gsplat_lib[viewer]'" in capsys.readouterr().err
