"""Losses, metrics, images, config and run-directory state of gsplat_lib.train (fast, CPU)."""

import json
import math

import numpy as np
import pytest
import torch

from gsplat_lib import GaussianModel
from gsplat_lib.train import losses, metrics
from gsplat_lib.train.config import TrainConfig, config_from_args
from gsplat_lib.train.images import colorize_depth, colorize_normals, turbo_colormap
from gsplat_lib.train.run_dir import RunDirectory, SettingsMismatchError, read_json, write_json_atomically


def _random_images(seed, shape=(2, 20, 24, 3)):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator)


# ---------------------------------------------------------------------- colour losses


def test_l1_is_mean_absolute_error():
    a, b = _random_images(0), _random_images(1)
    assert torch.allclose(losses.l1_loss(a, b), (a - b).abs().mean())
    with pytest.raises(ValueError, match="shape"):
        losses.l1_loss(a, b[:1])


def test_ssim_identity_and_ordering():
    image = _random_images(0)
    assert float(losses.ssim(image, image)) == pytest.approx(1.0, abs=1e-5)
    slightly = (image + 0.02 * _random_images(2)).clamp(0, 1)
    very = (image + 0.5 * _random_images(3)).clamp(0, 1)
    assert 1.0 > float(losses.ssim(slightly, image)) > float(losses.ssim(very, image))
    assert float(losses.dssim_loss(image, image)) == pytest.approx(0.0, abs=1e-5)


def _ssim_reference(x, y):
    """Straightforward SSIM of one [H, W] channel: explicit 11 x 11 Gaussian window, zero padding."""
    offsets = np.arange(11) - 5
    profile = np.exp(-(offsets**2) / (2 * 1.5**2))
    window = np.outer(profile, profile)
    window /= window.sum()
    height, width = x.shape

    def blur(image):
        padded = np.pad(image, 5)
        out = np.zeros_like(image)
        for i in range(height):
            for j in range(width):
                out[i, j] = (padded[i : i + 11, j : j + 11] * window).sum()
        return out

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mx * my + c1) * (2 * sxy + c2) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))).mean()


def test_ssim_matches_a_direct_computation_per_channel():
    a, b = _random_images(4, (1, 14, 17, 2)), _random_images(5, (1, 14, 17, 2))
    expected = np.mean([_ssim_reference(a[0, ..., c].double().numpy(), b[0, ..., c].double().numpy()) for c in range(2)])
    assert float(losses.ssim(a, b)) == pytest.approx(expected, abs=1e-5)


def test_dssim_gradient_is_finite_and_points_downhill():
    target = _random_images(6)
    image = (target + 0.2 * _random_images(7)).clamp(0, 1).requires_grad_(True)
    loss = losses.dssim_loss(image, target)
    loss.backward()
    assert torch.isfinite(image.grad).all()
    with torch.no_grad():
        stepped = image - 0.05 * image.grad / image.grad.abs().max()
    assert float(losses.dssim_loss(stepped, target)) < float(loss.detach())


# ---------------------------------------------------------------------- geometry losses


def _plane_depth(normal, offset, K, height, width):
    """Camera-z depth [1, H, W, 1] of the plane n . X = offset seen by a camera at the origin."""
    cols = torch.arange(width, dtype=torch.float64) + 0.5
    rows = torch.arange(height, dtype=torch.float64) + 0.5
    rays = torch.stack(
        [((cols[None, :] - K[0, 2]) / K[0, 0]).expand(height, width),
         ((rows[:, None] - K[1, 2]) / K[1, 1]).expand(height, width),
         torch.ones(height, width, dtype=torch.float64)], dim=-1,
    )
    depth = offset / (rays @ normal)
    return depth[None, ..., None].float()


