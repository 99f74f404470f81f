"""A short 2DGS-style training loop on the CPU through the compat layer, written the way 2DGS's
gaussian_renderer/__init__.py and gaussian_model.py call the upstream extensions (device="cuda",
.cuda(), means2D = zeros_like(..) + 0 with retain_grad(), norm(means2D.grad) against 0.0002),
with CUDA requests sent to the CPU by cuda_on_cpu()."""

import math

import pytest
import torch

import gsplat_lib.compat.diff_surfel_rasterization as dsr
from diff_surfel_scenes import camera_settings, orbit_viewmat, random_scene
from gsplat_lib.compat import cuda_on_cpu
from gsplat_lib.compat.diff_surfel_rasterization import GaussianRasterizer
from gsplat_lib.compat.simple_knn._C import distCUDA2

WIDTH, HEIGHT = 40, 30
DENSIFY_GRAD_THRESHOLD = 0.0002  # 2DGS's default
PERCENT_DENSE = 0.01


def render(settings, params, bg):
    """2DGS's render(): the screen-space points are a zero non-leaf whose .grad is kept."""
    screenspace_points = torch.zeros_like(params["xyz"], dtype=params["xyz"].dtype, requires_grad=True,
                                          device="cuda") + 0
    screenspace_points.retain_grad()
    rasterizer = GaussianRasterizer(settings._replace(bg=bg))
    image, radii, allmap = rasterizer(
        means3D=params["xyz"], means2D=screenspace_points, shs=torch.cat([params["dc"], params["rest"]], 1),
        colors_precomp=None, opacities=torch.sigmoid(params["opacity"]), scales=torch.exp(params["scaling"]),
        rotations=torch.nn.functional.normalize(params["rotation"]), cov3D_precomp=None)
    return image, screenspace_points, radii > 0, radii, allmap


def densify(params, grads, extent):
    """2DGS's densify_and_clone + densify_and_split on plain tensors (no pruning)."""
    scaling = torch.exp(params["scaling"])
    big = scaling.max(dim=1).values > PERCENT_DENSE * extent
    selected = torch.norm(grads, dim=-1) >= DENSIFY_GRAD_THRESHOLD
    clone, split = selected & ~big, selected & big
    children = {}
    for name, value in params.items():
        children[name] = value[split].repeat(2, *([1] * (value.dim() - 1)))
    stds = torch.cat([scaling[split].repeat(2, 1), torch.zeros(2 * int(split.sum()), 1, device="cuda")], -1)
    w, x, y, z = torch.nn.functional.normalize(params["rotation"][split]).repeat(2, 1).unbind(-1)
    rotation = torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], -2)
    children["xyz"] = (rotation @ torch.normal(torch.zeros_like(stds), stds)[..., None])[..., 0] + children["xyz"]
    children["scaling"] = torch.log(scaling[split].repeat(2, 1) / 1.6)
    keep = ~split
    return {name: torch.cat([value[keep], value[clone], children[name]]).detach().requires_grad_(True)
            for name, value in params.items()}, int(clone.sum()), int(split.sum())


@pytest.mark.parametrize("semantics", ["upstream", "gsplat_lib"])
def test_upstream_style_training_densifies_on_cpu(semantics, monkeypatch):
    monkeypatch.setattr(dsr, "SEMANTICS", semantics)
    torch.manual_seed(0)
    truth = random_scene(120, seed=1, scale_range=(0.03, 0.12), extent=0.8, sh_degree=0)
    cameras = [camera_settings(orbit_viewmat(seed, distance=3.0), WIDTH, HEIGHT, sh_degree=0) for seed in range(4)]
    with cuda_on_cpu():
        targets = []
        with torch.no_grad():
            for settings in cameras:
                image, _, _ = GaussianRasterizer(settings)(
                    truth["means3D"].cuda(), torch.zeros(120, 3, device="cuda"), truth["opacities"].cuda(),
                    colors_precomp=truth["colors"].cuda(), scales=truth["scales"].cuda(),
                    rotations=truth["rotations"].cuda())
                targets.append(image)

        points = truth["means3D"][::2] + 0.02 * torch.randn(60, 3)
        dist2 = torch.clamp_min(distCUDA2(points.float().cuda()), 0.0000001)
        params = {
            "xyz": points.cuda(),
            "dc": torch.full((60, 1, 3), 0.0, device="cuda"),
            "rest": torch.zeros((60, 0, 3), device="cuda"),
            "scaling": torch.log(torch.sqrt(dist2))[..., None].repeat(1, 2),
            "rotation": torch.rand((60, 4), device="cuda"),
            "opacity": torch.logit(0.1 * torch.ones((60, 1), dtype=torch.float, device="cuda")),
        }
        params = {name: value.requires_grad_(True) for name, value in params.items()}
        learning_rates = dict(xyz=0.002, dc=0.0025 * 4, rest=0.0025, scaling=0.005, rotation=0.001, opacity=0.05)
        background = torch.tensor([0.0, 0.0, 0.0], dtype=torch.float32, device="cuda")
        extent = 20.0  # PERCENT_DENSE * extent = 0.2: the larger initial surfels split, the smaller clone

        def optimizer_for(params):
            return torch.optim.Adam([{"params": [params[k]], "lr": learning_rates[k]} for k in params], eps=1e-15)

        optimizer = optimizer_for(params)
        accum = torch.zeros((60, 1), device="cuda")
        denom = torch.zeros((60, 1), device="cuda")
        losses, counts, densified = [], [60], []
        for iteration in range(1, 91):
            settings = cameras[iteration % len(cameras)]
            image, viewspace_points, visible, radii, allmap = render(settings, params, background)
            loss = (image - targets[iteration % len(cameras)]).abs().mean()
            loss.backward()
            losses.append(float(loss.detach()))
            with torch.no_grad():
                grad = viewspace_points.grad
                assert grad.shape == (params["xyz"].shape[0], 3) and bool(torch.isfinite(grad).all())
                assert bool((grad[~visible] == 0).all()) and bool((grad[:, 2] == 0).all())
                accum[visible] += torch.norm(grad[visible], dim=-1, keepdim=True)
                denom[visible] += 1
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if iteration in (30, 60):
                    grads = accum / denom
                    grads[grads.isnan()] = 0.0
                    params, cloned, split = densify(params, grads, extent)
                    densified.append((cloned, split))
                    optimizer = optimizer_for(params)
                    accum = torch.zeros((params["xyz"].shape[0], 1), device="cuda")
                    denom = torch.zeros((params["xyz"].shape[0], 1), device="cuda")
                    counts.append(params["xyz"].shape[0])
    assert all(value.device.type == "cpu" for value in params.values())
    assert counts[1] > counts[0] and counts[2] > counts[1], (counts, densified)
    assert sum(c for c, _ in densified) > 0 and sum(s for _, s in densified) > 0, densified
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.8 * first, (first, last)
    assert not math.isnan(last)
