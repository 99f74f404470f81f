"""Per-image appearance (gsplat_lib.train.appearance) and NeRF-W's half-image evaluation
(gsplat_lib.train.appearance_eval), in pure PyTorch against readable references."""

import math

import pytest
import torch

from gsplat_lib.train import metrics
from gsplat_lib.train.appearance import ImageAppearance, appearance_of, apply_affine
from gsplat_lib.train.appearance_eval import (
    FULL_IMAGE_PROTOCOL,
    HALF_IMAGE_PROTOCOL,
    fit_affine,
    half_image_scores,
    score_with_appearance,
    summarize,
    transform_image,
)


def _reference_affine(colors, matrices, biases):
    """M c + b pixel by pixel."""
    out = torch.empty_like(colors)
    for c in range(colors.shape[0]):
        for y in range(colors.shape[1]):
            for x in range(colors.shape[2]):
                out[c, y, x] = matrices[c] @ colors[c, y, x] + biases[c]
    return out


def _random_transforms(count, generator, dtype=torch.float32):
    matrices = torch.eye(3, dtype=dtype) + 0.2 * torch.randn(count, 3, 3, generator=generator, dtype=dtype)
    biases = 0.1 * torch.randn(count, 3, generator=generator, dtype=dtype)
    return matrices, biases


# ---------------------------------------------------------------------- the transform


def test_identity_reproduces_the_input_bit_for_bit():
    generator = torch.Generator().manual_seed(0)
    colors = torch.rand(3, 7, 9, 3, generator=generator) * 3.0 - 1.0  # beyond [0, 1] too
    colors[0, 0, 0] = torch.tensor([0.0, -0.0, 1e-30])
    appearance = ImageAppearance(5, lr=1e-3, weight=0.01)
    assert torch.equal(appearance.apply(colors, [4, 0, 2]), colors)
    assert float(appearance.regularization([4, 0, 2]).detach()) == 0.0


def test_apply_matches_the_pixel_by_pixel_reference():
    generator = torch.Generator().manual_seed(1)
    colors = torch.rand(2, 4, 5, 3, generator=generator)
    matrices, biases = _random_transforms(2, generator)
    torch.testing.assert_close(apply_affine(colors, matrices, biases), _reference_affine(colors, matrices, biases))
    appearance = ImageAppearance(4, lr=1e-3, weight=0.01)
    with torch.no_grad():
        appearance.matrices[[3, 1]] = matrices
        appearance.biases[[3, 1]] = biases
    torch.testing.assert_close(appearance.apply(colors, [3, 1]), _reference_affine(colors, matrices, biases))


