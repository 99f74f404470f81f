"""The built-in synthetic scene: a small analytic ray-traced dataset with
exact ground-truth depth and normals.

It is the default data of the README command and of the end-to-end training
tests, so it is small, fast (vectorised numpy, a second or two at the default
size on two cores), deterministic for a given seed, and independent of any
rasterizer: its images come from exact ray-primitive intersections.

The scene (world z up, everything inside [-1.3, 1.3]^3, the cube 3DGS
initialises Blender scenes in):

- a square ground plane z = 0, |x|, |y| <= 1.25, with a smooth two-colour
  sine "checker" of period ~0.6 units (moderate frequency, learnable);
- three spheres: a large red-to-orange vertical gradient, a blue one with a
  horizontal gradient and a small green one;
- two boxes: a yellow one rotated 30 degrees about z and a purple pillar.

Shading is Lambertian with one directional light, hard shadows and an
ambient term, baked into the colour: nothing is view dependent, so a Gaussian
model can fit it exactly. Rays that miss see ``DEFAULT_SCENE_BACKGROUND``.
Each pixel averages S x S jittered stratified samples (anti-aliased edges,
like a photo); the ground truth (depth = camera-space z, world normal) is that
of the ray through the pixel centre, 0 where it misses.

Cameras look at ``DEFAULT_SCENE_TARGET`` from a circle of radius
``DEFAULT_SCENE_RADIUS``: azimuths evenly spaced, elevations spread over
``DEFAULT_SCENE_ELEVATION_RANGE_DEG`` by a golden-ratio sequence so that the
every-8th test views are not all at one height.

Run ``python -m gsplat_lib.data.synthetic_scene OUT_DIR [--format nerf]`` to
write it and look at it.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch

from gsplat_lib.cameras import look_at

from .nerf_synthetic import write_nerf_synthetic
from .raytraced import (
    RayHits,
    add_scene_arguments,
    box_rotation,
    intrinsics,
    render_cameras,
    sample_surface_pixels,
    split_scene,
    sun_visibility,
    trace_scene,
    write_ground_truth,
    write_scene_folder,
)
from .scene import Camera, PathLike, SceneData, split_indices

__all__ = [
    "DEFAULT_SCENE_NUM_VIEWS",
    "DEFAULT_SCENE_WIDTH",
    "DEFAULT_SCENE_HEIGHT",
    "DEFAULT_SCENE_FOV_X_DEG",
    "DEFAULT_SCENE_SUPERSAMPLE",
    "DEFAULT_SCENE_NUM_POINTS",
    "DEFAULT_SCENE_BACKGROUND",
    "DEFAULT_SCENE_RADIUS",
    "DEFAULT_SCENE_ELEVATION_RANGE_DEG",
    "DEFAULT_SCENE_TARGET",
    "DEFAULT_SCENE_TEST_EVERY",
    "RayHits",
    "trace_rays",
    "shade",
    "distance_to_surface",
    "sample_surface",
    "synthetic_scene_viewmats",
    "synthetic_scene_cameras",
    "synthetic_scene_points",
    "synthetic_scene_data",
    "make_synthetic_scene",
]

#: Number of views written (train + test).
DEFAULT_SCENE_NUM_VIEWS = 24
#: Image size in pixels.
DEFAULT_SCENE_WIDTH = 96
DEFAULT_SCENE_HEIGHT = 72
#: Horizontal field of view in degrees (fx = 0.5 W / tan(0.5 fov)).
DEFAULT_SCENE_FOV_X_DEG = 55.0
#: Each pixel averages S x S jittered samples.
DEFAULT_SCENE_SUPERSAMPLE = 3
#: Points written to points3D (the "sparse" cloud that initialises training).
DEFAULT_SCENE_NUM_POINTS = 3000
#: Colour of rays that hit nothing; NeRF output stores alpha instead.
DEFAULT_SCENE_BACKGROUND = (0.0, 0.0, 0.0)
#: Distance of the cameras from the target.
DEFAULT_SCENE_RADIUS = 3.2
#: Camera elevations above the target, degrees.
DEFAULT_SCENE_ELEVATION_RANGE_DEG = (15.0, 45.0)
#: The point every camera looks at (world, z up).
DEFAULT_SCENE_TARGET = (0.0, 0.0, 0.25)
#: Views with index % DEFAULT_SCENE_TEST_EVERY == 0 are test views, matching
#: load_scene's default split, so both output formats split identically.
DEFAULT_SCENE_TEST_EVERY = 8

# Geometry and materials. Colours are linear albedos in [0, 1].
_GROUND_HALF_SIZE = 1.25
_GROUND_PERIOD = 0.6
_GROUND_COLORS = ((0.85, 0.80, 0.68), (0.32, 0.42, 0.55))
_SPHERE_CENTERS = np.array([[0.35, -0.25, 0.42], [-0.55, 0.50, 0.28], [0.62, 0.62, 0.16]])
_SPHERE_RADII = np.array([0.42, 0.28, 0.16])
_BOX_CENTERS = np.array([[-0.58, -0.48, 0.30], [0.05, 0.78, 0.35]])
_BOX_HALF_SIZES = np.array([[0.22, 0.30, 0.30], [0.12, 0.12, 0.35]])
_BOX_ANGLES_DEG = np.array([30.0, 0.0])  # rotation about world z
_BOX_COLORS = np.array([[0.92, 0.80, 0.25], [0.60, 0.36, 0.78]])
_LIGHT_DIR = np.array([0.5, 0.35, 0.8]) / np.linalg.norm([0.5, 0.35, 0.8])  # towards the light
_AMBIENT = 0.3
_DIFFUSE = 0.7

# Primitive ids in RayHits.primitive: -1 miss, 0 ground, 1.. spheres, then boxes.
_GROUND_ID = 0
_SPHERE_IDS = 1 + np.arange(len(_SPHERE_RADII))
_BOX_IDS = 1 + len(_SPHERE_RADII) + np.arange(len(_BOX_CENTERS))

_BOX_ROTATIONS = np.stack([box_rotation(angle) for angle in _BOX_ANGLES_DEG])


def trace_rays(origins: np.ndarray, directions: np.ndarray) -> RayHits:
    """Intersect rays with every primitive and keep the nearest hit.

    Args:
        origins: [N, 3] ray origins (outside every primitive).
        directions: [N, 3] ray directions, any non-zero length.
    """
    return trace_scene(
        origins,
        directions,
        lambda xy: np.all(np.abs(xy) <= _GROUND_HALF_SIZE, axis=1),
        list(zip(_SPHERE_CENTERS, _SPHERE_RADII, _SPHERE_IDS)),
        list(zip(_BOX_CENTERS, _BOX_HALF_SIZES, _BOX_ROTATIONS, _BOX_IDS)),
        _GROUND_ID,
    )


def _albedo(points: np.ndarray, primitive: np.ndarray) -> np.ndarray:
    """[N, 3] albedo of hit points (0 for misses)."""
    albedo = np.zeros((len(points), 3))
    x, y, z = points[:, 0], points[:, 1], points[:, 2]

    ground = primitive == _GROUND_ID
    wave = 2.0 * math.pi / _GROUND_PERIOD
    mix = 0.5 + 0.5 * np.sin(wave * x[ground]) * np.sin(wave * y[ground])
    light, dark = np.array(_GROUND_COLORS[0]), np.array(_GROUND_COLORS[1])
    albedo[ground] = mix[:, None] * light + (1.0 - mix[:, None]) * dark

    big, blue, small = _SPHERE_IDS
    on = primitive == big
    height = (z[on] - (_SPHERE_CENTERS[0, 2] - _SPHERE_RADII[0])) / (2.0 * _SPHERE_RADII[0])
    albedo[on] = (1.0 - height[:, None]) * np.array([0.85, 0.18, 0.15]) + height[:, None] * np.array(
        [0.98, 0.68, 0.22]
    )
    on = primitive == blue
    across = (x[on] - _SPHERE_CENTERS[1, 0]) / (2.0 * _SPHERE_RADII[1]) + 0.5
    albedo[on] = (1.0 - across[:, None]) * np.array([0.15, 0.30, 0.85]) + across[:, None] * np.array(
        [0.35, 0.80, 0.90]
    )
    albedo[primitive == small] = (0.30, 0.78, 0.35)
    for color, primitive_id in zip(_BOX_COLORS, _BOX_IDS):
        albedo[primitive == primitive_id] = color
    return albedo


def shade(hits: RayHits) -> np.ndarray:
    """[N, 3] float64 colour of each hit: albedo * (ambient + diffuse * lit * max(0, n.l)),
    with a shadow ray towards the light; 0 for misses."""
    cosine, visible = sun_visibility(hits, _LIGHT_DIR, trace_rays)
    intensity = _AMBIENT + _DIFFUSE * cosine * visible
    return np.where(hits.hit[:, None], _albedo(hits.points, hits.primitive) * intensity[:, None], 0.0)


def distance_to_surface(points: np.ndarray) -> np.ndarray:
    """[N] float64 unsigned distance of world points [N, 3] to the nearest
    primitive surface (used by tests to check depth and points3D)."""
    points = np.asarray(points, dtype=np.float64)
    outside = np.maximum(np.abs(points[:, :2]) - _GROUND_HALF_SIZE, 0.0)
    distance = np.sqrt((outside**2).sum(axis=1) + points[:, 2] ** 2)
    for center, radius in zip(_SPHERE_CENTERS, _SPHERE_RADII):
        distance = np.minimum(distance, np.abs(np.linalg.norm(points - center, axis=1) - radius))
    for center, half, rotation in zip(_BOX_CENTERS, _BOX_HALF_SIZES, _BOX_ROTATIONS):
        q = np.abs((points - center) @ rotation) - half
        signed = np.linalg.norm(np.maximum(q, 0.0), axis=1) + np.minimum(q.max(axis=1), 0.0)
        distance = np.minimum(distance, np.abs(signed))
    return distance


def _surface_parts():
    """(area, sampler(count, rng) -> [count, 3]) of every visible part of the scene's surface:
    the ground outside the boxes' footprints, the spheres, the boxes' faces but their bottoms."""

    def ground(count, rng):
        points = np.zeros((0, 3))
        while len(points) < count:
            xy = rng.uniform(-_GROUND_HALF_SIZE, _GROUND_HALF_SIZE, size=(2 * count + 16, 2))
            free = np.ones(len(xy), dtype=bool)
            for center, half, rotation in zip(_BOX_CENTERS, _BOX_HALF_SIZES, _BOX_ROTATIONS):
                local = (xy - center[:2]) @ rotation[:2, :2]
                free &= ~np.all(np.abs(local) <= half[:2], axis=1)
            points = np.concatenate([points, np.concatenate([xy[free], np.zeros((int(free.sum()), 1))], axis=1)])
        return points[:count]

    def sphere(center, radius):
        def sample(count, rng):
            directions = rng.normal(size=(count, 3))
            return center + radius * directions / np.linalg.norm(directions, axis=1, keepdims=True)

        return sample

    def box_face(center, half, rotation, axis, side):
        def sample(count, rng):
            local = rng.uniform(-1.0, 1.0, size=(count, 3)) * half
            local[:, axis] = side * half[axis]
            return local @ rotation.T + center

        return sample

    footprints = float(sum(4.0 * half[0] * half[1] for half in _BOX_HALF_SIZES))
    parts = [((2.0 * _GROUND_HALF_SIZE) ** 2 - footprints, ground)]
    parts += [(4.0 * math.pi * radius**2, sphere(center, radius)) for center, radius in zip(_SPHERE_CENTERS, _SPHERE_RADII)]
    for center, half, rotation in zip(_BOX_CENTERS, _BOX_HALF_SIZES, _BOX_ROTATIONS):
        for axis in range(3):
            others = [other for other in range(3) if other != axis]
            area = 4.0 * half[others[0]] * half[others[1]]
            for side in (-1.0, 1.0) if axis < 2 else (1.0,):  # the bottom rests on the ground
                parts.append((area, box_face(center, half, rotation, axis, side)))
    return parts


def sample_surface(count: int, seed: int = 0) -> np.ndarray:
    """[count, 3] float64 points spread uniformly (by area) over the scene's true surface: the
    ground where no box stands, the spheres and the boxes' visible faces. Deterministic for a
    seed; with :func:`distance_to_surface` it is the ground truth of mesh evaluation."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"count must be an integer >= 0, got {count!r}")
    rng = np.random.default_rng([seed, 2])
    parts = _surface_parts()
    areas = np.array([area for area, _ in parts])
    counts = rng.multinomial(int(count), areas / areas.sum())
    return np.concatenate([sampler(int(n), rng) for (_, sampler), n in zip(parts, counts)] + [np.zeros((0, 3))])


