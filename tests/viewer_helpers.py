"""Shared pieces of the viewer tests: a small trained run, a mesh PLY, a free port, a headless browser."""

import os
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = os.environ.get("GSPLAT_LIB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")

# The flags known to work for headless Chromium here (no sandbox: CI runs as root).
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def train_small_run(output: Path, scene_dir: Path, iterations: int = 12, *extra: str) -> Path:
    """A finished gsplat-train run on a small built-in scene (a few seconds on a CPU)."""
    from gsplat_lib.train import cli

    arguments = [
        "--data", str(scene_dir), "--output", str(output), "--iterations", str(iterations),
        "--checkpoint-every", "5", "--no-progress", *extra,
    ]
    assert cli.main(arguments) == 0
    return output


def small_scene(folder: Path) -> Path:
    from gsplat_lib.data import make_synthetic_scene

    return make_synthetic_scene(folder, num_views=8, width=48, height=36, num_points=400)


def write_mesh_ply(path: Path, vertices, faces, colors=None, face_property="vertex_indices") -> Path:
    """A mesh PLY as a mesh stage writes it (plyfile): vertices, polygon faces, optional uchar colours."""
    from plyfile import PlyData, PlyElement

    vertices = np.asarray(vertices, dtype=np.float32)
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if colors is not None:
        colors = np.asarray(colors)
        kind = "u1" if colors.dtype == np.uint8 else "f4"
        fields += [("red", kind), ("green", kind), ("blue", kind)]
    vertex = np.empty(len(vertices), dtype=fields)
    for axis, name in enumerate("xyz"):
        vertex[name] = vertices[:, axis]
    if colors is not None:
        for channel, name in enumerate(("red", "green", "blue")):
            vertex[name] = colors[:, channel]
    face = np.empty(len(faces), dtype=[(face_property, "O")])
    face[face_property] = [np.asarray(polygon, dtype=np.int32) for polygon in faces]
    path.parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(face, "face")]).write(str(path))
    return path


def launch_browser(playwright):
    """Headless Chromium from the system (never a downloaded one), or a skip saying what is missing."""
    if CHROMIUM is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium; or set GSPLAT_LIB_CHROMIUM)")
    profile = tempfile.mkdtemp(prefix="gsplat-view-chromium-")
    context = playwright.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS, viewport={"width": 640, "height": 480},
    )
    return context, profile


def untrained_run(output: Path, scene_dir: Path) -> Path:
    """A run directory as gsplat-train leaves it after export, without the training: its settings
    and a ``point_cloud.ply`` of the dataset's points as opaque surfels (a second, not minutes)."""
    import torch

    from gsplat_lib import GaussianModel
    from gsplat_lib.data import load_scene
    from gsplat_lib.train import RunDirectory, TrainConfig

    config = TrainConfig(data=str(scene_dir), output=str(output))
    RunDirectory(output, config.fingerprint()).claim(config.result_settings(), config.to_dict())
    scene = load_scene(scene_dir)
    model = GaussianModel.from_points(
        torch.from_numpy(scene.points), torch.from_numpy(scene.point_colors), scene_extent=float(scene.scene_extent),
        init_opacity=0.9,
    )
    model.save_ply(output / "point_cloud.ply")
    return output


def serve_until_ctrl_c(arguments, ready_text: str, cwd: Path, port: int) -> str:
    """Runs ``python ARGUMENTS`` (a command that serves a page), waits for ``ready_text`` on its
    output, checks that the page answers on ``port``, sends Ctrl-C and returns all it printed;
    fails unless it then exits with status 0."""
    import signal
    import subprocess
    import sys
    import urllib.request

    from subprocess_env import python_env

    process = subprocess.Popen(
        [sys.executable, *arguments], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=python_env(), cwd=cwd,
    )
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if ready_text in line:
                break
        assert any(ready_text in line for line in lines), "".join(lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.status == 200 and b"<html" in response.read().lower()
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
        output = "".join(lines) + rest
        assert process.returncode == 0, output
        return output
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        process.stdout.close()
