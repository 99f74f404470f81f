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
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch

from gsplat_lib.cameras import look_at

from .colmap import write_colmap
from .nerf_synthetic import write_nerf_synthetic
from .scene import Camera, PathLike, SceneData, scene_extent, split_indices

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

# Self-intersection guard for shadow rays (scene units).
_EPS = 1e-6


def _box_rotation(angle_deg: float) -> np.ndarray:
    """[3, 3] rotation about z: box-local to world."""
    angle = math.radians(angle_deg)
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


_BOX_ROTATIONS = np.stack([_box_rotation(angle) for angle in _BOX_ANGLES_DEG])


@dataclass
class RayHits:
    """First hits of N rays.

    Attributes:
        t: [N] float64 ray parameter of the hit (inf on a miss); with the
            direction's camera-space z equal to 1, ``t`` is the depth.
        points: [N, 3] float64 world hit points (0 on a miss).
        normals: [N, 3] float64 world unit normals facing the ray (0 on a miss).
        primitive: [N] int64 primitive id, -1 on a miss.
    """

    t: np.ndarray
    points: np.ndarray
    normals: np.ndarray
    primitive: np.ndarray

    @property
    def hit(self) -> np.ndarray:
        """[N] bool."""
        return self.primitive >= 0


def trace_rays(origins: np.ndarray, directions: np.ndarray) -> RayHits:
    """Intersect rays with every primitive and keep the nearest hit.

    Args:
        origins: [N, 3] ray origins (outside every primitive).
        directions: [N, 3] ray directions, any non-zero length.
    """
    origins = np.asarray(origins, dtype=np.float64)
    directions = np.asarray(directions, dtype=np.float64)
    count = len(origins)
    best_t = np.full(count, np.inf)
    best_normal = np.zeros((count, 3))
    best_id = np.full(count, -1, dtype=np.int64)

    def keep(rays, t, normal, primitive_id):
        """Record hits at ``t`` [M] (inf = miss) of the rays ``rays`` [M] that
        are nearer than what was found so far."""
        closer = t < best_t[rays]
        rays, t, normal = rays[closer], t[closer], normal[closer]
        best_t[rays] = t
        best_normal[rays] = normal
        best_id[rays] = primitive_id

    all_rays = np.arange(count)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Ground: seen from above only (cameras are above it, the light too).
        t = -origins[:, 2] / directions[:, 2]
        hit_xy = origins[:, :2] + t[:, None] * directions[:, :2]
        inside = np.all(np.abs(hit_xy) <= _GROUND_HALF_SIZE, axis=1)
        valid = (directions[:, 2] < 0.0) & (t > _EPS) & inside
        rays = all_rays[valid]
        keep(rays, t[valid], np.broadcast_to([0.0, 0.0, 1.0], (len(rays), 3)), _GROUND_ID)

        # Dot products shared by every sphere test: |o - c|^2 and (o - c).d
        # expand into these plus two mat-vec products per sphere, instead of
        # an [N, 3] temporary per sphere.
        dd = np.einsum("ij,ij->i", directions, directions)
        oo = np.einsum("ij,ij->i", origins, origins)
        od = np.einsum("ij,ij->i", origins, directions)

        def sphere_hits(center, radius):
            """(rays, t) of the rays that enter the sphere ahead of their origin."""
            b = od - directions @ center
            c = oo - 2.0 * (origins @ center) + (center @ center - radius * radius)
            discriminant = b * b - dd * c
            valid = discriminant >= 0.0
            rays = all_rays[valid]
            t = (-b[valid] - np.sqrt(discriminant[valid])) / dd[valid]
            ahead = t > _EPS
            return rays[ahead], t[ahead]

        for center, radius, primitive_id in zip(_SPHERE_CENTERS, _SPHERE_RADII, _SPHERE_IDS):
            rays, t = sphere_hits(center, radius)
            normal = (origins[rays] + t[:, None] * directions[rays] - center) / radius
            keep(rays, t, normal, primitive_id)

        for center, half, rotation, primitive_id in zip(_BOX_CENTERS, _BOX_HALF_SIZES, _BOX_ROTATIONS, _BOX_IDS):
            # Only rays that meet the bounding sphere can hit the box; the
            # sphere test is much cheaper than the slab test below.
            candidates = sphere_hits(center, float(np.linalg.norm(half)))[0]
            if len(candidates) == 0:
                continue
            # Slab test in the box frame; rotation.T maps world to local.
            local_origin = (origins[candidates] - center) @ rotation
            local_direction = directions[candidates] @ rotation
            safe = np.where(np.abs(local_direction) < 1e-300, 1e-300, local_direction)
            t1 = (-half - local_origin) / safe
            t2 = (half - local_origin) / safe
            t_near_axis = np.minimum(t1, t2)
            t_near = t_near_axis.max(axis=1)
            t_far = np.maximum(t1, t2).min(axis=1)
            valid = (t_near <= t_far) & (t_near > _EPS)
            rays = candidates[valid]
            axis = t_near_axis[valid].argmax(axis=1)
            local_normal = np.zeros((len(rays), 3))
            local_normal[np.arange(len(rays)), axis] = -np.sign(local_direction[valid, axis])
            keep(rays, t_near[valid], local_normal @ rotation.T, primitive_id)

    hit = best_id >= 0
    points = np.where(hit[:, None], origins + np.where(hit, best_t, 0.0)[:, None] * directions, 0.0)
    return RayHits(best_t, points, np.where(hit[:, None], best_normal, 0.0), best_id)


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
    cosine = np.maximum(hits.normals @ _LIGHT_DIR, 0.0)
    lit = hits.hit & (cosine > 0.0)
    shadow_origins = hits.points[lit] + 1e-5 * hits.normals[lit]
    shadow = trace_rays(shadow_origins, np.broadcast_to(_LIGHT_DIR, shadow_origins.shape))
    visible = np.zeros(len(cosine), dtype=bool)
    visible[np.flatnonzero(lit)[~shadow.hit]] = True
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


