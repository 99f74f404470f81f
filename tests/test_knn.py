"""gsplat_lib.knn / knn_dist2 on the CPU against brute force and scipy's cKDTree."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

import gsplat_lib
from gsplat_lib.ops import knn as knn_module


def brute_force_knn(points: torch.Tensor, k: int):
    """Reference: float32 distances computed as ((dx^2 + dy^2) + dz^2), ranked by (distance, index)."""
    diff = points[:, None, :] - points[None, :, :]
    sq = diff[..., 0] * diff[..., 0] + diff[..., 1] * diff[..., 1] + diff[..., 2] * diff[..., 2]
    sq.fill_diagonal_(float("inf"))
    n = points.shape[0]
    ranked = torch.sort(sq, dim=1, stable=True)  # stable: equal distances keep index order
    indices = torch.full((n, k), -1, dtype=torch.int64)
    sq_dists = torch.full((n, k), float("inf"))
    found = min(k, max(n - 1, 0))  # self (the inf diagonal) is never a neighbour
    indices[:, :found] = ranked.indices[:, :found]
    sq_dists[:, :found] = ranked.values[:, :found]
    return indices, sq_dists


def float64_sq_dists(points: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    p = points.double()
    return ((p[:, None, :] - p[indices]) ** 2).sum(-1)


def clouds():
    g = torch.Generator().manual_seed(7)
    uniform = torch.rand(1500, 3, generator=g)
    centres = torch.rand(6, 3, generator=g) * 10
    clustered = centres[torch.randint(0, 6, (1500,), generator=g)] + 1e-3 * torch.randn(1500, 3, generator=g)
    clustered[:3] = torch.tensor([[500.0, 0, 0], [-500.0, 20, 0], [0, 0, 900.0]])
    duplicates = torch.rand(40, 3, generator=g)[torch.randint(0, 40, (1200,), generator=g)]
    planar = torch.rand(1200, 3, generator=g)
    planar[:, 2] = 0.0
    t = torch.rand(800, 1, generator=g)
    collinear = torch.cat([t, 2 * t, -t], dim=1)
    far_cluster = 1e4 + 0.1 * torch.rand(1000, 3, generator=g)
    tiny = 1e-6 * torch.rand(1000, 3, generator=g)
    huge = 1e5 * torch.rand(1000, 3, generator=g)
    grid = torch.stack(torch.meshgrid(*[torch.arange(10.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    return {
        "uniform": uniform,
        "clustered": clustered,
        "duplicates": duplicates,
        "planar": planar,
        "collinear": collinear,
        "far_cluster": far_cluster,
        "tiny": tiny,
        "huge": huge,
        "grid_ties": grid,
    }


CLOUDS = clouds()


@pytest.mark.parametrize("name", sorted(CLOUDS))
@pytest.mark.parametrize("k", [1, 3, 8])
def test_matches_brute_force_exactly(name, k):
    points = CLOUDS[name]
    expected_indices, expected_sq = brute_force_knn(points, k)
    indices, sq_dists = gsplat_lib.knn(points, k)
    assert indices.dtype == torch.int64 and sq_dists.dtype == torch.float32
    assert torch.equal(sq_dists, expected_sq)
    assert torch.equal(indices, expected_indices)


@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_morton_order_used_by_cuda_gives_the_same_result(name):
    # The GPU lays the tree out in Morton order; the CPU runs that layout here too.
    points = CLOUDS[name]
    kd = knn_module._search(points, 3, "kd")
    morton = knn_module._search(points, 3, "morton")
    assert torch.equal(kd[0], morton[0]) and torch.equal(kd[1], morton[1])


@pytest.mark.parametrize("name", ["uniform", "clustered", "far_cluster", "tiny", "huge"])
def test_close_to_float64_and_ckdtree(name):
    points = CLOUDS[name]
    k = 3
    indices, sq_dists = gsplat_lib.knn(points, k)
    assert (indices != torch.arange(points.shape[0])[:, None]).all()
    exact = float64_sq_dists(points, indices)
    torch.testing.assert_close(sq_dists.double(), exact, rtol=1e-6, atol=0.0)
    tree_dists, _ = cKDTree(points.double().numpy()).query(points.double().numpy(), k=k + 1)
    torch.testing.assert_close(sq_dists.double(), torch.from_numpy(tree_dists[:, 1:] ** 2), rtol=1e-5, atol=0.0)


def test_duplicates_are_neighbours_at_zero_and_self_is_excluded():
    points = torch.tensor([[1.0, 2.0, 3.0]] * 5 + [[1.0, 2.0, 4.0]])
    indices, sq_dists = gsplat_lib.knn(points, 3)
    assert indices[0].tolist() == [1, 2, 3]
    assert indices[2].tolist() == [0, 1, 3]
    assert indices[4].tolist() == [0, 1, 2]
    assert sq_dists[:5].eq(0).all()
    assert indices[5].tolist() == [0, 1, 2] and sq_dists[5].tolist() == [1.0, 1.0, 1.0]


def test_ties_are_broken_by_lower_index():
    # Point 0 at the centre of four equidistant points: all four tie.
    points = torch.tensor([[0.0, 0, 0], [0, 0, 1], [1, 0, 0], [0, -1, 0], [0, 0, -1]])
    indices, sq_dists = gsplat_lib.knn(points, 2)
    assert indices[0].tolist() == [1, 2]
    assert sq_dists[0].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("k", [1, 3, 8])
def test_small_inputs_pad_missing_neighbours(n, k):
    points = torch.arange(3 * n, dtype=torch.float32).reshape(n, 3) ** 1.5
    indices, sq_dists = gsplat_lib.knn(points, k)
    assert indices.shape == (n, k) and sq_dists.shape == (n, k)
    expected_indices, expected_sq = brute_force_knn(points, k)
    assert torch.equal(indices, expected_indices)
    assert torch.equal(sq_dists, expected_sq)
    missing = max(0, k - (n - 1))
    if n > 0 and missing > 0:
        assert (indices[:, k - missing :] == -1).all()
        assert torch.isinf(sq_dists[:, k - missing :]).all()


def test_thread_count_does_not_change_bits():
    points = CLOUDS["clustered"]
    big = torch.cat([points, torch.rand(20000, 3, generator=torch.Generator().manual_seed(3))])
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = gsplat_lib.knn(big, 5)
        torch.set_num_threads(2)
        two = gsplat_lib.knn(big, 5)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


def test_knn_dist2_is_the_floored_mean():
    points = CLOUDS["uniform"]
    _, sq_dists = brute_force_knn(points, 3)
    expected = sq_dists.mean(dim=1).clamp_min(1e-7)
    torch.testing.assert_close(gsplat_lib.knn_dist2(points), expected, rtol=1e-6, atol=0.0)


def test_knn_dist2_floor_and_small_inputs():
    duplicates = torch.ones(10, 3)
    assert torch.equal(gsplat_lib.knn_dist2(duplicates, min_dist2=1e-7), torch.full((10,), 1e-7))
    assert torch.isfinite(torch.log(gsplat_lib.knn_dist2(duplicates))).all()
    assert gsplat_lib.knn_dist2(torch.zeros(1, 3), min_dist2=0.5).tolist() == [0.5]
    assert gsplat_lib.knn_dist2(torch.zeros(0, 3)).shape == (0,)
    # N = 3, k = 3: the mean runs over the two neighbours that exist.
    three = torch.tensor([[0.0, 0, 0], [1, 0, 0], [3, 0, 0]])
    assert gsplat_lib.knn_dist2(three, k=3).tolist() == [5.0, 2.5, 6.5]


def test_rejects_bad_points():
    with pytest.raises(TypeError, match="points"):
        gsplat_lib.knn(np.zeros((4, 3), np.float32), 3)
    with pytest.raises(TypeError, match="points"):
        gsplat_lib.knn(torch.zeros(4, 3, dtype=torch.float64), 3)
    with pytest.raises(ValueError, match="points"):
        gsplat_lib.knn(torch.zeros(4, 2), 3)
    with pytest.raises(ValueError, match="points"):
        gsplat_lib.knn(torch.zeros(4, 3, 1), 3)


def test_reports_non_finite_rows():
    points = torch.rand(30, 3)
    points[4, 1] = float("nan")
    points[11, 0] = float("inf")
    points[25, 2] = -float("inf")
    with pytest.raises(ValueError, match=r"points has 3 non-finite row\(s\).*\[4, 11, 25\]"):
        gsplat_lib.knn(points, 3)
    many = torch.full((20, 3), float("nan"))
    with pytest.raises(ValueError, match=r"20 non-finite.*\[0, 1, 2, 3, 4, 5, 6, 7, \.\.\.\]"):
        gsplat_lib.knn_dist2(many)


@pytest.mark.parametrize("k", [0, -1, 2.0, True, "3", None])
def test_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k"):
        gsplat_lib.knn(torch.rand(5, 3), k)


@pytest.mark.parametrize("min_dist2", [0.0, -1.0, math.inf, math.nan, "1e-7"])
def test_rejects_bad_min_dist2(min_dist2):
    with pytest.raises(ValueError, match="min_dist2"):
        gsplat_lib.knn_dist2(torch.rand(5, 3), min_dist2=min_dist2)


def test_k_whose_outputs_cannot_fit_is_refused():
    with pytest.raises(ValueError, match=r"k=2147483647 neighbours of 10 points.*GiB"):
        gsplat_lib.knn(torch.rand(10, 3), 2**31 - 1)
    indices, sq_dists = gsplat_lib.knn(torch.rand(0, 3), 2**31 - 1)  # nothing to hold
    assert indices.shape == (0, 2**31 - 1) and sq_dists.numel() == 0
