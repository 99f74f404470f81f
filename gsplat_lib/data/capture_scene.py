"""The built-in capture-like scene: what an outdoor photo capture looks like, ray-traced
analytically with exact ground truth.

Unlike the synthetic scene (objects over black), every pixel here shows something: a sky at
infinity, distant background geometry, and the foreground objects the cameras walk around.
It is deterministic for a seed, fast enough to generate at the start of a run (vectorised
numpy) and independent of any rasterizer.

The world (z up, scene units):

- the ground, a disk of radius ``GROUND_RADIUS`` at z = 0: a stone plaza around the objects
  and grass with slow colour variations beyond;
- the foreground, within ~1.2 units of the origin: three spheres and two boxes;
- the background: a few buildings 9-12 units away on one side and a ring of hills (sphere
  caps rising 2-4.5 units, 19-26 units away), at 3 to 8 times the camera path's radius, so
  their parallax across the path is small but not zero;
- the environment at infinity: a sky whose colour depends on the direction only, a gradient
  from the horizon to the zenith, a low sun (a bright disk with a glow) and a few clouds.

Shading is Lambertian with the sun as a directional light, hard shadows and a sky ambient
term, baked into the colours: nothing is view dependent except the sky's parallax-free
directions. Each pixel averages S x S jittered stratified samples; the ground truth (depth =
camera-space z, world normal facing the camera) is that of the pixel-centre ray, 0 where it
sees the sky.

Cameras follow a closed path around the objects (radius 2.5-3.5, height 0.5-1, the seed
jitters positions, targets and roll by a little), at a 3:2 aspect ratio. Views are numbered
along the path, so the held-out views (every ``DEFAULT_CAPTURE_TEST_EVERY``-th) sit between
training views. The sparse points are what a structure-from-motion run gives: points on
geometry seen by the cameras (never in the sky), with noise growing with depth and a few
outliers floating between a camera and the surface it looked at.

Geometry for mesh evaluation: :func:`distance_to_surface` is the unsigned distance to the
surface of the solid scene (ground slab, spheres, boxes, hills); :func:`sample_surface`
draws points uniformly over the visible part of that surface within ``FOREGROUND_RADIUS`` of
the origin (the region the cameras enclose; the far ground, hills and buildings are seen
only from far away and at grazing angles, so a reconstruction is judged inside that ball).

Run ``python -m gsplat_lib.data.capture_scene OUT_DIR`` to write it and look at it.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch

from gsplat_lib.cameras import look_at

from .scene import Camera, PathLike, SceneData
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
    write_scene_folder,
)

__all__ = [
    "DEFAULT_CAPTURE_NUM_VIEWS",
    "DEFAULT_CAPTURE_WIDTH",
    "DEFAULT_CAPTURE_HEIGHT",
    "DEFAULT_CAPTURE_FOV_X_DEG",
    "DEFAULT_CAPTURE_SUPERSAMPLE",
    "DEFAULT_CAPTURE_NUM_POINTS",
    "DEFAULT_CAPTURE_TEST_EVERY",
    "GROUND_RADIUS",
    "FOREGROUND_RADIUS",
    "SUN_DIRECTION",
    "trace_rays",
    "shade",
    "sky_radiance",
    "distance_to_surface",
    "sample_surface",
    "capture_scene_viewmats",
    "capture_scene_cameras",
    "capture_scene_points",
    "capture_scene_data",
    "make_capture_scene",
]

#: Number of views written (train + test), numbered along the camera path.
DEFAULT_CAPTURE_NUM_VIEWS = 48
#: Image size in pixels (3:2, like most cameras).
DEFAULT_CAPTURE_WIDTH = 120
DEFAULT_CAPTURE_HEIGHT = 80
#: Horizontal field of view in degrees (a 28 mm lens on a full-frame sensor: 65 degrees).
DEFAULT_CAPTURE_FOV_X_DEG = 65.0
#: Each pixel averages S x S jittered samples.
DEFAULT_CAPTURE_SUPERSAMPLE = 3
#: Sparse points written to points3D.
DEFAULT_CAPTURE_NUM_POINTS = 4000
#: Views with index % DEFAULT_CAPTURE_TEST_EVERY == 0 are held out (load_scene's split).
DEFAULT_CAPTURE_TEST_EVERY = 8
#: The ground disk's radius.
GROUND_RADIUS = 60.0
#: sample_surface's region: the ball of this radius about the origin.
FOREGROUND_RADIUS = 4.0

# Sparse points: normal noise of this fraction of the depth, and this share of outliers.
_POINT_NOISE = 0.004
_OUTLIER_FRACTION = 0.03

# ---- geometry. Spheres: foreground objects, then hills (centres below the ground).
_OBJECT_SPHERES = np.array([[0.35, -0.30, 0.45, 0.45], [-0.72, 0.55, 0.26, 0.26], [0.95, 0.45, 0.18, 0.18]])


def _hill(azimuth_deg: float, distance: float, radius: float, height: float) -> List[float]:
    """A sphere whose cap rises ``height`` above the ground at ``distance`` from the origin."""
    azimuth = math.radians(azimuth_deg)
    return [distance * math.cos(azimuth), distance * math.sin(azimuth), height - radius, radius]


_HILLS = np.array(
    [
        _hill(0.0, 22.0, 9.0, 3.0),
        _hill(45.0, 26.0, 12.0, 4.0),
        _hill(95.0, 20.0, 7.0, 2.2),
        _hill(130.0, 24.0, 10.0, 3.5),
        _hill(265.0, 22.0, 8.0, 2.6),
        _hill(300.0, 25.0, 11.0, 4.5),
        _hill(335.0, 19.0, 6.0, 1.8),
    ]
)
_SPHERES = np.concatenate([_OBJECT_SPHERES, _HILLS])


def _building(azimuth_deg: float, distance: float, half: Tuple[float, float, float]) -> List[float]:
    azimuth = math.radians(azimuth_deg)
    return [distance * math.cos(azimuth), distance * math.sin(azimuth), half[2], *half, azimuth_deg]


# Boxes: centre (3), half sizes (3), rotation about z in degrees; all stand on the ground.
_BOXES = np.array(
    [
        [-0.55, -0.60, 0.30, 0.25, 0.20, 0.30, 25.0],
        [0.20, 0.85, 0.55, 0.12, 0.12, 0.55, 10.0],
        _building(160.0, 10.0, (0.9, 0.7, 1.6)),
        _building(181.0, 11.0, (0.7, 0.8, 2.4)),
        _building(200.0, 9.5, (1.0, 0.6, 1.1)),
        _building(222.0, 12.0, (0.8, 0.8, 3.0)),
    ]
)
_BOX_ROTATIONS = np.stack([box_rotation(angle) for angle in _BOXES[:, 6]])
_NUM_OBJECT_BOXES = 2

# Primitive ids: -1 sky, 0 ground, then spheres (objects, hills), then boxes (objects, buildings).
_GROUND_ID = 0
_SPHERE_IDS = 1 + np.arange(len(_SPHERES))
_BOX_IDS = 1 + len(_SPHERES) + np.arange(len(_BOXES))
_HILL_IDS = _SPHERE_IDS[len(_OBJECT_SPHERES) :]
_BUILDING_IDS = _BOX_IDS[_NUM_OBJECT_BOXES:]

# ---- light and sky.
_SUN_AZIMUTH_DEG, _SUN_ELEVATION_DEG = 250.0, 13.0
#: Unit direction towards the sun (the light of the scene, and the sun disk in the sky).
SUN_DIRECTION = np.array(
    [
        math.cos(math.radians(_SUN_ELEVATION_DEG)) * math.cos(math.radians(_SUN_AZIMUTH_DEG)),
        math.cos(math.radians(_SUN_ELEVATION_DEG)) * math.sin(math.radians(_SUN_AZIMUTH_DEG)),
        math.sin(math.radians(_SUN_ELEVATION_DEG)),
    ]
)
_SUN_RADIUS_DEG = 1.6
_SUN_COLOR = np.array([1.0, 0.96, 0.84])
_HORIZON_COLOR = np.array([0.80, 0.86, 0.92])
_ZENITH_COLOR = np.array([0.26, 0.46, 0.82])
_BELOW_HORIZON_COLOR = np.array([0.66, 0.70, 0.72])
_AMBIENT = 0.38
_SKY_LIGHT = 0.12  # extra ambient on surfaces facing up
_DIFFUSE = 0.75

# Clouds: (azimuth, elevation, size) in degrees, each drawn as a few Gaussian puffs whose
# offsets come from a fixed generator (the clouds are part of the scene, not of the seed).
_CLOUDS = np.array([[20.0, 11.0, 6.0], [70.0, 17.0, 8.0], [118.0, 8.0, 5.0], [205.0, 14.0, 7.0],
                    [282.0, 20.0, 6.0], [330.0, 9.0, 9.0]])


def _direction(azimuth_deg: np.ndarray, elevation_deg: np.ndarray) -> np.ndarray:
    azimuth, elevation = np.radians(azimuth_deg), np.radians(elevation_deg)
    return np.stack(
        [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)], axis=-1
    )


def _cloud_puffs() -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit directions [P, 3], angular sigmas [P] in radians, weights [P]) of every puff."""
    rng = np.random.default_rng(20261205)
    directions, sigmas, weights = [], [], []
    for azimuth, elevation, size in _CLOUDS:
        count = 6
        offsets = rng.normal(0.0, 1.0, (count, 2)) * np.array([0.9 * size, 0.25 * size])
        directions.append(_direction(azimuth + offsets[:, 0], np.maximum(elevation + offsets[:, 1], 1.0)))
        sigmas.append(np.radians(size * rng.uniform(0.25, 0.45, count)))
        weights.append(rng.uniform(0.8, 1.6, count))
    return np.concatenate(directions), np.concatenate(sigmas), np.concatenate(weights)


