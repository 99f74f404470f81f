"""DefaultStrategy: statistics, every densification rule, schedule, split sampling, state."""

import math
from types import SimpleNamespace

import pytest
import torch

from gsplat_lib import DefaultStrategy, GaussianModel
from gsplat_lib.param_schema import PARAM_NAMES
from gsplat_lib.strategy import in_plane_axes

WIDTH = HEIGHT = 20  # screen gradients in pixels times 10 are NDC gradients
HIGH_GRAD_NDC = 1e-3
LOW_GRAD_NDC = 5e-5


def make_model(scales, opacities, seed=0, extent=1.0):
    """Surfels with the given in-plane scales [N, 2] and opacities [N], random rotations."""
    generator = torch.Generator().manual_seed(seed)
    count = len(opacities)
    quats = torch.randn(count, 4, generator=generator)
    params = {
        "means": torch.randn(count, 3, generator=generator),
        "log_scales": torch.log(torch.tensor(scales, dtype=torch.float32)),
        "quats": quats,
        "opacity_logits": torch.logit(torch.tensor(opacities, dtype=torch.float32)),
        "sh_dc": torch.randn(count, 1, 3, generator=generator),
        "sh_rest": torch.randn(count, 3, 3, generator=generator),
    }
    return GaussianModel(params, scene_extent=extent, active_sh_degree=1)


def fake_result(screen_grad, radii, screen_absgrad=None):
    """What the strategy reads of a rasterizer result after backward."""
    num_cameras = screen_grad.shape[0]

    def leaf(grad):
        value = torch.zeros_like(grad, requires_grad=True)
        value.grad = grad
        return value

    return SimpleNamespace(
        screen_grad=leaf(screen_grad),
        screen_absgrad=leaf(screen_grad.abs() if screen_absgrad is None else screen_absgrad),
        radii=radii,
        colors=torch.zeros(num_cameras, HEIGHT, WIDTH, 3),
    )


def take_adam_step(model):
    loss = sum(value.square().sum() for value in model.params.values())
    loss.backward()
    model.optimizer.step()
    model.optimizer.zero_grad(set_to_none=True)


# Eight surfels, one rule each (extent 1: clone / split boundary 0.01, world prune 0.1).
RULES_SCALES = [
    [0.005, 0.005],  # 0 survives
    [0.005, 0.005],  # 1 opacity 0.01: pruned by opacity
    [0.2, 0.05],  # 2 pruned by world size
    [0.005, 0.005],  # 3 30 px on screen: pruned by screen size
    [0.005, 0.004],  # 4 high gradient, small: cloned
    [0.05, 0.02],  # 5 high gradient, large: split
    [0.005, 0.005],  # 6 high gradient but opacity 0.02: pruned, not cloned
    [0.005, 0.005],  # 7 never visible: its screen gradient is ignored, it survives
]
RULES_OPACITIES = [0.5, 0.01, 0.5, 0.5, 0.5, 0.5, 0.02, 0.5]


def rules_step_result():
    """Two cameras; per-surfel NDC gradient magnitudes and radii of one step."""
    ndc = torch.tensor([LOW_GRAD_NDC, 0.0, 0.0, 0.0, HIGH_GRAD_NDC, HIGH_GRAD_NDC, HIGH_GRAD_NDC, 1.0])
    screen_grad = torch.zeros(2, 8, 2)
    screen_grad[:, :, 0] = ndc / (WIDTH / 2)
    radii = torch.full((2, 8, 2), 5, dtype=torch.int32)
    radii[:, 7] = 0
    radii[1, 3, 1] = 30
    return fake_result(screen_grad, radii)


