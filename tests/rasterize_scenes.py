"""Small random surfel scenes and output lists shared by the rasterizer tests and benchmarks."""

from __future__ import annotations

import math

import torch

from gsplat_lib import look_at

#: RasterResult's images the kernels write, and with the derived ones (computed from them).
RENDERED_IMAGES = ["colors", "alphas", "depths", "median_depths", "normals", "distortions"]
IMAGE_OUTPUTS = ["colors", "alphas", "depths", "expected_depths", "median_depths", "normals", "normals_world",
                 "distortions"]
#: The differentiable surfel inputs of the tests' scenes.
PARAMS = ["means", "quats", "scales", "opacities", "colors"]


def random_cameras(num_cameras: int, width: int, height: int, seed: int = 0, distance: float = 4.0):
    """Cameras on a sphere around the origin with off-centre principal points: (viewmats, Ks)."""
    g = torch.Generator().manual_seed(seed)
    viewmats, Ks = [], []
    for _ in range(num_cameras):
        theta = float(torch.rand(1, generator=g)) * 2 * math.pi
        phi = (float(torch.rand(1, generator=g)) - 0.5) * 1.2
        eye = (distance * math.cos(phi) * math.cos(theta), distance * math.sin(phi),
               distance * math.cos(phi) * math.sin(theta))
        viewmats.append(look_at(eye, up=(0.0, -1.0, 0.0)))
        focal = 0.9 * max(width, height)
        cx = width / 2 + (float(torch.rand(1, generator=g)) - 0.5) * 0.2 * width
        cy = height / 2 + (float(torch.rand(1, generator=g)) - 0.5) * 0.2 * height
        Ks.append(torch.tensor([[focal, 0.0, cx], [0.0, focal * 1.05, cy], [0.0, 0.0, 1.0]]))
    return torch.stack(viewmats), torch.stack(Ks)


def random_surfels(num_surfels: int, channels: int = 3, seed: int = 0, extent: float = 1.0,
                   scale_range=(0.05, 0.3)):
    """Surfels in a cube of half-size ``extent`` around the origin: a dict of float32 tensors."""
    g = torch.Generator().manual_seed(seed)
    low, high = scale_range
    return dict(
        means=(torch.rand(num_surfels, 3, generator=g) * 2 - 1) * extent,
        quats=torch.randn(num_surfels, 4, generator=g),
        scales=low + (high - low) * torch.rand(num_surfels, 2, generator=g),
        opacities=0.3 + 0.65 * torch.rand(num_surfels, generator=g),
        colors=torch.rand(num_surfels, channels, generator=g),
    )
