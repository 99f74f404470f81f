"""The CUDA fused Adam step against the CPU one: the same math (csrc/core/adam.h) with the
IEEE sqrt, so CUDA must equal the CPU's one-pass mode (``match_torch=False``) bit for bit,
and torch.optim.Adam (CPU or CUDA) within float rounding."""

from __future__ import annotations

import pytest
import torch

import gsplat_lib
from gsplat_lib import FusedAdam, GaussianModel
from gsplat_lib.ops.adam import AdamScalars, adam_step_
from gsplat_lib.param_schema import PARAM_NAMES
from test_fused_adam import MODEL_LRS, assert_bit_equal, model_like_params
from test_fused_adam_model import train_synthetic

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available() or not gsplat_lib.build_info()["cuda"],
        reason="needs a CUDA GPU and a CUDA build of gsplat_lib",
    ),
]


def random_state(rows, generator):
    values = model_like_params(rows, generator)
    grads = [torch.randn(v.shape, generator=generator) * 1e-2 for v in values.values()]
    exp_avgs = [torch.randn(v.shape, generator=generator) * 1e-3 for v in values.values()]
    exp_avg_sqs = [torch.rand(v.shape, generator=generator) * 1e-4 for v in values.values()]
    scalars = [AdamScalars(MODEL_LRS[name], 0.9, 0.999, 1e-15, 9.0) for name in values]
    return list(values.values()), grads, exp_avgs, exp_avg_sqs, scalars


@pytest.mark.parametrize("rows", [1, 1000, 100_003])
@pytest.mark.parametrize("sparse", [False, True])
def test_cuda_step_equals_the_cpu_one_pass_step(rows, sparse):
    generator = torch.Generator().manual_seed(rows)
    params, grads, exp_avgs, exp_avg_sqs, scalars = random_state(rows, generator)
    visible = (torch.rand(rows, generator=generator) < 0.5) if sparse else None
    gpu = [[t.cuda() for t in tensors] for tensors in (params, grads, exp_avgs, exp_avg_sqs)]
    adam_step_(params, grads, exp_avgs, exp_avg_sqs, scalars, visible_rows=visible, match_torch=False)
    adam_step_(*gpu, scalars, visible_rows=None if visible is None else visible.cuda())
    for cpu_values, gpu_values in zip((params, exp_avgs, exp_avg_sqs), (gpu[0], gpu[2], gpu[3])):
        for a, b in zip(cpu_values, gpu_values):
            assert b.is_cuda
            assert_bit_equal(a, b.cpu())


def test_cuda_step_is_within_rounding_of_the_torch_exact_cpu_step():
    generator = torch.Generator().manual_seed(5)
    params, grads, exp_avgs, exp_avg_sqs, scalars = random_state(5000, generator)
    gpu = [[t.cuda() for t in tensors] for tensors in (params, grads, exp_avgs, exp_avg_sqs)]
    adam_step_(params, grads, exp_avgs, exp_avg_sqs, scalars)  # match_torch=True on CPU
    adam_step_(*gpu, scalars)
    for a, b in zip(params, gpu[0]):
        torch.testing.assert_close(b.cpu(), a, rtol=2e-6, atol=1e-7)


def test_fused_adam_on_cuda_follows_torch_adam_on_cuda():
    generator = torch.Generator().manual_seed(6)
    values = model_like_params(20_000, generator)
    torch_params = {n: torch.nn.Parameter(v.cuda()) for n, v in values.items()}
    fused_params = {n: torch.nn.Parameter(v.cuda()) for n, v in values.items()}
    torch_adam = torch.optim.Adam([{"params": [p], "lr": MODEL_LRS[n]} for n, p in torch_params.items()], eps=1e-15)
    fused_adam = FusedAdam([{"params": [p], "lr": MODEL_LRS[n]} for n, p in fused_params.items()], eps=1e-15)
    for _ in range(20):
        for name in values:
            grad = (torch.randn(values[name].shape, generator=generator) * 1e-2).cuda()
            torch_params[name].grad, fused_params[name].grad = grad.clone(), grad.clone()
        torch_adam.step()
        fused_adam.step()
    for name in values:
        torch.testing.assert_close(fused_params[name].detach(), torch_params[name].detach(), rtol=1e-5, atol=1e-6)
        state = fused_adam.state[fused_params[name]]
        assert state["step"].device.type == "cpu" and state["exp_avg"].is_cuda


def test_cuda_model_with_fused_adam_equals_the_cpu_model_in_one_pass_mode():
    """Densification and opacity resets on CUDA, step by step the CPU's one-pass bits."""
    generator = torch.Generator().manual_seed(7)
    xyz, rgb = torch.rand(400, 3, generator=generator) - 0.5, torch.rand(400, 3, generator=generator)
    cpu = GaussianModel.from_points(xyz, rgb, scene_extent=1.0, sh_degree=3, max_steps=50, fused_adam=True)
    gpu = GaussianModel.from_points(xyz.cuda(), rgb.cuda(), scene_extent=1.0, sh_degree=3, max_steps=50, fused_adam=True)
    cpu.optimizer.match_torch = False
    train_synthetic(cpu, 25, torch.Generator().manual_seed(8))
    train_synthetic(gpu, 25, torch.Generator().manual_seed(8))
    for name in PARAM_NAMES:
        assert_bit_equal(cpu.params[name].detach(), gpu.params[name].detach().cpu(), name)


def test_cuda_models_default_to_torch_adam_until_the_cuda_kernel_is_checked():
    """The default on CUDA is torch.optim.Adam (docs/design.md); a CPU run's checkpoint resumes on
    CUDA with it, and an explicit choice travels with the checkpoint."""
    generator = torch.Generator().manual_seed(9)
    xyz, rgb = torch.rand(50, 3, generator=generator) - 0.5, torch.rand(50, 3, generator=generator)
    assert type(GaussianModel.from_points(xyz.cuda(), rgb.cuda(), scene_extent=1.0).optimizer) is torch.optim.Adam
    for asked, on_cuda in ((None, torch.optim.Adam), (True, FusedAdam), (False, torch.optim.Adam)):
        model = GaussianModel.from_points(xyz, rgb, scene_extent=1.0, fused_adam=asked)
        train_synthetic(model, 3, torch.Generator().manual_seed(10))
        assert type(GaussianModel.from_state_dict(model.state_dict(), device="cuda").optimizer) is on_cuda
