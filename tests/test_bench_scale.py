"""benchmarks/bench_scale.py: its scene builder places surfels on the built-in scene's surfaces,
facing their normals, and the whole benchmark runs end to end at a tiny size."""

import importlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gsplat_lib.data.synthetic_scene import distance_to_surface, synthetic_scene_viewmats

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench_scale():
    sys.path.insert(0, str(BENCHMARKS))  # bench_scale imports bench_rasterize and bench_train
    try:
        yield importlib.import_module("bench_scale")
    finally:
        sys.path.remove(str(BENCHMARKS))


def rotate(quats, vectors):
    """Rotates [N, 3] vectors by [N, 4] (w, x, y, z) unit quaternions."""
    w, axis = quats[:, :1], quats[:, 1:]
    twice_cross = 2.0 * torch.cross(axis, vectors, dim=1)
    return vectors + w * twice_cross + torch.cross(axis, twice_cross, dim=1)


def test_quaternions_turn_z_onto_the_normals(bench_scale):
    normals = torch.nn.functional.normalize(torch.randn(200, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    normals = torch.cat([normals, torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])])
    quats = bench_scale.quaternions_facing(normals)
    assert torch.allclose(quats.norm(dim=1), torch.ones(len(quats)), atol=1e-6)
    z = torch.tensor([0.0, 0.0, 1.0]).expand_as(normals)
    assert torch.allclose(rotate(quats, z), normals, atol=1e-5)


def test_surface_hits_lie_on_the_scene_surfaces(bench_scale):
    viewmats = synthetic_scene_viewmats(4)
    K = bench_scale.intrinsics(64, 36)
    points, normals, colors = bench_scale.surface_hits(3000, viewmats, K, 64, 36, np.random.default_rng(0))
    assert points.shape == normals.shape == colors.shape == (3000, 3)
    assert np.abs(distance_to_surface(points)).max() < 1e-9
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0)
    assert colors.min() >= 0.0 and colors.max() <= 1.0 and colors.max() > 0.2
    # Every hit faces some camera: its normal points back along a ray.
    centres = -np.einsum("vji,vj->vi", viewmats[:, :3, :3], viewmats[:, :3, 3])
    facing = np.einsum("nvk,nk->nv", centres[None] - points[:, None], normals)
    assert (facing.max(axis=1) > 0).all()


def test_targets_show_the_world_and_points_start_near_it(bench_scale):
    size = bench_scale.Size(surfels=4000, points=1000, width=96, height=54, views=9, steps=1, warmup=0, repeats=1)
    world, scene = bench_scale.build_scene(size, torch.device("cpu"))
    assert len(world["means"]) == 4000 and len(scene.train) == 7 and len(scene.test) == 2
    assert scene.points.shape == scene.point_colors.shape == (1000, 3)
    spacing = float(world["scales"].max()) / bench_scale.SCALE_PER_SPACING
    assert np.abs(distance_to_surface(scene.points)).max() < 4 * spacing
    for camera in scene.train:
        assert camera.image.shape == (54, 96, 3) and np.isfinite(camera.image).all()
        covered = (camera.image.max(axis=2) > 0.05).mean()  # the background is black
        assert 0.3 < covered < 1.0


def test_benchmark_runs_end_to_end(bench_scale, tmp_path):
    out = tmp_path / "scale.json"
    bench_scale.main(["--out", str(out), "--device", "cpu", "--surfels", "3000", "--points", "800", "--width", "64",
                      "--height", "36", "--views", "4", "--steps", "3", "--warmup", "1", "--repeats", "2"])
    rows = json.loads(out.read_text())["rows"]
    phases = [(row["method"], row.get("phase")) for row in rows]
    assert ("gsplat_lib", "forward+backward") in phases
    assert ("gsplat_lib Trainer", "full 2DGS recipe") in phases
    assert ("gsplat_lib", "fixed 2DGS step") in phases
    assert {"method": "gsplat rasterization_2dgs", "skipped": "gsplat needs a CUDA device"} in rows
    recipe = next(row for row in rows if row.get("phase") == "full 2DGS recipe")
    assert recipe["steps"] == 3 and recipe["final_surfels"] > 0
    assert math.isfinite(recipe["steady_steps_per_second"]) and recipe["steady_steps_per_second"] > 0
    forward_backward = next(row for row in rows if row.get("phase") == "forward+backward")
    assert forward_backward["surfels"] == 3000 and forward_backward["forward_pairs"] > 0