def test_every_rule_fires_with_the_expected_counts():
    model = make_model(RULES_SCALES, RULES_OPACITIES)
    take_adam_step(model)
    before = {name: model.params[name].detach().clone() for name in PARAM_NAMES}
    moments_before = model.optimizer.state[model.params["sh_dc"]]["exp_avg"].clone()
    # Reset at step 2 (to a cap of 0.6, leaving these opacities alone) enables the size rules at step 3.
    strategy = DefaultStrategy(
        refine_start=0, refine_every=3, reset_every=2, reset_opacity_value=0.6, loss_is_batch_mean=False
    )
    reports = [strategy.step_post_backward(model, rules_step_result(), step) for step in (1, 2, 3)]
    assert reports[:2] == [None, None]
    report = reports[2]
    assert report.num_before == 8 and report.num_after == 6
    assert report.num_cloned == 1 and report.num_split == 1
    assert report.num_pruned == 4
    assert (report.pruned_by_opacity, report.pruned_by_world_size, report.pruned_by_screen_size) == (2, 1, 1)

    # Rows: survivors 0, 4, 7; the clone of 4; the two children of 5.
    source = torch.tensor([0, 4, 7, 4, 5, 5])
    assert torch.equal(strategy.last_source, source)  # scene ids of a packed model: scene_ids[last_source]
    for name in ("quats", "opacity_logits", "sh_dc", "sh_rest"):
        assert torch.equal(model.params[name].detach(), before[name][source])
    assert torch.equal(model.params["means"].detach()[:4], before["means"][source[:4]])
    assert torch.equal(model.params["log_scales"].detach()[:4], before["log_scales"][source[:4]])

    parent_scales = torch.exp(before["log_scales"][5])
    torch.testing.assert_close(model.scales.detach()[4:], (parent_scales / 1.6).expand(2, 2))
    unit_quat = torch.nn.functional.normalize(before["quats"][5:6], dim=1)
    t_u, t_v = in_plane_axes(unit_quat)
    normal = torch.linalg.cross(t_u, t_v)[0]
    offsets = model.params["means"].detach()[4:] - before["means"][5]
    assert torch.all(offsets.norm(dim=1) > 0)
    assert torch.all((offsets @ normal).abs() < 1e-6)
    assert not torch.equal(offsets[0], offsets[1])

    state = model.optimizer.state[model.params["sh_dc"]]
    assert torch.equal(state["exp_avg"][:3], moments_before[source[:3]])
    assert not state["exp_avg"][3:].any()
    for accumulator in (strategy.grad_acc, strategy.absgrad_acc, strategy.count, strategy.max_radii2D):
        assert accumulator.shape == (6,) and not accumulator.any()


def test_size_rules_wait_for_the_first_opacity_reset():
    model = make_model(RULES_SCALES, RULES_OPACITIES)
    strategy = DefaultStrategy(refine_start=0, refine_every=3, reset_every=100, loss_is_batch_mean=False)
    for step in (1, 2, 3):
        report = strategy.step_post_backward(model, rules_step_result(), step)
    assert report.pruned_by_world_size == 0 and report.pruned_by_screen_size == 0
    assert report.num_pruned == 2 and report.num_after == 8 - 2 - 1 + 1 + 2


def test_world_size_bound_grows_with_the_distance_from_the_cameras():
    # Three surfels of largest scale 0.5 (extent 1: the plain bound is 0.1), at distances
    # 2, 6 and 8 from the cameras' centre: with the centre, the bound is 0.1 x max(1, d).
    model = make_model([[0.5, 0.1]] * 3, [0.5] * 3)
    with torch.no_grad():
        model.params["means"].copy_(torch.tensor([[2.0, 0.0, 1.0], [0.0, 6.0, 1.0], [0.0, 0.0, 9.0]]))
    result = fake_result(torch.zeros(1, 3, 2), torch.full((1, 3, 2), 5, dtype=torch.int32))
    strategy = DefaultStrategy(
        refine_start=0, refine_every=1, reset_every=1, reset_opacity_value=0.6, cameras_center=(0.0, 0.0, 1.0),
        loss_is_batch_mean=False,
    )
    report = strategy.step_post_backward(model, result, 2)
    assert report.pruned_by_world_size == 1  # only the one at distance 2 (bound 0.2)
    assert torch.equal(model.params["means"].detach()[:, 2], torch.tensor([1.0, 9.0]))
    plain = DefaultStrategy(refine_start=0, refine_every=1, reset_every=1, reset_opacity_value=0.6, loss_is_batch_mean=False)
    assert plain.step_post_backward(make_model([[0.5, 0.1]] * 3, [0.5] * 3), result, 2).pruned_by_world_size == 3
    assert DefaultStrategy.from_state_dict(strategy.state_dict()).cameras_center == (0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="cameras_center"):
        DefaultStrategy(cameras_center=(0.0, float("nan"), 0.0))