def _intrinsics(width: int, height: int, fov_x_deg: float) -> np.ndarray:
    focal = 0.5 * width / math.tan(0.5 * math.radians(fov_x_deg))
    return np.array([[focal, 0.0, 0.5 * width], [0.0, focal, 0.5 * height], [0.0, 0.0, 1.0]])


def _pixel_rays(viewmat: np.ndarray, K: np.ndarray, u: np.ndarray, v: np.ndarray):
    """World rays through continuous pixel coordinates u, v ([N] each).

    The directions have camera-space z = 1, so the hit parameter t is the
    camera-space depth."""
    rotation, translation = viewmat[:3, :3], viewmat[:3, 3]
    camera_dirs = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=1)
    origins = np.broadcast_to(-rotation.T @ translation, camera_dirs.shape)
    return origins, camera_dirs @ rotation  # rows of R^T d


def _render_view(
    viewmat: np.ndarray, K: np.ndarray, width: int, height: int, supersample: int, rng: np.random.Generator
):
    """(colour sum [H, W, 3] over hit samples, hit fraction [H, W, 1],
    depth [H, W, 1], normal [H, W, 3]) of one view."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    # Stratified jitter: sample (a, b) of a pixel lies in sub-cell (a, b) of an S x S grid.
    strata = np.arange(supersample, dtype=np.float64)[None, None, :, None]
    jitter = rng.random((height, width, supersample, supersample, 2))
    u = cols[:, :, None, None] + (strata.transpose(0, 1, 3, 2) + jitter[..., 0]) / supersample
    v = rows[:, :, None, None] + (strata + jitter[..., 1]) / supersample
    origins, directions = _pixel_rays(viewmat, K, u.ravel(), v.ravel())
    hits = trace_rays(origins, directions)
    samples = supersample * supersample
    color = shade(hits).reshape(height, width, samples, 3).sum(axis=2) / samples
    coverage = hits.hit.reshape(height, width, samples).mean(axis=2)[:, :, None]

    origins, directions = _pixel_rays(viewmat, K, cols.ravel() + 0.5, rows.ravel() + 0.5)
    centre = trace_rays(origins, directions)
    depth = np.where(centre.hit, centre.t, 0.0).reshape(height, width, 1)
    normal = centre.normals.reshape(height, width, 3)
    return color, coverage, depth, normal


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
    if num_views < 1 or width < 1 or height < 1 or supersample < 1:
        raise ValueError(
            f"num_views, width, height and supersample must be >= 1, got "
            f"{num_views}, {width}, {height}, {supersample}"
        )
    rng = np.random.default_rng(seed)
    K = _intrinsics(width, height, fov_x_deg)
    background = np.asarray(background, dtype=np.float64).reshape(1, 1, 3)
    cameras = []
    for view, viewmat in enumerate(synthetic_scene_viewmats(num_views)):
        color, coverage, depth, normal = _render_view(viewmat, K, width, height, supersample, rng)
        image = color + (1.0 - coverage) * background
        cameras.append(
            Camera(
                name=f"view_{view:03d}.png",
                viewmat=viewmat.astype(np.float32),
                K=K.astype(np.float32),
                width=width,
                height=height,
                image=np.clip(image, 0.0, 1.0).astype(np.float32),
                alpha=coverage.astype(np.float32),
                depth=depth.astype(np.float32),
                normal=normal.astype(np.float32),
            )
        )
    return cameras


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
    hits = [np.flatnonzero(camera.depth.reshape(-1) > 0.0) for camera in cameras]
    counts = np.array([len(pixel_ids) for pixel_ids in hits])
    if counts.sum() == 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)
    chosen = np.sort(rng.choice(counts.sum(), size=min(num_points, counts.sum()), replace=False))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    points, colors = [], []
    for view, camera in enumerate(cameras):
        in_view = chosen[(chosen >= offsets[view]) & (chosen < offsets[view + 1])] - offsets[view]
        if len(in_view) == 0:
            continue
        pixel_ids = hits[view][in_view]
        rows, cols = np.divmod(pixel_ids, camera.width)
        origins, directions = _pixel_rays(
            camera.viewmat.astype(np.float64), camera.K.astype(np.float64), cols + 0.5, rows + 0.5
        )
        traced = trace_rays(origins, directions)
        points.append(traced.points)
        colors.append(shade(traced))
    return (
        np.concatenate(points).astype(np.float32),
        np.clip(np.concatenate(colors), 0.0, 1.0).astype(np.float32),
    )


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
    train_ids, test_ids = split_indices(len(cameras), test_every)
    train = [cameras[index] for index in train_ids]
    return SceneData(
        train=train,
        test=[cameras[index] for index in test_ids],
        points=points,
        point_colors=colors,
        scene_extent=scene_extent(train if train else cameras),
        background=np.asarray(DEFAULT_SCENE_BACKGROUND, dtype=np.float32),
    )


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
        write_colmap(folder, cameras, points, colors, binary=binary)
    else:
        train_ids, test_ids = split_indices(len(cameras), DEFAULT_SCENE_TEST_EVERY)
        write_nerf_synthetic(
            folder,
            [cameras[index] for index in train_ids],
            [cameras[index] for index in test_ids],
            background=DEFAULT_SCENE_BACKGROUND,
        )
    gt_dir = folder / "gt"
    gt_dir.mkdir(parents=True, exist_ok=True)
    for camera in cameras:
        stem = Path(camera.name).stem
        np.save(gt_dir / f"{stem}_depth.npy", camera.depth)
        np.save(gt_dir / f"{stem}_normal.npy", camera.normal)
    return folder


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gsplat_lib.data.synthetic_scene",
        description="Write the built-in synthetic scene (images, cameras, points, ground truth).",
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--format", choices=("colmap", "nerf"), default="colmap")
    parser.add_argument("--views", type=int, default=DEFAULT_SCENE_NUM_VIEWS)
    parser.add_argument("--width", type=int, default=DEFAULT_SCENE_WIDTH)
    parser.add_argument("--height", type=int, default=DEFAULT_SCENE_HEIGHT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--binary", action="store_true", help="binary COLMAP model instead of text")
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
