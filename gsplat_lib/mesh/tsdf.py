"""A sparse TSDF volume: fuse depth maps into 8^3 voxel blocks, extract a triangle mesh.

Blocks exist only where depth lands (the truncation band around every measured surface
point), so memory follows the surface, not the bounding box; a volume refuses, with a
ValueError, to allocate past its memory budget. The compiled core does the work on the CPU
(``torch.get_num_threads()`` threads) or on the CUDA device of the volume, with the same
math (``csrc/core/tsdf.h``, ``csrc/core/marching_cubes.h``), deterministically: every voxel is
updated by one thread, views in order, and new blocks are appended in sorted order.

Bounded volumes are a world grid limited by ``max_depth``. Unbounded ones use 2DGS's
contraction around a centre and radius (``Contraction``): the unit ball (the ``radius``
around ``center``) keeps ``voxel_size``, the space beyond is squeezed into the ball of
radius 2 with voxels that grow with distance, and the truncation grows with them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch

from gsplat_lib import _backend
from gsplat_lib.mesh.mesh import Mesh

__all__ = ["Contraction", "TSDFVolume", "BLOCK_SIDE", "BLOCK_VOXELS", "DEFAULT_TRUNCATION_VOXELS"]

BLOCK_SIDE = 8
BLOCK_VOXELS = BLOCK_SIDE**3
#: 2DGS's truncation: 5 voxels (``sdf_trunc = 5 * voxel_size``).
DEFAULT_TRUNCATION_VOXELS = 5.0
#: Default memory budget of a volume: 2 GiB of voxels.
DEFAULT_MEMORY_BUDGET = 2 << 30

# Block coordinates are packed into int64 keys, 21 bits each (csrc/core/tsdf.h: kMaxBlockCoord).
_COORD_BITS = 21
_COORD_OFFSET = 1 << (_COORD_BITS - 1)
# tsdf, weight (float32) and an RGB colour (3 x float32) per voxel, plus the block's coordinates.
_VOXEL_BYTES_WITH_COLOR = 20
_VOXEL_BYTES = 8
#: Voxels (or pixels) the CPU handles at once: 0 the widest this CPU has (8 with AVX2, else 4),
#: or 1, 4, 8. Every width gives the same bits; tests set it to compare them.
CPU_LANES = 0
# Crossed edges (vertices) of a voxel from its 3-bit edge mask.
_EDGE_MASK_COUNTS = torch.tensor([0, 1, 1, 2, 1, 2, 2, 3], dtype=torch.int32)


@dataclass(frozen=True)
class Contraction:
    """2DGS's contraction of unbounded space (``utils/mesh_utils.py``).

    A world point ``x`` maps to ``y = contract((x - center) / radius)`` with
    ``contract(u) = u`` for ``|u| <= 1`` and ``(2 - 1/|u|) u / |u|`` beyond. 2DGS takes the
    point nearest to all cameras' optical axes as ``center`` and the smallest camera distance
    to it as ``radius`` (:func:`gsplat_lib.mesh.camera_bounding_sphere`). Depth landing beyond
    ``|y| = limit`` (2 is infinity; 1.9 is 10 radii away, 2DGS's cap) is not fused.
    """

    center: Tuple[float, float, float]
    radius: float
    limit: float = 1.9

    def __post_init__(self) -> None:
        center = tuple(float(value) for value in self.center)
        if len(center) != 3 or not all(math.isfinite(value) for value in center):
            raise ValueError(f"Contraction.center must be 3 finite numbers, got {self.center!r}")
        object.__setattr__(self, "center", center)
        if not (math.isfinite(self.radius) and self.radius > 0):
            raise ValueError(f"Contraction.radius must be a finite number > 0, got {self.radius!r}")
        if not 1.0 < self.limit < 2.0:
            raise ValueError(f"Contraction.limit must be in (1, 2), got {self.limit!r}")


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 < float(value) < math.inf):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _pack_keys(coords: torch.Tensor) -> torch.Tensor:
    """[K] int64 keys of [K, 3] block coordinates; sorting keys sorts by (x, y, z)."""
    shifted = coords.to(torch.int64) + _COORD_OFFSET
    return (shifted[:, 0] << (2 * _COORD_BITS)) | (shifted[:, 1] << _COORD_BITS) | shifted[:, 2]


def _unpack_keys(keys: torch.Tensor) -> torch.Tensor:
    mask = (1 << _COORD_BITS) - 1
    coords = torch.stack([(keys >> (2 * _COORD_BITS)) & mask, (keys >> _COORD_BITS) & mask, keys & mask], dim=1)
    return (coords - _COORD_OFFSET).to(torch.int32)


def _exclusive_cumsum(counts: torch.Tensor) -> Tuple[torch.Tensor, int]:
    """(offsets, total): offsets[i] = sum of counts before i, as int64."""
    inclusive = torch.cumsum(counts.reshape(-1).to(torch.int64), dim=0)
    total = int(inclusive[-1]) if inclusive.numel() else 0
    return (inclusive - counts.reshape(-1).to(torch.int64)).contiguous(), total


class TSDFVolume:
    """A truncated signed distance volume in sparse blocks of 8^3 voxels.

    Args:
        voxel_size: voxel spacing in world units (in the unit ball when ``contraction`` is set).
        truncation: the truncation distance in world units (default 5 voxels, as 2DGS).
            Measurements fuse into voxels up to this far behind the surface; voxels in front
            of it take ``min(1, sdf / truncation)``. In contracted space it grows with the voxels.
        max_depth: depth beyond this is ignored (bounded volumes; default: no limit).
        contraction: a :class:`Contraction` for unbounded scenes; None for a bounded world grid.
        memory_budget: bytes the voxel blocks may take; integrating past it raises ValueError.
        colors: whether to fuse colours.
        device: where the volume lives (``cpu`` or a CUDA device); inputs must be there too.
    """

    def __init__(
        self,
        voxel_size: float,
        *,
        truncation: Optional[float] = None,
        max_depth: Optional[float] = None,
        contraction: Optional[Contraction] = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        colors: bool = True,
        device="cpu",
    ) -> None:
        self.voxel_size = _positive("voxel_size", voxel_size)
        self.truncation = (
            DEFAULT_TRUNCATION_VOXELS * self.voxel_size if truncation is None else _positive("truncation", truncation)
        )
        self.max_depth = None if max_depth is None else _positive("max_depth", max_depth)
        if contraction is not None and not isinstance(contraction, Contraction):
            raise TypeError(f"contraction must be a gsplat_lib.mesh.Contraction or None, got {type(contraction).__name__}")
        self.contraction = contraction
        if isinstance(memory_budget, bool) or not isinstance(memory_budget, int) or memory_budget <= 0:
            raise ValueError(f"memory_budget must be a positive number of bytes, got {memory_budget!r}")
        self.memory_budget = memory_budget
        self.has_colors = bool(colors)
        self.device = torch.device(device)
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"device: unsupported device {self.device}; expected cpu or cuda")
        self._capacity = 0
        self._count = 0
        self._coords = torch.empty((0, 3), dtype=torch.int32, device=self.device)
        self._tsdf = torch.empty((0, BLOCK_VOXELS), dtype=torch.float32, device=self.device)
        self._weight = torch.empty((0, BLOCK_VOXELS), dtype=torch.float32, device=self.device)
        self._color = torch.empty((0, BLOCK_VOXELS, 3), dtype=torch.float32, device=self.device)
        self._sorted_keys = torch.empty(0, dtype=torch.int64, device=self.device)
        self._sorted_blocks = torch.empty(0, dtype=torch.int64, device=self.device)

    # ------------------------------------------------------------------ state

    @property
    def grid(self) -> Tuple[float, ...]:
        """The 8 numbers the compiled core takes: voxel spacing (grid units), truncation (world),
        contracted flag, centre x, y, z, radius, contracted limit."""
        c = self.contraction
        if c is None:
            return (self.voxel_size, self.truncation, 0.0, 0.0, 0.0, 0.0, 1.0, 1.9)
        return (self.voxel_size / c.radius, self.truncation, 1.0, *c.center, c.radius, c.limit)

    def _grid_fields(self) -> Dict[str, float]:
        """The grid as the compiled passes take it: the fields of ``Grid`` (csrc/core/tsdf.h)."""
        voxel_size, truncation, contracted, center_x, center_y, center_z, radius, limit = self.grid
        return dict(
            voxel_size=voxel_size, truncation=truncation, contracted=int(contracted), center_x=center_x,
            center_y=center_y, center_z=center_z, radius=radius, contracted_limit=limit,
        )

    @property
    def num_blocks(self) -> int:
        return self._count

    @property
    def block_bytes(self) -> int:
        """Bytes one block of 512 voxels takes."""
        voxel = _VOXEL_BYTES_WITH_COLOR if self.has_colors else _VOXEL_BYTES
        return voxel * BLOCK_VOXELS + 12

    @property
    def memory_bytes(self) -> int:
        """Bytes the allocated blocks take (the buffers may hold up to 1.5x as many)."""
        return self._count * self.block_bytes

    @property
    def block_coords(self) -> torch.Tensor:
        """[B, 3] int32 block coordinates: block b holds voxels ``8 b + (0..7)`` on each axis."""
        return self._coords[: self._count]

    @property
    def tsdf(self) -> torch.Tensor:
        """[B, 512] float32 truncated distance / truncation, in [-1, 1]; voxel ``x + 8 y + 64 z``."""
        return self._tsdf[: self._count]

    @property
    def weight(self) -> torch.Tensor:
        """[B, 512] float32 observations per voxel (0: never observed)."""
        return self._weight[: self._count]

    @property
    def color(self) -> Optional[torch.Tensor]:
        """[B, 512, 3] float32 mean colour, or None for a volume without colours."""
        return self._color[: self._count] if self.has_colors else None

    def voxel_indices(self) -> torch.Tensor:
        """[B, 512, 3] int32 global voxel indices; voxel ``q`` sits at grid position ``q * spacing``."""
        local = torch.arange(BLOCK_VOXELS, device=self.device)
        offsets = torch.stack([local % BLOCK_SIDE, (local // BLOCK_SIDE) % BLOCK_SIDE, local // BLOCK_SIDE**2], dim=1)
        return (self.block_coords[:, None, :] * BLOCK_SIDE + offsets.to(torch.int32)[None]).to(torch.int32)

    def _reserve(self, count: int) -> None:
        if count <= self._capacity:
            return
        max_blocks = self.memory_budget // self.block_bytes
        capacity = min(max(count, int(self._capacity * 1.5), 64), max(max_blocks, count))
        grown = capacity - self._capacity

        def grow(tensor: torch.Tensor, fill: float, shape) -> torch.Tensor:
            return torch.cat([tensor, torch.full((grown, *shape), fill, dtype=tensor.dtype, device=self.device)])

        self._coords = grow(self._coords, 0, (3,))
        self._tsdf = grow(self._tsdf, 1.0, (BLOCK_VOXELS,))
        self._weight = grow(self._weight, 0.0, (BLOCK_VOXELS,))
        if self.has_colors:
            self._color = grow(self._color, 0.0, (BLOCK_VOXELS, 3))
        self._capacity = capacity

    def allocate_blocks(self, block_coords: torch.Tensor) -> int:
        """Adds the given blocks (``[K, 3]`` int32, any order, repeats allowed) that do not exist
        yet, in sorted order, unobserved (weight 0). Returns how many were added.

        Raises ValueError, before allocating anything, when the volume would exceed its budget
        or a coordinate does not fit (|coordinate| >= 2^20 blocks).
        """
        block_coords = _backend.check_tensor("block_coords", block_coords, (None, 3), dtype=torch.int32)
        block_coords = block_coords.to(self.device)
        limit = _COORD_OFFSET - 1
        if block_coords.numel():
            low, high = torch.aminmax(block_coords)
            if int(low) < -limit or int(high) > limit:
                raise ValueError(f"block_coords: coordinates must lie in [-{limit}, {limit}]")
        keys = torch.unique(_pack_keys(block_coords))  # sorted by (x, y, z): a deterministic order
        if self._count:
            position = torch.searchsorted(self._sorted_keys, keys).clamp_max(self._count - 1)
            keys = keys[self._sorted_keys[position] != keys]
        added = int(keys.numel())
        if added == 0:
            return 0
        total = self._count + added
        if total * self.block_bytes > self.memory_budget:
            raise ValueError(
                f"TSDF volume: {total} blocks of {BLOCK_SIDE}^3 voxels ({total * self.block_bytes / 2**30:.2f} GiB) "
                f"would exceed memory_budget ({self.memory_budget / 2**30:.2f} GiB); raise memory_budget, use a "
                f"larger voxel_size (now {self.voxel_size:g}) or a smaller max_depth"
            )
        self._reserve(total)
        first = self._count
        self._coords[first:total] = _unpack_keys(keys)
        self._count = total
        all_keys = torch.cat([self._sorted_keys, keys])
        order = torch.argsort(all_keys)
        self._sorted_keys = all_keys[order]
        self._sorted_blocks = torch.cat(
            [self._sorted_blocks, torch.arange(first, total, dtype=torch.int64, device=self.device)]
        )[order]
        return added

    def find_blocks(self, block_coords: torch.Tensor) -> torch.Tensor:
        """[K] int64 index of each block of ``[K, 3]`` coordinates, -1 where it does not exist."""
        keys = _pack_keys(block_coords)
        if self._count == 0:
            return torch.full_like(keys, -1)
        position = torch.searchsorted(self._sorted_keys, keys).clamp_max(self._count - 1)
        found = self._sorted_keys[position] == keys
        return torch.where(found, self._sorted_blocks[position], torch.full_like(keys, -1))

    # ------------------------------------------------------------------ fusion

    def integrate(
        self,
        depths: torch.Tensor,
        viewmats: torch.Tensor,
        Ks: torch.Tensor,
        colors: Optional[torch.Tensor] = None,
        alphas: Optional[torch.Tensor] = None,
        alpha_threshold: float = 0.5,
    ) -> int:
        """Fuses C depth maps (camera-space z), in order.

        Args:
            depths: ``[C, H, W, 1]`` (or ``[C, H, W]``) float32; pixels with depth ``<= 0``,
                non-finite, beyond ``max_depth`` or with ``alphas < alpha_threshold`` are ignored.
            viewmats: ``[C, 4, 4]`` world-to-camera (OpenCV). Ks: ``[C, 3, 3]`` pixel intrinsics.
            colors: ``[C, H, W, 3]`` float32, fused into the voxel colours (ignored by a volume
                without colours; a volume with colours fuses black when it is None).
            alphas: ``[C, H, W, 1]`` float32 rendered opacity that masks the depth.
            alpha_threshold: see ``alphas``.

        Returns the number of blocks this call added. Raises ValueError before allocating past
        the memory budget, or when depth lands beyond the representable grid.
        """
        dims = {}
        device = self.device
        if isinstance(depths, torch.Tensor) and depths.dim() == 3:
            depths = depths[..., None]
        depths = _backend.check_tensor("depths", depths, ("C", "H", "W", 1), dims=dims, device=device)
        viewmats = _backend.check_tensor("viewmats", viewmats, ("C", 4, 4), dims=dims, device=device)
        Ks = _backend.check_tensor("Ks", Ks, ("C", 3, 3), dims=dims, device=device)
        if colors is not None:
            colors = _backend.check_tensor("colors", colors, ("C", "H", "W", 3), dims=dims, device=device)
        if alphas is not None:
            alphas = _backend.check_tensor("alphas", alphas, ("C", "H", "W", 1), dims=dims, device=device)
        _check_cameras(viewmats, Ks)
        num_views, height, width = depths.shape[:3]
        if num_views == 0 or height == 0 or width == 0:
            return 0
        usable = torch.isfinite(depths) & (depths > 0)
        if self.max_depth is not None:
            usable &= depths <= self.max_depth
        if alphas is not None:
            usable &= alphas >= float(alpha_threshold)
        depth_maps = torch.where(usable, depths, torch.zeros((), device=device))[..., 0].contiguous()
        with torch.no_grad():
            added = self.allocate_blocks(self._candidate_blocks(depth_maps, viewmats, Ks))
            fused_colors = None
            if self.has_colors:
                fused_colors = colors.detach() if colors is not None else torch.zeros(
                    (num_views, height, width, 3), device=device
                )
            _backend.launch("tsdf_integrate", device, dict(
                self._views_fields(viewmats, Ks, depth_maps), cpu_lanes=CPU_LANES, num_blocks=self._count,
                block_coords=_backend.buffer(self.block_coords), tsdf=_backend.buffer(self.tsdf),
                weight=_backend.buffer(self.weight), color=_backend.buffer(self.color),
                colors=_backend.buffer(fused_colors)))
        return added

    def _views_fields(self, viewmats: torch.Tensor, Ks: torch.Tensor, depth_maps: torch.Tensor) -> Dict[str, object]:
        """The grid, cameras and [C, H, W] depth maps, as the fusion passes take them."""
        num_views, height, width = depth_maps.shape
        return dict(
            self._grid_fields(), num_views=num_views, width=width, height=height,
            viewmats=_backend.buffer(viewmats.detach()), Ks=_backend.buffer(Ks.detach()),
            depths=_backend.buffer(depth_maps),
        )

    def _candidate_blocks(self, depth_maps: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor) -> torch.Tensor:
        """[K, 3] int32 blocks touched by the truncation bands of [C, H, W] depth maps (with repeats)."""
        device = self.device
        views = self._views_fields(viewmats, Ks, depth_maps)
        counts = torch.empty(depth_maps.shape, dtype=torch.int64, device=device)
        _backend.launch("tsdf_block_candidates_count", device, dict(
            views, cpu_lanes=CPU_LANES, counts=_backend.buffer(counts)))
        out_of_range = counts < 0
        if bool(out_of_range.any()):
            view, row, col = (int(v) for v in torch.nonzero(out_of_range)[0])
            raise ValueError(
                f"depths: view {view}, pixel (x={col}, y={row}) lands beyond the grid a volume can address "
                f"with voxel_size {self.voxel_size:g} ({_COORD_OFFSET - 1} blocks from the origin); set max_depth "
                f"or use a larger voxel_size"
            )
        offsets, total = _exclusive_cumsum(counts)
        blocks = torch.empty((total, 3), dtype=torch.int32, device=device)
        if total:
            _backend.launch("tsdf_block_candidates_fill", device, dict(
                views, num_candidates=total, counts=_backend.buffer(counts), offsets=_backend.buffer(offsets),
                blocks=_backend.buffer(blocks)))
        return blocks

    # ------------------------------------------------------------------ extraction

    def extract_mesh(self, min_weight: float = 0.0) -> Mesh:
        """The zero level set as a triangle mesh (marching cubes over the blocks).

        A cube is meshed only when its eight voxels were observed more than ``min_weight``
        times. Vertices lie on voxel edges where the TSDF interpolates linearly to zero; their
        colours interpolate the voxel colours alike. Triangles face the observed free space
        (counter-clockwise seen from where the TSDF is positive). Returns an empty mesh when
        nothing was fused.
        """
        if isinstance(min_weight, bool) or not isinstance(min_weight, (int, float)) or not math.isfinite(min_weight):
            raise ValueError(f"min_weight must be a finite number, got {min_weight!r}")
        device = self.device
        count = self._count
        color_rows = self.has_colors
        if count == 0:
            return Mesh(
                torch.zeros((0, 3), device=device),
                torch.zeros((0, 3), dtype=torch.int64, device=device),
                torch.zeros((0, 3), device=device) if color_rows else None,
            )
        with torch.no_grad():
            neighbours = self._neighbour_table()
            edge_masks = torch.empty((count, BLOCK_VOXELS), dtype=torch.uint8, device=device)
            triangle_counts = torch.empty((count, BLOCK_VOXELS), dtype=torch.int32, device=device)
            field = dict(
                self._grid_fields(), num_blocks=count, min_weight=float(min_weight),
                block_coords=_backend.buffer(self.block_coords), neighbours=_backend.buffer(neighbours),
                tsdf=_backend.buffer(self.tsdf), weight=_backend.buffer(self.weight),
                edge_masks=_backend.buffer(edge_masks), triangle_counts=_backend.buffer(triangle_counts),
            )
            _backend.launch("tsdf_extract_count", device, field)
            vertex_counts = _EDGE_MASK_COUNTS.to(device)[edge_masks.long()]
            vertex_offsets, num_vertices = _exclusive_cumsum(vertex_counts)
            triangle_offsets, num_triangles = _exclusive_cumsum(triangle_counts)
            vertices = torch.empty((num_vertices, 3), dtype=torch.float32, device=device)
            vertex_colors = torch.empty((num_vertices, 3), dtype=torch.float32, device=device) if color_rows else None
            triangles = torch.empty((num_triangles, 3), dtype=torch.int64, device=device)
            _backend.launch("tsdf_extract_fill", device, dict(
                field, color=_backend.buffer(self.color), vertex_offsets=_backend.buffer(vertex_offsets),
                triangle_offsets=_backend.buffer(triangle_offsets), num_vertices=num_vertices,
                num_triangles=num_triangles, vertices=_backend.buffer(vertices),
                vertex_colors=_backend.buffer(vertex_colors), triangles=_backend.buffer(triangles)))
        return Mesh(vertices, triangles, vertex_colors).without_unreferenced_vertices()

    def _neighbour_table(self) -> torch.Tensor:
        """[B, 8] int32: the block at offset (k & 1, k >> 1 & 1, k >> 2 & 1) of each block, or -1."""
        steps = torch.tensor([[k & 1, (k >> 1) & 1, (k >> 2) & 1] for k in range(8)], dtype=torch.int32, device=self.device)
        shifted = (self.block_coords[:, None, :] + steps[None]).reshape(-1, 3)
        inside = (shifted.abs() <= _COORD_OFFSET - 1).all(dim=1)
        found = torch.where(inside, self.find_blocks(shifted.clamp(-(_COORD_OFFSET - 1), _COORD_OFFSET - 1)), -1)
        return found.to(torch.int32).reshape(-1, 8).contiguous()


def _check_cameras(viewmats: torch.Tensor, Ks: torch.Tensor) -> None:
    if not bool(torch.isfinite(viewmats).all()):
        raise ValueError("viewmats must be finite")
    if not bool(torch.isfinite(Ks).all()):
        raise ValueError("Ks must be finite")
    if viewmats.shape[0] and not bool((viewmats[:, 3] == torch.tensor([0.0, 0.0, 0.0, 1.0], device=Ks.device)).all()):
        raise ValueError("viewmats: the last row of every world-to-camera matrix must be (0, 0, 0, 1)")
    if Ks.shape[0] and not bool((Ks[:, 2] == torch.tensor([0.0, 0.0, 1.0], device=Ks.device)).all()):
        raise ValueError("Ks: the last row of every intrinsics matrix must be (0, 0, 1)")
    if Ks.shape[0] and not bool(((Ks[:, 0, 1] == 0) & (Ks[:, 1, 0] == 0)).all()):
        raise ValueError("Ks: intrinsics with skew (Ks[:, 0, 1] or Ks[:, 1, 0] != 0) are not supported")
    if Ks.shape[0] and not bool(((Ks[:, 0, 0] > 0) & (Ks[:, 1, 1] > 0)).all()):
        raise ValueError("Ks: focal lengths (Ks[:, 0, 0], Ks[:, 1, 1]) must be > 0")
