"""GaussianModel with FusedAdam (its default on CPU) against torch.optim.Adam (``fused_adam=False``):
the same bits through densification (new rows with fresh moments), opacity resets,
checkpoints and exact resume."""

from __future__ import annotations

import math

import pytest
import torch

from gsplat_lib import FusedAdam, GaussianModel, load_checkpoint
from gsplat_lib.checkpoint import capture_rng_states, restore_rng_states
from gsplat_lib.model import fused_adam_by_default
from gsplat_lib.ops.densify import densify_plan
from gsplat_lib.param_schema import PARAM_NAMES
from test_fused_adam import assert_bit_equal, assert_same_state
from test_model_resume import FULL, load_worker


def make_model(fused_adam, rows=513):
    generator = torch.Generator().manual_seed(11)
    xyz = torch.rand(rows, 3, generator=generator) - 0.5
    rgb = torch.rand(rows, 3, generator=generator)
    return GaussianModel.from_points(xyz, rgb, scene_extent=2.0, sh_degree=3, seed=5, max_steps=80, fused_adam=fused_adam)


def train_synthetic(model, steps, generator, first_step=0):
    """Random gradients (drawn on the CPU for any device), the position rate's schedule, densification every 7 steps (prune,
    clone and split, with overridden children) and an opacity reset every 11."""
    for step in range(first_step, first_step + steps):
        model.update_learning_rate(step)
        for name in PARAM_NAMES:
            param = model.params[name]
            grad = torch.randn(param.shape, generator=generator) * 10.0 ** -(1 + step % 3)
            param.grad = grad.to(param.device)
        model.optimizer.step()
        model.optimizer.zero_grad(set_to_none=True)
        if step % 7 == 6:
            rows = model.num_surfels
            keep = torch.rand(rows, generator=generator) > 0.1
            clone = torch.rand(rows, generator=generator) < 0.1
            split = torch.rand(rows, generator=generator) < 0.05
            plan = densify_plan(keep.to(model.device), clone.to(model.device), split.to(model.device))
            new_rows = plan.source.shape[0]
            overrides = {
                "means": torch.randn(new_rows, 3, generator=generator).to(model.device),
                "log_scales": (torch.randn(new_rows, 2, generator=generator) - 3.0).to(model.device),
            }
            model.apply_row_plan(plan.source, plan.is_new, overrides, plan.is_split_child)
        if step % 11 == 10:
            model.reset_opacity(0.05)


def test_the_model_defaults_to_fused_adam_on_the_cpu():
    assert fused_adam_by_default(torch.device("cpu")) and not fused_adam_by_default(torch.device("cuda"))
    assert isinstance(make_model(None).optimizer, FusedAdam)
    assert isinstance(make_model(True).optimizer, FusedAdam)
    assert type(make_model(False).optimizer) is torch.optim.Adam
    # The choice as asked: a default model's checkpoint takes the default of the device it loads on.
    assert make_model(None).config()["fused_adam"] is None
    assert make_model(True).config()["fused_adam"] is True
    with pytest.raises(TypeError, match="fused_adam must be True, False or None"):
        make_model(1)


def test_fused_and_torch_adam_models_train_to_the_same_bits():
    fused, plain = make_model(True), make_model(False)
    train_synthetic(fused, 40, torch.Generator().manual_seed(1))
    train_synthetic(plain, 40, torch.Generator().manual_seed(1))
    assert fused.num_surfels == plain.num_surfels != 513
    for name in PARAM_NAMES:
        assert_bit_equal(fused.params[name].detach(), plain.params[name].detach(), name)
    assert_same_state(fused.optimizer, plain.optimizer)
    # New rows started with zero moments and the tensor's step count, as with torch.
    assert fused.optimizer.state[fused.params["means"]]["step"].item() == 40.0


def test_checkpoints_cross_load_between_the_optimizers(tmp_path):
    """A checkpoint of a torch.optim.Adam model resumes in a FusedAdam model with the bits of
    an uninterrupted run (and the other way round)."""
    for first, second in ((False, True), (True, False)):
        uninterrupted = make_model(first)
        train_synthetic(uninterrupted, 30, torch.Generator().manual_seed(2))

        generator = torch.Generator().manual_seed(2)
        model = make_model(first)
        train_synthetic(model, 15, generator)
        path = tmp_path / f"half_{first}.ckpt"
        model.save_checkpoint(path, step=15)
        state = torch.load(path, weights_only=True)["content"]["model"]
        state["config"]["fused_adam"] = second
        resumed = GaussianModel.from_state_dict(state)
        assert isinstance(resumed.optimizer, FusedAdam) == second
        train_synthetic(resumed, 15, generator, first_step=15)
        for name in PARAM_NAMES:
            assert_bit_equal(resumed.params[name].detach(), uninterrupted.params[name].detach(), name)
        assert_same_state(resumed.optimizer, uninterrupted.optimizer)