def test_faint_surfels_large_on_screen_are_pruned_before_the_first_reset():
    # Opacities 0.08 (faint), 0.5, 0.08, 0.5; the first two reach 30 px on screen.
    model = make_model([[0.005, 0.005]] * 4, [0.08, 0.5, 0.08, 0.5])
    radii = torch.full((1, 4, 2), 5, dtype=torch.int32)
    radii[0, :2] = 30
    result = fake_result(torch.zeros(1, 4, 2), radii)
    strategy = DefaultStrategy(refine_start=0, refine_every=1, reset_every=100, prune_faint_opacity=0.1, loss_is_batch_mean=False)
    report = strategy.step_post_backward(model, result, 1)
    assert report.pruned_by_screen_size == 1 and report.num_after == 3  # only the faint large one
    off = DefaultStrategy(refine_start=0, refine_every=1, reset_every=100, loss_is_batch_mean=False)
    assert off.step_post_backward(make_model([[0.005, 0.005]] * 4, [0.08, 0.5, 0.08, 0.5]), result, 1).num_pruned == 0


def test_statistics_accumulate_ndc_norms_counts_and_max_radii():
    model = make_model([[0.01, 0.01]] * 3, [0.5] * 3)
    strategy = DefaultStrategy(refine_start=100, loss_is_batch_mean=False)
    screen_grad = torch.tensor([[[0.3, 0.4], [1.0, 0.0], [0.0, 2.0]], [[0.6, 0.8], [0.0, 0.0], [0.0, 0.0]]])
    radii = torch.tensor([[[4, 7], [2, 2], [0, 0]], [[9, 1], [0, 0], [0, 0]]], dtype=torch.int32)
    strategy.step_post_backward(model, fake_result(screen_grad, radii), 1)
    strategy.step_post_backward(model, fake_result(screen_grad, radii), 2)
    # Norms of (g * W/2, g * H/2): 5 and 10 for surfel 0, 10 for surfel 1; surfel 2 invisible.
    torch.testing.assert_close(strategy.grad_acc, torch.tensor([30.0, 20.0, 0.0]))
    assert strategy.count.tolist() == [4, 2, 0]
    assert strategy.max_radii2D.tolist() == [9.0, 2.0, 0.0]


def test_statistics_of_a_packed_multi_scene_render_equal_the_per_camera_ones():
    # The same (camera, surfel) pairs as above, packed: only the visible items, with their surfels.
    model = make_model([[0.01, 0.01]] * 3, [0.5] * 3)
    per_camera, packed = (DefaultStrategy(refine_start=100, loss_is_batch_mean=False) for _ in range(2))
    screen_grad = torch.tensor([[[0.3, 0.4], [1.0, 0.0], [0.0, 2.0]], [[0.6, 0.8], [0.0, 0.0], [0.0, 0.0]]])
    radii = torch.tensor([[[4, 7], [2, 2], [0, 0]], [[9, 1], [0, 0], [0, 0]]], dtype=torch.int32)
    per_camera.step_post_backward(model, fake_result(screen_grad, radii), 1)
    result = fake_result(screen_grad.reshape(6, 2)[[0, 1, 3]], radii.reshape(6, 2)[[0, 1, 3]])
    result.colors, result.item_surfels = torch.zeros(2, HEIGHT, WIDTH, 3), torch.tensor([0, 1, 0])
    packed.step_post_backward(model, result, 1)
    for name in ("grad_acc", "absgrad_acc", "count", "max_radii2D"):
        assert torch.equal(getattr(packed, name), getattr(per_camera, name)), name


