"""What the built-in ray-traced scenes share: rays through pixels, the nearest hit among
analytic primitives, the supersampled render of a view with its ground truth, SfM-like
points and the writer of a scene folder.

Everything is vectorised numpy in float64; a scene module supplies its primitives and its
shading (:mod:`gsplat_lib.data.synthetic_scene`, :mod:`gsplat_lib.data.capture_scene`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from .colmap import write_colmap
from .scene import Camera, PathLike, SceneData, scene_extent, split_indices

__all__ = [
    "HIT_EPS",
    "RayHits",
    "NearestHits",
    "RayProducts",
    "intrinsics",
    "pixel_rays",
    "sphere_hits",
    "box_hits",
    "box_rotation",
    "trace_scene",
    "sun_visibility",
    "split_scene",
    "render_view",
    "render_cameras",
    "sample_surface_pixels",
    "write_scene_folder",
    "write_ground_truth",
    "add_scene_arguments",
]

# Self-intersection guard (scene units): hits closer than this to the ray origin are ignored.
HIT_EPS = 1e-6


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


class NearestHits:
    """Keeps, per ray, the nearest hit offered so far (a scene's tracer offers each primitive's)."""

    def __init__(self, count: int) -> None:
        self.t = np.full(count, np.inf)
        self.normal = np.zeros((count, 3))
        self.primitive = np.full(count, -1, dtype=np.int64)

    def offer(self, rays: np.ndarray, t: np.ndarray, normal: np.ndarray, primitive_id: int) -> None:
        """Hits at ``t`` [M] with normals [M, 3] of the rays ``rays`` [M]; kept where nearer."""
        closer = t < self.t[rays]
        rays, t, normal = rays[closer], t[closer], normal[closer]
        self.t[rays] = t
        self.normal[rays] = normal
        self.primitive[rays] = primitive_id

    def result(self, origins: np.ndarray, directions: np.ndarray) -> RayHits:
        hit = self.primitive >= 0
        points = np.where(hit[:, None], origins + np.where(hit, self.t, 0.0)[:, None] * directions, 0.0)
        return RayHits(self.t, points, np.where(hit[:, None], self.normal, 0.0), self.primitive)


class RayProducts:
    """Rays [N, 3] and the dot products every sphere test shares: |o - c|^2 and (o - c).d
    expand into these plus two mat-vec products per sphere, instead of an [N, 3]
    temporary per sphere."""

    def __init__(self, origins: np.ndarray, directions: np.ndarray) -> None:
        self.origins = origins
        self.directions = directions
        self.dd = np.einsum("ij,ij->i", directions, directions)
        self.oo = np.einsum("ij,ij->i", origins, origins)
        self.od = np.einsum("ij,ij->i", origins, directions)
        self.all_rays = np.arange(len(origins))


def sphere_hits(rays: RayProducts, center: np.ndarray, radius: float) -> Tuple[np.ndarray, np.ndarray]:
    """(ray indices [M], t [M]) of the rays that enter the sphere ahead of their origin."""
    with np.errstate(invalid="ignore"):
        b = rays.od - rays.directions @ center
        c = rays.oo - 2.0 * (rays.origins @ center) + (center @ center - radius * radius)
        discriminant = b * b - rays.dd * c
        valid = discriminant >= 0.0
        hit_rays = rays.all_rays[valid]
        t = (-b[valid] - np.sqrt(discriminant[valid])) / rays.dd[valid]
    ahead = t > HIT_EPS
    return hit_rays[ahead], t[ahead]


def box_rotation(angle_deg: float) -> np.ndarray:
    """[3, 3] rotation about z: box-local to world."""
    angle = math.radians(angle_deg)
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def box_hits(
    rays: RayProducts, center: np.ndarray, half: np.ndarray, rotation: np.ndarray
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ray indices [M], t [M], world normals [M, 3] facing the ray) of the rays that enter an
    oriented box (``rotation`` maps box-local to world) ahead of their origin."""
    # Only rays that meet the bounding sphere can hit the box; that test is much cheaper.
    candidates = sphere_hits(rays, center, float(np.linalg.norm(half)))[0]
    if len(candidates) == 0:
        return candidates, np.zeros(0), np.zeros((0, 3))
    # Slab test in the box frame; rotation.T maps world to local.
    local_origin = (rays.origins[candidates] - center) @ rotation
    local_direction = rays.directions[candidates] @ rotation
    safe = np.where(np.abs(local_direction) < 1e-300, 1e-300, local_direction)
    t1 = (-half - local_origin) / safe
    t2 = (half - local_origin) / safe
    t_near_axis = np.minimum(t1, t2)
    t_near = t_near_axis.max(axis=1)
    t_far = np.maximum(t1, t2).min(axis=1)
    valid = (t_near <= t_far) & (t_near > HIT_EPS)
    hit_rays = candidates[valid]
    axis = t_near_axis[valid].argmax(axis=1)
    local_normal = np.zeros((len(hit_rays), 3))
    local_normal[np.arange(len(hit_rays)), axis] = -np.sign(local_direction[valid, axis])
    return hit_rays, t_near[valid], local_normal @ rotation.T


