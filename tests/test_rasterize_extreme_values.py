"""Extreme colour and SH values and degenerate cameras: culled or refused, never a NaN in a
gradient (the fuzz findings of issue 27; docs/design.md, "Rasterizer semantics", culling)."""

import math

import pytest
import torch

import gsplat_lib
from gsplat_lib import rasterize_surfels
from gsplat_lib.reference import rasterize_surfels_reference

WIDTH, HEIGHT = 32, 24
K = torch.tensor([[[30.0, 0.0, 16.0], [0.0, 30.0, 12.0], [0.0, 0.0, 1.0]]])
LIMIT = 3.4028235e38 / gsplat_lib._backend.core().COLOR_CULL_SCALE


def two_surfels():
    """The issue's setup: two surfels at the origin facing a camera at z = -3."""
    return {
        "means": torch.zeros(2, 3, requires_grad=True),
        "quats": torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 2, requires_grad=True),
        "scales": torch.full((2, 2), 0.3, requires_grad=True),
        "opacities": torch.full((2,), 0.8, requires_grad=True),
    }


def render_and_backprop(surfels, viewmats=None, **kwargs):
    viewmats = gsplat_lib.look_at((0.0, 0.0, -3.0))[None] if viewmats is None else viewmats
    out = rasterize_surfels(**surfels, viewmats=viewmats, Ks=K, width=WIDTH, height=HEIGHT, **kwargs)
    generator = torch.Generator().manual_seed(0)
    images = (out.colors, out.alphas, out.depths, out.median_depths, out.normals, out.distortions)
    loss = sum((image * torch.randn(image.shape, generator=generator)).sum() for image in images)
    loss.backward()
    for image in images:
        assert bool(torch.isfinite(image).all())
    return out


def assert_finite_gradients(*tensors):
    for tensor in tensors:
        assert tensor.grad is not None and bool(torch.isfinite(tensor.grad).all())


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 3e38])
def test_culled_surfel_with_bad_higher_sh_gives_no_nan(bad):
    surfels = two_surfels()
    surfels["scales"] = torch.tensor([[0.3, 0.3], [0.0, 0.3]], requires_grad=True)  # surfel 1 is culled anyway
    sh = torch.zeros(2, 4, 3)
    sh[1, 1:] = bad
    sh.requires_grad_(True)
    out = render_and_backprop(surfels, sh=sh, sh_degree=1)
    assert not bool(out.visible[0, 1])
    assert_finite_gradients(sh, *surfels.values())
    assert float(surfels["means"].grad[1].abs().sum()) == 0.0


@pytest.mark.parametrize("value", [3e38, -3e38, 1e30, LIMIT * 1.01])
def test_colours_beyond_the_limit_are_culled_with_finite_gradients(value):
    surfels = two_surfels()
    colors = torch.tensor([[0.2, 0.5, 0.9], [value, 0.5, 0.5]], requires_grad=True)
    out = render_and_backprop(surfels, colors=colors)
    assert bool(out.visible[0, 0]) and not bool(out.visible[0, 1])
    assert_finite_gradients(colors, *surfels.values())


def test_colours_within_the_limit_are_drawn():
    surfels = two_surfels()
    colors = torch.tensor([[0.2, 0.5, 0.9], [LIMIT * 0.99, 0.5, 0.5]], requires_grad=True)
    out = render_and_backprop(surfels, colors=colors)
    assert bool(out.visible[0].all())
    assert_finite_gradients(colors, *surfels.values())


def test_reference_culls_at_the_same_colour_limit():
    surfels = {name: value.detach() for name, value in two_surfels().items()}
    surfels["means"] = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]])
    for value, drawn in ((LIMIT * 0.99, True), (LIMIT * 1.01, False), (3e38, False)):
        colors = torch.tensor([[0.2, 0.5, 0.9], [value, 0.5, 0.5]])
        args = dict(viewmats=gsplat_lib.look_at((0.0, 0.0, -3.0))[None], Ks=K, width=WIDTH, height=HEIGHT)
        ours = rasterize_surfels(**surfels, colors=colors, **args)
        reference = rasterize_surfels_reference(**surfels, colors=colors, **args)
        assert bool(ours.visible[0, 1]) == drawn == bool(reference["visible"][0, 1])


@pytest.mark.parametrize("value", [3e38, 1e19])
def test_huge_sh_coefficients_are_culled_with_finite_gradients(value):
    surfels = two_surfels()
    surfels["means"] = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]], requires_grad=True)
    sh = torch.rand(2, 9, 3, generator=torch.Generator().manual_seed(1)) * 0.2
    sh[1, 4, 0] = value
    sh.requires_grad_(True)
    out = render_and_backprop(surfels, sh=sh, sh_degree=2)
    assert bool(out.visible[0, 0]) and not bool(out.visible[0, 1])
    assert_finite_gradients(sh, *surfels.values())
    assert float(sh.grad[1].abs().sum()) == 0.0


def test_bad_coefficients_above_the_evaluated_degree_do_not_matter():
    surfels = two_surfels()
    sh = torch.rand(2, 16, 3, generator=torch.Generator().manual_seed(2)) * 0.2
    sh[1, 9:] = math.nan  # degree 3 only: not evaluated at degree 1
    sh.requires_grad_(True)
    out = render_and_backprop(surfels, sh=sh, sh_degree=1)
    assert bool(out.visible[0].all())
    assert_finite_gradients(sh, *surfels.values())


def test_singular_view_rotation_with_sh_gives_finite_gradients():
    surfels = two_surfels()
    viewmats = gsplat_lib.look_at((0.0, 0.0, -3.0))[None].clone()
    viewmats[0, :3, :3] = 0.0  # finite, so accepted: every mean lands on one camera point
    sh = torch.rand(2, 4, 3, generator=torch.Generator().manual_seed(3), requires_grad=True)
    render_and_backprop(surfels, viewmats=viewmats, sh=sh, sh_degree=1)
    assert_finite_gradients(sh, *surfels.values())


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_backgrounds_are_refused(bad):
    surfels = two_surfels()
    backgrounds = torch.tensor([[0.0, bad, 0.0]])
    with pytest.raises(ValueError, match="backgrounds contains NaN or Inf"):
        rasterize_surfels(**surfels, colors=torch.rand(2, 3), viewmats=gsplat_lib.look_at((0.0, 0.0, -3.0))[None],
                          Ks=K, width=WIDTH, height=HEIGHT, backgrounds=backgrounds)


def test_huge_finite_backgrounds_are_refused_and_the_largest_kept_one_gives_finite_gradients():
    # A background near float32's maximum kept the image finite but overflowed dL/dT (fuzz
    # rasterize 3000178, 3000280).
    surfels = two_surfels()
    limit = 3.4028235e38 / gsplat_lib._backend.core().COLOR_CULL_SCALE
    with pytest.raises(ValueError, match="backgrounds holds values beyond"):
        rasterize_surfels(**surfels, colors=torch.rand(2, 3), viewmats=gsplat_lib.look_at((0.0, 0.0, -3.0))[None],
                          Ks=K, width=WIDTH, height=HEIGHT, backgrounds=torch.tensor([[0.0, 3e38, 0.0]]))
    backgrounds = torch.tensor([[0.0, limit * 0.999, -limit * 0.999]], requires_grad=True)
    out = render_and_backprop(surfels, colors=torch.rand(2, 3), backgrounds=backgrounds)
    assert bool(out.visible[0].all())
    assert_finite_gradients(backgrounds, *surfels.values())
