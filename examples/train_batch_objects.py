"""A TRELLIS-style training loop: a network decodes a batch of objects into surfels, one call renders them all.

    python examples/train_batch_objects.py [--steps 800] [--out batch_objects.png]

Generative 3D models (TRELLIS, large reconstruction models) decode a batch of per-object latents
into Gaussians and supervise one random view of each object per step. Here a small decoder (an
MLP shared by all objects) turns each object's learned latent and a fixed template of points
on the unit sphere into surfels; every step renders one random view of every object in ONE
``rasterize_surfels`` call, with ``scene_ids`` (the object of each surfel) and
``camera_scene_ids`` (the object of each view), so a view sees its own object only. The targets
are views of a few built-in objects (a sphere, a cube, a torus and a cylinder made of surfels),
rendered the same way. It runs on the CPU in about a minute and writes a PNG: the targets of
the last views on top, the decoded objects below.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Dict, List, Tuple

import numpy as np

# torch's OpenMP workers busy-wait between ops on the cores the rasterizer's threads need; on a
# busy machine that makes the small MLP 10x slower (README, "CPU threads"). Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from gsplat_lib import look_at, rasterize_surfels  # noqa: E402

OBJECT_NAMES = ("sphere", "cube", "torus", "cylinder")


# ---------------------------------------------------------------------- the built-in objects

def _sphere(g: torch.Generator, count: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    normals = torch.randn(count, 3, generator=g)
    normals = normals / normals.norm(dim=1, keepdim=True)
    points = 0.6 * normals
    height = (points[:, 2:] + 0.6) / 1.2
    colors = torch.cat([0.9 * torch.ones_like(height), 0.2 + 0.7 * height, 0.1 * torch.ones_like(height)], dim=1)
    return points, normals, colors


def _cube(g: torch.Generator, count: int):
    face = torch.randint(0, 6, (count,), generator=g)
    axis, sign = face % 3, (face // 3) * 2 - 1.0
    points = (torch.rand(count, 3, generator=g) * 2 - 1) * 0.45
    points[torch.arange(count), axis] = 0.45 * sign
    normals = torch.zeros(count, 3)
    normals[torch.arange(count), axis] = sign
    palette = torch.tensor([[0.9, 0.2, 0.2], [0.2, 0.8, 0.3], [0.2, 0.3, 0.9],
                            [0.9, 0.8, 0.2], [0.8, 0.3, 0.8], [0.2, 0.8, 0.8]])
    return points, normals, palette[face]


def _torus(g: torch.Generator, count: int):
    u, v = (torch.rand(count, generator=g) * 2 * math.pi for _ in range(2))
    ring = torch.stack([torch.cos(u), torch.sin(u), torch.zeros_like(u)], dim=1)
    normals = torch.cos(v)[:, None] * ring + torch.sin(v)[:, None] * torch.tensor([0.0, 0.0, 1.0])
    points = 0.45 * ring + 0.18 * normals
    stripe = (torch.sin(6 * u) > 0).float()[:, None]
    colors = stripe * torch.tensor([0.95, 0.95, 0.9]) + (1 - stripe) * torch.tensor([0.1, 0.4, 0.7])
    return points, normals, colors


def _cylinder(g: torch.Generator, count: int):
    angle = torch.rand(count, generator=g) * 2 * math.pi
    on_side = torch.rand(count, generator=g) < 0.6
    radius = torch.where(on_side, torch.ones(count), torch.sqrt(torch.rand(count, generator=g))) * 0.35
    z = torch.where(on_side, torch.rand(count, generator=g) * 1.0 - 0.5,
                    torch.where(torch.rand(count, generator=g) < 0.5, -0.5, 0.5))
    points = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle), z], dim=1)
    side_normals = torch.stack([torch.cos(angle), torch.sin(angle), torch.zeros(count)], dim=1)
    cap_normals = torch.stack([torch.zeros(count), torch.zeros(count), torch.sign(z)], dim=1)
    normals = torch.where(on_side[:, None], side_normals, cap_normals)
    colors = torch.where(on_side[:, None], torch.tensor([0.3, 0.7, 0.3]), torch.tensor([0.95, 0.6, 0.1]))
    colors = colors * (0.75 + 0.25 * torch.cos(3 * angle))[:, None]
    return points, normals, colors


_SHAPES = dict(sphere=_sphere, cube=_cube, torus=_torus, cylinder=_cylinder)


def quats_facing(normals: torch.Tensor) -> torch.Tensor:
    """[n, 4] (w, x, y, z) rotations taking the surfel normal (local z) to ``normals``.

    The shortest rotation from z to n is (1 + n_z, -n_y, n_x, 0), normalised; a surfel is
    two-sided, so normals facing down are flipped first (that rotation degenerates at -z).
    """
    n = torch.where(normals[:, 2:] < 0, -normals, normals)
    q = torch.stack([1 + n[:, 2], -n[:, 1], n[:, 0], torch.zeros_like(n[:, 0])], dim=1)
    return q / q.norm(dim=1, keepdim=True)


def builtin_object(name: str, count: int = 3000, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Surfels covering one built-in object: means, quats, scales, opacities, colors."""
    g = torch.Generator().manual_seed(seed)
    points, normals, colors = _SHAPES[name](g, count)
    return dict(means=points, quats=quats_facing(normals), scales=torch.full((count, 2), 2.2 / math.sqrt(count)),
                opacities=torch.full((count,), 0.95), colors=colors.clamp(0, 1))


