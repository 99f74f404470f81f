"""TSDF fusion (CPU): the compiled op against the pure-PyTorch reference, surfaces recovered
from analytic depth maps, determinism, memory budget and bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from gsplat_lib.cameras import look_at
from gsplat_lib.mesh import Contraction, TSDFVolume
from gsplat_lib.reference.tsdf import candidate_blocks_reference, integrate_reference
from mesh_scenes import orbit_cameras, plane, scene_depths, sphere


def noisy_scene(seed: int, width: int = 20, height: int = 15, views: int = 4):
    """Depth of a sphere and a plane, perturbed and partly masked, with random colours."""
    viewmats, Ks = orbit_cameras(views, width, height, distance=1.6)
    depths = scene_depths(viewmats, Ks, width, height, [sphere((0.05, 0.0, 0.1), 0.3), plane(-0.2, 0.6)])
    g = torch.Generator().manual_seed(seed)
    depths = depths * (1.0 + 0.01 * torch.randn(depths.shape, generator=g))
    depths[torch.rand(depths.shape, generator=g) < 0.05] = 0.0
    colors = torch.rand((views, height, width, 3), generator=g)
    return depths, viewmats, Ks, colors


def sorted_rows(coords: torch.Tensor) -> torch.Tensor:
    return torch.unique(coords, dim=0)


CONTRACTION = Contraction(center=(0.0, 0.0, 0.0), radius=0.25)


@pytest.mark.parametrize("contraction", [None, CONTRACTION], ids=["bounded", "contracted"])
def test_integration_matches_the_reference(contraction):
    depths, viewmats, Ks, colors = noisy_scene(1)
    volume = TSDFVolume(0.04, contraction=contraction)
    # Two batches: the second allocates more blocks, fused from its own views only.
    volume.integrate(depths[:2], viewmats[:2], Ks[:2], colors[:2])
    blocks_after_first = volume.block_coords.clone()
    expected_first = candidate_blocks_reference(depths[:2, ..., 0], viewmats[:2], Ks[:2], volume.grid)
    assert torch.equal(sorted_rows(blocks_after_first), expected_first)
    tsdf, weight, color = integrate_reference(
        blocks_after_first, torch.ones(len(blocks_after_first), 512), torch.zeros(len(blocks_after_first), 512),
        torch.zeros(len(blocks_after_first), 512, 3), viewmats[:2], Ks[:2], depths[:2, ..., 0], colors[:2],
        volume.grid,
    )
    volume.integrate(depths[2:], viewmats[2:], Ks[2:], colors[2:])
    all_blocks = volume.block_coords
    assert torch.equal(all_blocks[: len(blocks_after_first)], blocks_after_first)  # appended, never moved
    added = all_blocks[len(blocks_after_first):]
    assert torch.equal(added, torch.unique(added, dim=0))  # new blocks come in sorted order
    expected_all = candidate_blocks_reference(depths[..., 0], viewmats, Ks, volume.grid)
    assert torch.equal(sorted_rows(all_blocks), expected_all)
    fresh = len(added)
    tsdf = torch.cat([tsdf, torch.ones(fresh, 512)])
    weight = torch.cat([weight, torch.zeros(fresh, 512)])
    color = torch.cat([color, torch.zeros(fresh, 512, 3)])
    tsdf, weight, color = integrate_reference(
        all_blocks, tsdf, weight, color, viewmats[2:], Ks[2:], depths[2:, ..., 0], colors[2:], volume.grid
    )
    assert torch.equal(volume.weight, weight)
    assert int((weight > 0).sum()) > 1000
    torch.testing.assert_close(volume.tsdf, tsdf, rtol=0, atol=2e-6)
    torch.testing.assert_close(volume.color, color, rtol=0, atol=2e-6)


def test_deterministic_for_any_thread_count():
    depths, viewmats, Ks, colors = noisy_scene(2, width=40, height=30, views=6)
    results = []
    threads = torch.get_num_threads()
    try:
        for count in (1, 2, 2):
            torch.set_num_threads(count)
            volume = TSDFVolume(0.02)
            volume.integrate(depths, viewmats, Ks, colors)
            mesh = volume.extract_mesh()
            results.append((volume.block_coords, volume.tsdf, volume.weight, volume.color, mesh))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0][:4], other[:4]):
            assert torch.equal(a, b)
        assert torch.equal(results[0][4].vertices, other[4].vertices)
        assert torch.equal(results[0][4].faces, other[4].faces)
        assert torch.equal(results[0][4].vertex_colors, other[4].vertex_colors)


def test_every_cpu_lane_width_gives_the_same_bits(monkeypatch):
    """The CPU finds blocks for 1, 4 or 8 pixels and fuses 1, 4 or 8 voxels at once (the scalar
    lane is the math CUDA runs)."""
    import gsplat_lib.mesh.tsdf as tsdf_module
    from gsplat_lib import _backend

    depths, viewmats, Ks, colors = noisy_scene(3, width=32, height=24, views=5)
    widths = [1, 4] + ([8] if _backend.core().tsdf_max_cpu_lanes() == 8 else [])
    results = []
    for lanes in widths:
        monkeypatch.setattr(tsdf_module, "CPU_LANES", lanes)
        for contraction in (None, CONTRACTION):
            volume = TSDFVolume(0.03, contraction=contraction)
            volume.integrate(depths, viewmats, Ks, colors)
            results.append((lanes, contraction, volume))
    for lanes, contraction, volume in results:
        same = next(v for l, c, v in results if c == contraction)
        assert torch.equal(volume.block_coords, same.block_coords), lanes
        assert torch.equal(volume.tsdf, same.tsdf) and torch.equal(volume.weight, same.weight), lanes
        assert torch.equal(volume.color, same.color), lanes
    monkeypatch.setattr(tsdf_module, "CPU_LANES", 3)
    with pytest.raises(ValueError, match="cpu_lanes"):
        TSDFVolume(0.03).integrate(depths, viewmats, Ks)


def test_sphere_and_plane_recovered_within_a_voxel():
    width, height, voxel = 64, 48, 0.03
    viewmats, Ks = orbit_cameras(12, width, height, distance=2.0, elevation=0.3, base_elevation=0.5, top=True)
    center, radius = torch.tensor([0.1, -0.05, 0.15]), 0.35
    depths = scene_depths(viewmats, Ks, width, height, [sphere(center.tolist(), radius), plane(-0.3, 0.7)])
    volume = TSDFVolume(voxel)
    volume.integrate(depths, viewmats, Ks)
    mesh = volume.extract_mesh()
    on_sphere = (mesh.vertices - center).norm(dim=1) - radius
    on_plane = mesh.vertices[:, 2] + 0.3
    distance = torch.minimum(on_sphere.abs(), on_plane.abs())
    assert mesh.num_faces > 2000
    assert float(distance.max()) < voxel
    assert float(distance.mean()) < 0.15 * voxel
    # Both surfaces are there: vertices cover the sphere's top and the plane's corners.
    assert float(mesh.vertices[:, 2].max()) > 0.15 + radius - voxel
    assert float(mesh.vertices[:, 0].max()) > 0.7 - 2 * voxel
    # Triangles face the cameras: up on the plane, outwards on the sphere.
    normals = mesh.face_normals()
    centroids = mesh.vertices[mesh.faces].mean(dim=1)
    sphere_faces = ((centroids - center).norm(dim=1) - radius).abs() < voxel
    outward = (normals[sphere_faces] * (centroids[sphere_faces] - center)).sum(dim=1)
    assert float((outward > 0).float().mean()) > 0.99
    plane_faces = (centroids[:, 2] + 0.3).abs() < 0.2 * voxel
    assert float((normals[plane_faces, 2] > 0.9).float().mean()) > 0.99


def test_contracted_volume_recovers_near_and_far_surfaces():
    width, height, voxel = 48, 36, 0.02
    viewmats, Ks = orbit_cameras(10, width, height, distance=0.8, elevation=0.3)
    # Cameras on a ring look in at a small sphere, and out (from the same places) at a far
    # spherical shell around everything: a "sky" at 4 radii.
    eyes = -(viewmats[:, :3, :3].transpose(1, 2) @ viewmats[:, :3, 3:])[..., 0]
    outward = torch.stack([look_at(eye.tolist(), (2.0 * eye).tolist(), up=(0.0, 0.0, 1.0)) for eye in eyes])
    all_views = torch.cat([viewmats, outward])
    all_Ks = torch.cat([Ks, Ks])

    def sky(viewmat, K, w, h):
        from mesh_scenes import _rays

        origin, directions = _rays(viewmat, K, w, h)
        a = (directions * directions).sum(-1)
        b = (directions * origin).sum(-1)
        c = (origin * origin).sum() - 4.0**2
        return (-b + torch.sqrt(b * b - a * c)) / a  # from inside: the far root

    near_sphere = sphere((0.0, 0.0, 0.0), 0.3)
    depths = torch.cat(
        [scene_depths(viewmats, Ks, width, height, [near_sphere]), scene_depths(outward, Ks, width, height, [sky])]
    )
    volume = TSDFVolume(voxel, contraction=Contraction(center=(0.0, 0.0, 0.0), radius=1.0))
    volume.integrate(depths, all_views, all_Ks)
    mesh = volume.extract_mesh()
    radii = mesh.vertices.norm(dim=1)
    near = radii < 1.0
    far = radii > 2.0
    assert int(near.sum()) > 200 and int(far.sum()) > 200
    near_error = (radii[near] - 0.3).abs()
    assert float(near_error.mean()) < 0.2 * voxel and float(near_error.max()) < voxel
    # At 4 radii (|y| = 1.75) voxels are 16x larger along the ray: recovered within one of them.
    far_error = (radii[far] - 4.0).abs()
    assert float(far_error.mean()) < 0.2 * 16 * voxel and float(far_error.max()) < 16 * voxel


def test_alpha_masks_the_depth():
    width, height = 48, 36
    viewmats, Ks = orbit_cameras(6, width, height)
    depths = scene_depths(viewmats, Ks, width, height, [sphere((0.0, 0.0, 0.0), 0.4)])
    alphas = torch.ones_like(depths)
    alphas[..., : width // 2, :] = 0.2  # the left half of every image is transparent
    masked = TSDFVolume(0.04)
    masked.integrate(depths, viewmats, Ks, alphas=alphas, alpha_threshold=0.5)
    manual = TSDFVolume(0.04)
    manual.integrate(torch.where(alphas >= 0.5, depths, torch.zeros(())), viewmats, Ks)
    assert torch.equal(masked.block_coords, manual.block_coords)
    assert torch.equal(masked.tsdf, manual.tsdf) and torch.equal(masked.weight, manual.weight)
    full = TSDFVolume(0.04)
    full.integrate(depths, viewmats, Ks)
    assert masked.num_blocks < full.num_blocks
    plain = TSDFVolume(0.04, colors=False)  # no colour: the same distances, a mesh without colours
    plain.integrate(depths, viewmats, Ks, colors=torch.rand(depths.shape[:3] + (3,)))
    assert plain.color is None and torch.equal(plain.tsdf, full.tsdf) and torch.equal(plain.weight, full.weight)
    assert plain.block_bytes < full.block_bytes
    uncolored, colored = plain.extract_mesh(), full.extract_mesh()
    assert uncolored.vertex_colors is None and torch.equal(uncolored.faces, colored.faces)


def test_max_depth_and_empty_input():
    width, height = 32, 24
    viewmats, Ks = orbit_cameras(4, width, height, distance=2.0)
    depths = scene_depths(viewmats, Ks, width, height, [sphere((0.0, 0.0, 0.0), 0.4)])
    volume = TSDFVolume(0.05, max_depth=1.0)  # the sphere is 1.6 away: nothing fuses
    assert volume.integrate(depths, viewmats, Ks) == 0
    assert volume.num_blocks == 0
    mesh = volume.extract_mesh()
    assert mesh.num_vertices == 0 and mesh.num_faces == 0 and mesh.vertex_colors.shape == (0, 3)
    assert volume.integrate(depths[:0], viewmats[:0], Ks[:0]) == 0


def test_memory_budget_is_checked_before_allocating():
    width, height = 64, 48
    viewmats, Ks = orbit_cameras(4, width, height)
    depths = scene_depths(viewmats, Ks, width, height, [sphere((0.0, 0.0, 0.0), 0.4)])
    volume = TSDFVolume(0.01, memory_budget=50 * 10_252)
    with pytest.raises(ValueError, match="memory_budget"):
        volume.integrate(depths, viewmats, Ks)
    assert volume.num_blocks == 0 and volume.memory_bytes == 0


def test_bad_inputs_raise_clear_errors():
    width, height = 16, 12
    viewmats, Ks = orbit_cameras(2, width, height)
    depths = scene_depths(viewmats, Ks, width, height, [sphere((0.0, 0.0, 0.0), 0.4)])
    for bad in (0.0, -1.0, math.nan, math.inf, "0.1", True):
        with pytest.raises(ValueError, match="voxel_size"):
            TSDFVolume(bad)
    with pytest.raises(ValueError, match="truncation"):
        TSDFVolume(0.1, truncation=0.0)
    with pytest.raises(ValueError, match="memory_budget"):
        TSDFVolume(0.1, memory_budget=0)
    with pytest.raises(ValueError, match="radius"):
        Contraction(center=(0, 0, 0), radius=0.0)
    with pytest.raises(TypeError, match="contraction"):
        TSDFVolume(0.1, contraction=(0, 0, 0))
    volume = TSDFVolume(0.05)
    with pytest.raises(ValueError, match="viewmats"):
        volume.integrate(depths, viewmats[:1], Ks)
    with pytest.raises(TypeError, match="depths"):
        volume.integrate(depths.double(), viewmats, Ks)
    with pytest.raises(ValueError, match="colors"):
        volume.integrate(depths, viewmats, Ks, colors=torch.zeros(2, height, width, 4))
    broken = viewmats.clone()
    broken[0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="viewmats must be finite"):
        volume.integrate(depths, broken, Ks)
    skewed = Ks.clone()
    skewed[0, 0, 1] = 1.0
    with pytest.raises(ValueError, match="skew"):
        volume.integrate(depths, viewmats, skewed)
    far = depths.clone()
    far[0, 5, 5, 0] = 1e9  # lands beyond the addressable grid
    with pytest.raises(ValueError, match="beyond the grid"):
        TSDFVolume(0.001).integrate(far, viewmats, Ks)
    assert volume.num_blocks == 0
    # Non-finite and negative depth are no measurement, not an error.
    odd = depths.clone()
    odd[0, 0, :4, 0] = torch.tensor([math.nan, math.inf, -1.0, -math.inf])
    volume.integrate(odd, viewmats, Ks)
    assert bool(torch.isfinite(volume.tsdf).all())
    with pytest.raises(ValueError, match="min_weight"):
        volume.extract_mesh(min_weight=math.nan)
