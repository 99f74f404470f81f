"""CUDA densification kernels against the CPU ones: both are exact, so results must be equal."""

from __future__ import annotations

import pytest
import torch

from gsplat_lib.ops.densify import accumulate_screen_stats, densify_plan, remap_rows
from test_densify_ops import random_stats_case

pytestmark = pytest.mark.cuda

ROW_SHAPES = [(), (3,), (2,), (4,), (1,), (1, 3), (15, 3), (0, 3)]


def on_cuda(tensors):
    return [t.cuda() for t in tensors]


@pytest.mark.parametrize("num_inputs, num_rows", [(3000, 4000), (10, 0), (0, 0), (1, 7)])
def test_remap_rows_cuda_equals_cpu(num_inputs, num_rows):
    generator = torch.Generator().manual_seed(0)
    tensors = [torch.randn((num_inputs, *shape), generator=generator) for shape in ROW_SHAPES]
    source = torch.randint(0, max(num_inputs, 1), (num_rows,), generator=generator)
    is_new = torch.rand(num_rows, generator=generator) < 0.3
    override_rows = is_new & (torch.rand(num_rows, generator=generator) < 0.5)
    zero_new = [bool(i % 2) for i in range(len(tensors))]
    overrides = {
        1: torch.randn(num_rows, 3, generator=generator),
        5: torch.randn(num_rows, 1, 3, generator=generator),
    }
    cpu = remap_rows(tensors, source, zero_new, is_new, overrides, override_rows)
    gpu = remap_rows(
        on_cuda(tensors),
        source.cuda(),
        zero_new,
        is_new.cuda(),
        {i: v.cuda() for i, v in overrides.items()},
        override_rows.cuda(),
    )
    for a, b in zip(cpu, gpu):
        assert b.is_cuda
        assert torch.equal(a, b.cpu())


def test_remap_rows_cuda_more_tensors_than_one_launch_holds():
    generator = torch.Generator().manual_seed(1)
    tensors = [torch.randn(100, i % 5 + 1, generator=generator) for i in range(70)]
    source = torch.randint(0, 100, (150,), generator=generator)
    is_new = torch.arange(150) >= 90
    zero_new = [i % 3 == 0 for i in range(70)]
    cpu = remap_rows(tensors, source, zero_new, is_new)
    gpu = remap_rows(on_cuda(tensors), source.cuda(), zero_new, is_new.cuda())
    for a, b in zip(cpu, gpu):
        assert torch.equal(a, b.cpu())


def test_remap_rows_cuda_source_out_of_range_and_device_mismatch():
    with pytest.raises(ValueError, match=r"source\[1\] = 5"):
        remap_rows([torch.zeros(5, 3, device="cuda")], torch.tensor([0, 5], device="cuda"))
    with pytest.raises(ValueError, match=r"tensors\[0\] must be on cuda"):
        remap_rows([torch.zeros(5, 3)], torch.tensor([0, 1], device="cuda"))


def test_densify_plan_cuda_equals_cpu():
    generator = torch.Generator().manual_seed(2)
    keep, clone, split = (torch.rand(5000, generator=generator) > 0.1 for _ in range(3))
    cpu = densify_plan(keep, clone, split)
    gpu = densify_plan(keep.cuda(), clone.cuda(), split.cuda())
    for a, b in zip(cpu, gpu):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b.cpu())
        else:
            assert a == b


@pytest.mark.parametrize("num_cameras, num_surfels", [(4, 50000), (0, 10), (2, 0)])
def test_accumulate_screen_stats_cuda_equals_cpu(num_cameras, num_surfels):
    accumulators, screen_grad, screen_absgrad, radii = random_stats_case(
        torch.Generator().manual_seed(3), num_cameras, num_surfels
    )
    gpu_accumulators = on_cuda(accumulators)
    accumulate_screen_stats(*accumulators, screen_grad, screen_absgrad, radii, 1920, 1080)
    accumulate_screen_stats(
        *gpu_accumulators, screen_grad.cuda(), screen_absgrad.cuda(), radii.cuda(), 1920, 1080
    )
    for a, b in zip(accumulators, gpu_accumulators):
        assert torch.equal(a, b.cpu())


def test_remap_rows_cuda_moves_integer_rows_like_the_cpu():
    generator = torch.Generator().manual_seed(12)
    tensors = [torch.randint(-2**62, 2**62, (300,), generator=generator),
               torch.randint(-2**31, 2**31 - 1, (300, 3), generator=generator, dtype=torch.int32),
               torch.randn(300, 2, generator=generator)]
    source = torch.randint(0, 300, (500,), generator=generator)
    is_new = torch.rand(500, generator=generator) < 0.3
    cpu = remap_rows(tensors, source, [False, True, True], is_new)
    gpu = remap_rows(on_cuda(tensors), source.cuda(), [False, True, True], is_new.cuda())
    for a, b in zip(cpu, gpu):
        assert b.dtype == a.dtype and torch.equal(a, b.cpu())
