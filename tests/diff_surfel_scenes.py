"""Cameras and surfel scenes in the conventions of 2DGS's calls to diff_surfel_rasterization."""

from __future__ import annotations

import math

import torch
from scipy.spatial.transform import Rotation

from gsplat_lib.cameras import look_at
from gsplat_lib.compat.diff_surfel_rasterization import GaussianRasterizationSettings

ZNEAR, ZFAR = 0.01, 100.0  # 2DGS's Camera


def projection_matrix(fx, fy, cx, cy, width, height, znear=ZNEAR, zfar=ZFAR):
    """Column-vector OpenGL-style projection (2DGS's getProjectionMatrix, generalised to any
    principal point). fx, fy, cx, cy in gsplat_lib's pixels (centre of pixel i at i + 0.5)."""
    P = torch.zeros(4, 4, dtype=torch.float64)
    P[0, 0] = 2 * fx / width
    P[1, 1] = 2 * fy / height
    P[0, 2] = 2 * cx / width - 1
    P[1, 2] = 2 * cy / height - 1
    P[3, 2] = 1.0
    P[2, 2] = zfar / (zfar - znear)
    P[2, 3] = -(zfar * znear) / (zfar - znear)
    return P


def camera_settings(viewmat, width, height, focal=None, principal=None, bg=(0.2, 0.4, 0.6), sh_degree=0,
                    scale_modifier=1.0, dtype=torch.float32):
    """GaussianRasterizationSettings of an OpenCV world-to-camera ``viewmat`` as 2DGS builds them
    (transposed view, transposed view-projection, in ``dtype``), with gsplat_lib-convention intrinsics."""
    fx, fy = focal if focal is not None else (0.9 * width, 0.9 * width)
    cx, cy = principal if principal is not None else (width / 2, height / 2)
    view = viewmat.double()
    world_view = view.T
    full = world_view @ projection_matrix(fx, fy, cx, cy, width, height).T
    campos = torch.linalg.inv(world_view)[3, :3]
    return GaussianRasterizationSettings(
        image_height=height, image_width=width, tanfovx=width / (2 * fx), tanfovy=height / (2 * fy),
        bg=torch.tensor(bg, dtype=dtype), scale_modifier=scale_modifier,
        viewmatrix=world_view.to(dtype), projmatrix=full.to(dtype), sh_degree=sh_degree, campos=campos.to(dtype),
        prefiltered=False, debug=False)


def orbit_viewmat(seed, distance=4.0):
    g = torch.Generator().manual_seed(seed)
    theta = float(torch.rand(1, generator=g)) * 2 * math.pi
    phi = (float(torch.rand(1, generator=g)) - 0.5) * 1.0
    eye = (distance * math.cos(phi) * math.cos(theta), distance * math.sin(phi),
           distance * math.cos(phi) * math.sin(theta))
    return look_at(eye, up=(0.0, -1.0, 0.0))


def random_scene(num, seed, scale_range=(0.05, 0.3), extent=1.0, sh_degree=3):
    """Upstream-style inputs (float32): means3D, opacities [N, 1], scales [N, 2], rotations
    [N, 4] (w, x, y, z), colors [N, 3], shs [N, (sh_degree + 1)^2, 3]."""
    g = torch.Generator().manual_seed(seed)
    low, high = scale_range
    return dict(
        means3D=(torch.rand(num, 3, generator=g) * 2 - 1) * extent,
        opacities=0.3 + 0.65 * torch.rand(num, 1, generator=g),
        scales=low + (high - low) * torch.rand(num, 2, generator=g),
        rotations=torch.randn(num, 4, generator=g),
        colors=torch.rand(num, 3, generator=g),
        shs=0.5 * torch.randn(num, (sh_degree + 1) ** 2, 3, generator=g),
    )


def edge_on_rotations(means, viewmat, tilt_degrees):
    """(w, x, y, z) rotations whose normal is ``tilt_degrees`` away from perpendicular to the
    line of sight: the surfels are seen almost edge-on."""
    rotation_cw = viewmat[:3, :3].double()
    centre = -rotation_cw.T @ viewmat[:3, 3].double()
    frames = []
    for index, mean in enumerate(means.double()):
        sight = (mean - centre) / (mean - centre).norm()
        helper = torch.tensor([0.0, 1.0, 0.0] if index % 2 else [1.0, 0.0, 0.0], dtype=torch.float64)
        perpendicular = torch.linalg.cross(sight, helper)
        perpendicular = perpendicular / perpendicular.norm()
        tilt = math.radians(tilt_degrees)
        normal = math.cos(tilt) * perpendicular + math.sin(tilt) * sight
        t_u = torch.linalg.cross(normal, sight)
        t_u = t_u / t_u.norm()
        frames.append(torch.stack([t_u, torch.linalg.cross(normal, t_u), normal], -1))
    xyzw = Rotation.from_matrix(torch.stack(frames).numpy()).as_quat()
    return torch.from_numpy(xyzw[:, [3, 0, 1, 2]]).float()


def splat_to_pixels(means3D, scales, rotations, settings, scale_modifier=1.0):
    """2DGS's --compute_cov3D_python transform, differentiable: ``[N, 9]`` row-major maps from
    (u, v, 1) to homogeneous pixels with centres at integers (gaussian_renderer/__init__.py)."""
    width, height = settings.image_width, settings.image_height
    w, x, y, z = (rotations / rotations.norm(dim=-1, keepdim=True)).unbind(-1)
    axis_u = torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y + w * z), 2 * (x * z - w * y)], -1)
    axis_v = torch.stack([2 * (x * y - w * z), 1 - 2 * (x * x + z * z), 2 * (y * z + w * x)], -1)
    zero = torch.zeros_like(means3D[:, :1])
    rows = torch.stack([torch.cat([axis_u * scales[:, :1] * scale_modifier, zero], -1),
                        torch.cat([axis_v * scales[:, 1:] * scale_modifier, zero], -1),
                        torch.cat([means3D, torch.ones_like(zero)], -1)], 1)  # [N, 3, 4]
    ndc_to_pixels = torch.tensor([[width / 2, 0, 0, (width - 1) / 2], [0, height / 2, 0, (height - 1) / 2],
                                  [0, 0, ZFAR - ZNEAR, ZNEAR], [0, 0, 0, 1]], dtype=means3D.dtype).T
    world_to_pixels = settings.projmatrix.to(means3D.dtype) @ ndc_to_pixels
    return (rows @ world_to_pixels[:, [0, 1, 3]]).transpose(1, 2).reshape(-1, 9)