_PUFF_DIRECTIONS, _PUFF_SIGMAS, _PUFF_WEIGHTS = _cloud_puffs()


def sky_radiance(directions: np.ndarray) -> np.ndarray:
    """[N, 3] colour of the environment at infinity seen along ``directions`` [N, 3] (any
    length): the gradient, the clouds over it, the sun over both."""
    directions = np.asarray(directions, dtype=np.float64)
    unit = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    up = unit[:, 2]
    # Gradient: horizon to zenith over the first ~40 degrees; below the horizon a hazy grey.
    height = 1.0 - np.exp(-np.maximum(up, 0.0) / 0.3)
    color = (1.0 - height)[:, None] * _HORIZON_COLOR + height[:, None] * _ZENITH_COLOR
    color = np.where((up < 0.0)[:, None], _BELOW_HORIZON_COLOR, color)

    cosines = np.clip(unit @ _PUFF_DIRECTIONS.T, -1.0, 1.0)  # [N, P]
    angles_sq = 2.0 * (1.0 - cosines)  # chord^2 ~ angle^2 for the small angles that matter
    density = (_PUFF_WEIGHTS * np.exp(-angles_sq / (2.0 * _PUFF_SIGMAS**2))).sum(axis=1)
    cover = (1.0 - np.exp(-1.5 * density)) * (up > 0.0)
    shade_top = np.clip(0.5 + 8.0 * (up - 0.15), 0.0, 1.0)  # lighter higher up, greyer below
    cloud_color = (0.80 + 0.16 * shade_top)[:, None] * np.array([1.0, 1.0, 1.02])
    color = (1.0 - cover)[:, None] * color + cover[:, None] * cloud_color

    sun_angle = np.degrees(np.arccos(np.clip(unit @ SUN_DIRECTION, -1.0, 1.0)))
    glow = 0.35 * np.exp(-sun_angle / 6.0)
    disk = np.clip((_SUN_RADIUS_DEG + 0.3 - sun_angle) / 0.6, 0.0, 1.0)
    color = color + glow[:, None] * (_SUN_COLOR - color) * (1.0 - cover)[:, None]
    color = (1.0 - disk)[:, None] * color + disk[:, None] * _SUN_COLOR
    return np.clip(color, 0.0, 1.0)