def pack(objects: List[Dict[str, torch.Tensor]]) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
    """The surfels of all objects in one set of tensors, and the object (scene id) of each."""
    packed = {k: torch.cat([o[k] for o in objects]) for k in objects[0]}
    counts = torch.tensor([o["means"].shape[0] for o in objects])
    return packed, torch.repeat_interleave(torch.arange(len(objects)), counts)


# ---------------------------------------------------------------------- the decoder

def sphere_template(count: int) -> torch.Tensor:
    """[count, 3] points spread evenly on the unit sphere (a Fibonacci lattice)."""
    i = torch.arange(count, dtype=torch.float32) + 0.5
    z = 1 - 2 * i / count
    angle = math.pi * (3 - math.sqrt(5)) * i
    r = torch.sqrt(1 - z * z)
    return torch.stack([r * torch.cos(angle), r * torch.sin(angle), z], dim=1)


class SurfelDecoder(nn.Module):
    """Decodes (object latent, template point) into one surfel: the same MLP for every object."""

    def __init__(self, num_objects: int, surfels_per_object: int, latent_dim: int = 32, hidden: int = 128,
                 frequencies: int = 4) -> None:
        super().__init__()
        self.latents = nn.Parameter(0.1 * torch.randn(num_objects, latent_dim))
        self.register_buffer("template", sphere_template(surfels_per_object))
        self.register_buffer("frequencies", 2.0 ** torch.arange(frequencies) * math.pi)
        encoded = 3 + 6 * frequencies
        self.mlp = nn.Sequential(nn.Linear(latent_dim + encoded, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                 nn.SiLU(), nn.Linear(hidden, 13))
        with torch.no_grad():  # start as small grey surfels on the template sphere
            self.mlp[-1].weight.mul_(0.1)
            self.mlp[-1].bias.zero_()

    def encode_template(self) -> torch.Tensor:
        angles = self.template[:, :, None] * self.frequencies  # [M, 3, F]
        return torch.cat([self.template, torch.sin(angles).flatten(1), torch.cos(angles).flatten(1)], dim=1)

    def forward(self) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        """The surfels of all objects, packed object by object, and their scene ids."""
        num_objects, surfels = self.latents.shape[0], self.template.shape[0]
        features = self.encode_template()
        inputs = torch.cat([self.latents[:, None, :].expand(-1, surfels, -1),
                            features[None].expand(num_objects, -1, -1)], dim=2)
        raw = self.mlp(inputs.reshape(num_objects * surfels, -1))
        template = self.template.repeat(num_objects, 1)
        surfels_out = dict(
            means=0.6 * template + 0.5 * torch.tanh(raw[:, 0:3]),
            quats=quats_facing(template) + raw[:, 5:9],  # start tangent to the template sphere
            scales=torch.exp(math.log(2.5 / math.sqrt(surfels)) + raw[:, 3:5]).clamp(max=0.3),
            opacities=torch.sigmoid(2.0 + raw[:, 9]),
            colors=torch.sigmoid(raw[:, 10:13]),
        )
        scene_ids = torch.arange(num_objects).repeat_interleave(surfels)
        return surfels_out, scene_ids


# ---------------------------------------------------------------------- views and the loop

def random_views(num_views: int, size: int, g: torch.Generator, distance: float = 2.4):
    """One camera per object from a random direction, looking at its centre: (viewmats, Ks)."""
    directions = torch.randn(num_views, 3, generator=g)
    directions = directions / directions.norm(dim=1, keepdim=True)
    viewmats = []
    for d in directions:
        up = (0.0, 0.0, 1.0) if abs(float(d[2])) < 0.95 else (0.0, 1.0, 0.0)  # never along the view
        viewmats.append(look_at(tuple((distance * d).tolist()), up=up))
    viewmats = torch.stack(viewmats)
    focal = 1.1 * size
    K = torch.tensor([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]])
    return viewmats, K.expand(num_views, 3, 3).contiguous()


