"""Meshing a GaussianModel: surfels laid on a known plane come back as that plane, coloured."""

from __future__ import annotations

import math

import pytest
import torch

from gsplat_lib import GaussianModel
from gsplat_lib.mesh import MeshSettings, camera_bounding_sphere, mesh_from_model, render_depth_maps
from mesh_scenes import orbit_cameras


def flat_model() -> GaussianModel:
    """Opaque surfels tiling the square z = 0.1037, |x|, |y| <= 0.5, facing up, red to green along x."""
    steps = torch.linspace(-0.5, 0.5, 41)
    x, y = torch.meshgrid(steps, steps, indexing="ij")
    points = torch.stack([x.reshape(-1), y.reshape(-1), torch.full((x.numel(),), 0.1037)], dim=1)
    colors = torch.stack([(points[:, 0] + 0.5), (0.5 - points[:, 0]), torch.full_like(points[:, 0], 0.2)], dim=1)
    model = GaussianModel.from_points(points, colors, scene_extent=1.0, sh_degree=1)
    with torch.no_grad():
        model.params["quats"][:] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # the surfel normal is the world z
        # Several pixels wide: smaller surfels take the screen-space fallback, whose depth is the
        # centre's, and a pixel's first surfels then sit nearer the camera than the plane.
        model.params["log_scales"][:] = math.log(0.05)
        model.params["opacity_logits"][:] = 6.0
    return model


def test_surfels_on_a_plane_mesh_to_that_plane():
    model = flat_model()
    width, height = 64, 48
    viewmats, Ks = orbit_cameras(10, width, height, distance=2.0, elevation=0.3, base_elevation=0.8, target=(0.0, 0.0, 0.1037))
    center, radius = camera_bounding_sphere(viewmats)
    assert torch.allclose(torch.as_tensor(center), torch.tensor([0.0, 0.0, 0.1037], dtype=torch.float64), atol=1e-4)
    assert radius == pytest.approx(2.0, rel=1e-4)
    batches = list(render_depth_maps(model, viewmats, Ks, [(width, height)] * 10, batch_size=4))
    assert [len(batch.indices) for batch in batches] == [4, 4, 2]
    mesh, info = mesh_from_model(model, viewmats, Ks, [(width, height)] * 10, MeshSettings(voxel_size=0.02))
    assert info["settings"]["max_depth"] == pytest.approx(4.0, rel=1e-4)  # 2DGS: twice the radius
    assert info["num_faces"] == mesh.num_faces > 2000
    assert float(mesh.vertices[:, 0].min()) < -0.45 and float(mesh.vertices[:, 0].max()) > 0.45
    # Within a voxel of the plane, but at its rim (where a thin sheet's TSDF curls).
    inner = mesh.vertices[:, :2].abs().max(dim=1).values < 0.4
    height = (mesh.vertices[:, 2] - 0.1037).abs()
    assert float(height[inner].max()) < 0.02 and float(height.mean()) < 0.005
    # Colours are those of SH degree 0 (the surfels' own), interpolated across the surface.
    expected_red = mesh.vertices[inner, 0] + 0.5
    assert float((mesh.vertex_colors[inner, 0] - expected_red).abs().mean()) < 0.05
    normals = mesh.face_normals()
    inner_faces = mesh.vertices[mesh.faces].mean(dim=1)[:, :2].abs().max(dim=1).values < 0.4
    assert float((normals[inner_faces, 2] > 0.9).float().mean()) > 0.95  # facing up, to the cameras


def test_bad_mesh_settings_are_refused_before_rendering():
    model = flat_model()
    viewmats, Ks = orbit_cameras(2, 16, 12)
    sizes = [(16, 12)] * 2
    for bad, message in (
        (MeshSettings(voxel_size=-1.0), "voxel_size"),
        (MeshSettings(depth_ratio=2.0), "depth_ratio"),
        (MeshSettings(alpha_threshold=1.5), "alpha_threshold"),
        (MeshSettings(max_depth=0.0), "max_depth"),
        (MeshSettings(num_components=0), "num_components"),
        (MeshSettings(batch_size=0), "batch_size"),
    ):
        with pytest.raises(ValueError, match=message):
            mesh_from_model(model, viewmats, Ks, sizes, bad)
    with pytest.raises(ValueError, match="no cameras"):
        mesh_from_model(model, viewmats[:0], Ks[:0], [], MeshSettings())
    with pytest.raises(ValueError, match="sizes"):
        list(render_depth_maps(model, viewmats, Ks, sizes[:1]))
