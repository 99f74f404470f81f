"""Marching cubes over sparse TSDF blocks (CPU), on fields written straight into a volume."""

from __future__ import annotations

import math

import pytest
import torch

from gsplat_lib.mesh import Contraction, TSDFVolume
from gsplat_lib.reference.tsdf import grid_to_world


def filled_volume(voxel: float, blocks, field, contraction=None, weight=1.0) -> TSDFVolume:
    """A volume holding ``blocks`` ([K, 3] block coordinates) whose voxels take
    ``field(world [B, 512, 3]) -> (tsdf [B, 512], color [B, 512, 3])`` with ``weight``."""
    volume = TSDFVolume(voxel, contraction=contraction)
    volume.allocate_blocks(torch.as_tensor(blocks, dtype=torch.int32))
    world = grid_to_world(volume.voxel_indices().to(torch.float32), volume.grid)
    tsdf, color = field(world)
    volume.tsdf[:] = tsdf
    volume.color[:] = color
    volume.weight[:] = weight
    return volume


def block_range(low: int, high: int):
    steps = torch.arange(low, high + 1)
    return torch.stack(torch.meshgrid(steps, steps, steps, indexing="ij"), dim=-1).reshape(-1, 3)


def directed_edges(faces: torch.Tensor, num_vertices: int):
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return edges[:, 0] * num_vertices + edges[:, 1], edges[:, 1] * num_vertices + edges[:, 0]


def assert_closed_and_oriented(mesh):
    """Every directed edge occurs once and its reverse once: a closed, consistently oriented surface."""
    forward, backward = directed_edges(mesh.faces, mesh.num_vertices)
    assert torch.unique(forward).numel() == forward.numel()
    assert bool(torch.isin(backward, forward).all())


def signed_volume(mesh) -> float:
    corners = mesh.vertices[mesh.faces].double()
    return float(torch.linalg.det(corners).sum() / 6.0)


def sphere_field(center, radius, truncation):
    center = torch.as_tensor(center)

    def field(world):
        distance = (world - center).norm(dim=-1) - radius
        color = torch.stack([world[..., 0] + 0.5, world[..., 1] * 0.5 + 0.5, 0.25 * torch.ones_like(distance)], dim=-1)
        return (distance / truncation).clamp(-1.0, 1.0), color

    return field


def test_sphere_is_closed_oriented_and_accurate():
    voxel, radius = 0.05, 0.5
    # Centred on a block corner: the surface crosses blocks on both sides of every axis.
    volume = filled_volume(voxel, block_range(-2, 1), sphere_field((0.0, 0.0, 0.0), radius, 5 * voxel))
    mesh = volume.extract_mesh()
    assert_closed_and_oriented(mesh)
    error = (mesh.vertices.norm(dim=1) - radius).abs()
    assert float(error.max()) < 0.05 * voxel  # linear interpolation of an exact distance
    edges = torch.unique(torch.sort(torch.cat([mesh.faces[:, [0, 1]], mesh.faces[:, [1, 2]], mesh.faces[:, [2, 0]]]), dim=1).values, dim=0)
    assert mesh.num_vertices - edges.shape[0] + mesh.num_faces == 2  # a sphere's Euler characteristic
    assert signed_volume(mesh) == pytest.approx(4.0 / 3.0 * math.pi * radius**3, rel=0.01)  # outward normals
    # Colours are interpolated linearly along the edges: exact for a linear colour field.
    expected = torch.stack([mesh.vertices[:, 0] + 0.5, mesh.vertices[:, 1] * 0.5 + 0.5], dim=1)
    torch.testing.assert_close(mesh.vertex_colors[:, :2], expected, rtol=0, atol=2e-6)
    assert torch.equal(mesh.vertex_colors[:, 2], torch.full((mesh.num_vertices,), 0.25))


