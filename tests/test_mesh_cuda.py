"""TSDF fusion and marching cubes on CUDA: the same blocks, values and mesh as the CPU."""

from __future__ import annotations

import pytest
import torch

import gsplat_lib
from gsplat_lib.mesh import Contraction, TSDFVolume
from mesh_scenes import orbit_cameras, plane, scene_depths, sphere

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available() or not gsplat_lib.build_info()["cuda"],
        reason="needs a CUDA GPU and a CUDA build of gsplat_lib",
    ),
]


def scene(views=10, width=64, height=48):
    viewmats, Ks = orbit_cameras(views, width, height, distance=2.0, elevation=0.3, base_elevation=0.5)
    depths = scene_depths(viewmats, Ks, width, height, [sphere((0.1, -0.05, 0.15), 0.35), plane(-0.3037, 0.7)])
    colors = torch.rand((views, height, width, 3), generator=torch.Generator().manual_seed(0))
    alphas = torch.rand((views, height, width, 1), generator=torch.Generator().manual_seed(1)) * 0.2 + 0.45
    return depths, viewmats, Ks, colors, alphas


def fused(device, contraction=None, batch=4):
    depths, viewmats, Ks, colors, alphas = scene()
    volume = TSDFVolume(0.03, contraction=contraction, device=device)
    for first in range(0, depths.shape[0], batch):
        part = slice(first, first + batch)
        volume.integrate(
            depths[part].to(device), viewmats[part].to(device), Ks[part].to(device), colors[part].to(device),
            alphas[part].to(device), alpha_threshold=0.5,
        )
    return volume, volume.extract_mesh(min_weight=0.5)


@pytest.mark.parametrize("contraction", [None, Contraction(center=(0.0, 0.0, 0.0), radius=0.5)], ids=["bounded", "contracted"])
def test_cuda_matches_cpu_bit_for_bit(contraction):
    cpu_volume, cpu_mesh = fused("cpu", contraction)
    cuda_volume, cuda_mesh = fused("cuda", contraction)
    assert cuda_volume.tsdf.device.type == "cuda" and cuda_mesh.vertices.device.type == "cuda"
    assert torch.equal(cuda_volume.block_coords.cpu(), cpu_volume.block_coords)
    assert torch.equal(cuda_volume.weight.cpu(), cpu_volume.weight)
    assert torch.equal(cuda_volume.tsdf.cpu(), cpu_volume.tsdf)
    assert torch.equal(cuda_volume.color.cpu(), cpu_volume.color)
    assert cpu_mesh.num_faces > 1000
    assert torch.equal(cuda_mesh.faces.cpu(), cpu_mesh.faces)
    assert torch.equal(cuda_mesh.vertices.cpu(), cpu_mesh.vertices)
    assert torch.equal(cuda_mesh.vertex_colors.cpu(), cpu_mesh.vertex_colors)


def test_cuda_many_views_in_one_call_and_a_side_stream():
    """More views than one shared-memory chunk (32), on a non-default stream."""
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        depths, viewmats, Ks, colors, alphas = scene(views=40)
        volume = TSDFVolume(0.03, device="cuda")
        volume.integrate(depths.cuda(), viewmats.cuda(), Ks.cuda(), colors.cuda(), alphas.cuda())
        mesh = volume.extract_mesh()
    torch.cuda.synchronize()
    reference = TSDFVolume(0.03)
    reference.integrate(depths, viewmats, Ks, colors, alphas)
    assert torch.equal(volume.weight.cpu(), reference.weight)
    assert torch.equal(volume.tsdf.cpu(), reference.tsdf)
    expected = reference.extract_mesh()
    assert expected.num_faces > 1000
    assert torch.equal(mesh.faces.cpu(), expected.faces)