def test_depth_to_normals_recovers_a_tilted_plane_facing_the_camera():
    K = torch.tensor([[40.0, 0, 16.0], [0, 42.0, 12.0], [0, 0, 1]])
    normal = torch.tensor([0.3, -0.2, -1.0], dtype=torch.float64)
    normal = normal / normal.norm()  # faces the camera (negative z)
    depth = _plane_depth(normal, -3.0 * float(-normal[2]), K.double(), 24, 32)
    assert (depth > 0).all()
    normals = losses.depth_to_normals(depth, K[None])
    interior = normals[0, 1:-1, 1:-1]
    assert torch.allclose(interior, normal.float().expand_as(interior), atol=1e-4)
    assert (normals[0, 0] == 0).all() and (normals[0, :, -1] == 0).all()


def test_normal_consistency_is_zero_for_agreeing_normals_and_two_for_opposite():
    K = torch.tensor([[30.0, 0, 10.0], [0, 30.0, 8.0], [0, 0, 1]])
    depth = torch.full((1, 16, 20, 1), 2.0)
    alphas = torch.ones(1, 16, 20, 1)
    facing = torch.zeros(1, 16, 20, 3)
    facing[..., 2] = -1.0
    loss = losses.normal_consistency_loss(facing, depth, alphas, K[None])
    border = 1.0 - (14 * 18) / (16 * 20)  # the border has no depth normal: it costs 1
    assert float(loss) == pytest.approx(border, abs=1e-5)
    opposite = losses.normal_consistency_loss(-facing, depth, alphas, K[None])
    assert float(opposite) == pytest.approx(border + 2.0 * (14 * 18) / (16 * 20), abs=1e-5)


def test_normal_consistency_gradients_reach_normals_and_depth():
    K = torch.tensor([[30.0, 0, 10.0], [0, 30.0, 8.0], [0, 0, 1]])
    generator = torch.Generator().manual_seed(0)
    depth = (2.0 + 0.1 * torch.rand(1, 16, 20, 1, generator=generator)).requires_grad_(True)
    normals = torch.randn(1, 16, 20, 3, generator=generator).requires_grad_(True)
    alphas = torch.rand(1, 16, 20, 1, generator=generator)
    losses.normal_consistency_loss(normals, depth, alphas, K[None]).backward()
    assert torch.isfinite(depth.grad).all() and depth.grad.abs().sum() > 0
    assert torch.isfinite(normals.grad).all() and normals.grad.abs().sum() > 0


def test_surface_depth_mixes_expected_and_median():
    expected, median = torch.full((1, 2, 2, 1), 2.0), torch.full((1, 2, 2, 1), 4.0)
    assert torch.equal(losses.surface_depth(expected, median, 0.0), expected)
    assert torch.equal(losses.surface_depth(expected, median, 1.0), median)
    assert torch.allclose(losses.surface_depth(expected, median, 0.25), torch.full((1, 2, 2, 1), 2.5))


def test_losses_on_a_rendered_surfel_are_finite_and_differentiable():
    generator = torch.Generator().manual_seed(3)
    model = GaussianModel.from_points(
        torch.rand(60, 3, generator=generator) - 0.5, torch.rand(60, 3, generator=generator), scene_extent=1.0
    )
    viewmat = torch.eye(4)
    viewmat[2, 3] = 3.0
    K = torch.tensor([[[40.0, 0, 16.0], [0, 40.0, 16.0], [0, 0, 1]]])
    result = model.render(viewmat[None], K, 32, 32)
    depth = losses.surface_depth(result.expected_depths, result.median_depths, 0.5)
    total = losses.normal_consistency_loss(result.normals, depth, result.alphas, K) + losses.distortion_loss(
        result.distortions
    )
    total.backward()
    assert torch.isfinite(total.detach())
    for parameter in model.params.values():
        assert parameter.grad is None or torch.isfinite(parameter.grad).all()
    assert model.params["means"].grad.abs().sum() > 0


# ---------------------------------------------------------------------- metrics


def test_psnr_of_a_known_error():
    target = torch.zeros(4, 4, 3)
    assert metrics.psnr(target + 0.1, target) == pytest.approx(20.0, abs=1e-4)
    assert metrics.psnr(target, target) == math.inf
    assert metrics.psnr(target + 3.0, target) == pytest.approx(0.0)  # clamped to 1 first


def test_ssim_metric_accepts_single_images():
    image = _random_images(8)[0]
    assert metrics.ssim_metric(image, image) == pytest.approx(1.0, abs=1e-5)


