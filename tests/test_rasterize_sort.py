"""The CPU pair sort equals torch.sort(stable=True) + searchsorted, the path CUDA runs."""

from __future__ import annotations

import pytest
import torch

from gsplat_lib.ops.rasterize import _sort_pairs


def _pairs(num_pairs, num_cameras, tiles_x, tiles_y, seed, distinct_depths):
    g = torch.Generator().manual_seed(seed)
    num_tiles = num_cameras * tiles_x * tiles_y
    tiles = torch.randint(0, num_tiles, (num_pairs,), generator=g)
    # Few distinct depths: many ties, which must keep emission order.
    depths = torch.randint(1, distinct_depths + 1, (num_pairs,), generator=g).float() * 0.37
    depth_bits = depths.view(torch.int32).long()
    keys = (tiles << 32) | depth_bits
    pair_surfels = torch.randint(0, 10**6, (num_pairs,), generator=g)
    settings = dict(num_cameras=num_cameras, num_surfels=10**6, num_channels=3, width=16 * tiles_x,
                    height=16 * tiles_y, tile_width=16, tiles_x=tiles_x, tiles_y=tiles_y, near_plane=0.01, far_plane=100.0,
                    scale_modifier=1.0, cpu_lanes=0)
    return keys, pair_surfels, settings


@pytest.mark.parametrize("num_pairs,num_cameras,tiles_x,tiles_y,distinct", [
    (0, 1, 3, 2, 5),
    (1, 1, 1, 1, 1),
    (500, 2, 4, 3, 3),
    (200_000, 3, 7, 5, 50),  # several chunks of the counting sort
])
def test_cpu_sort_equals_torch_sort(num_pairs, num_cameras, tiles_x, tiles_y, distinct):
    keys, pair_surfels, settings = _pairs(num_pairs, num_cameras, tiles_x, tiles_y, 11, distinct)
    expected = _sort_pairs(keys, pair_surfels, settings, use_torch=True)
    actual = _sort_pairs(keys, pair_surfels, settings, use_torch=False)
    for name, e, a in zip(["tile_starts", "sorted_surfels", "pair_emit_index"], expected, actual):
        assert torch.equal(e, a), name


def test_cpu_sort_is_thread_invariant():
    keys, pair_surfels, settings = _pairs(300_000, 2, 5, 5, 3, 20)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _sort_pairs(keys, pair_surfels, settings)
        torch.set_num_threads(2)
        two = _sort_pairs(keys, pair_surfels, settings)
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(one, two):
        assert torch.equal(a, b)
