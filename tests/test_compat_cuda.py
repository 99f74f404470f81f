"""The compat layer on CUDA against the same calls on the CPU. Needs a GPU."""

import pytest
import torch

import gsplat_lib
import gsplat_lib.compat.diff_surfel_rasterization as dsr
from diff_surfel_scenes import camera_settings, orbit_viewmat, random_scene, splat_to_pixels
from gsplat_lib.compat.diff_surfel_rasterization import GaussianRasterizer
from gsplat_lib.compat.simple_knn._C import distCUDA2

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(not gsplat_lib.build_info()["cuda"], reason="gsplat_lib was built without CUDA"),
]


def on(settings, device):
    return settings._replace(bg=settings.bg.to(device), viewmatrix=settings.viewmatrix.to(device),
                             projmatrix=settings.projmatrix.to(device), campos=settings.campos.to(device))


def run(scene, settings, device, precomp):
    leaves = {k: v.to(device).clone().requires_grad_(True) for k, v in scene.items() if k != "colors"}
    means2D = torch.zeros(scene["means3D"].shape[0], 4, device=device, requires_grad=True) + 0
    means2D.retain_grad()
    settings = on(settings, device)
    geometry = (dict(cov3D_precomp=splat_to_pixels(leaves["means3D"], leaves["scales"], leaves["rotations"], settings))
                if precomp else dict(scales=leaves["scales"], rotations=leaves["rotations"]))
    color, radii, allmap = GaussianRasterizer(settings)(leaves["means3D"], means2D, leaves["opacities"],
                                                        shs=leaves["shs"], **geometry)
    g = torch.Generator().manual_seed(1)
    loss = ((color * torch.randn(color.shape, generator=g).to(device)).sum()
            + (allmap * torch.randn(allmap.shape, generator=g).to(device)).sum())
    loss.backward()
    out = dict(color=color, radii=radii, allmap=allmap, means2D=means2D.grad)
    out.update({f"grad_{k}": v.grad for k, v in leaves.items()})
    return {k: v.detach().cpu() for k, v in out.items()}


@pytest.mark.parametrize("semantics", ["upstream", "gsplat_lib"])
@pytest.mark.parametrize("precomp", [False, True])
def test_compat_cuda_matches_cpu(precomp, semantics, monkeypatch):
    monkeypatch.setattr(dsr, "SEMANTICS", semantics)
    scene = random_scene(300, seed=4, sh_degree=2)
    settings = camera_settings(orbit_viewmat(2), 70, 45, principal=(30.0, 25.0), sh_degree=2)
    cuda, cpu = run(scene, settings, "cuda", precomp), run(scene, settings, "cpu", precomp)
    assert torch.equal(cuda["radii"], cpu["radii"])
    for name, expected in cpu.items():
        scale = float(expected.abs().max())
        error = float((cuda[name].double() - expected.double()).abs().max())
        assert error <= 1e-3 * scale + 1e-5, f"{name}: {error:.3g} vs scale {scale:.3g}"


def test_distcuda2_matches_cpu_on_every_device():
    points = torch.rand(5000, 3) * 3
    expected = distCUDA2(points)
    for index in range(torch.cuda.device_count()):
        result = distCUDA2(points.to(f"cuda:{index}"))
        assert result.device == torch.device(f"cuda:{index}")
        torch.testing.assert_close(result.cpu(), expected, rtol=1e-6, atol=0)