def trace_scene(
    origins: np.ndarray,
    directions: np.ndarray,
    ground_footprint: Callable[[np.ndarray], np.ndarray],
    spheres: Sequence[Tuple[np.ndarray, float, int]],
    boxes: Sequence[Tuple[np.ndarray, np.ndarray, np.ndarray, int]],
    ground_id: int = 0,
) -> RayHits:
    """The nearest hit of each ray among a ground plane z = 0 (seen from above only, where
    ``ground_footprint(xy [M, 2]) -> [M] bool``), spheres ``(center, radius, id)`` and
    oriented boxes ``(center, half sizes, rotation, id)``.

    Args:
        origins: [N, 3] ray origins above the ground and outside every solid.
        directions: [N, 3] ray directions, any non-zero length.
    """
    origins = np.asarray(origins, dtype=np.float64)
    directions = np.asarray(directions, dtype=np.float64)
    nearest = NearestHits(len(origins))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -origins[:, 2] / directions[:, 2]
        hit_xy = origins[:, :2] + t[:, None] * directions[:, :2]
        valid = (directions[:, 2] < 0.0) & (t > HIT_EPS) & ground_footprint(hit_xy)
        rays = np.flatnonzero(valid)
        nearest.offer(rays, t[valid], np.broadcast_to([0.0, 0.0, 1.0], (len(rays), 3)), ground_id)
    products = RayProducts(origins, directions)
    for center, radius, primitive_id in spheres:
        rays, t = sphere_hits(products, center, radius)
        normal = (origins[rays] + t[:, None] * directions[rays] - center) / radius
        nearest.offer(rays, t, normal, primitive_id)
    for center, half, rotation, primitive_id in boxes:
        rays, t, normal = box_hits(products, center, half, rotation)
        nearest.offer(rays, t, normal, primitive_id)
    return nearest.result(origins, directions)


def sun_visibility(
    hits: RayHits, light: np.ndarray, trace: Callable[[np.ndarray, np.ndarray], RayHits]
) -> Tuple[np.ndarray, np.ndarray]:
    """(max(0, n . light) [N], lit [N] bool) of hits under a directional light: lit where
    the surface faces the light and a shadow ray towards it hits nothing."""
    cosine = np.maximum(hits.normals @ light, 0.0)
    facing = hits.hit & (cosine > 0.0)
    shadow_origins = hits.points[facing] + 1e-5 * hits.normals[facing]
    shadow = trace(shadow_origins, np.broadcast_to(light, shadow_origins.shape))
    lit = np.zeros(len(cosine), dtype=bool)
    lit[np.flatnonzero(facing)[~shadow.hit]] = True
    return cosine, lit


