"""The CPU pair binning equals emit_pairs + torch.sort(stable=True) + searchsorted, the path CUDA runs."""

from __future__ import annotations

import pytest
import torch

from gsplat_lib._backend import core
from gsplat_lib.ops.rasterize import raster_settings
from gsplat_lib.ops.rasterize_autograd import bin_pairs

TILE_SIZE = core().TILE_SIZE


def _bin_pairs(depths, rects, pair_ends, num_pairs, settings, use_torch=None):
    return bin_pairs(depths, rects, pair_ends, dict(settings, num_pairs=num_pairs), use_torch=use_torch)


def _items(num_cameras, num_surfels, width, height, tile_width, seed, distinct_depths, max_size):
    """Random pixel rectangles (some empty) and depths with many ties, as the projection gives them."""
    g = torch.Generator().manual_seed(seed)
    n = num_cameras * num_surfels
    x0 = torch.randint(0, width, (n,), generator=g)
    y0 = torch.randint(0, height, (n,), generator=g)
    x1 = torch.minimum(x0 + torch.randint(0, max_size + 1, (n,), generator=g), torch.tensor(width))
    y1 = torch.minimum(y0 + torch.randint(0, max_size + 1, (n,), generator=g), torch.tensor(height))
    empty = (x1 <= x0) | (y1 <= y0)
    rects = torch.stack([x0, y0, x1, y1], dim=-1).to(torch.int32).reshape(num_cameras, num_surfels, 4)
    tiles = ((x1 - 1) // tile_width - x0 // tile_width + 1) * ((y1 - 1) // TILE_SIZE - y0 // TILE_SIZE + 1)
    tile_counts = torch.where(empty, torch.zeros_like(tiles), tiles)
    # Few distinct depths: many ties, which must keep item order.
    depths = (torch.randint(1, distinct_depths + 1, (n,), generator=g).float() * 0.37).reshape(num_cameras, num_surfels)
    pair_ends = torch.cumsum(tile_counts, dim=0).reshape(num_cameras, num_surfels)
    tiles_x, tiles_y = -(-width // tile_width), -(-height // TILE_SIZE)
    num_pairs = int(pair_ends.reshape(-1)[-1]) if n else 0
    settings = dict(raster_settings(num_cameras, num_surfels, 3, width, height, 0.01, 100.0, torch.device("cpu")),
                    tile_width=tile_width, tiles_x=tiles_x, tiles_y=tiles_y)
    return depths, rects, pair_ends, num_pairs, settings


CASES = {
    "nothing": (1, 0, 32, 32, 16, 5, 4),
    "one": (1, 1, 16, 16, 16, 1, 4),
    "small": (2, 300, 64, 48, 16, 3, 20),
    "wide tiles": (3, 2000, 200, 100, 64, 50, 40),
    "many chunks": (2, 60_000, 256, 256, 64, 1000, 24),  # several chunks per sort pass
    "huge splats": (1, 500, 300, 200, 32, 7, 400),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cpu_binning_equals_emit_and_torch_sort(name):
    depths, rects, pair_ends, num_pairs, settings = _items(*CASES[name][:5], 11, *CASES[name][5:])
    expected = _bin_pairs(depths, rects, pair_ends, num_pairs, settings, use_torch=True)
    actual = _bin_pairs(depths, rects, pair_ends, num_pairs, settings, use_torch=False)
    for label, e, a in zip(["tile_starts", "sorted_surfels", "pair_emit_index"], expected, actual):
        assert torch.equal(e, a), label


@pytest.mark.parametrize("threads", [2, 3, 5])  # one and two chunks fill tiles from both ends, more count
def test_cpu_binning_is_thread_invariant(threads):
    depths, rects, pair_ends, num_pairs, settings = _items(2, 80_000, 320, 240, 64, 3, 20, 30)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _bin_pairs(depths, rects, pair_ends, num_pairs, settings)
        torch.set_num_threads(threads)
        many = _bin_pairs(depths, rects, pair_ends, num_pairs, settings)
    finally:
        torch.set_num_threads(previous)
    expected = _bin_pairs(depths, rects, pair_ends, num_pairs, settings, use_torch=True)
    for e, a, b in zip(expected, one, many):
        assert torch.equal(e, a)
        assert torch.equal(a, b)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_cpu_binning_of_packed_items_camera_by_camera_equals_emit_and_torch_sort(threads):
    # 13 cameras, each with its own number of items (some none): at these thread counts (4 or
    # more cameras a thread) the CPU bins camera by camera; emit_pairs + torch.sort sees all
    # items at once.
    num_cameras, num_surfels = 13, 400
    depths, rects, _, _, settings = _items(num_cameras, num_surfels, 96, 64, 32, 21, 6, 30)
    counts = torch.randint(0, num_surfels + 1, (num_cameras,), generator=torch.Generator().manual_seed(3))
    counts[[2, 7]] = 0
    keep = torch.arange(num_surfels)[None, :] < counts[:, None]
    depths, rects = depths[keep].contiguous(), rects[keep].contiguous()
    x0, y0, x1, y1 = rects.long().unbind(-1)
    tile_width = settings["tile_width"]
    tiles = ((x1 - 1) // tile_width - x0 // tile_width + 1) * ((y1 - 1) // TILE_SIZE - y0 // TILE_SIZE + 1)
    pair_ends = torch.cumsum(torch.where((x1 <= x0) | (y1 <= y0), 0, tiles), dim=0)
    camera_items = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)])
    num_items = int(camera_items[-1])
    settings = dict(settings, num_items=num_items, num_scenes=num_cameras, num_pairs=int(pair_ends[-1]))
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        actual = bin_pairs(depths, rects, pair_ends, settings, use_torch=False, camera_items=camera_items)
    finally:
        torch.set_num_threads(previous)
    expected = bin_pairs(depths, rects, pair_ends, settings, use_torch=True, camera_items=camera_items)
    for label, e, a in zip(["tile_starts", "pair_items", "pair_emit_index"], expected, actual):
        assert torch.equal(e, a), label


def test_cpu_binning_rejects_a_wrong_pair_count():
    depths, rects, pair_ends, num_pairs, settings = _items(1, 100, 64, 64, 16, 5, 9, 20)
    with pytest.raises(ValueError, match="num_pairs"):
        _bin_pairs(depths, rects, pair_ends, num_pairs - 1, settings)


def test_cpu_binning_reuses_its_buffers_safely():
    """Each calling thread keeps the binning's buffers between calls (csrc/cpu/scratch.h): calls
    that shrink and grow, with 1 to 3 chunks, and calls on two Python threads at once still
    give the sorted pairs."""
    import threading

    order = ["many chunks", "small", "nothing", "wide tiles", "many chunks", "one", "huge splats"]
    inputs = {name: _items(*CASES[name][:5], 11, *CASES[name][5:]) for name in order}
    expected = {name: _bin_pairs(*inputs[name], use_torch=True) for name in order}
    failures = []

    def run(names):
        for name in names:
            actual = _bin_pairs(*inputs[name])
            if not all(torch.equal(e, a) for e, a in zip(expected[name], actual)):
                failures.append(name)

    previous = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            run(order)
        workers = [threading.Thread(target=run, args=(order[k:] + order[:k],)) for k in (0, 3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        torch.set_num_threads(previous)
    assert not failures


@pytest.mark.parametrize("threads", [1, 2])
def test_cpu_projection_writes_the_running_sum_of_tile_counts(monkeypatch, threads):
    """On the CPU the projection sums the tile counts in place (pair_ends); the CUDA path writes
    the counts (tile_counts) and sums them with torch.cumsum. Both give the same pair_ends."""
    from gsplat_lib.ops import rasterize as R
    from gsplat_lib.ops import rasterize_autograd
    from rasterize_scenes import random_cameras, random_surfels

    calls = []
    launch = rasterize_autograd.launch

    def record(name, device, settings, **buffers):
        launch(name, device, settings, **buffers)
        if name == "project":
            calls.append((settings, buffers))

    monkeypatch.setattr(rasterize_autograd, "launch", record)
    scene = random_surfels(3000, seed=4)
    viewmats, Ks = random_cameras(3, 96, 80, seed=5)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        with torch.no_grad():
            R.rasterize_surfels(scene["means"], scene["quats"], scene["scales"], scene["opacities"], scene["colors"],
                                viewmats, Ks, 96, 80)
        (settings, buffers), = calls
        pair_ends = buffers["pair_ends"]
        assert buffers["tile_counts"] is None and int(pair_ends[-1]) > 3000
        counts = torch.full_like(pair_ends, -1)
        again = {k: (v.clone() if isinstance(v, torch.Tensor) and k != "pair_ends" else v) for k, v in buffers.items()}
        launch("project", torch.device("cpu"), settings, **dict(again, tile_counts=counts, pair_ends=None))
        assert torch.equal(torch.cumsum(counts, dim=0), pair_ends)
        with pytest.raises(ValueError, match="exactly one of tile_counts and pair_ends"):
            launch("project", torch.device("cpu"), settings, **dict(again, tile_counts=counts, pair_ends=counts.clone()))
    finally:
        torch.set_num_threads(previous)