def test_non_finite_gradients_add_nothing_and_the_surfel_still_densifies_later():
    model = make_model([[0.005, 0.005]] * 2, [0.5] * 2)
    strategy = DefaultStrategy(refine_start=1, refine_every=3, reset_every=1000, loss_is_batch_mean=False)
    radii = torch.full((1, 2, 2), 5, dtype=torch.int32)
    blown_up = torch.tensor([[[float("nan"), 0.0], [float("inf"), 1.0]]])
    strategy.step_post_backward(model, fake_result(blown_up, radii, blown_up), 1)
    assert strategy.grad_acc.tolist() == [0.0, 0.0] and strategy.absgrad_acc.tolist() == [0.0, 0.0]
    assert strategy.count.tolist() == [1, 1]
    high = torch.full((1, 2, 2), 10 * HIGH_GRAD_NDC / (WIDTH / 2))
    strategy.step_post_backward(model, fake_result(high, radii), 2)
    report = strategy.step_post_backward(model, fake_result(high, radii), 3)
    assert report is not None and report.num_cloned == 2  # mean 2/3 of ten times the threshold
    assert torch.isfinite(strategy.grad_acc).all()


def test_batch_mean_loss_gradients_are_scaled_back_by_the_camera_count():
    model = make_model([[0.01, 0.01]] * 2, [0.5] * 2)
    screen_grad = torch.full((2, 2, 2), 0.1)
    radii = torch.ones(2, 2, 2, dtype=torch.int32)
    per_camera = DefaultStrategy(refine_start=100, loss_is_batch_mean=False)
    batch_mean = DefaultStrategy(refine_start=100, loss_is_batch_mean=True)
    per_camera.step_post_backward(model, fake_result(screen_grad, radii), 1)
    batch_mean.step_post_backward(model, fake_result(screen_grad, radii), 1)
    torch.testing.assert_close(batch_mean.grad_acc, 2 * per_camera.grad_acc)


def test_schedule_of_densification_and_opacity_reset():
    model = make_model([[0.005, 0.005]] * 4, [0.5] * 4)
    strategy = DefaultStrategy(
        refine_start=4, refine_every=2, refine_stop=11, reset_every=6, prune_opacity=0.0, loss_is_batch_mean=False
    )
    screen_grad = torch.zeros(1, 4, 2)
    radii = torch.ones(1, 4, 2, dtype=torch.int32)
    densified = []
    for step in range(1, 14):
        if step == 6:
            assert torch.all(model.opacities > 0.4)
        if strategy.step_post_backward(model, fake_result(screen_grad, radii), step) is not None:
            densified.append(step)
        if step == 6:
            assert torch.all(model.opacities <= 0.01 + 1e-7)
    assert densified == [6, 8, 10]
    assert strategy.count.tolist() == [0, 0, 0, 0]  # reset at 10; steps 11.. no longer accumulate


def test_split_offsets_follow_the_surfel_plane_and_its_two_scales():
    count = 600
    model = make_model([[0.3, 0.1]] * count, [0.5] * count)
    with torch.no_grad():
        model.params["quats"].copy_(torch.tensor([0.9, 0.1, -0.3, 0.2]).expand(count, 4))
        model.params["means"].zero_()
    strategy = DefaultStrategy(seed=3)
    strategy._reset_accumulators(count, model.device)
    strategy.grad_acc.fill_(1.0)
    strategy.count.fill_(1)
    report = strategy.densify_and_prune(model, prune_large=False)
    assert report.num_split == count and report.num_after == 2 * count
    t_u, t_v = in_plane_axes(torch.nn.functional.normalize(torch.tensor([[0.9, 0.1, -0.3, 0.2]]), dim=1))
    offsets = model.params["means"].detach()
    normal = torch.linalg.cross(t_u, t_v)[0]
    assert (offsets @ normal).abs().max() < 1e-6
    # Standard deviations 0.3 and 0.1 along t_u and t_v; 1200 samples give about 2% error.
    assert (offsets @ t_u[0]).std().item() == pytest.approx(0.3, rel=0.08)
    assert (offsets @ t_v[0]).std().item() == pytest.approx(0.1, rel=0.08)