def test_depth_errors_only_where_ground_truth_exists():
    gt = torch.tensor([[[2.0], [0.0]], [[4.0], [1.0]]])
    depth = torch.tensor([[[2.2], [9.0]], [[3.6], [1.0]]])
    errors = metrics.depth_errors(depth, gt)
    assert errors["pixels"] == 3
    assert errors["abs_rel"] == pytest.approx((0.1 + 0.1 + 0.0) / 3, rel=1e-5)
    assert errors["rmse"] == pytest.approx(math.sqrt((0.04 + 0.16) / 3), rel=1e-5)
    assert metrics.depth_errors(depth, torch.zeros_like(gt)) is None


def test_normal_angle_errors_in_degrees():
    gt = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]])
    angle = math.radians(30.0)
    predicted = torch.tensor([[[0.0, 2 * math.sin(angle), 2 * math.cos(angle)], [1.0, 0.0, 0.0]]])
    errors = metrics.normal_angle_errors(predicted, gt)
    assert errors["pixels"] == 1
    assert errors["mean_deg"] == pytest.approx(30.0, abs=1e-3)
    assert metrics.normal_angle_errors(predicted, torch.zeros_like(gt)) is None


# ---------------------------------------------------------------------- images


def test_turbo_colormap_ends_and_monotone_hue_path():
    colors = turbo_colormap(np.linspace(0, 1, 11))
    assert colors.shape == (11, 3) and colors.dtype == np.float32
    assert colors[1, 2] > 0.8 > colors[1, 0]  # blue at 0.1
    assert colors[-2, 0] > 0.7 and colors[-2, 2] < 0.1  # red at 0.9
    assert colors[0].max() < 0.2  # dark ends
    assert np.all((colors >= 0) & (colors <= 1))
    assert np.allclose(turbo_colormap(np.array([-1.0, 2.0])), turbo_colormap(np.array([0.0, 1.0])))


def test_colorize_depth_masks_and_maps_near_to_red():
    depth = np.array([[[1.0], [2.0], [0.0]]], dtype=np.float32)
    image = colorize_depth(depth, value_range=(1.0, 2.0))
    assert np.all(image[0, 2] == 0)  # no depth: black
    assert image[0, 0, 0] > image[0, 0, 2] and image[0, 1, 2] > image[0, 1, 0]


def test_colorize_normals():
    normals = np.array([[[0.0, 0.0, 2.0], [0.0, 0.0, 0.0]]], dtype=np.float32)
    image = colorize_normals(normals)
    assert np.allclose(image[0, 0], [0.5, 0.5, 1.0]) and np.all(image[0, 1] == 0)


# ---------------------------------------------------------------------- config


def test_schedule_scales_with_the_run_length():
    schedule = TrainConfig(output="x", iterations=30_000).schedule()
    assert (schedule.densify_start, schedule.densify_stop, schedule.densify_every) == (500, 15_000, 100)
    assert (schedule.reset_every, schedule.normal_start, schedule.distortion_start) == (3000, 7000, 3000)
    assert schedule.sh_degree_interval == 1000
    short = TrainConfig(output="x", iterations=1500).schedule()
    assert short.densify_stop == 750 and short.densify_every == 100 and short.reset_every == 300
    assert short.normal_start == 350 and short.sh_degree_interval == 50
    assert short.reset_every % short.densify_every == 0
    tiny = TrainConfig(output="x", iterations=200).schedule()
    densifications = [
        step for step in range(1, 201)
        if tiny.densify_start < step < tiny.densify_stop and step % tiny.densify_every == 0
    ]
    assert len(densifications) == 2  # short runs still densify
    explicit = TrainConfig(output="x", iterations=1500, densify_every=10, reset_every=77).schedule()
    assert (explicit.densify_every, explicit.reset_every) == (10, 77)