def test_gradients_against_float64_finite_differences():
    generator = torch.Generator().manual_seed(2)
    colors = torch.rand(2, 3, 4, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    matrices, biases = _random_transforms(2, generator, torch.float64)
    assert torch.autograd.gradcheck(apply_affine, (colors, matrices.requires_grad_(), biases.requires_grad_()))


def test_gradients_reach_only_the_batch_images_and_the_regulariser_is_its_formula():
    generator = torch.Generator().manual_seed(3)
    appearance = ImageAppearance(4, lr=1e-3, weight=0.5)
    with torch.no_grad():
        appearance.matrices += 0.1 * torch.randn(4, 3, 3, generator=generator)
        appearance.biases += 0.1 * torch.randn(4, 3, generator=generator)
    colors = torch.rand(2, 3, 3, 3, generator=generator)
    cotangent = torch.randn(2, 3, 3, 3, generator=generator)
    (appearance.apply(colors, [2, 0]) * cotangent).sum().backward()
    grad = appearance.matrices.grad
    assert torch.equal(grad[[1, 3]], torch.zeros(2, 3, 3))
    # d/dM_j of sum(cot * (M c + b)) = sum over pixels of cot c^T.
    expected = torch.einsum("hwj,hwk->jk", cotangent[0], colors[0])
    torch.testing.assert_close(grad[2], expected)
    torch.testing.assert_close(appearance.biases.grad[0], cotangent[1].sum(dim=(0, 1)))

    appearance.optimizer.zero_grad(set_to_none=True)
    regularization = appearance.regularization([1, 3])
    offsets = [(appearance.matrices[i] - torch.eye(3)).square().sum() + appearance.biases[i].square().sum() for i in (1, 3)]
    torch.testing.assert_close(regularization, 0.5 * (offsets[0] + offsets[1]) / 2)
    regularization.backward()
    torch.testing.assert_close(appearance.matrices.grad[1], 0.5 * (appearance.matrices[1] - torch.eye(3)).detach())


def test_adam_steps_learn_a_known_colour_cast_and_lr_zero_stays_at_identity():
    generator = torch.Generator().manual_seed(4)
    colors = torch.rand(1, 8, 8, 3, generator=generator)
    gain = torch.tensor([1.3, 0.9, 0.7])
    target = colors * gain + 0.05
    learning = ImageAppearance(2, lr=0.01, weight=0.0)
    frozen = ImageAppearance(2, lr=0.0, weight=0.0)
    for _ in range(600):
        for appearance in (learning, frozen):
            (appearance.apply(colors, [1]) - target).square().mean().backward()
            appearance.step()
    torch.testing.assert_close(learning.apply(colors, [1]), target, atol=2e-3, rtol=0)
    torch.testing.assert_close(torch.diagonal(learning.matrices[1].detach()), gain, atol=0.03, rtol=0)
    assert torch.equal(frozen.matrices, torch.eye(3).repeat(2, 1, 1)) and not frozen.biases.any()


def test_state_dict_round_trip_continues_bit_identically():
    generator = torch.Generator().manual_seed(5)
    colors = torch.rand(2, 4, 4, 3, generator=generator)
    target = torch.rand(2, 4, 4, 3, generator=generator)

    def step(appearance):
        loss = (appearance.apply(colors, [0, 2]) - target).square().mean() + appearance.regularization([0, 2])
        loss.backward()
        appearance.step()

    original = ImageAppearance(3, lr=0.01, weight=0.1)
    for _ in range(3):
        step(original)
    restored = appearance_of({"appearance": original.state_dict()})
    for appearance in (original, restored):
        step(appearance)
    assert torch.equal(original.matrices, restored.matrices) and torch.equal(original.biases, restored.biases)
    assert appearance_of({"appearance": None}) is None and appearance_of({}) is None


def test_bad_arguments_and_states_are_refused():
    with pytest.raises(ValueError, match="num_images"):
        ImageAppearance(0, lr=1e-3, weight=0.0)
    for name, kwargs in (("lr", {"lr": -1.0, "weight": 0.0}), ("weight", {"lr": 1e-3, "weight": math.nan})):
        with pytest.raises(ValueError, match=name):
            ImageAppearance(2, **kwargs)
    appearance = ImageAppearance(2, lr=1e-3, weight=0.0)
    with pytest.raises(ValueError, match="image indices"):
        appearance.apply(torch.zeros(1, 2, 2, 3), [2])
    with pytest.raises(ValueError, match="colors must be"):
        appearance.apply(torch.zeros(2, 2, 2, 3), [0])
    state = appearance.state_dict()
    with pytest.raises(ValueError, match="matrices"):
        ImageAppearance.from_state_dict({**state, "matrices": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="non-finite"):
        ImageAppearance.from_state_dict({**state, "biases": torch.full((2, 3), math.inf)})
    with pytest.raises(ValueError, match="expected a dict"):
        ImageAppearance.from_state_dict({"matrices": state["matrices"]})
    with pytest.raises(ValueError, match="optimizer state"):
        ImageAppearance.from_state_dict({**state, "optimizer": {"state": {}, "param_groups": []}})


# ---------------------------------------------------------------------- half-image evaluation


def test_fit_recovers_an_exact_affine_transform():
    generator = torch.Generator().manual_seed(6)
    rendered = torch.rand(10, 12, 3, generator=generator)
    matrix, bias = _random_transforms(1, generator)
    target = transform_image(rendered, matrix[0], bias[0])
    fitted_matrix, fitted_bias = fit_affine(rendered, target, ridge=0.0)
    torch.testing.assert_close(fitted_matrix, matrix[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(fitted_bias, bias[0], atol=1e-5, rtol=0)
    ridged_matrix, _ = fit_affine(rendered, target)  # the default ridge moves it only a little
    torch.testing.assert_close(ridged_matrix, matrix[0], atol=5e-3, rtol=0)


def test_a_degenerate_half_stays_near_identity():
    rendered = torch.zeros(6, 8, 3)
    target = torch.full((6, 8, 3), 0.25)
    matrix, bias = fit_affine(rendered, target)
    assert torch.isfinite(matrix).all() and torch.isfinite(bias).all()
    torch.testing.assert_close(matrix, torch.eye(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(bias, torch.full((3,), 0.25), atol=1e-3, rtol=0)


def test_half_image_scores_fit_on_the_left_and_score_on_the_right():
    generator = torch.Generator().manual_seed(7)
    rendered = torch.rand(16, 20, 3, generator=generator)
    target = rendered * torch.tensor([0.8, 0.9, 0.7]) + 0.05
    scores = half_image_scores(rendered, target)
    assert scores["psnr"] > 45.0 and scores["ssim"] > 0.999
    # What the right half holds does not change the fit, only the score.
    spoiled = target.clone()
    spoiled[:, 10:] = 1.0 - spoiled[:, 10:]
    other = half_image_scores(rendered, spoiled)
    assert torch.equal(other["matrix"], scores["matrix"]) and torch.equal(other["bias"], scores["bias"])
    expected = metrics.psnr(other["image"][:, 10:], spoiled[:, 10:])
    assert other["psnr"] == expected < 20.0
    with pytest.raises(ValueError, match="half_image_scores"):
        half_image_scores(rendered, target[:, :10])
    with pytest.raises(ValueError, match="fit_affine"):
        fit_affine(rendered[:, :0], target[:, :0])


def test_scores_with_appearance_and_their_summary():
    generator = torch.Generator().manual_seed(8)
    rendered = torch.rand(8, 10, 3, generator=generator)
    target = (rendered * 0.7).clamp(0.0, 1.0)
    appearance = ImageAppearance(3, lr=1e-3, weight=0.0)
    scores, image = score_with_appearance(rendered, target, appearance)
    assert scores["psnr"] > 45.0
    # The mean transform is the identity here: the whole view as rendered.
    assert scores["mean_appearance"]["psnr"] == metrics.psnr(rendered, target)
    torch.testing.assert_close(image, target, atol=1e-3, rtol=0)
    summary = summarize([scores, scores], appearance)
    assert summary["protocol"] == HALF_IMAGE_PROTOCOL
    assert summary["mean_appearance"]["psnr"] == pytest.approx(scores["mean_appearance"]["psnr"])
    assert summarize([], None) == {"protocol": FULL_IMAGE_PROTOCOL}
