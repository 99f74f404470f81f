"""gsplat_lib.compat.simple_knn._C.distCUDA2 against brute force."""

import pytest
import torch

from gsplat_lib.compat.simple_knn._C import distCUDA2


def brute_force(points):
    """Mean of the 3 smallest squared distances to other points, float64; over the neighbours
    that exist when there are fewer than 3, and 0 for a lone point."""
    p = points.double()
    d2 = ((p[:, None] - p[None]) ** 2).sum(-1)
    d2.fill_diagonal_(float("inf"))
    k = min(3, p.shape[0] - 1)
    if k <= 0:
        return torch.zeros(p.shape[0], dtype=torch.float64)
    return d2.topk(k, largest=False).values.mean(-1)


@pytest.mark.parametrize("layout", ["uniform", "clustered", "grid_with_duplicates"])
def test_matches_brute_force(layout):
    g = torch.Generator().manual_seed(3)
    if layout == "uniform":
        points = torch.rand(700, 3, generator=g) * 4 - 2
    elif layout == "clustered":
        centres = torch.randn(6, 3, generator=g) * 5
        points = centres[torch.randint(0, 6, (700,), generator=g)] + 0.01 * torch.randn(700, 3, generator=g)
    else:
        axis = torch.arange(6, dtype=torch.float32) * 0.25
        points = torch.cartesian_prod(axis, axis, axis)
        points = torch.cat([points, points[:40]])  # 40 points twice: their mean includes a 0
    result = distCUDA2(points)
    assert result.dtype == torch.float32 and result.shape == (points.shape[0],)
    torch.testing.assert_close(result.double(), brute_force(points), rtol=2e-6, atol=0)
    if layout == "grid_with_duplicates":
        assert float(result[:40].min()) > 0  # two of the three nearest are not duplicates
        assert float(result[:40].max()) == pytest.approx(2 * 0.0625 / 3, rel=1e-6)


@pytest.mark.parametrize("count", [0, 1, 2, 3, 4])
def test_fewer_than_four_points_give_finite_documented_values(count):
    points = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]])[:count]
    result = distCUDA2(points)
    assert result.shape == (count,) and bool(torch.isfinite(result).all())
    torch.testing.assert_close(result.double(), brute_force(points), rtol=1e-6, atol=0)


def test_bad_points_raise():
    with pytest.raises(TypeError, match="points"):
        distCUDA2(torch.zeros(5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="points"):
        distCUDA2(torch.zeros(5, 2))
    bad = torch.rand(5, 3)
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        distCUDA2(bad)
