"""Mesh clean-up, PLY files, evaluation against a known surface, previews, and the built-in
scene's surface samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gsplat_lib.cameras import look_at
from gsplat_lib.data.synthetic_scene import distance_to_surface, sample_surface
from gsplat_lib.mesh import (
    Mesh,
    connected_components,
    crop_to_ball,
    distance_to_mesh,
    evaluate_mesh,
    keep_largest_components,
    load_mesh_ply,
    rasterize_mesh,
    sample_mesh_surface,
    save_mesh_ply,
    shade_mesh,
)


def octahedron(center=(0.0, 0.0, 0.0), size=1.0) -> Mesh:
    """A closed octahedron (8 faces, outward, counter-clockwise)."""
    v = torch.tensor([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=torch.float32)
    faces = torch.tensor(
        [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]], dtype=torch.int64
    )
    return Mesh(v * size + torch.tensor(center), faces, torch.rand(6, 3, generator=torch.Generator().manual_seed(0)))


def union(*meshes: Mesh) -> Mesh:
    vertices, faces, colors, offset = [], [], [], 0
    for mesh in meshes:
        vertices.append(mesh.vertices)
        faces.append(mesh.faces + offset)
        colors.append(mesh.vertex_colors)
        offset += mesh.num_vertices
    return Mesh(torch.cat(vertices), torch.cat(faces), torch.cat(colors))


def subdivided(mesh: Mesh, times: int) -> Mesh:
    """Each face split into 4 (more faces for the component tests), vertices not merged."""
    for _ in range(times):
        corners = mesh.vertices[mesh.faces]
        a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
        ab, bc, ca = (a + b) / 2, (b + c) / 2, (c + a) / 2
        triangles = torch.stack([torch.stack(t, 1) for t in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))], 1)
        vertices = triangles.reshape(-1, 3)
        mesh = Mesh(vertices, torch.arange(vertices.shape[0]).reshape(-1, 3), torch.zeros_like(vertices))
        mesh = _weld(mesh)
    return mesh


def _weld(mesh: Mesh) -> Mesh:
    unique, inverse = torch.unique(torch.round(mesh.vertices * 1e5).long(), dim=0, return_inverse=True)
    return Mesh(unique.float() / 1e5, inverse[mesh.faces], torch.zeros(unique.shape[0], 3))


def test_connected_components_and_the_largest_kept():
    big = subdivided(octahedron((0, 0, 0), 1.0), 3)  # 512 faces
    medium = subdivided(octahedron((3, 0, 0), 0.5), 2)  # 128 faces
    floater = octahedron((0, 3, 0), 0.1)  # 8 faces
    mesh = union(floater, big, medium)
    labels, sizes = connected_components(mesh.faces, mesh.num_vertices)
    assert sizes.tolist() == [8, 512, 128]  # numbered by first face
    assert torch.equal(labels[:8], torch.zeros(8, dtype=torch.int64))
    kept = keep_largest_components(mesh, num_components=50, min_faces=50)
    assert kept.num_faces == 640 and kept.num_vertices == mesh.num_vertices - 6
    largest = keep_largest_components(mesh, num_components=1, min_faces=0)
    assert largest.num_faces == 512
    assert float(largest.vertices.abs().max()) <= 1.0
    everything = keep_largest_components(mesh, num_components=50, min_faces=0)
    assert everything.num_faces == mesh.num_faces
    # Long chains converge too (labels spread with pointer jumping).
    strip = 3000
    vertices = torch.stack([torch.arange(strip + 2).float(), (torch.arange(strip + 2) % 2).float(), torch.zeros(strip + 2)], 1)
    faces = torch.stack([torch.arange(strip), torch.arange(strip) + 1, torch.arange(strip) + 2], 1)
    _, strip_sizes = connected_components(faces, strip + 2)
    assert strip_sizes.tolist() == [strip]
    with pytest.raises(ValueError, match="num_components"):
        keep_largest_components(mesh, num_components=0)


def test_ply_round_trip_and_bad_files(tmp_path):
    mesh = union(octahedron(), octahedron((2, 0, 0), 0.5))
    path = save_mesh_ply(tmp_path / "sub" / "mesh.ply", mesh)
    loaded = load_mesh_ply(path)
    assert torch.equal(loaded.vertices, mesh.vertices)
    assert torch.equal(loaded.faces, mesh.faces)
    assert torch.allclose(loaded.vertex_colors, mesh.vertex_colors, atol=0.5 / 255)
    assert not list(tmp_path.joinpath("sub").glob(".*partial"))
    uncolored = Mesh(mesh.vertices, mesh.faces)
    assert load_mesh_ply(save_mesh_ply(tmp_path / "plain.ply", uncolored)).vertex_colors is None
    (tmp_path / "junk.ply").write_bytes(b"not a ply")
    with pytest.raises(ValueError, match="junk.ply"):
        load_mesh_ply(tmp_path / "junk.ply")
    broken = Mesh(mesh.vertices, mesh.faces + 100)
    with pytest.raises(ValueError, match="do not exist"):
        save_mesh_ply(tmp_path / "broken.ply", broken)


def test_distance_to_mesh_is_exact_point_to_triangle():
    mesh = subdivided(octahedron(), 2)
    g = torch.Generator().manual_seed(3)
    points = torch.randn(500, 3, generator=g, dtype=torch.float64)
    # Brute force: the closest point on every triangle, by dense sampling is too coarse; instead
    # use the plane distance where the projection falls inside the face (octahedron faces are
    # the planes |x| + |y| + |z| = 1 per octant), else the edges and corners.
    distance = distance_to_mesh(points, mesh)
    signs = torch.sign(points)
    signs[signs == 0] = 1
    folded = points.abs()  # the octant's face: x + y + z = 1 with x, y, z >= 0
    plane = (folded.sum(dim=1) - 1.0) / math.sqrt(3.0)
    projection = folded - plane[:, None] / math.sqrt(3.0)
    inside = (projection >= 0).all(dim=1)
    assert int(inside.sum()) > 100
    torch.testing.assert_close(distance[inside], plane[inside].abs(), rtol=0, atol=1e-6)
    # A point on the surface is at distance 0, a vertex of the mesh too.
    assert float(distance_to_mesh(mesh.vertices.double(), mesh).max()) < 1e-6


def test_evaluation_of_a_perfect_and_a_shifted_mesh():
    sphere_mesh = subdivided(octahedron(), 4)
    sphere_mesh = Mesh(sphere_mesh.vertices / sphere_mesh.vertices.norm(dim=1, keepdim=True), sphere_mesh.faces)

    def distance(points):
        return np.abs(np.linalg.norm(points, axis=1) - 1.0)

    def sample(count, seed):
        rng = np.random.default_rng(seed)
        directions = rng.normal(size=(count, 3))
        return directions / np.linalg.norm(directions, axis=1, keepdims=True)

    exact = evaluate_mesh(sphere_mesh, distance, sample, num_samples=2000, threshold=0.01)
    assert exact["accuracy"] < 4e-3 and exact["completeness"] < 4e-3  # faceting of 2048 faces
    assert exact["precision"] == 1.0 and exact["recall"] == 1.0
    grown = Mesh(sphere_mesh.vertices * 1.05, sphere_mesh.faces)
    shifted = evaluate_mesh(grown, distance, sample, num_samples=2000, threshold=0.01)
    assert shifted["accuracy"] == pytest.approx(0.05, abs=5e-3)
    assert shifted["completeness"] == pytest.approx(0.05, abs=5e-3)
    assert shifted["chamfer"] == pytest.approx(0.5 * (shifted["accuracy"] + shifted["completeness"]))
    assert shifted["f_score"] == 0.0
    empty = evaluate_mesh(Mesh(torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64)), distance, sample)
    assert math.isinf(empty["chamfer"])
    points = sample_mesh_surface(sphere_mesh, 1000, seed=1)
    assert torch.equal(points, sample_mesh_surface(sphere_mesh, 1000, seed=1))


def test_evaluation_cropped_to_the_sampled_ball():
    """A ground truth sampled only near the origin judges the mesh there: a displaced far
    object costs accuracy without the crop and nothing with it."""
    unit = subdivided(octahedron(), 3)
    unit = Mesh(unit.vertices / unit.vertices.norm(dim=1, keepdim=True), unit.faces)
    far_center = torch.tensor([5.0, 0.0, 0.0])
    far = Mesh(1.3 * unit.vertices + far_center, unit.faces)  # the far sphere, 0.3 too large
    both = Mesh(torch.cat([unit.vertices, far.vertices]), torch.cat([unit.faces, far.faces + unit.num_vertices]))
    assert crop_to_ball(both, 2.0).num_faces == unit.num_faces

    def distance(points):  # the true surface: unit spheres at the origin and at far_center
        return np.minimum(
            np.abs(np.linalg.norm(points, axis=1) - 1.0), np.abs(np.linalg.norm(points - far_center.numpy(), axis=1) - 1.0)
        )

    def sample(count, seed):  # only the part within radius 2 of the origin
        directions = np.random.default_rng(seed).normal(size=(count, 3))
        return directions / np.linalg.norm(directions, axis=1, keepdims=True)

    whole = evaluate_mesh(both, distance, sample, num_samples=2000)
    cropped = evaluate_mesh(both, distance, sample, num_samples=2000, radius=2.0)
    assert whole["accuracy"] > 0.1 and cropped["accuracy"] < 0.01 and cropped["radius"] == 2.0
    assert cropped["completeness"] == pytest.approx(whole["completeness"], abs=1e-3)
    with pytest.raises(ValueError, match="radius"):
        evaluate_mesh(both, distance, sample, radius=-1.0)


def test_builtin_scene_surface_samples():
    points = sample_surface(20000, seed=4)
    assert points.shape == (20000, 3)
    assert float(distance_to_surface(points).max()) < 1e-9
    assert np.array_equal(points, sample_surface(20000, seed=4))
    assert not np.array_equal(points, sample_surface(20000, seed=5))
    # Uniform by area: the ground (6.25 minus the boxes' footprints, 0.32) against the spheres
    # (4 pi (0.42^2 + 0.28^2 + 0.16^2) = 3.52) and the boxes' five visible faces (1.51 + 0.73).
    on_ground = np.abs(points[:, 2]) < 1e-12
    assert on_ground.mean() == pytest.approx(5.928 / (5.928 + 3.524 + 1.512 + 0.730), abs=0.02)
    assert sample_surface(0).shape == (0, 3)
    with pytest.raises(ValueError, match="count"):
        sample_surface(-1)


def test_rasterized_mesh_sees_the_nearest_face():
    # Two parallel squares facing the camera; the front one is smaller: a frame of the back one shows.
    def square(z, half):
        v = torch.tensor([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]])
        return Mesh(v, torch.tensor([[0, 1, 2], [0, 2, 3]]), torch.full((4, 3), 0.5 if z > 0 else 1.0))

    mesh = union(square(1.0, 1.0), square(0.0, 0.5))
    viewmat = look_at((0.0, 0.0, -3.0), (0.0, 0.0, 0.0))
    K = torch.tensor([[40.0, 0.0, 32.0], [0.0, 40.0, 32.0], [0.0, 0.0, 1.0]])
    face, bary, depth = rasterize_mesh(mesh, viewmat, K, 64, 64)
    assert set(face[32, 32:34].tolist()) <= {2, 3}  # the front square
    assert float(depth[32, 32]) == pytest.approx(3.0)
    assert set(face[32, 23:25].tolist()) <= {0, 1}  # the back square around the front one
    assert float(depth[32, 23]) == pytest.approx(4.0, rel=1e-6)
    assert int(face[0, 0]) == -1
    hit = face >= 0
    torch.testing.assert_close(bary[hit].sum(dim=1), torch.ones(int(hit.sum()), dtype=torch.float64))
    image = shade_mesh(mesh, viewmat, K, 64, 64, use_colors=True)
    assert image.shape == (64, 64, 3) and np.array_equal(image[0, 0], [1.0, 1.0, 1.0])
    assert image[32, 23, 0] < image[32, 32, 0]  # the back square is darker (colour 0.5)
