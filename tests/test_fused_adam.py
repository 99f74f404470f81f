"""The fused Adam step (gsplat_lib.ops.adam) and FusedAdam against torch.optim.Adam.

On CPU the fused step must equal torch.optim.Adam's float32 step bit for bit (the default,
``match_torch=True``), over many steps, with learning rates that change every step; the
one-pass mode (``match_torch=False``, the CUDA math) must stay within a rounding of it.
"""

from __future__ import annotations

import math
import platform
import subprocess
import sys

import pytest
import torch

from gsplat_lib import FusedAdam, GaussianModel
from gsplat_lib.ops.adam import AdamScalars, adam_step_, torch_fuses_multiply_add
from gsplat_lib.param_schema import PARAM_NAMES
from subprocess_env import python_env


def _model_layout():
    """Row shapes and learning rates of the six surfel tensors of a GaussianModel, SH degree 3."""
    model = GaussianModel.from_points(torch.rand(4, 3), torch.rand(4, 3), scene_extent=1.0, sh_degree=3)
    shapes = {name: tuple(model.params[name].shape[1:]) for name in PARAM_NAMES}
    return shapes, {name: model.param_group(name)["lr"] for name in PARAM_NAMES}


MODEL_SHAPES, MODEL_LRS = _model_layout()


def model_like_params(rows, generator):
    return {name: torch.randn((rows, *shape), generator=generator) for name, shape in MODEL_SHAPES.items()}


def make_optimizers(values, *, betas=(0.9, 0.999), eps=1e-15, foreach=None, match_torch=True):
    """A torch.optim.Adam and a FusedAdam over two copies of ``values``, one group per tensor."""
    pairs = {}
    optimizers = []
    for kind in ("torch", "fused"):
        params = {name: torch.nn.Parameter(value.clone()) for name, value in values.items()}
        groups = [{"params": [params[name]], "lr": MODEL_LRS.get(name, 1e-3), "name": name} for name in params]
        if kind == "torch":
            optimizers.append(torch.optim.Adam(groups, lr=0.0, betas=betas, eps=eps, foreach=foreach))
        else:
            optimizers.append(FusedAdam(groups, lr=0.0, betas=betas, eps=eps, match_torch=match_torch))
        pairs[kind] = params
    return pairs["torch"], pairs["fused"], optimizers[0], optimizers[1]


def set_grads(params_a, params_b, generator, scale=1e-2):
    for name, a in params_a.items():
        grad = torch.randn(a.shape, generator=generator) * scale
        a.grad = grad.clone()
        params_b[name].grad = grad.clone()


def step_both(torch_params, fused_params, torch_adam, fused_adam, generator, steps):
    """``steps`` steps of both optimizers on the same random gradients."""
    for _ in range(steps):
        set_grads(torch_params, fused_params, generator)
        torch_adam.step()
        fused_adam.step()


def assert_bit_equal(a, b, where=""):
    assert a.dtype == b.dtype and a.shape == b.shape, where
    assert torch.equal(a.view(torch.int32), b.view(torch.int32)), f"{where}: {(a != b).sum().item()} values differ"


def assert_same_params(params_a, params_b):
    for name, a in params_a.items():
        assert_bit_equal(a.detach(), params_b[name].detach(), name)


def assert_same_state(opt_a, opt_b):
    """Equal state dicts, bit for bit; the groups may differ only in torch's kernel choice."""
    state_a, state_b = opt_a.state_dict(), opt_b.state_dict()
    groups_a, groups_b = ([{k: v for k, v in g.items() if k != "foreach"} for g in s["param_groups"]]
                          for s in (state_a, state_b))
    assert groups_a == groups_b
    assert list(state_a["state"]) == list(state_b["state"])
    for index, entry in state_a["state"].items():
        assert list(entry) == list(state_b["state"][index])
        for key, value in entry.items():
            other = state_b["state"][index][key]
            assert value.device == other.device and value.dtype == other.dtype
            assert_bit_equal(value, other, f"state[{index}][{key!r}]")


