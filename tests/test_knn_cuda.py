"""gsplat_lib.knn on CUDA: the same bits as the CPU, on any device and stream."""

from __future__ import annotations

import pytest
import torch

import gsplat_lib

pytestmark = pytest.mark.cuda


def clouds():
    g = torch.Generator().manual_seed(11)
    uniform = torch.rand(20000, 3, generator=g)
    centres = torch.rand(8, 3, generator=g) * 10
    clustered = centres[torch.randint(0, 8, (20000,), generator=g)] + 1e-3 * torch.randn(20000, 3, generator=g)
    clustered[:2] = torch.tensor([[800.0, 0, 0], [0, -900.0, 5]])
    duplicates = torch.rand(50, 3, generator=g)[torch.randint(0, 50, (5000,), generator=g)]
    planar = torch.rand(8000, 3, generator=g)
    planar[:, 2] = 0.0
    return {"uniform": uniform, "clustered": clustered, "duplicates": duplicates, "planar": planar}


CLOUDS = clouds()


@pytest.mark.parametrize("name", sorted(CLOUDS))
@pytest.mark.parametrize("k", [1, 3, 20])  # 20 takes the kernel that works in the output rows
def test_cuda_matches_cpu_bit_for_bit(name, k):
    points = CLOUDS[name]
    cpu_indices, cpu_sq = gsplat_lib.knn(points, k)
    cuda_indices, cuda_sq = gsplat_lib.knn(points.cuda(), k)
    assert cuda_indices.device.type == "cuda" and cuda_sq.device.type == "cuda"
    assert torch.equal(cuda_indices.cpu(), cpu_indices)
    assert torch.equal(cuda_sq.cpu(), cpu_sq)
    torch.testing.assert_close(
        gsplat_lib.knn_dist2(points.cuda(), k=k).cpu(), gsplat_lib.knn_dist2(points, k=k), rtol=1e-6, atol=0.0
    )


@pytest.mark.parametrize("n", [0, 1, 2, 4])
def test_cuda_small_inputs(n):
    points = torch.rand(n, 3)
    cpu = gsplat_lib.knn(points, 3)
    cuda = gsplat_lib.knn(points.cuda(), 3)
    assert torch.equal(cuda[0].cpu(), cpu[0]) and torch.equal(cuda[1].cpu(), cpu[1])


def test_cuda_non_default_stream():
    points = CLOUDS["clustered"]
    expected = gsplat_lib.knn(points, 3)
    on_device = points.cuda()
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        # The points are written on this stream only after a long sleep: kernels launched on
        # another stream would read them before that.
        torch.cuda._sleep(200_000_000)
        late = on_device * 1
        indices, sq_dists = gsplat_lib.knn(late, 3)
    stream.synchronize()
    assert torch.equal(indices.cpu(), expected[0]) and torch.equal(sq_dists.cpu(), expected[1])


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs a second GPU")
def test_cuda_non_default_device():
    points = CLOUDS["uniform"]
    expected = gsplat_lib.knn(points, 3)
    with torch.cuda.device(0):
        indices, sq_dists = gsplat_lib.knn(points.to("cuda:1"), 3)
    assert indices.device == torch.device("cuda:1")
    assert torch.equal(indices.cpu(), expected[0]) and torch.equal(sq_dists.cpu(), expected[1])


def test_cuda_reports_non_finite_rows():
    points = torch.rand(10, 3, device="cuda")
    points[3, 0] = float("nan")
    with pytest.raises(ValueError, match=r"1 non-finite row\(s\).*\[3\]"):
        gsplat_lib.knn(points, 3)
