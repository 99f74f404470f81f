"""Render a small hand-made surfel scene from four cameras in one call and save the images.

    python examples/render_surfels.py [OUT_DIR]

Writes colour, alpha, expected depth, median depth, normals and distortion of every camera
as PNGs into OUT_DIR (default: renders/).
"""

import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gsplat_lib import look_at, rasterize_surfels


def quat_from_axis_angle(axis, angle):
    axis = torch.tensor(axis) / torch.tensor(axis).norm()
    return torch.cat([torch.tensor([math.cos(angle / 2)]), math.sin(angle / 2) * axis])


def make_scene():
    """A floor of flat surfels, a ring of tilted coloured ones and a small sphere of surfels."""
    means, quats, scales, colors = [], [], [], []
    floor = quat_from_axis_angle([1.0, 0.0, 0.0], math.pi / 2)  # normal along world y
    for x in np.linspace(-1.5, 1.5, 16):
        for z in np.linspace(-1.5, 1.5, 16):
            means.append([x, -0.5, z])
            quats.append(floor)
            scales.append([0.09, 0.09])
            checker = (int((x + 2) * 2) + int((z + 2) * 2)) % 2
            colors.append([0.85, 0.85, 0.8] if checker else [0.3, 0.35, 0.4])
    for i in range(12):
        angle = 2 * math.pi * i / 12
        means.append([1.0 * math.cos(angle), 0.1, 1.0 * math.sin(angle)])
        quats.append(quat_from_axis_angle([math.cos(angle), 0.0, math.sin(angle)], 0.6))
        scales.append([0.22, 0.12])
        colors.append([0.5 + 0.5 * math.cos(angle), 0.5 + 0.5 * math.sin(angle), 0.6])
    golden = math.pi * (3 - math.sqrt(5))
    for i in range(300):
        y = 1 - 2 * (i + 0.5) / 300
        radius = math.sqrt(1 - y * y)
        normal = torch.tensor([radius * math.cos(golden * i), y, radius * math.sin(golden * i)])
        means.append((0.35 * normal + torch.tensor([0.0, 0.05, 0.0])).tolist())
        # Rotate the surfel's local z onto the sphere normal.
        axis = torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0]), normal)
        angle = math.acos(float(normal[2].clamp(-1, 1)))
        quats.append(quat_from_axis_angle(axis.tolist(), angle) if axis.norm() > 1e-6 else torch.tensor([1.0, 0, 0, 0]))
        scales.append([0.07, 0.07])
        colors.append([0.9, 0.45, 0.2])
    return dict(
        means=torch.tensor(means, dtype=torch.float32),
        quats=torch.stack([torch.as_tensor(q, dtype=torch.float32) for q in quats]),
        scales=torch.tensor(scales, dtype=torch.float32),
        opacities=torch.full((len(means),), 0.95),
        colors=torch.tensor(colors, dtype=torch.float32),
    )


def to_png(image: torch.Tensor, path: Path) -> None:
    array = (image.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(path)


def main() -> None:
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "renders")
    out_dir.mkdir(parents=True, exist_ok=True)
    width, height = 320, 240
    eyes = [(3.0, 1.5, 0.0), (0.0, 1.5, 3.0), (-2.2, 2.2, -2.2), (1.0, 0.4, -2.8)]
    viewmats = torch.stack([look_at(eye) for eye in eyes])
    focal = 300.0
    Ks = torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]]).expand(4, 3, 3)
    scene = make_scene()
    out = rasterize_surfels(scene["means"], scene["quats"], scene["scales"], scene["opacities"], scene["colors"],
                            viewmats, Ks.contiguous(), width, height, near=0.1, far=20.0,
                            backgrounds=torch.ones(4, 3))
    depth = out.expected_depths.detach()
    depth_image = torch.where(out.alphas > 0.5, 1 - (depth - 1.5) / 4, torch.zeros_like(depth))
    median_image = torch.where(out.alphas > 0.5, 1 - (out.median_depths - 1.5) / 4, torch.zeros_like(depth))
    normals = torch.nn.functional.normalize(out.normals_world.detach(), dim=-1)
    for c in range(len(eyes)):
        to_png(out.colors[c].detach(), out_dir / f"camera{c}_color.png")
        to_png(out.alphas[c].detach(), out_dir / f"camera{c}_alpha.png")
        to_png(depth_image[c], out_dir / f"camera{c}_depth.png")
        to_png(median_image[c].detach(), out_dir / f"camera{c}_median_depth.png")
        to_png(0.5 + 0.5 * normals[c], out_dir / f"camera{c}_normals.png")
        distortion = out.distortions[c].detach()
        to_png(distortion / distortion.max().clamp_min(1e-12), out_dir / f"camera{c}_distortion.png")
    print(f"rendered {scene['means'].shape[0]} surfels into {len(eyes)} cameras; PNGs in {out_dir}/")


if __name__ == "__main__":
    main()