@pytest.mark.parametrize("foreach", [None, True])
def test_fused_adam_equals_torch_adam_bit_for_bit_over_many_steps(foreach):
    generator = torch.Generator().manual_seed(0)
    values = model_like_params(1037, generator)
    torch_params, fused_params, torch_adam, fused_adam = make_optimizers(values, foreach=foreach)
    for step in range(40):
        lr = 1.6e-4 * math.exp(-step / 20)  # the position rate changes every step, as in training
        torch_adam.param_groups[0]["lr"] = lr
        fused_adam.param_groups[0]["lr"] = lr
        set_grads(torch_params, fused_params, generator, scale=10.0 ** (-1 - step % 4))
        torch_adam.step()
        fused_adam.step()
        for name in torch_params:
            assert_bit_equal(torch_params[name].detach(), fused_params[name].detach(), f"step {step} {name}")
    assert_same_state(torch_adam, fused_adam)


@pytest.mark.parametrize("betas, eps", [((0.3, 0.99), 1e-8), ((0.0, 0.5), 1e-6), ((0.9, 0.999), 0.0)])
def test_other_betas_and_eps_are_bit_exact_too(betas, eps):
    """beta1 < 0.5 takes torch's other lerp form, end - (1 - w)(end - start)."""
    generator = torch.Generator().manual_seed(1)
    values = {"a": torch.randn(300, 3, generator=generator), "b": torch.randn(77, generator=generator)}
    torch_params, fused_params, torch_adam, fused_adam = make_optimizers(values, betas=betas, eps=eps)
    step_both(torch_params, fused_params, torch_adam, fused_adam, generator, 15)
    assert_same_state(torch_adam, fused_adam)
    assert_same_params(torch_params, fused_params)


def test_non_finite_gradients_propagate_as_in_torch():
    generator = torch.Generator().manual_seed(2)
    values = {"a": torch.randn(64, 3, generator=generator)}
    torch_params, fused_params, torch_adam, fused_adam = make_optimizers(values)
    grad = torch.randn(64, 3, generator=generator)
    grad[3, 1], grad[10, 0], grad[20, 2] = float("nan"), float("inf"), 0.0
    torch_params["a"].grad, fused_params["a"].grad = grad.clone(), grad.clone()
    torch_adam.step()
    fused_adam.step()
    assert_bit_equal(torch_params["a"].detach(), fused_params["a"].detach())


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("match_torch", [True, False])
def test_results_do_not_depend_on_the_thread_count(threads, match_torch):
    generator = torch.Generator().manual_seed(3)
    values = model_like_params(70_001, generator)  # several work items per tensor
    grads = {name: torch.randn(v.shape, generator=generator) for name, v in values.items()}
    results = []
    saved = torch.get_num_threads()
    try:
        for count in (1, threads):
            torch.set_num_threads(count)
            params = [v.clone() for v in values.values()]
            exp_avgs = [torch.full_like(v, 0.01) for v in values.values()]
            exp_avg_sqs = [torch.full_like(v, 1e-4) for v in values.values()]
            scalars = [AdamScalars(1e-3, 0.9, 0.999, 1e-15, 5.0)] * len(params)
            adam_step_(params, list(grads.values()), exp_avgs, exp_avg_sqs, scalars, match_torch=match_torch)
            results.append(params + exp_avgs + exp_avg_sqs)
    finally:
        torch.set_num_threads(saved)
    for a, b in zip(*results):
        assert_bit_equal(a, b)


def test_one_pass_mode_is_within_a_rounding_of_torch():
    """match_torch=False takes the IEEE sqrt, torch's CPU sqrt may be an ulp off."""
    generator = torch.Generator().manual_seed(4)
    values = model_like_params(2000, generator)
    torch_params, fused_params, torch_adam, fused_adam = make_optimizers(values, match_torch=False)
    for step in range(20):
        set_grads(torch_params, fused_params, generator)
        torch_adam.step()
        fused_adam.step()
        for name in values:
            a, b = torch_params[name].detach(), fused_params[name].detach()
            torch.testing.assert_close(b, a, rtol=2e-6, atol=1e-7, msg=f"step {step} {name}")
    for index, entry in torch_adam.state_dict()["state"].items():
        other = fused_adam.state_dict()["state"][index]
        torch.testing.assert_close(other["exp_avg"], entry["exp_avg"], rtol=1e-5, atol=1e-9)
        torch.testing.assert_close(other["exp_avg_sq"], entry["exp_avg_sq"], rtol=1e-5, atol=1e-12)