def synthetic_scene_viewmats(
    num_views: int = DEFAULT_SCENE_NUM_VIEWS,
    *,
    radius: float = DEFAULT_SCENE_RADIUS,
    elevation_range_deg: Tuple[float, float] = DEFAULT_SCENE_ELEVATION_RANGE_DEG,
    target: Sequence[float] = DEFAULT_SCENE_TARGET,
) -> np.ndarray:
    """[V, 4, 4] float64 OpenCV world-to-camera matrices looking at ``target``.

    View k sits at azimuth 360 k / V and an elevation from the golden-ratio
    sequence over ``elevation_range_deg``; its image x axis is horizontal
    and its y axis points down the world z (no roll, never upside down).
    """
    target = np.asarray(target, dtype=np.float64)
    low, high = elevation_range_deg
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    viewmats = np.zeros((num_views, 4, 4))
    for view in range(num_views):
        azimuth = 2.0 * math.pi * view / num_views
        elevation = math.radians(low + (high - low) * ((0.5 + view * golden) % 1.0))
        eye = target + radius * np.array(
            [math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation)]
        )
        viewmats[view] = look_at(eye, target, up=(0.0, 0.0, 1.0), dtype=torch.float64).numpy()
    return viewmats


def synthetic_scene_cameras(
    num_views: int = DEFAULT_SCENE_NUM_VIEWS,
    width: int = DEFAULT_SCENE_WIDTH,
    height: int = DEFAULT_SCENE_HEIGHT,
    *,
    seed: int = 0,
    fov_x_deg: float = DEFAULT_SCENE_FOV_X_DEG,
    supersample: int = DEFAULT_SCENE_SUPERSAMPLE,
    background: Sequence[float] = DEFAULT_SCENE_BACKGROUND,
) -> List[Camera]:
    """Render every view in memory (no disk).

    Returns ``num_views`` cameras named ``view_000.png`` ..., each with
    ``image`` [H, W, 3] (composited over ``background``), ``alpha``
    [H, W, 1] (sample coverage), ``depth`` [H, W, 1] and world ``normal``
    [H, W, 3] of the pixel-centre ray. The seed drives only the sub-pixel
    jitter; identical seeds give identical arrays.
    """
    return render_cameras(
        synthetic_scene_viewmats(num_views), intrinsics(width, height, fov_x_deg), width, height, supersample,
        np.random.default_rng(seed), trace_rays, lambda directions, hits: shade(hits), background,
    )


