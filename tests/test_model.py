"""GaussianModel: initialisation, activations, optimizer, schedules, row plans, opacity reset."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

import gsplat_lib
from gsplat_lib import GaussianModel, LearningRates
from gsplat_lib.ops.sh import SH_C0
from gsplat_lib.param_schema import PARAM_NAMES


def make_points(count=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    xyz = torch.rand(count, 3, generator=generator) * 2 - 1
    rgb = torch.rand(count, 3, generator=generator)
    return xyz, rgb


def take_adam_step(model):
    """One optimizer step with a fixed, parameter-dependent loss."""
    loss = sum((value * (index + 1)).square().sum() for index, value in enumerate(model.params.values()))
    loss.backward()
    model.optimizer.step()
    model.optimizer.zero_grad(set_to_none=True)


def test_from_points_follows_the_2dgs_initialisation():
    xyz, rgb = make_points()
    model = GaussianModel.from_points(xyz, rgb, scene_extent=2.0, sh_degree=3, seed=1)
    assert model.num_surfels == 64
    assert model.params["means"].shape == (64, 3) and torch.equal(model.means.detach(), xyz)
    assert model.params["log_scales"].shape == (64, 2)
    assert model.params["quats"].shape == (64, 4)
    assert model.params["opacity_logits"].shape == (64,)
    assert model.params["sh_dc"].shape == (64, 1, 3)
    assert model.params["sh_rest"].shape == (64, 15, 3)
    assert not model.params["sh_rest"].any()

    distances, _ = cKDTree(xyz.double().numpy()).query(xyz.double().numpy(), k=4)
    expected_scale = np.sqrt((distances[:, 1:] ** 2).mean(axis=1))
    scales = model.scales.detach().double().numpy()
    np.testing.assert_allclose(scales[:, 0], expected_scale, rtol=1e-5)
    np.testing.assert_array_equal(scales[:, 0], scales[:, 1])

    torch.testing.assert_close(model.opacities.detach(), torch.full((64,), 0.1))
    torch.testing.assert_close(SH_C0 * model.params["sh_dc"].detach()[:, 0] + 0.5, rgb)
    torch.testing.assert_close(model.quats.norm(dim=1).detach(), torch.ones(64))
    assert model.max_sh_degree == 3 and model.active_sh_degree == 0


def test_from_points_rotations_come_from_the_seed():
    xyz, rgb = make_points()
    first = GaussianModel.from_points(xyz, rgb, scene_extent=1.0, seed=5).params["quats"]
    again = GaussianModel.from_points(xyz, rgb, scene_extent=1.0, seed=5).params["quats"]
    other = GaussianModel.from_points(xyz, rgb, scene_extent=1.0, seed=6).params["quats"]
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    # Uniform over rotations: every sign pattern of the components occurs.
    assert (first < 0).any(dim=0).all() and (first > 0).any(dim=0).all()


@pytest.mark.parametrize(
    "xyz, rgb, message",
    [
        (torch.zeros(4, 2), torch.zeros(4, 3), "xyz"),
        (torch.zeros(4, 3, dtype=torch.float64), torch.zeros(4, 3), "xyz"),
        (torch.zeros(4, 3), torch.zeros(5, 3), "rgb"),
        (torch.zeros(0, 3), torch.zeros(0, 3), "no points"),
        (torch.full((4, 3), math.nan), torch.zeros(4, 3), "finite"),
    ],
)
def test_from_points_rejects_bad_input(xyz, rgb, message):
    with pytest.raises(ValueError, match=message):
        GaussianModel.from_points(xyz, rgb, scene_extent=1.0)


def test_constructor_checks_parameters():
    xyz, rgb = make_points(8)
    params = {name: value.detach() for name, value in GaussianModel.from_points(xyz, rgb, scene_extent=1.0).params.items()}
    with pytest.raises(ValueError, match="lacks"):
        GaussianModel({k: v for k, v in params.items() if k != "quats"}, scene_extent=1.0)
    with pytest.raises(ValueError, match="log_scales"):
        GaussianModel({**params, "log_scales": torch.zeros(8, 3)}, scene_extent=1.0)
    with pytest.raises(ValueError, match="rows"):
        GaussianModel({**params, "opacity_logits": torch.zeros(7)}, scene_extent=1.0)
    with pytest.raises(ValueError, match="square"):
        GaussianModel({**params, "sh_rest": torch.zeros(8, 5, 3)}, scene_extent=1.0)
    with pytest.raises(ValueError, match="scene_extent"):
        GaussianModel(params, scene_extent=0.0)


def test_optimizer_has_one_group_per_parameter_with_the_2dgs_rates():
    xyz, rgb = make_points(8)
    model = GaussianModel.from_points(xyz, rgb, scene_extent=3.0, max_steps=100)
    groups = model.optimizer.param_groups
    assert [g["name"] for g in groups] == list(PARAM_NAMES)
    for group in groups:
        assert group["params"] == [model.params[group["name"]]]
        assert group["eps"] == 1e-15
    rates = {g["name"]: g["lr"] for g in groups}
    assert rates == pytest.approx(
        {
            "means": 1.6e-4 * 3.0,
            "log_scales": 0.005,
            "quats": 0.001,
            "opacity_logits": 0.05,
            "sh_dc": 0.0025,
            "sh_rest": 0.0025 / 20,
        }
    )


def test_position_learning_rate_decays_log_linearly_times_the_extent():
    xyz, rgb = make_points(8)
    rates = LearningRates(means_init=1e-2, means_final=1e-4)
    model = GaussianModel.from_points(xyz, rgb, scene_extent=2.0, max_steps=100, learning_rates=rates)
    assert model.update_learning_rate(0) == pytest.approx(2e-2)
    assert model.update_learning_rate(50) == pytest.approx(2e-3)
    assert model.update_learning_rate(100) == pytest.approx(2e-4)
    assert model.update_learning_rate(1000) == pytest.approx(2e-4)
    assert model.param_group("means")["lr"] == pytest.approx(2e-4)


def test_sh_degree_grows_one_band_per_interval_up_to_the_maximum():
    xyz, rgb = make_points(8)
    model = GaussianModel.from_points(xyz, rgb, scene_extent=1.0, sh_degree=2, sh_degree_interval=10)
    degrees = []
    for step in range(1, 51):
        model.maybe_increase_sh_degree(step)
        degrees.append(model.active_sh_degree)
    assert degrees[8] == 0 and degrees[9] == 1 and degrees[19] == 2 and degrees[-1] == 2


def test_apply_row_plan_remaps_parameters_and_adam_state_together():
    xyz, rgb = make_points(10)
    model = GaussianModel.from_points(xyz, rgb, scene_extent=1.0)
    take_adam_step(model)
    take_adam_step(model)
    before = {name: model.params[name].detach().clone() for name in PARAM_NAMES}
    moments = {name: dict(model.optimizer.state[model.params[name]]) for name in PARAM_NAMES}

    source = torch.tensor([0, 2, 3, 9, 2, 5, 5], dtype=torch.int64)
    is_new = torch.tensor([False, False, False, False, True, True, True])
    override_rows = torch.tensor([False, False, False, False, False, True, True])
    new_means = torch.full((7, 3), 7.0)
    model.apply_row_plan(source, is_new, overrides={"means": new_means}, override_rows=override_rows)

    assert model.num_surfels == 7
    for index, name in enumerate(PARAM_NAMES):
        param = model.params[name]
        assert model.optimizer.param_groups[index]["params"][0] is param
        assert param.requires_grad and param.is_leaf
        expected = before[name][source]
        if name == "means":
            expected[5:] = 7.0
        assert torch.equal(param.detach(), expected)
        state = model.optimizer.state[param]
        for key in ("exp_avg", "exp_avg_sq"):
            expected_moment = moments[name][key][source].clone()
            expected_moment[4:] = 0
            assert torch.equal(state[key], expected_moment)
        assert torch.equal(state["step"], moments[name]["step"])
    assert len(model.optimizer.state) == len(PARAM_NAMES)
    take_adam_step(model)  # the rebuilt optimizer keeps working
    assert torch.isfinite(model.means).all()


def test_apply_row_plan_before_the_first_step_has_no_moments_to_move():
    xyz, rgb = make_points(5)
    model = GaussianModel.from_points(xyz, rgb, scene_extent=1.0)
    model.apply_row_plan(torch.tensor([4, 4, 1]), torch.tensor([False, True, False]))
    assert model.num_surfels == 3 and len(model.optimizer.state) == 0
    assert torch.equal(model.means.detach(), xyz[[4, 4, 1]])


def test_reset_opacity_caps_opacity_and_zeroes_its_moments():
    xyz, rgb = make_points(6)
    model = GaussianModel.from_points(xyz, rgb, scene_extent=1.0)
    with torch.no_grad():
        model.params["opacity_logits"].copy_(torch.tensor([-6.0, -5.0, -4.0, 0.0, 2.0, 5.0]))
    take_adam_step(model)
    logits_before = model.params["opacity_logits"].detach().clone()
    means_moment = model.optimizer.state[model.params["means"]]["exp_avg"].clone()
    model.reset_opacity(0.01)
    opacities = model.opacities.detach()
    assert torch.all(opacities <= 0.01 + 1e-7)
    low = torch.sigmoid(logits_before) < 0.01
    assert torch.equal(model.params["opacity_logits"].detach()[low], logits_before[low])
    state = model.optimizer.state[model.params["opacity_logits"]]
    assert not state["exp_avg"].any() and not state["exp_avg_sq"].any()
    assert state["step"].item() == 1
    assert torch.equal(model.optimizer.state[model.params["means"]]["exp_avg"], means_moment)


def test_render_feeds_the_activations_and_the_active_sh_degree_to_the_rasterizer():
    from gsplat_lib import rasterize_surfels

    xyz, rgb = make_points(30)
    model = GaussianModel.from_points(0.5 * xyz, rgb, scene_extent=1.0, sh_degree=1)
    with torch.no_grad():
        model.params["sh_rest"].normal_(generator=torch.Generator().manual_seed(3))
    viewmats = torch.eye(4)[None].clone()
    viewmats[0, 2, 3] = 3.0
    Ks = torch.tensor([[[30.0, 0.0, 12.0], [0.0, 30.0, 10.0], [0.0, 0.0, 1.0]]])
    backgrounds = torch.tensor([[0.2, 0.3, 0.4]])

    def expected(degree):
        return rasterize_surfels(
            model.means, torch.nn.functional.normalize(model.params["quats"], dim=1),
            torch.exp(model.params["log_scales"]), torch.sigmoid(model.params["opacity_logits"]),
            viewmats=viewmats, Ks=Ks, width=24, height=20, backgrounds=backgrounds,
            sh=model.sh, sh_degree=degree,
        ).colors

    result = model.render(viewmats, Ks, 24, 20, backgrounds=backgrounds)
    assert result.colors.shape == (1, 20, 24, 3) and result.radii.shape == (1, 30, 2)
    assert (result.radii > 0).any()
    assert torch.equal(result.colors, expected(0))
    model.maybe_increase_sh_degree(1000)
    with_band_one = model.render(viewmats, Ks, 24, 20, backgrounds=backgrounds).colors
    assert torch.equal(with_band_one, expected(1)) and not torch.equal(with_band_one, result.colors)
    with_band_one.sum().backward()
    assert all(model.params[name].grad is not None for name in PARAM_NAMES)


def test_sh_degree_above_three_is_refused_up_front(tmp_path):
    """Degree 4 coefficients would load and then fail at the first render: refused at once."""
    params = {name: value for name, value in GaussianModel.from_points(
        torch.rand(3, 3), torch.rand(3, 3), scene_extent=1.0, sh_degree=3).params.items()}
    with pytest.raises(ValueError, match=r"degree d in 0\.\.3.*got 25"):
        GaussianModel({**params, "sh_rest": torch.zeros(3, 24, 3)}, scene_extent=1.0)
    with pytest.raises(ValueError, match=r"degree d in 0\.\.3"):
        GaussianModel.from_points(torch.rand(3, 3), torch.rand(3, 3), scene_extent=1.0, sh_degree=4)
    path = tmp_path / "degree4.ply"
    from plyfile import PlyData, PlyElement
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", *(f"f_rest_{i}" for i in range(72)), "opacity",
             "scale_0", "scale_1", "rot_0", "rot_1", "rot_2", "rot_3"]
    rows = np.zeros(2, dtype=[(name, "f4") for name in names])
    PlyData([PlyElement.describe(rows, "vertex")]).write(str(path))
    with pytest.raises(ValueError, match=r"degree4\.ply: property f_rest_\*: 72 values.*degree 0 to 3"):
        gsplat_lib.load_ply(path)