def reference_adam_float64(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, step):
    """Textbook Adam in float64 (Kingma & Ba, Algorithm 1)."""
    param, grad, m, v = (t.double() for t in (param, grad, exp_avg, exp_avg_sq))
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    m_hat = m / (1 - beta1**step)
    v_hat = v / (1 - beta2**step)
    return param - lr * m_hat / (v_hat.sqrt() + eps), m, v


@pytest.mark.parametrize("match_torch", [True, False])
def test_step_agrees_with_textbook_adam_in_float64(match_torch):
    generator = torch.Generator().manual_seed(5)
    param = torch.randn(500, 3, generator=generator)
    grad = torch.randn(500, 3, generator=generator) * 1e-2
    exp_avg = torch.randn(500, 3, generator=generator) * 1e-3
    exp_avg_sq = torch.rand(500, 3, generator=generator) * 1e-4 + 1e-6
    expected = reference_adam_float64(param, grad, exp_avg, exp_avg_sq, 0.01, 0.9, 0.999, 1e-8, 7.0)
    actual = [param.clone(), exp_avg.clone(), exp_avg_sq.clone()]
    adam_step_([actual[0]], [grad], [actual[1]], [actual[2]], [AdamScalars(0.01, 0.9, 0.999, 1e-8, 7.0)],
               match_torch=match_torch)
    for got, want in zip(actual, expected):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-10)


def test_the_multiply_add_rounding_follows_torchs_cpu_kernels():
    """torch's AVX2 / AVX-512 lerp and addcmul round once (FMA), its baseline kernels twice."""
    capability = torch.backends.cpu.get_cpu_capability()
    if platform.machine() not in ("x86_64", "AMD64") or capability not in ("DEFAULT", "AVX2", "AVX512"):
        pytest.skip(f"kernels of {platform.machine()} / {capability} not pinned down")
    assert torch_fuses_multiply_add() == (capability != "DEFAULT")


BASELINE_KERNELS_RUN = """
import torch
from gsplat_lib import FusedAdam, GaussianModel
from gsplat_lib.ops.adam import torch_fuses_multiply_add
from gsplat_lib.param_schema import PARAM_NAMES
assert torch.backends.cpu.get_cpu_capability() == "DEFAULT"
assert not torch_fuses_multiply_add()
generator = torch.Generator().manual_seed(0)
a = [torch.nn.Parameter(torch.randn(301, 3, generator=generator)) for _ in range(2)]
b = [torch.nn.Parameter(p.detach().clone()) for p in a]
torch_adam, fused_adam = torch.optim.Adam(a, lr=1e-2, eps=1e-15), FusedAdam(b, lr=1e-2, eps=1e-15)
for _ in range(10):
    for p, q in zip(a, b):
        p.grad = torch.randn(301, 3, generator=generator)
        q.grad = p.grad.clone()
    torch_adam.step()
    fused_adam.step()
assert all(torch.equal(p, q) for p, q in zip(a, b))
"""


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="ATEN_CPU_CAPABILITY=default is x86's")
def test_bit_exact_with_torchs_baseline_kernels_too(tmp_path):
    """With torch's baseline kernels (two roundings per multiply-add) in a fresh process."""
    completed = subprocess.run(
        [sys.executable, "-c", BASELINE_KERNELS_RUN],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, cwd=tmp_path,
        env=python_env(ATEN_CPU_CAPABILITY="default", OMP_NUM_THREADS="1"),
    )
    assert completed.returncode == 0, completed.stdout.decode()


# ----------------------------------------------------------------------------- sparse Adam