def synthetic_scene_points(
    cameras: Sequence[Camera], num_points: int = DEFAULT_SCENE_NUM_POINTS, *, seed: int = 0
) -> Tuple[np.ndarray, np.ndarray]:
    """Sample the "sparse point cloud": ``num_points`` surface points seen by
    the cameras, with their shaded colours.

    Pixels are drawn uniformly from all pixels of all views whose centre ray
    hits, and their rays re-traced in float64, so the points lie exactly on
    the surfaces. Returns (points [P, 3], colors [P, 3] in [0, 1]) float32.
    """
    rng = np.random.default_rng([seed, 1])  # independent of the jitter stream
    origins, directions, _ = sample_surface_pixels(cameras, num_points, rng)
    traced = trace_rays(origins, directions)
    return traced.points.astype(np.float32), np.clip(shade(traced), 0.0, 1.0).astype(np.float32)


def synthetic_scene_data(
    num_views: int = DEFAULT_SCENE_NUM_VIEWS,
    width: int = DEFAULT_SCENE_WIDTH,
    height: int = DEFAULT_SCENE_HEIGHT,
    *,
    seed: int = 0,
    num_points: int = DEFAULT_SCENE_NUM_POINTS,
    test_every: int = DEFAULT_SCENE_TEST_EVERY,
) -> SceneData:
    """The scene as :class:`SceneData` in memory, split and initialised as
    ``load_scene`` would give it after :func:`make_synthetic_scene` (but
    without 8-bit rounding of the images)."""
    cameras = synthetic_scene_cameras(num_views, width, height, seed=seed)
    points, colors = synthetic_scene_points(cameras, num_points, seed=seed)
    return split_scene(cameras, points, colors, test_every, DEFAULT_SCENE_BACKGROUND)


