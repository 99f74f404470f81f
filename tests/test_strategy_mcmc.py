"""MCMCStrategy: the relocation formula, relocation and growth, position noise, schedule,
state round trip and checkpoints."""

import math

import pytest
import torch

from gsplat_lib import GaussianModel, MCMCStrategy, load_checkpoint, save_checkpoint
from gsplat_lib.param_schema import PARAM_NAMES
from gsplat_lib.strategy import in_plane_axes
from gsplat_lib.strategy_mcmc import MAX_SHARES, relocated_opacity_and_scale


def make_model(opacities, seed=0):
    generator = torch.Generator().manual_seed(seed)
    count = len(opacities)
    params = {
        "means": torch.randn(count, 3, generator=generator),
        "log_scales": torch.log(torch.rand(count, 2, generator=generator) * 0.1 + 0.01),
        "quats": torch.randn(count, 4, generator=generator),
        "opacity_logits": torch.logit(torch.tensor(opacities, dtype=torch.float32)),
        "sh_dc": torch.randn(count, 1, 3, generator=generator),
        "sh_rest": torch.randn(count, 3, 3, generator=generator),
    }
    return GaussianModel(params, scene_extent=1.0, active_sh_degree=1)


def take_adam_step(model):
    loss = sum(value.square().sum() for value in model.params.values())
    loss.backward()
    model.optimizer.step()
    model.optimizer.zero_grad(set_to_none=True)


def paper_scale_factor(opacity, shares):
    """3DGS-MCMC eq. 9 with its double sum, in Python floats."""
    new_opacity = 1.0 - (1.0 - opacity) ** (1.0 / shares)
    denominator = sum(
        math.comb(i - 1, k) * (-1) ** k * new_opacity ** (k + 1) / math.sqrt(k + 1)
        for i in range(1, shares + 1)
        for k in range(i)
    )
    return new_opacity, opacity / denominator


def test_relocation_formula_matches_the_paper():
    opacities = torch.tensor([0.3, 0.9, 0.05, 0.6, 0.99, 0.5], dtype=torch.float64)
    shares = torch.tensor([1, 2, 3, 5, 10, 30])
    new_opacity, factor = relocated_opacity_and_scale(opacities, shares)
    for o, n, got_o, got_f in zip(opacities.tolist(), shares.tolist(), new_opacity.tolist(), factor.tolist()):
        want_o, want_f = paper_scale_factor(o, n)
        assert got_o == pytest.approx(want_o, rel=1e-12)
        assert got_f == pytest.approx(want_f, rel=1e-9)
        # n stacked copies have the original opacity
        assert 1.0 - (1.0 - got_o) ** n == pytest.approx(o, rel=1e-12)
    assert float(new_opacity[0]) == pytest.approx(0.3, rel=1e-15) and float(factor[0]) == pytest.approx(1.0, rel=1e-12)
    # shares beyond MAX_SHARES are clamped, not an error
    clamped = relocated_opacity_and_scale(torch.tensor([0.5]), torch.tensor([MAX_SHARES + 40]))
    capped = relocated_opacity_and_scale(torch.tensor([0.5]), torch.tensor([MAX_SHARES]))
    assert torch.equal(clamped[0], capped[0]) and torch.equal(clamped[1], capped[1])