def test_sparse_step_updates_exactly_the_visible_rows():
    """Visible rows take torch.optim.Adam's step of those rows alone (the same step count),
    bit for bit; the other rows keep their parameters and both moments."""
    generator = torch.Generator().manual_seed(6)
    rows = 12_300
    # Random rows, then 4096 hidden and 4096 visible ones: the CPU loop's blocks (4096
    # values) come mixed, all hidden and all visible, for every row width.
    visible = torch.rand(rows, generator=generator) < 0.4
    visible[4096:8192] = False
    visible[8192:] = True
    values = model_like_params(rows, generator)
    grads = {name: torch.randn(v.shape, generator=generator) * 1e-2 for name, v in values.items()}
    exp_avgs = {name: torch.randn(v.shape, generator=generator) * 1e-3 for name, v in values.items()}
    exp_avg_sqs = {name: torch.rand(v.shape, generator=generator) * 1e-4 for name, v in values.items()}

    params = {name: v.clone() for name, v in values.items()}
    moments = ({n: m.clone() for n, m in exp_avgs.items()}, {n: v.clone() for n, v in exp_avg_sqs.items()})
    scalars = [AdamScalars(MODEL_LRS[name], 0.9, 0.999, 1e-15, 4.0) for name in values]
    adam_step_(list(params.values()), list(grads.values()), list(moments[0].values()), list(moments[1].values()),
               scalars, visible_rows=visible)

    for name in values:
        # torch.optim.Adam on the visible rows only, from the same state (step 3 -> 4).
        reference = torch.nn.Parameter(values[name][visible].clone())
        reference.grad = grads[name][visible].clone()
        adam = torch.optim.Adam([reference], lr=MODEL_LRS[name], eps=1e-15)
        adam.state[reference] = {
            "step": torch.tensor(3.0),
            "exp_avg": exp_avgs[name][visible].clone(),
            "exp_avg_sq": exp_avg_sqs[name][visible].clone(),
        }
        adam.step()
        assert_bit_equal(params[name][visible], reference.detach(), name)
        assert_bit_equal(moments[0][name][visible], adam.state[reference]["exp_avg"], name)
        assert_bit_equal(moments[1][name][visible], adam.state[reference]["exp_avg_sq"], name)
        hidden = ~visible
        assert_bit_equal(params[name][hidden], values[name][hidden], name)
        assert_bit_equal(moments[0][name][hidden], exp_avgs[name][hidden], name)
        assert_bit_equal(moments[1][name][hidden], exp_avg_sqs[name][hidden], name)


@pytest.mark.parametrize("match_torch", [True, False])
def test_sparse_step_of_rows_wider_than_a_block(match_torch):
    generator = torch.Generator().manual_seed(12)
    param = torch.randn(9, 4100, generator=generator)
    grad = torch.randn(9, 4100, generator=generator)
    visible = torch.tensor([True, False, False, True, True, False, True, False, True])
    state = [param.clone(), torch.zeros_like(param), torch.zeros_like(param)]
    dense = [param.clone(), torch.zeros_like(param), torch.zeros_like(param)]
    scalars = [AdamScalars(1e-2, 0.9, 0.999, 1e-8, 1.0)]
    adam_step_([state[0]], [grad], [state[1]], [state[2]], scalars, visible_rows=visible, match_torch=match_torch)
    adam_step_([dense[0]], [grad], [dense[1]], [dense[2]], scalars, match_torch=match_torch)
    for got, stepped, before in zip(state, dense, (param, torch.zeros_like(param), torch.zeros_like(param))):
        assert_bit_equal(got[visible], stepped[visible])
        assert_bit_equal(got[~visible], before[~visible])


@pytest.mark.parametrize("match_torch", [True, False])
def test_fused_adam_sparse_step_with_every_row_visible_is_the_dense_step(match_torch):
    generator = torch.Generator().manual_seed(7)
    values = model_like_params(999, generator)
    torch_params, fused_params, torch_adam, fused_adam = make_optimizers(values, match_torch=match_torch)
    dense_params = {name: torch.nn.Parameter(v.clone()) for name, v in values.items()}
    dense_adam = FusedAdam(
        [{"params": [p], "lr": MODEL_LRS[name], "name": name} for name, p in dense_params.items()],
        lr=0.0, eps=1e-15, match_torch=match_torch,
    )
    everything = torch.ones(999, dtype=torch.bool)
    for _ in range(5):
        set_grads(fused_params, dense_params, generator)
        fused_adam.step(visible_rows=everything)
        dense_adam.step()
    assert_same_state(fused_adam, dense_adam)