def trace_rays(origins: np.ndarray, directions: np.ndarray) -> RayHits:
    """Intersect rays with every primitive and keep the nearest hit (misses see the sky).

    Args:
        origins: [N, 3] ray origins above the ground and outside every solid.
        directions: [N, 3] ray directions, any non-zero length.
    """
    return trace_scene(
        origins,
        directions,
        lambda xy: (xy**2).sum(axis=1) <= GROUND_RADIUS**2,
        [(sphere[:3], sphere[3], primitive_id) for sphere, primitive_id in zip(_SPHERES, _SPHERE_IDS)],
        [(box[:3], box[3:6], rotation, primitive_id) for box, rotation, primitive_id in zip(_BOXES, _BOX_ROTATIONS, _BOX_IDS)],
        _GROUND_ID,
    )


def _ground_albedo(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Stone plaza (a soft two-tone tiling) within 1.8 units, grass with slow blotches beyond."""
    radius = np.sqrt(x * x + y * y)
    wave = 2.0 * math.pi / 0.5
    tiles = 0.5 + 0.5 * np.sin(wave * x) * np.sin(wave * y)
    stone = tiles[:, None] * np.array([0.78, 0.74, 0.66]) + (1.0 - tiles[:, None]) * np.array([0.52, 0.50, 0.48])
    blotch = 0.5 + 0.25 * np.sin(0.9 * x + 0.4) * np.sin(0.7 * y + 1.1) + 0.25 * np.sin(0.23 * x - 0.31 * y)
    grass = blotch[:, None] * np.array([0.30, 0.52, 0.20]) + (1.0 - blotch[:, None]) * np.array([0.46, 0.50, 0.26])
    edge = np.clip((radius - 1.7) / 0.2, 0.0, 1.0)[:, None]
    return (1.0 - edge) * stone + edge * grass


def _albedo(points: np.ndarray, primitive: np.ndarray) -> np.ndarray:
    """[N, 3] albedo of hit points (0 for misses)."""
    albedo = np.zeros((len(points), 3))
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    on = primitive == _GROUND_ID
    albedo[on] = _ground_albedo(x[on], y[on])

    big, blue, small = _SPHERE_IDS[: len(_OBJECT_SPHERES)]
    on = primitive == big
    height = (z[on] - (_SPHERES[0, 2] - _SPHERES[0, 3])) / (2.0 * _SPHERES[0, 3])
    albedo[on] = (1.0 - height[:, None]) * np.array([0.82, 0.16, 0.14]) + height[:, None] * np.array([0.97, 0.66, 0.20])
    on = primitive == blue
    across = (x[on] - _SPHERES[1, 0]) / (2.0 * _SPHERES[1, 3]) + 0.5
    albedo[on] = (1.0 - across[:, None]) * np.array([0.14, 0.28, 0.84]) + across[:, None] * np.array([0.34, 0.78, 0.88])
    albedo[primitive == small] = (0.92, 0.90, 0.86)

    on = np.isin(primitive, _HILL_IDS)
    rise = np.clip(z[on] / 4.5, 0.0, 1.0)[:, None]
    streaks = (0.5 + 0.5 * np.sin(1.3 * x[on] + 0.8 * y[on]) * np.sin(0.9 * z[on] * 3.0))[:, None]
    low = streaks * np.array([0.26, 0.44, 0.20]) + (1.0 - streaks) * np.array([0.36, 0.46, 0.24])
    albedo[on] = (1.0 - rise) * low + rise * np.array([0.56, 0.52, 0.46])

    albedo[primitive == _BOX_IDS[0]] = (0.92, 0.80, 0.25)
    albedo[primitive == _BOX_IDS[1]] = (0.58, 0.34, 0.76)
    building_colors = np.array([[0.80, 0.74, 0.62], [0.62, 0.64, 0.68], [0.76, 0.46, 0.36], [0.56, 0.60, 0.70]])
    for box, rotation, primitive_id, color in zip(_BOXES[_NUM_OBJECT_BOXES:], _BOX_ROTATIONS[_NUM_OBJECT_BOXES:],
                                                  _BUILDING_IDS, building_colors):
        on = primitive == primitive_id
        local = (points[on] - box[:3]) @ rotation
        # Windows: a grid of dark panes on the walls (the coordinate along the wall is the
        # local x or y, whichever is not at the face).
        along = np.where(np.abs(np.abs(local[:, 0]) - box[3]) < 1e-6, local[:, 1], local[:, 0])
        pane = (np.sin(2.0 * math.pi * along / 0.7) > 0.1) & (np.sin(2.0 * math.pi * (local[:, 2] + 0.2) / 0.8) > 0.2)
        pane &= (local[:, 2] < box[5] - 0.2) & (np.abs(local[:, 2] - box[5]) > 1e-6)
        albedo[on] = np.where(pane[:, None], np.array([0.20, 0.26, 0.34]), color)
    return albedo


def shade(hits: RayHits) -> np.ndarray:
    """[N, 3] float64 colour of each hit: albedo * (ambient + sky light * n_z + diffuse * lit *
    max(0, n . sun)), with a shadow ray towards the sun; 0 for misses."""
    cosine, visible = sun_visibility(hits, SUN_DIRECTION, trace_rays)
    intensity = _AMBIENT + _SKY_LIGHT * np.maximum(hits.normals[:, 2], 0.0) + _DIFFUSE * cosine * visible
    return np.where(hits.hit[:, None], _albedo(hits.points, hits.primitive) * intensity[:, None], 0.0)


def _radiance(directions: np.ndarray, hits: RayHits) -> np.ndarray:
    color = shade(hits)
    sky = ~hits.hit
    color[sky] = sky_radiance(directions[sky])
    return color


# ---------------------------------------------------------------------- ground-truth geometry


def _signed_distances(points: np.ndarray) -> np.ndarray:
    """[N, S] signed distance of world points [N, 3] to each solid (negative inside): the
    ground slab (the disk, 1 unit thick), every sphere, every box."""
    ground_d = np.stack(
        [np.sqrt(points[:, 0] ** 2 + points[:, 1] ** 2) - GROUND_RADIUS, np.abs(points[:, 2] + 0.5) - 0.5], axis=1
    )
    columns = [np.minimum(ground_d.max(axis=1), 0.0) + np.linalg.norm(np.maximum(ground_d, 0.0), axis=1)]
    for sphere in _SPHERES:
        columns.append(np.linalg.norm(points - sphere[:3], axis=1) - sphere[3])
    for box, rotation in zip(_BOXES, _BOX_ROTATIONS):
        q = np.abs((points - box[:3]) @ rotation) - box[3:6]
        columns.append(np.linalg.norm(np.maximum(q, 0.0), axis=1) + np.minimum(q.max(axis=1), 0.0))
    return np.stack(columns, axis=1)


def distance_to_surface(points: np.ndarray) -> np.ndarray:
    """[N] float64 unsigned distance of world points [N, 3] to the scene's surface.

    The surface is the boundary of the union of the solids (ground slab, spheres, hills,
    boxes). The distance is exact outside every solid; inside, it is the depth below the
    nearest boundary of a solid holding the point, a lower bound that is exact unless that
    boundary is buried in another solid. The sky is no surface.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"distance_to_surface: points must be [N, 3], got {list(points.shape)}")
    return np.abs(_signed_distances(points).min(axis=1))


