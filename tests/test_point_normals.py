"""Initial surfel rotations from the points' local planes."""

import torch

from gsplat_lib.reference.rasterize import _quat_to_rotation
from gsplat_lib.train.point_normals import plane_rotations, rotation_to_quaternion


def test_rotation_to_quaternion_inverts_the_reference_rotation():
    generator = torch.Generator().manual_seed(0)
    quats = torch.nn.functional.normalize(torch.randn(2000, 4, generator=generator, dtype=torch.float64), dim=1)
    quats = quats * torch.where(quats[:, :1] < 0, -1.0, 1.0)
    # near-180-degree turns (w ~ 0) and the identity are where naive formulas divide by ~0
    quats[0] = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    quats[1] = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    quats[2] = torch.nn.functional.normalize(torch.tensor([1e-9, 0.0, 0.6, 0.8], dtype=torch.float64), dim=0)
    back = rotation_to_quaternion(_quat_to_rotation(quats))
    assert float((back - quats).abs().max()) < 1e-9


def test_surfels_lie_in_the_plane_of_their_neighbours():
    generator = torch.Generator().manual_seed(1)
    # Two planes: z = 0.3 x (a slope) and x = 5 (a wall), each sampled by 400 points.
    slope = torch.rand(400, 3, generator=generator)
    slope[:, 2] = 0.3 * slope[:, 0]
    wall = torch.rand(400, 3, generator=generator)
    wall[:, 0] = 5.0
    points = torch.cat([slope, wall])
    quats = plane_rotations(points)
    assert quats.shape == (800, 4) and quats.dtype == torch.float32
    axes = _quat_to_rotation(quats.double())
    normals, first_axes = axes[:, :, 2], axes[:, :, 0]
    slope_normal = torch.tensor([-0.3, 0.0, 1.0], dtype=torch.float64) / (1.09**0.5)
    assert float((1 - (normals[:400] @ slope_normal).abs()).max()) < 1e-6
    assert float((1 - normals[400:, 0].abs()).max()) < 1e-6
    assert float((first_axes * normals).sum(dim=1).abs().max()) < 1e-6  # in-plane first axis
    # Points on a line: any normal across it, still a unit quaternion.
    line = torch.zeros(20, 3)
    line[:, 0] = torch.arange(20.0)
    along = plane_rotations(line)
    assert torch.isfinite(along).all() and torch.allclose(along.norm(dim=1), torch.ones(20))
    assert float(_quat_to_rotation(along.double())[:, 0, 2].abs().max()) < 1e-6  # normal across x
