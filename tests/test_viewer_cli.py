"""gsplat-view on the command line: it serves a run until Ctrl-C, and bad input gets an error naming it."""

import signal
import subprocess
import sys
import urllib.request

import pytest
import torch

from gsplat_lib.viewer import cli
from subprocess_env import python_env
from viewer_helpers import free_port, small_scene, untrained_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return untrained_run(tmp_path_factory.mktemp("run"), small_scene(tmp_path_factory.mktemp("scene")))


def test_serves_a_run_until_ctrl_c(run_dir, tmp_path):
    pytest.importorskip("viser", reason="the viewer extra is not installed: pip install 'gsplat_lib[viewer]'")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gsplat_lib.viewer.cli", str(run_dir), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=python_env(), cwd=tmp_path,
    )
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "open http" in line:
                break
        assert any("400 surfels, 8 cameras" in line for line in lines), "".join(lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.status == 200
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
        assert process.returncode == 0, "".join(lines) + rest
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        process.stdout.close()


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