def _uniform_on_sphere(rng: np.random.Generator, count: int) -> np.ndarray:
    directions = rng.normal(size=(count, 3))
    return directions / np.linalg.norm(directions, axis=1, keepdims=True)


def _surface_candidates(rng: np.random.Generator, count: int, radius: float):
    """(points [M, 3], solid index [M]) drawn uniformly over the solids' whole surfaces that
    can reach the ball, ~``count`` in all, area-weighted (the ground: its disk in the ball)."""
    pieces = [("ground", None, math.pi * min(radius, GROUND_RADIUS) ** 2)]
    for index, sphere in enumerate(_SPHERES):
        if np.linalg.norm(sphere[:3]) - sphere[3] < radius:
            pieces.append(("sphere", index, 4.0 * math.pi * sphere[3] ** 2))
    for index, box in enumerate(_BOXES):
        if np.linalg.norm(box[:3]) - np.linalg.norm(box[3:6]) < radius:
            hx, hy, hz = box[3:6]
            pieces.append(("box", index, 8.0 * (hx * hy + hy * hz + hx * hz)))
    areas = np.array([piece[2] for piece in pieces])
    counts = rng.multinomial(count, areas / areas.sum())
    points, solids = [], []
    for (kind, index, _), n in zip(pieces, counts):
        if kind == "ground":
            r = min(radius, GROUND_RADIUS) * np.sqrt(rng.random(n))
            angle = 2.0 * math.pi * rng.random(n)
            points.append(np.stack([r * np.cos(angle), r * np.sin(angle), np.zeros(n)], axis=1))
            solids.append(np.zeros(n, dtype=np.int64))
        elif kind == "sphere":
            sphere = _SPHERES[index]
            points.append(sphere[:3] + sphere[3] * _uniform_on_sphere(rng, n))
            solids.append(np.full(n, 1 + index))
        else:
            box, rotation = _BOXES[index], _BOX_ROTATIONS[index]
            half = box[3:6]
            face_areas = np.array([half[1] * half[2], half[0] * half[2], half[0] * half[1]]).repeat(2)
            face = rng.choice(6, size=n, p=face_areas / face_areas.sum())
            local = (2.0 * rng.random((n, 3)) - 1.0) * half
            axis = face // 2
            local[np.arange(n), axis] = np.where(face % 2 == 0, -1.0, 1.0) * half[axis]
            points.append(box[:3] + local @ rotation.T)
            solids.append(np.full(n, 1 + len(_SPHERES) + index))
    return np.concatenate(points), np.concatenate(solids)