def make_synthetic_scene(
    folder: PathLike,
    *,
    num_views: int = DEFAULT_SCENE_NUM_VIEWS,
    width: int = DEFAULT_SCENE_WIDTH,
    height: int = DEFAULT_SCENE_HEIGHT,
    fmt: str = "colmap",
    seed: int = 0,
    num_points: int = DEFAULT_SCENE_NUM_POINTS,
    supersample: int = DEFAULT_SCENE_SUPERSAMPLE,
    binary: bool = False,
) -> Path:
    """Render the scene and write it as a dataset that :func:`load_scene` reads.

    ``fmt="colmap"``: ``images/view_XXX.png`` (composited over
    ``DEFAULT_SCENE_BACKGROUND``) and a PINHOLE model in ``sparse/0`` (text,
    or binary with ``binary=True``) whose points3D are surface samples.
    ``fmt="nerf"``: RGBA PNGs in ``train/`` and ``test/`` with
    ``transforms_{train,test}.json`` (test = every
    ``DEFAULT_SCENE_TEST_EVERY``-th view, as the COLMAP loader splits).
    Both write ``gt/view_XXX_depth.npy`` [H, W, 1] and
    ``gt/view_XXX_normal.npy`` [H, W, 3] (float32), which the loaders attach
    to the cameras as ``depth`` and ``normal``. Returns ``folder``.
    """
    if fmt not in ("colmap", "nerf"):
        raise ValueError(f"fmt must be 'colmap' or 'nerf', got {fmt!r}")
    folder = Path(folder)
    cameras = synthetic_scene_cameras(num_views, width, height, seed=seed, supersample=supersample)
    if fmt == "colmap":
        points, colors = synthetic_scene_points(cameras, num_points, seed=seed)
        write_scene_folder(folder, cameras, points, colors, binary=binary)
    else:
        train_ids, test_ids = split_indices(len(cameras), DEFAULT_SCENE_TEST_EVERY)
        write_nerf_synthetic(
            folder,
            [cameras[index] for index in train_ids],
            [cameras[index] for index in test_ids],
            background=DEFAULT_SCENE_BACKGROUND,
        )
        write_ground_truth(folder, cameras)
    return folder


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gsplat_lib.data.synthetic_scene",
        description="Write the built-in synthetic scene (images, cameras, points, ground truth).",
    )
    add_scene_arguments(parser, DEFAULT_SCENE_NUM_VIEWS, DEFAULT_SCENE_WIDTH, DEFAULT_SCENE_HEIGHT)
    parser.add_argument("--format", choices=("colmap", "nerf"), default="colmap")
    args = parser.parse_args(argv)
    folder = make_synthetic_scene(
        args.out_dir,
        num_views=args.views,
        width=args.width,
        height=args.height,
        fmt=args.format,
        seed=args.seed,
        binary=args.binary,
    )
    print(f"wrote the synthetic scene ({args.format}, {args.views} views, {args.width}x{args.height}) to {folder}")


if __name__ == "__main__":
    main()