def test_checkpoints_without_the_flag_load_with_the_cpu_default(tmp_path):
    model = make_model(False)
    train_synthetic(model, 3, torch.Generator().manual_seed(3))
    state = model.state_dict()
    del state["config"]["fused_adam"]  # as written before FusedAdam existed
    loaded = GaussianModel.from_state_dict(state)
    assert isinstance(loaded.optimizer, FusedAdam) and loaded.config()["fused_adam"] is None
    state["config"]["fused_adam"] = "yes"
    with pytest.raises(ValueError, match="fused_adam must be a bool or None"):
        GaussianModel.from_state_dict(state)


def test_in_process_resume_with_fused_adam_is_bit_exact(tmp_path):
    uninterrupted = make_model(True)
    train_synthetic(uninterrupted, 24, torch.Generator().manual_seed(4))
    generator = torch.Generator().manual_seed(4)
    model = make_model(True)
    train_synthetic(model, 12, generator)
    model.save_checkpoint(tmp_path / "half.ckpt", step=12)
    resumed = load_checkpoint(tmp_path / "half.ckpt", restore_rng=False).model
    assert isinstance(resumed.optimizer, FusedAdam)
    train_synthetic(resumed, 12, generator, first_step=12)
    for name in PARAM_NAMES:
        assert_bit_equal(resumed.params[name].detach(), uninterrupted.params[name].detach(), name)
    assert_same_state(resumed.optimizer, uninterrupted.optimizer)


def test_sparse_steps_through_the_model_keep_unseen_surfels():
    """Sparse Adam on a rendered step: surfels no camera saw keep parameters and moments."""
    from gsplat_lib.cameras import look_at

    model = make_model(True, rows=300)
    with torch.no_grad():
        model.params["means"][:150, 0] += 50.0  # far outside the camera's view
    viewmats = look_at((0.0, 0.0, 3.0))[None]
    Ks = torch.tensor([[40.0, 0.0, 16.0], [0.0, 40.0, 16.0], [0.0, 0.0, 1.0]])[None]
    for step in range(3):
        result = model.render(viewmats, Ks, 32, 32)
        result.colors.mean().backward()
        visible = result.visible.any(dim=0)
        assert visible.any() and not visible[:150].any()
        before = {name: model.params[name].detach().clone() for name in PARAM_NAMES}
        moments = {name: {k: v.clone() for k, v in model.optimizer.state[model.params[name]].items()}
                   for name in PARAM_NAMES if model.params[name] in model.optimizer.state}
        model.optimizer.step(visible_rows=visible)
        model.optimizer.zero_grad(set_to_none=True)
        for name in PARAM_NAMES:
            assert_bit_equal(model.params[name].detach()[~visible], before[name][~visible], name)
            if name in moments:
                state = model.optimizer.state[model.params[name]]
                for key in ("exp_avg", "exp_avg_sq"):
                    assert_bit_equal(state[key][~visible], moments[name][key][~visible], f"{name} {key}")
        assert not torch.equal(model.params["sh_dc"].detach()[visible], before["sh_dc"][visible])
    assert math.isclose(model.optimizer.state[model.params["means"]]["step"].item(), 3.0)


def test_rendered_training_with_fused_adam_equals_torch_adam(tmp_path):
    """tests/resume_worker.py's run (rendered gradients, the strategy's densification, opacity
    resets, SH growth) ends in the same bits with either optimizer."""
    worker = load_worker()
    rng_states = capture_rng_states()  # the runs seed the global generators; give them back
    try:
        for fused_adam in (True, False):
            worker.run(FULL, tmp_path / f"{fused_adam}.ckpt", fused_adam=fused_adam)
    finally:
        restore_rng_states(rng_states)
    fused, plain = (torch.load(tmp_path / f"{flag}.ckpt", weights_only=True)["content"]["model"] for flag in (True, False))
    assert fused["params"]["means"].shape[0] != 150  # densified
    for name in PARAM_NAMES:
        assert_bit_equal(fused["params"][name], plain["params"][name], name)
    for index, entry in plain["optimizer"]["state"].items():
        for key, value in entry.items():
            assert_bit_equal(fused["optimizer"]["state"][index][key], value, f"{index} {key}")
