"""examples/train_batch_objects.py: the TRELLIS-style loop learns, a few steps of it on the CPU."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch

_PATH = Path(__file__).resolve().parents[1] / "examples" / "train_batch_objects.py"
_spec = importlib.util.spec_from_file_location("train_batch_objects", _PATH)
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)


def rotate_z_axis(quats: torch.Tensor) -> torch.Tensor:
    """The third column of each quaternion's rotation matrix (where local z goes)."""
    w, x, y, z = quats.unbind(1)
    return torch.stack([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)], dim=1)


def test_builtin_surfels_face_their_surface_normals():
    g = torch.Generator().manual_seed(0)
    normals = torch.randn(500, 3, generator=g)
    normals = normals / normals.norm(dim=1, keepdim=True)
    normals[:3] = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    facing = rotate_z_axis(example.quats_facing(normals))
    torch.testing.assert_close(facing.abs(), normals.abs(), atol=1e-5, rtol=0)  # two-sided: up to sign
    assert ((facing * normals).sum(1).abs() > 1 - 1e-5).all()
    for name in example.OBJECT_NAMES:
        surfels = example.builtin_object(name, 400)
        assert surfels["means"].abs().max() < 0.7 and torch.isfinite(surfels["quats"]).all(), name


def test_a_few_steps_learn():
    _, losses, target, rendered = example.train(steps=40, size=32, surfels_per_object=256, target_surfels=800,
                                                lr=1e-2, log_every=0)
    assert target.shape == rendered.shape == (len(example.OBJECT_NAMES), 32, 32, 3)
    assert all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, (first, last)