def split_scene(
    cameras: Sequence[Camera], points: np.ndarray, colors: np.ndarray, test_every: int, background: Sequence[float]
) -> SceneData:
    """:class:`SceneData` of rendered views split as ``load_scene`` splits them (every
    ``test_every``-th view held out), with the 3DGS extent of the training cameras."""
    train_ids, test_ids = split_indices(len(cameras), test_every)
    train = [cameras[index] for index in train_ids]
    return SceneData(
        train=train,
        test=[cameras[index] for index in test_ids],
        points=points,
        point_colors=colors,
        scene_extent=scene_extent(train if train else cameras),
        background=np.asarray(background, dtype=np.float32),
    )


def intrinsics(width: int, height: int, fov_x_deg: float) -> np.ndarray:
    """[3, 3] pinhole intrinsics with square pixels, centred principal point and the given
    horizontal field of view (fx = 0.5 W / tan(0.5 fov))."""
    focal = 0.5 * width / math.tan(0.5 * math.radians(fov_x_deg))
    return np.array([[focal, 0.0, 0.5 * width], [0.0, focal, 0.5 * height], [0.0, 0.0, 1.0]])


def pixel_rays(viewmat: np.ndarray, K: np.ndarray, u: np.ndarray, v: np.ndarray):
    """World rays (origins [N, 3], directions [N, 3]) through continuous pixel coordinates
    u, v ([N] each).

    The directions have camera-space z = 1, so the hit parameter t is the camera-space depth."""
    rotation, translation = viewmat[:3, :3], viewmat[:3, 3]
    camera_dirs = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=1)
    origins = np.broadcast_to(-rotation.T @ translation, camera_dirs.shape)
    return origins, camera_dirs @ rotation  # rows of R^T d


def render_view(
    viewmat: np.ndarray,
    K: np.ndarray,
    width: int,
    height: int,
    supersample: int,
    rng: np.random.Generator,
    trace: Callable[[np.ndarray, np.ndarray], RayHits],
    radiance: Callable[[np.ndarray, RayHits], np.ndarray],
):
    """(mean radiance [H, W, 3], hit fraction [H, W, 1], depth [H, W, 1], normal [H, W, 3])
    of one view.

    Each pixel averages S x S stratified jittered samples (sample (a, b) in sub-cell (a, b)),
    ``radiance(directions, hits)`` giving each sample's colour; the ground truth (depth =
    camera-space z, 0 on a miss; world normal) is that of the ray through the pixel centre.
    """
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    strata = np.arange(supersample, dtype=np.float64)[None, None, :, None]
    jitter = rng.random((height, width, supersample, supersample, 2))
    u = cols[:, :, None, None] + (strata.transpose(0, 1, 3, 2) + jitter[..., 0]) / supersample
    v = rows[:, :, None, None] + (strata + jitter[..., 1]) / supersample
    origins, directions = pixel_rays(viewmat, K, u.ravel(), v.ravel())
    hits = trace(origins, directions)
    samples = supersample * supersample
    color = radiance(directions, hits).reshape(height, width, samples, 3).sum(axis=2) / samples
    coverage = hits.hit.reshape(height, width, samples).mean(axis=2)[:, :, None]

    origins, directions = pixel_rays(viewmat, K, cols.ravel() + 0.5, rows.ravel() + 0.5)
    centre = trace(origins, directions)
    depth = np.where(centre.hit, centre.t, 0.0).reshape(height, width, 1)
    normal = centre.normals.reshape(height, width, 3)
    return color, coverage, depth, normal