def test_state_dict_round_trip_continues_identically():
    def run(restore_midway):
        model = make_model(RULES_SCALES, RULES_OPACITIES, seed=4)
        strategy = DefaultStrategy(refine_start=0, refine_every=2, reset_every=100, seed=9, loss_is_batch_mean=False)
        for step in range(1, 7):
            if restore_midway and step == 4:
                state = strategy.state_dict()
                strategy = DefaultStrategy.from_state_dict(state)
            strategy.step_post_backward(model, rules_step_result_for(model.num_surfels), step)
        return model

    first, second = run(False), run(True)
    for name in PARAM_NAMES:
        assert torch.equal(first.params[name], second.params[name])


def rules_step_result_for(count):
    screen_grad = torch.zeros(1, count, 2)
    screen_grad[0, ::2, 0] = HIGH_GRAD_NDC / (WIDTH / 2)
    return fake_result(screen_grad, torch.full((1, count, 2), 3, dtype=torch.int32))


def test_missing_backward_and_foreign_models_are_reported():
    model = make_model([[0.01, 0.01]] * 2, [0.5] * 2)
    strategy = DefaultStrategy()
    result = fake_result(torch.zeros(1, 2, 2), torch.ones(1, 2, 2, dtype=torch.int32))
    result.screen_grad.grad = None
    with pytest.raises(ValueError, match="backward"):
        strategy.step_post_backward(model, result, 1)
    strategy.step_post_backward(model, fake_result(torch.zeros(1, 2, 2), torch.ones(1, 2, 2, dtype=torch.int32)), 1)
    other = make_model([[0.01, 0.01]] * 3, [0.5] * 3)
    with pytest.raises(ValueError, match="3"):
        strategy.step_post_backward(other, fake_result(torch.zeros(1, 3, 2), torch.ones(1, 3, 2, dtype=torch.int32)), 2)


def test_invalid_configuration_is_rejected():
    with pytest.raises(ValueError, match="reset_opacity_value"):
        DefaultStrategy(reset_opacity_value=1.5)
    with pytest.raises(TypeError, match="refine_every"):
        DefaultStrategy(refine_every=1.5)
    with pytest.raises(ValueError):
        DefaultStrategy(refine_every=0)
    assert math.isclose(DefaultStrategy().grad_threshold, 0.0002)


@pytest.mark.cuda
def test_densification_on_cuda_matches_cpu():
    def run(device):
        model = make_model(RULES_SCALES, RULES_OPACITIES)
        model = GaussianModel(
            {name: value.detach().to(device) for name, value in model.params.items()},
            scene_extent=1.0, active_sh_degree=1,
        )
        take_adam_step(model)
        strategy = DefaultStrategy(
            refine_start=0, refine_every=3, reset_every=2, reset_opacity_value=0.6, loss_is_batch_mean=False
        )
        for step in (1, 2, 3):
            result = rules_step_result()
            for key in ("screen_grad", "screen_absgrad"):
                leaf = getattr(result, key)
                moved = torch.zeros_like(leaf, device=device, requires_grad=True)
                moved.grad = leaf.grad.to(device)
                setattr(result, key, moved)
            result.radii = result.radii.to(device)
            report = strategy.step_post_backward(model, result, step)
        return model, report

    cpu_model, cpu_report = run("cpu")
    cuda_model, cuda_report = run("cuda")
    assert cpu_report == cuda_report
    for name in PARAM_NAMES:
        # Copied rows are exact; the children's sampled centres may differ by rounding.
        torch.testing.assert_close(cuda_model.params[name].detach().cpu(), cpu_model.params[name].detach())
        cpu_state = cpu_model.optimizer.state[cpu_model.params[name]]
        cuda_state = cuda_model.optimizer.state[cuda_model.params[name]]
        torch.testing.assert_close(cuda_state["exp_avg"].cpu(), cpu_state["exp_avg"])