def test_every_cube_configuration_closes_up():
    """Random signs inside a box of positive voxels: the surface closes whatever the cube cases,
    also where a face has two diagonal inside corners (the classic table leaves holes there)."""
    seen = set()
    for seed in range(4):
        g = torch.Generator().manual_seed(seed)
        inside = torch.zeros(16, 16, 16, dtype=torch.bool)
        inside[2:14, 2:14, 2:14] = torch.rand(12, 12, 12, generator=g) < 0.5
        magnitude = torch.rand(16, 16, 16, generator=g) + 0.01
        values = torch.where(inside, -magnitude, magnitude)

        def field(world):
            index = torch.round(world / 0.1).long()  # voxel (x, y, z) of each slot
            return values[index[..., 0], index[..., 1], index[..., 2]], torch.zeros((*world.shape[:-1], 3))

        mesh = filled_volume(0.1, block_range(0, 1), field).extract_mesh()
        assert_closed_and_oriented(mesh)
        # Every vertex lies on a voxel edge.
        grid = mesh.vertices / 0.1
        assert bool((((grid - torch.round(grid)).abs() < 1e-4).sum(dim=1) == 2).all())
        cubes = torch.zeros(15, 15, 15, dtype=torch.int64)
        for k in range(8):
            dx, dy, dz = k & 1, (k >> 1) & 1, (k >> 2) & 1
            cubes |= inside[dx:dx + 15, dy:dy + 15, dz:dz + 15].long() << k
        seen.update(torch.unique(cubes).tolist())
    assert len(seen) == 256  # every case occurred


def test_unobserved_voxels_leave_a_hole_and_min_weight_filters():
    voxel = 0.05
    volume = filled_volume(voxel, block_range(-2, 1), sphere_field((0.0, 0.0, 0.0), 0.5, 5 * voxel))
    world = grid_to_world(volume.voxel_indices().float(), volume.grid)
    volume.weight[world[..., 2] > 0.3] = 0.0  # the cap was never observed
    volume.weight[(world[..., 2] < -0.3)] = 1.0
    volume.weight[(world[..., 2] >= -0.3) & (world[..., 2] <= 0.3)] = 3.0
    capped = volume.extract_mesh()
    assert float(capped.vertices[:, 2].max()) <= 0.3 + voxel
    forward, backward = directed_edges(capped.faces, capped.num_vertices)
    assert not bool(torch.isin(backward, forward).all())  # open where the cap is missing
    band = volume.extract_mesh(min_weight=1.0)  # voxels seen once do not count
    assert float(band.vertices[:, 2].min()) >= -0.3 - voxel
    assert band.num_faces < capped.num_faces


def test_contracted_grid_maps_vertices_back_to_the_world():
    voxel = 0.02
    contraction = Contraction(center=(0.1, 0.0, 0.0), radius=1.0)
    # A sphere of radius 3 around the centre sits at |y| = 2 - 1/3 in contracted space.
    y = 2.0 - 1.0 / 3.0
    side = int(math.ceil(y / voxel / 8)) + 1
    blocks = block_range(-side, side - 1)
    blocks = blocks[((blocks.float() * 8 * voxel).norm(dim=1) - y).abs() < 0.3]
    volume = filled_volume(voxel, blocks, sphere_field((0.1, 0.0, 0.0), 3.0, 1.0), contraction=contraction)
    mesh = volume.extract_mesh()
    assert mesh.num_faces > 1000
    error = ((mesh.vertices - torch.tensor([0.1, 0.0, 0.0])).norm(dim=1) - 3.0).abs()
    # Contracted voxels are 9x larger radially there: still within a small fraction of one.
    assert float(error.max()) < 0.1 * 9 * voxel
    assert signed_volume(mesh) > 0


def test_empty_and_flat_fields_give_no_triangles():
    voxel = 0.1
    positive = filled_volume(voxel, block_range(0, 0), lambda w: (torch.ones(w.shape[:-1]), torch.zeros_like(w)))
    assert positive.extract_mesh().num_faces == 0
    unobserved = filled_volume(voxel, block_range(0, 0), sphere_field((0.35, 0.35, 0.35), 0.2, 0.5), weight=0.0)
    assert unobserved.extract_mesh().num_faces == 0
    # A lone block is meshed only in its 7^3 inner cubes (its neighbours do not exist).
    alone = filled_volume(voxel, block_range(0, 0), sphere_field((0.35, 0.35, 0.35), 0.2, 0.5))
    mesh = alone.extract_mesh()
    assert_closed_and_oriented(mesh)
    assert float(mesh.vertices.max()) <= 0.7 and float(mesh.vertices.min()) >= 0.0