def test_fused_adam_sparse_steps_leave_hidden_rows_and_count_every_step():
    generator = torch.Generator().manual_seed(8)
    values = model_like_params(400, generator)
    _, params, _, adam = make_optimizers(values)
    set_grads(params, params, generator)
    adam.step()  # every row moves once
    after_first = {name: p.detach().clone() for name, p in params.items()}
    first_state = {name: {k: v.clone() for k, v in adam.state[p].items()} for name, p in params.items()}
    hidden = torch.arange(400) % 3 == 0
    for _ in range(4):
        set_grads(params, params, generator)
        adam.step(visible_rows=~hidden)
    for name, p in params.items():
        state = adam.state[p]
        assert state["step"].item() == 5.0
        assert_bit_equal(p.detach()[hidden], after_first[name][hidden], name)
        for key in ("exp_avg", "exp_avg_sq"):
            assert_bit_equal(state[key][hidden], first_state[name][key][hidden], f"{name} {key}")
            assert not torch.equal(state[key][~hidden], first_state[name][key][~hidden])


def test_visible_rows_is_checked():
    params = [torch.zeros(10, 3), torch.zeros(10)]
    grads = [torch.zeros(10, 3), torch.zeros(10)]
    state = ([torch.zeros(10, 3), torch.zeros(10)], [torch.zeros(10, 3), torch.zeros(10)])
    scalars = [AdamScalars(1e-3, 0.9, 0.999, 1e-8, 1.0)] * 2
    with pytest.raises(TypeError, match="visible_rows must have dtype torch.bool"):
        adam_step_(params, grads, *state, scalars, visible_rows=torch.ones(10))
    with pytest.raises(ValueError, match=r"visible_rows has 9 rows but params\[0\]"):
        adam_step_(params, grads, *state, scalars, visible_rows=torch.ones(9, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"visible_rows must have shape \[\*\]"):
        adam_step_(params, grads, *state, scalars, visible_rows=torch.ones(10, 1, dtype=torch.bool))


# ----------------------------------------------------------------------------- optimizer API


def test_state_dicts_are_interchangeable_with_torch_adam():
    """A state saved by either optimizer loads into the other and continues bit for bit."""
    generator = torch.Generator().manual_seed(9)
    values = model_like_params(333, generator)
    torch_params, fused_params, torch_adam, fused_adam = make_optimizers(values)
    step_both(torch_params, fused_params, torch_adam, fused_adam, generator, 3)
    # Swap: each optimizer continues from the other's state.
    saved_torch, saved_fused = torch_adam.state_dict(), fused_adam.state_dict()
    torch_adam.load_state_dict(saved_fused)
    fused_adam.load_state_dict(saved_torch)
    step_both(torch_params, fused_params, torch_adam, fused_adam, generator, 3)
    assert_same_state(torch_adam, fused_adam)
    assert_same_params(torch_params, fused_params)


def test_parameters_without_gradient_are_skipped_like_torch():
    a, b = torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(4))
    adam = FusedAdam([a, b], lr=0.1)
    a.grad = torch.ones(4)
    adam.step()
    assert b not in adam.state and torch.equal(b.detach(), torch.ones(4))
    assert adam.state[a]["step"].item() == 1.0 and not torch.equal(a.detach(), torch.ones(4))


def test_closure_is_evaluated_with_grad_enabled():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    adam = FusedAdam([p], lr=0.1)

    def closure():
        adam.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    loss = adam.step(closure)
    assert loss.item() == 5.0
    assert torch.allclose(p.detach(), torch.tensor([0.9, -1.9]))


def test_a_graph_holding_the_old_values_fails_loudly_as_with_torch():
    p = torch.nn.Parameter(torch.ones(3))
    adam = FusedAdam([p], lr=0.1)
    loss = (p * p).sum()  # saves p for its backward
    p.grad = torch.ones(3)
    adam.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_empty_tensors_and_empty_optimizers_are_fine():
    p = torch.nn.Parameter(torch.zeros(0, 3))
    q = torch.nn.Parameter(torch.zeros(0))
    adam = FusedAdam([p, q], lr=0.1)
    p.grad, q.grad = torch.zeros(0, 3), torch.zeros(0)
    adam.step(visible_rows=torch.zeros(0, dtype=torch.bool))
    assert adam.state[p]["step"].item() == 1.0
    FusedAdam([torch.nn.Parameter(torch.ones(2))]).step()  # no gradient at all