def test_relocation_moves_dead_surfels_onto_live_ones_and_grows():
    opacities = [0.9, 0.001, 0.6, 0.002, 0.3, 0.8, 0.004, 0.7, 0.5, 0.95]
    model = make_model(opacities)
    take_adam_step(model)
    before = {name: model.params[name].detach().clone() for name in PARAM_NAMES}
    moments_before = model.optimizer.state[model.params["sh_dc"]]["exp_avg"].clone()
    strategy = MCMCStrategy(cap_max=100, refine_start=0, refine_every=1, growth=0.3, seed=3)
    report = strategy.relocate_and_grow(model)
    assert report.num_relocated == 3 and report.num_before == 10
    assert report.num_added == 3 and model.num_surfels == report.num_after == 13
    dead = [1, 3, 6]
    assert bool((model.opacities >= strategy.min_opacity).all())
    means = model.params["means"].detach()
    sh = model.params["sh_dc"].detach()
    moments = model.optimizer.state[model.params["sh_dc"]]["exp_avg"]
    changed = torch.zeros(13, dtype=torch.bool)
    for row in range(13):
        # Each dead or new row is a copy (position, colour) of a live original row ...
        matches = [j for j in range(10) if j not in dead and torch.equal(means[row], before["means"][j])]
        if row in dead or row >= 10:
            assert len(matches) == 1 and torch.equal(sh[row], before["sh_dc"][matches[0]])
            changed[row] = True
            changed[matches[0]] = True
        else:
            assert matches == [row]
    for row in range(10):
        if not changed[row]:  # untouched rows keep parameters and moments exactly
            for name in PARAM_NAMES:
                assert torch.equal(model.params[name][row].detach(), before[name][row])
            assert torch.equal(moments[row], moments_before[row])
        else:
            assert bool((moments[row] == 0).all())
    assert bool((moments[10:] == 0).all())
    # A drawn row and its copies share one opacity and shrink (eq. 9). (A new row may copy a
    # relocated copy of an original: growth draws from every row.)
    for row in list(range(10, 13)) + dead:
        twins = [j for j in range(13) if j != row and torch.equal(means[j], means[row])]
        assert any(model.opacities[j] == model.opacities[row] for j in twins)
        source = next(j for j in range(10) if torch.equal(means[row], before["means"][j]))
        assert bool((model.scales[row] <= torch.exp(before["log_scales"][source]) * (1 + 1e-6)).all())


def test_growth_stops_at_the_cap_and_schedule():
    model = make_model([0.5] * 20)
    strategy = MCMCStrategy(cap_max=22, refine_start=10, refine_stop=50, refine_every=10, noise_lr=0.0)
    assert strategy.step_post_backward(model, None, 10) is None  # refine_start is exclusive
    report = strategy.step_post_backward(model, None, 20)
    assert report.num_added == 1 and model.num_surfels == 21  # floor(1.05 * 20)
    strategy.step_post_backward(model, None, 30)
    strategy.step_post_backward(model, None, 40)
    assert model.num_surfels == 22
    assert strategy.step_post_backward(model, None, 50) is None  # refine_stop is exclusive


def test_noise_moves_only_nearly_dead_surfels_in_their_plane():
    model = make_model([0.001, 0.9, 0.004, 0.5])
    model.update_learning_rate(0)
    before = model.params["means"].detach().clone()
    MCMCStrategy(seed=1).inject_noise(model)
    moved = model.params["means"].detach() - before
    assert moved[0].norm() > 0 and moved[2].norm() > 0
    assert torch.equal(moved[1], torch.zeros(3)) or moved[1].norm() < 1e-12
    assert moved[3].norm() < 1e-12
    t_u, t_v = in_plane_axes(model.quats.detach())
    normals = torch.linalg.cross(t_u, t_v)
    assert float((moved * normals).sum(dim=1).abs().max()) < 1e-6


def test_state_round_trip_and_checkpoint(tmp_path):
    model = make_model([0.9, 0.001, 0.6, 0.002, 0.3])
    strategy = MCMCStrategy(cap_max=50, refine_start=0, refine_every=1, seed=5)
    strategy.relocate_and_grow(model)
    copy = MCMCStrategy.from_state_dict(strategy.state_dict())
    assert copy.config() == strategy.config()
    twin = GaussianModel.from_state_dict(model.state_dict())
    model.params["opacity_logits"].data[:2] = -8.0  # two dead surfels again, in both
    twin.params["opacity_logits"].data[:2] = -8.0
    strategy.relocate_and_grow(model)
    copy.relocate_and_grow(twin)
    for name in PARAM_NAMES:
        assert torch.equal(model.params[name], twin.params[name]), name
    path = tmp_path / "mcmc.ckpt"
    save_checkpoint(path, model, step=7, strategy=strategy)
    loaded = load_checkpoint(path, restore_rng=False)
    assert isinstance(loaded.strategy, MCMCStrategy)
    assert torch.equal(loaded.strategy.generator.get_state(), strategy.generator.get_state())
    with pytest.raises(ValueError, match="MCMCStrategy"):
        MCMCStrategy.from_state_dict({"name": "DefaultStrategy"})


def test_bad_arguments():
    with pytest.raises(ValueError, match="min_opacity"):
        MCMCStrategy(min_opacity=0.0)
    with pytest.raises(ValueError, match="refine_every"):
        MCMCStrategy(refine_every=0)
    with pytest.raises(TypeError, match="cap_max"):
        MCMCStrategy(cap_max=1.5)