def test_fingerprint_ignores_options_that_do_not_change_results():
    base = TrainConfig(output="a", iterations=100)
    same = TrainConfig(output="b", iterations=100, force=True, progress=False, checkpoint_every=7, num_threads=1,
                       deterministic=False)
    assert base.fingerprint() == same.fingerprint()
    assert base.fingerprint() != TrainConfig(output="a", iterations=101).fingerprint()
    assert base.fingerprint() != TrainConfig(output="a", iterations=100, lambda_dssim=0.3).fingerprint()


def test_nondeterministic_flag_reaches_the_config():
    from gsplat_lib.train.cli import build_parser

    parse = build_parser().parse_args
    assert config_from_args(parse(["--output", "x"])).deterministic is True
    assert config_from_args(parse(["--output", "x", "--nondeterministic"])).deterministic is False


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="deterministic must be a bool"):
        TrainConfig(output="x", deterministic="no")
    with pytest.raises(ValueError, match="iterations"):
        TrainConfig(output="x", iterations=0)
    with pytest.raises(ValueError, match="sh_degree"):
        TrainConfig(output="x", sh_degree=5)
    with pytest.raises(ValueError, match="densify_every"):
        TrainConfig(output="x", densify_every=0)


# ---------------------------------------------------------------------- run directory


def test_json_is_written_atomically_and_unreadable_json_is_none(tmp_path):
    path = tmp_path / "a" / "value.json"
    write_json_atomically(path, {"x": 1})
    assert read_json(path) == {"x": 1}
    assert [p.name for p in path.parent.iterdir()] == ["value.json"]
    path.write_text('{"x": ')
    assert read_json(path) is None


def test_stage_markers(tmp_path):
    run = RunDirectory(tmp_path, "abc")
    assert run.finished("train") is None
    run.mark_finished("train", {"steps": 3})
    assert run.finished("train") == {"steps": 3}
    assert RunDirectory(tmp_path, "other").finished("train") is None  # another run's marker
    marker = run.marker_path("train")
    text = marker.read_text()
    marker.write_text(text[: len(text) // 2])  # half written
    assert run.finished("train") is None
    marker.write_text(json.dumps({**json.loads(text), "finished": False}))
    assert run.finished("train") is None
    with pytest.raises(ValueError, match="stage"):
        run.marker_path("bake")


def test_settings_are_claimed_once_and_mismatches_named(tmp_path):
    first = TrainConfig(output=str(tmp_path), iterations=10)
    run = RunDirectory(tmp_path, first.fingerprint())
    assert run.claim(first.result_settings(), first.to_dict()) is False
    assert run.claim(first.result_settings(), first.to_dict()) is True
    other = TrainConfig(output=str(tmp_path), iterations=20)
    with pytest.raises(SettingsMismatchError, match="iterations: 10 -> 20"):
        RunDirectory(tmp_path, other.fingerprint()).claim(other.result_settings(), other.to_dict())
    run.clear()
    assert list(tmp_path.iterdir()) == []


def test_a_foreign_directory_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    config = TrainConfig(output=str(tmp_path))
    with pytest.raises(ValueError, match="not a gsplat-train output directory"):
        RunDirectory(tmp_path, config.fingerprint()).claim(config.result_settings(), config.to_dict())


def test_latest_complete_checkpoint_skips_damaged_files(tmp_path):
    generator = torch.Generator().manual_seed(0)
    model = GaussianModel.from_points(torch.rand(10, 3, generator=generator), torch.rand(10, 3, generator=generator), scene_extent=1.0)
    run = RunDirectory(tmp_path, "abc")
    run.checkpoint_dir.mkdir()
    for step in (5, 10):
        model.save_checkpoint(run.checkpoint_path(step), step=step)
    (run.checkpoint_dir / ".step_000015.ckpt.x.partial").write_bytes(b"half")
    assert [step for step, _ in run.checkpoints()] == [5, 10]
    data = run.checkpoint_path(10).read_bytes()
    run.checkpoint_path(10).write_bytes(data[: len(data) // 2])
    with pytest.warns(RuntimeWarning, match="damaged checkpoint"):
        path, checkpoint = run.latest_checkpoint()
    assert checkpoint.step == 5 and path == run.checkpoint_path(5)
    run.prune_checkpoints(1)
    assert [step for step, _ in run.checkpoints()] == [10]