def test_empty_tensors_beside_non_empty_ones_match_torch():
    # A model of SH degree 0 holds sh_rest [N, 0, 3] beside its non-empty tensors.
    torch.manual_seed(0)
    shapes = [(5, 0, 3), (5, 3), (0, 4)]
    ours = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    fused, reference = FusedAdam(ours, lr=0.1), torch.optim.Adam(theirs, lr=0.1, foreach=False)
    for _ in range(2):
        for a, b in zip(ours, theirs):
            a.grad = torch.randn(a.shape)
            b.grad = a.grad.clone()
        fused.step()
        reference.step()
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


def test_bad_arguments_are_named():
    p = torch.nn.Parameter(torch.ones(3))
    with pytest.raises(ValueError, match="betas\\[1\\]"):
        FusedAdam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="lr"):
        FusedAdam([p], lr=-1.0)
    with pytest.raises(ValueError, match="eps"):
        FusedAdam([p], eps=-1.0)
    adam = FusedAdam([{"params": [p], "weight_decay": 0.1}])
    p.grad = torch.ones(3)
    with pytest.raises(ValueError, match="weight_decay"):
        adam.step()
    adam = FusedAdam([{"params": [p], "amsgrad": True}])
    with pytest.raises(ValueError, match="amsgrad"):
        adam.step()
    double = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    double.grad = torch.ones(3, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"params\[0\] must have dtype torch.float32"):
        FusedAdam([double]).step()


def test_op_arguments_are_checked():
    ok = torch.zeros(6, 2)
    scalars = [AdamScalars(1e-3, 0.9, 0.999, 1e-8, 1.0)]
    with pytest.raises(ValueError, match=r"params\[0\] must be contiguous"):
        adam_step_([torch.zeros(2, 6).t()], [ok], [ok.clone()], [ok.clone()], scalars)
    with pytest.raises(ValueError, match=r"grads\[0\] must have shape \[6, 2\]"):
        adam_step_([ok.clone()], [torch.zeros(6, 3)], [ok.clone()], [ok.clone()], scalars)
    with pytest.raises(ValueError, match="exp_avgs must have one entry per parameter"):
        adam_step_([ok.clone()], [ok], [], [ok.clone()], scalars)
    with pytest.raises(ValueError, match=r"scalars\[0\].step must be >= 1"):
        adam_step_([ok.clone()], [ok], [ok.clone()], [ok.clone()], [AdamScalars(1e-3, 0.9, 0.999, 1e-8, 0.0)])
    with pytest.raises(ValueError, match=r"scalars\[0\].lr must be a finite number"):
        adam_step_([ok.clone()], [ok], [ok.clone()], [ok.clone()], [AdamScalars(math.nan, 0.9, 0.999, 1e-8, 1.0)])
    with pytest.raises(TypeError, match=r"scalars\[0\] must be an AdamScalars"):
        adam_step_([ok.clone()], [ok], [ok.clone()], [ok.clone()], [(1e-3, 0.9, 0.999, 1e-8, 1.0)])
    shared = ok.clone()
    with pytest.raises(ValueError, match=r"params\[0\] and exp_avgs\[0\] share memory"):
        adam_step_([shared], [ok], [shared], [ok.clone()], scalars)
    with pytest.raises(ValueError, match=r"grads\[0\] and exp_avg_sqs\[0\] share memory"):
        adam_step_([ok.clone()], [shared], [ok.clone()], [shared], scalars)
    two = [torch.zeros(6, 2), torch.zeros(6, 2)]
    adam_step_(two, [ok, ok], [torch.zeros(6, 2), torch.zeros(6, 2)], [torch.zeros(6, 2), torch.zeros(6, 2)],
               scalars * 2)  # one gradient read twice is fine
    # A non-contiguous gradient is only read: it is copied, and the step is the same.
    grad = torch.randn(2, 6).t()
    a, b = ok.clone(), ok.clone()
    adam_step_([a], [grad], [ok.clone()], [ok.clone()], scalars)
    adam_step_([b], [grad.contiguous()], [ok.clone()], [ok.clone()], scalars)
    assert_bit_equal(a, b)