def sample_surface(count: int, seed: int, *, radius: float = FOREGROUND_RADIUS) -> np.ndarray:
    """[count, 3] float64 points uniformly distributed over the visible surface within
    ``radius`` of the origin: the boundary of the union of solids, without the parts that
    touch or lie inside another solid (ground under a box or a hill, a box's bottom face,
    sphere parts below the ground). Deterministic for a seed.

    Points on the far background (hills, buildings, the ground beyond ``radius``) are not
    drawn: the default ball is the region the cameras enclose (``FOREGROUND_RADIUS``).
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"sample_surface: count must be an integer >= 0, got {count!r}")
    if not (math.isfinite(radius) and radius > 0):
        raise ValueError(f"sample_surface: radius must be a finite number > 0, got {radius!r}")
    rng = np.random.default_rng([seed, 3])
    kept: List[np.ndarray] = []
    total = 0
    while total < count:
        # Rejection keeps the distribution uniform; about half the candidates survive.
        points, solids = _surface_candidates(rng, 2 * (count - total) + 64, radius)
        distances = _signed_distances(points)
        distances[np.arange(len(points)), solids] = np.inf  # a point is on its own solid's boundary
        keep = (distances.min(axis=1) > 1e-9) & (np.linalg.norm(points, axis=1) <= radius)
        kept.append(rng.permutation(points[keep]))  # candidates come grouped by solid
        total += int(keep.sum())
    return np.concatenate(kept)[:count] if kept else np.zeros((0, 3))


# ---------------------------------------------------------------------- cameras and data


def capture_scene_viewmats(num_views: int = DEFAULT_CAPTURE_NUM_VIEWS, *, seed: int = 0) -> np.ndarray:
    """[V, 4, 4] float64 OpenCV world-to-camera matrices along the capture path.

    View k sits near azimuth 360 k / V on a closed path whose radius (2.5-3.5) and height
    (0.5-1.0) vary along it; it looks at a point that wanders around the objects' centre.
    The seed adds what a hand-held capture has: a few centimetres of position noise, a jitter
    of the spacing and the target, and up to a few degrees of roll.
    """
    if isinstance(num_views, bool) or not isinstance(num_views, (int, np.integer)) or num_views < 1:
        raise ValueError(f"num_views must be an integer >= 1, got {num_views!r}")
    rng = np.random.default_rng([seed, 2])
    viewmats = np.zeros((num_views, 4, 4))
    for view in range(num_views):
        theta = 2.0 * math.pi * (view + 0.25 * rng.uniform(-1.0, 1.0)) / num_views
        radius = 3.0 + 0.35 * math.sin(2.0 * theta + 0.7) + 0.15 * math.sin(3.0 * theta + 2.0)
        height = 0.75 + 0.17 * math.sin(theta + 0.3) + 0.07 * math.sin(4.0 * theta)
        eye = np.array([radius * math.cos(theta), radius * math.sin(theta), height]) + rng.normal(0.0, 0.03, 3)
        target = np.array([0.25 * math.cos(theta + 1.0), 0.25 * math.sin(2.0 * theta), 0.45])
        target = target + rng.normal(0.0, 0.05, 3)
        roll_deg = float(np.clip(rng.normal(0.0, 1.5), -4.0, 4.0))
        viewmats[view] = look_at(eye, target, up=(0.0, 0.0, 1.0), dtype=torch.float64, roll_deg=roll_deg).numpy()
    return viewmats


def capture_scene_cameras(
    num_views: int = DEFAULT_CAPTURE_NUM_VIEWS,
    width: int = DEFAULT_CAPTURE_WIDTH,
    height: int = DEFAULT_CAPTURE_HEIGHT,
    *,
    seed: int = 0,
    fov_x_deg: float = DEFAULT_CAPTURE_FOV_X_DEG,
    supersample: int = DEFAULT_CAPTURE_SUPERSAMPLE,
) -> List[Camera]:
    """Render every view in memory: cameras named ``view_000.png`` ... along the path, each
    with ``image`` [H, W, 3] (no alpha: the sky is part of the photo), ground-truth ``depth``
    [H, W, 1] (0 on sky) and world ``normal`` [H, W, 3]. Identical seeds give identical arrays.
    """
    return render_cameras(
        capture_scene_viewmats(num_views, seed=seed), intrinsics(width, height, fov_x_deg), width, height,
        supersample, np.random.default_rng(seed), trace_rays, _radiance,
    )


def capture_scene_points(
    cameras: List[Camera], num_points: int = DEFAULT_CAPTURE_NUM_POINTS, *, seed: int = 0
) -> Tuple[np.ndarray, np.ndarray]:
    """SfM-like sparse points: (points [P, 3], colors [P, 3] in [0, 1]) float32.

    Pixels are drawn uniformly from all pixels of all views that see geometry (so the sky has
    none and far geometry has few), their centre rays traced to the surface; each point then
    moves by normal noise of ``_POINT_NOISE`` times its depth, and ``_OUTLIER_FRACTION`` of
    them are outliers: placed at a random 15-85% of the way from the camera to the surface.
    Colours are the surface's with a little noise.
    """
    rng = np.random.default_rng([seed, 1])  # independent of the jitter stream
    origins, directions, _ = sample_surface_pixels(cameras, num_points, rng)
    traced = trace_rays(origins, directions)
    depth = traced.t
    points = traced.points + rng.normal(0.0, _POINT_NOISE, traced.points.shape) * depth[:, None]
    outliers = rng.random(len(points)) < _OUTLIER_FRACTION
    travel = rng.uniform(0.15, 0.85, int(outliers.sum())) * depth[outliers]
    points[outliers] = origins[outliers] + travel[:, None] * directions[outliers]
    colors = shade(traced) + rng.normal(0.0, 0.02, points.shape)
    return points.astype(np.float32), np.clip(colors, 0.0, 1.0).astype(np.float32)


def capture_scene_data(
    num_views: int = DEFAULT_CAPTURE_NUM_VIEWS,
    width: int = DEFAULT_CAPTURE_WIDTH,
    height: int = DEFAULT_CAPTURE_HEIGHT,
    *,
    seed: int = 0,
    num_points: int = DEFAULT_CAPTURE_NUM_POINTS,
    test_every: int = DEFAULT_CAPTURE_TEST_EVERY,
    supersample: int = DEFAULT_CAPTURE_SUPERSAMPLE,
) -> SceneData:
    """The scene as :class:`SceneData` in memory, split and initialised as ``load_scene``
    would give it after :func:`make_capture_scene` (without 8-bit rounding of the images)."""
    cameras = capture_scene_cameras(num_views, width, height, seed=seed, supersample=supersample)
    points, colors = capture_scene_points(cameras, num_points, seed=seed)
    return split_scene(cameras, points, colors, test_every, (0.0, 0.0, 0.0))


def make_capture_scene(
    folder: PathLike,
    *,
    num_views: int = DEFAULT_CAPTURE_NUM_VIEWS,
    width: int = DEFAULT_CAPTURE_WIDTH,
    height: int = DEFAULT_CAPTURE_HEIGHT,
    seed: int = 0,
    num_points: int = DEFAULT_CAPTURE_NUM_POINTS,
    supersample: int = DEFAULT_CAPTURE_SUPERSAMPLE,
    binary: bool = False,
) -> Path:
    """Render the scene and write it as a COLMAP dataset that :func:`load_scene` reads:
    ``images/view_XXX.png``, a PINHOLE model in ``sparse/0`` (text, or binary) whose points3D
    are the SfM-like points, and ``gt/view_XXX_depth.npy`` / ``_normal.npy``. Returns ``folder``."""
    cameras = capture_scene_cameras(num_views, width, height, seed=seed, supersample=supersample)
    points, colors = capture_scene_points(cameras, num_points, seed=seed)
    return write_scene_folder(folder, cameras, points, colors, binary=binary)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gsplat_lib.data.capture_scene",
        description="Write the built-in capture-like scene (images, cameras, sparse points, ground truth).",
    )
    add_scene_arguments(parser, DEFAULT_CAPTURE_NUM_VIEWS, DEFAULT_CAPTURE_WIDTH, DEFAULT_CAPTURE_HEIGHT)
    args = parser.parse_args(argv)
    folder = make_capture_scene(
        args.out_dir, num_views=args.views, width=args.width, height=args.height, seed=args.seed, binary=args.binary
    )
    print(f"wrote the capture scene ({args.views} views, {args.width}x{args.height}) to {folder}")


if __name__ == "__main__":
    main()