def render_batch(surfels, scene_ids, viewmats, Ks, size):
    """One call: camera o sees only the surfels of object o."""
    num_views = viewmats.shape[0]
    return rasterize_surfels(surfels["means"], surfels["quats"], surfels["scales"], surfels["opacities"],
                             surfels["colors"], viewmats, Ks, size, size, backgrounds=torch.ones(num_views, 3),
                             scene_ids=scene_ids, camera_scene_ids=torch.arange(num_views))


def train(steps: int = 800, size: int = 64, surfels_per_object: int = 1024, target_surfels: int = 3000,
          lr: float = 3e-3, seed: int = 0, log_every: int = 25):
    """Fits the decoder to the built-in objects; returns (decoder, losses, last targets, last renders)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    targets, target_ids = pack([builtin_object(name, target_surfels, seed=i) for i, name in enumerate(OBJECT_NAMES)])
    decoder = SurfelDecoder(len(OBJECT_NAMES), surfels_per_object)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=lr)
    losses = []
    start = time.perf_counter()
    for step in range(steps):
        viewmats, Ks = random_views(len(OBJECT_NAMES), size, g)
        with torch.no_grad():
            target = render_batch(targets, target_ids, viewmats, Ks, size).colors
        surfels, scene_ids = decoder()
        rendered = render_batch(surfels, scene_ids, viewmats, Ks, size).colors
        loss = (rendered - target).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step:4d}  L1 {losses[-1]:.4f}  ({time.perf_counter() - start:.1f} s)", flush=True)
    return decoder, losses, target, rendered.detach()


def save_comparison(path: str, target: torch.Tensor, rendered: torch.Tensor) -> None:
    """Targets on the top row, decoded objects below."""
    from PIL import Image

    rows = [torch.cat(list(images), dim=1) for images in (target, rendered)]
    grid = (torch.cat(rows, dim=0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    Image.fromarray(np.ascontiguousarray(grid)).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--size", type=int, default=64, help="image width and height")
    parser.add_argument("--surfels", type=int, default=1024, help="surfels decoded per object")
    parser.add_argument("--out", default="batch_objects.png", help="where to write the last views")
    args = parser.parse_args()
    _, losses, target, rendered = train(args.steps, args.size, args.surfels)
    print(f"L1 over the first 10 steps {np.mean(losses[:10]):.4f}, over the last 10 {np.mean(losses[-10:]):.4f}")
    save_comparison(args.out, target, rendered)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