def render_cameras(
    viewmats: np.ndarray,
    K: np.ndarray,
    width: int,
    height: int,
    supersample: int,
    rng: np.random.Generator,
    trace: Callable[[np.ndarray, np.ndarray], RayHits],
    radiance: Callable[[np.ndarray, RayHits], np.ndarray],
    background: Optional[Sequence[float]] = None,
) -> List[Camera]:
    """Renders every view (:func:`render_view`, in order, drawing the jitter from ``rng``) as
    cameras named ``view_000.png`` ... with float32 ``image``, ground-truth ``depth`` and
    world ``normal``.

    With a ``background`` the image is composited over it by sample coverage, which becomes
    the camera's ``alpha`` (``radiance`` must then be 0 on misses); without one, misses keep
    their radiance (an environment) and there is no alpha, as in a photo.
    """
    if len(viewmats) < 1 or width < 1 or height < 1 or supersample < 1:
        raise ValueError(
            f"num_views, width, height and supersample must be >= 1, got "
            f"{len(viewmats)}, {width}, {height}, {supersample}"
        )
    if background is not None:
        background = np.asarray(background, dtype=np.float64).reshape(1, 1, 3)
    cameras = []
    for view, viewmat in enumerate(viewmats):
        color, coverage, depth, normal = render_view(viewmat, K, width, height, supersample, rng, trace, radiance)
        image = color if background is None else color + (1.0 - coverage) * background
        cameras.append(
            Camera(
                name=f"view_{view:03d}.png",
                viewmat=viewmat.astype(np.float32),
                K=K.astype(np.float32),
                width=width,
                height=height,
                image=np.clip(image, 0.0, 1.0).astype(np.float32),
                alpha=None if background is None else coverage.astype(np.float32),
                depth=depth.astype(np.float32),
                normal=normal.astype(np.float32),
            )
        )
    return cameras


def sample_surface_pixels(
    cameras: Sequence[Camera], count: int, rng: np.random.Generator
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` distinct pixels drawn uniformly from all pixels of all views whose centre ray
    hits geometry (ground-truth depth > 0), as rays: (origins [P, 3], directions [P, 3] with
    camera z = 1, view index [P]), in view order. Fewer when fewer pixels hit."""
    hits = [np.flatnonzero(camera.depth.reshape(-1) > 0.0) for camera in cameras]
    counts = np.array([len(pixel_ids) for pixel_ids in hits])
    if counts.sum() == 0:
        return np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, dtype=np.int64)
    chosen = np.sort(rng.choice(counts.sum(), size=min(count, counts.sum()), replace=False))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    origins, directions, views = [], [], []
    for view, camera in enumerate(cameras):
        in_view = chosen[(chosen >= offsets[view]) & (chosen < offsets[view + 1])] - offsets[view]
        if len(in_view) == 0:
            continue
        rows, cols = np.divmod(hits[view][in_view], camera.width)
        view_origins, view_directions = pixel_rays(
            camera.viewmat.astype(np.float64), camera.K.astype(np.float64), cols + 0.5, rows + 0.5
        )
        origins.append(view_origins)
        directions.append(view_directions)
        views.append(np.full(len(in_view), view))
    return np.concatenate(origins), np.concatenate(directions), np.concatenate(views)


def add_scene_arguments(parser, num_views: int, width: int, height: int) -> None:
    """The command-line arguments every built-in scene's writer takes: the output folder,
    ``--views``, ``--width``, ``--height`` (defaults given), ``--seed`` and ``--binary``."""
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--views", type=int, default=num_views)
    parser.add_argument("--width", type=int, default=width)
    parser.add_argument("--height", type=int, default=height)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--binary", action="store_true", help="binary COLMAP model instead of text")


def write_scene_folder(
    folder: PathLike, cameras: Sequence[Camera], points: np.ndarray, colors: np.ndarray, *, binary: bool = False
) -> Path:
    """Writes a COLMAP dataset (``images/``, a PINHOLE model in ``sparse/0``, text or binary)
    with the cameras' ground truth in ``gt/<stem>_depth.npy`` [H, W, 1] and
    ``gt/<stem>_normal.npy`` [H, W, 3] (float32), which the loaders attach to the cameras.
    Returns ``folder``."""
    folder = Path(folder)
    write_colmap(folder, cameras, points, colors, binary=binary)
    write_ground_truth(folder, cameras)
    return folder


def write_ground_truth(folder: Path, cameras: Sequence[Camera]) -> None:
    """``gt/<stem>_depth.npy`` and ``gt/<stem>_normal.npy`` of every camera."""
    gt_dir = Path(folder) / "gt"
    gt_dir.mkdir(parents=True, exist_ok=True)
    for camera in cameras:
        stem = Path(camera.name).stem
        np.save(gt_dir / f"{stem}_depth.npy", camera.depth)
        np.save(gt_dir / f"{stem}_normal.npy", camera.normal)
