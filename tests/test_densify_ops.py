"""CPU tests of the densification kernels against plain PyTorch references (bit-exact)."""

from __future__ import annotations

import pytest
import torch

from gsplat_lib.ops.densify import accumulate_screen_stats, densify_plan, remap_rows

ROW_SHAPES = [(), (3,), (2,), (4,), (1,), (1, 3), (15, 3), (0, 3)]


def reference_remap(tensors, source, zero_new, is_new, overrides, override_rows):
    """Index, then zero the new rows of zero_new tensors, then write the overrides."""
    outputs = []
    for i, t in enumerate(tensors):
        out = t[source].clone()
        if is_new is not None and zero_new[i]:
            out[is_new] = 0.0
        if i in overrides:
            out[override_rows] = overrides[i][override_rows]
        outputs.append(out)
    return outputs


def random_case(generator, num_inputs, num_rows, row_shapes=ROW_SHAPES):
    tensors = [torch.randn((num_inputs, *shape), generator=generator) for shape in row_shapes]
    source = torch.randint(0, max(num_inputs, 1), (num_rows,), generator=generator)
    is_new = torch.rand(num_rows, generator=generator) < 0.3
    zero_new = [bool(i % 2) for i in range(len(tensors))]
    return tensors, source, zero_new, is_new


def test_remap_rows_matches_reference_on_mixed_row_shapes():
    generator = torch.Generator().manual_seed(0)
    tensors, source, zero_new, is_new = random_case(generator, 1000, 1500)
    overrides = {1: torch.randn(1500, 3, generator=generator), 6: torch.randn(1500, 15, 3, generator=generator)}
    outputs = remap_rows(tensors, source, zero_new, is_new, overrides)
    expected = reference_remap(tensors, source, zero_new, is_new, overrides, is_new)
    assert len(outputs) == len(tensors)
    for out, want in zip(outputs, expected):
        assert out.shape == want.shape
        assert torch.equal(out, want)


def test_remap_rows_runs_of_consecutive_sources_and_override_rows():
    # Long runs of consecutive sources (the memcpy path) mixed with repeats and gaps.
    generator = torch.Generator().manual_seed(1)
    tensors = [torch.randn(5000, 3, generator=generator), torch.randn(5000, generator=generator)]
    keep = torch.rand(5000, generator=generator) > 0.05
    source = torch.cat([torch.nonzero(keep).squeeze(1), torch.arange(100, 400), torch.arange(7, 9).repeat(50)])
    is_new = torch.arange(source.shape[0]) >= int(keep.sum())
    override_rows = torch.zeros_like(is_new)
    override_rows[-100:] = True
    overrides = {0: torch.randn(source.shape[0], 3, generator=generator)}
    outputs = remap_rows(tensors, source, [False, True], is_new, overrides, override_rows)
    expected = reference_remap(tensors, source, [False, True], is_new, overrides, override_rows)
    for out, want in zip(outputs, expected):
        assert torch.equal(out, want)


def test_remap_rows_without_is_new_is_a_plain_gather():
    generator = torch.Generator().manual_seed(2)
    tensors, source, _, _ = random_case(generator, 50, 80)
    for out, t in zip(remap_rows(tensors, source), tensors):
        assert torch.equal(out, t[source])


def test_remap_rows_override_wins_over_zero_new():
    tensors = [torch.arange(6.0).reshape(3, 2)]
    source = torch.tensor([2, 0])
    is_new = torch.tensor([True, True])
    override_rows = torch.tensor([False, True])
    values = torch.full((2, 2), 9.0)
    (out,) = remap_rows(tensors, source, [True], is_new, {0: values}, override_rows)
    assert torch.equal(out, torch.tensor([[0.0, 0.0], [9.0, 9.0]]))


def test_remap_rows_outputs_are_fresh_and_do_not_require_grad():
    param = torch.nn.Parameter(torch.randn(4, 3))
    (out,) = remap_rows([param], torch.tensor([3, 3, 1]))
    assert not out.requires_grad
    assert torch.equal(out, param.detach()[[3, 3, 1]])
    out.zero_()
    assert param.abs().sum() > 0


@pytest.mark.parametrize("num_inputs, num_rows", [(0, 0), (20, 0), (1, 5)])
def test_remap_rows_empty_shapes(num_inputs, num_rows):
    generator = torch.Generator().manual_seed(3)
    tensors, source, zero_new, is_new = random_case(generator, num_inputs, num_rows)
    outputs = remap_rows(tensors, source, zero_new, is_new)
    for out, want in zip(outputs, reference_remap(tensors, source, zero_new, is_new, {}, is_new)):
        assert out.shape == want.shape
        assert torch.equal(out, want)


def test_remap_rows_no_tensors():
    assert remap_rows([], torch.tensor([0, 1])) == []


@pytest.mark.parametrize("bad", [-1, 10])
def test_remap_rows_source_out_of_range_names_the_first_bad_index(bad):
    source = torch.tensor([0, 3, bad, 9, bad])
    with pytest.raises(ValueError, match=rf"source\[2\] = {bad}"):
        remap_rows([torch.zeros(10, 3)], source)


def test_remap_rows_rejects_rows_from_an_empty_input():
    with pytest.raises(ValueError, match="source must be empty"):
        remap_rows([torch.zeros(0, 3)], torch.tensor([0]))


def test_remap_rows_argument_errors_name_the_argument():
    ok = [torch.zeros(4, 3), torch.zeros(4)]
    source = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"tensors\[1\] must have 4 rows"):
        remap_rows([torch.zeros(4, 3), torch.zeros(5)], source)
    with pytest.raises(TypeError, match=r"tensors\[1\] must have dtype torch.float32, torch.int32 or torch.int64"):
        remap_rows([torch.zeros(4, 3), torch.zeros(4, dtype=torch.float64)], source)
    with pytest.raises(TypeError, match=r"overrides\[1\] must have dtype torch.int64 like the tensor it replaces"):
        remap_rows([torch.zeros(4, 3), torch.zeros(4, dtype=torch.int64)], source, is_new=torch.tensor([False, True]),
                   overrides={1: torch.zeros(2)})
    with pytest.raises(ValueError, match=r"tensors\[0\] must be contiguous"):
        remap_rows([torch.zeros(3, 4).t()], source)
    with pytest.raises(ValueError, match=r"tensors\[0\] must be on cpu"):
        remap_rows([torch.zeros(4, 3, device="meta")], source)
    with pytest.raises(ValueError, match=r"tensors\[0\] must have a row dimension"):
        remap_rows([torch.tensor(1.0)], source)
    with pytest.raises(TypeError, match="tensors must be a sequence"):
        remap_rows(torch.zeros(4, 3), source)
    with pytest.raises(TypeError, match="source must have dtype torch.int64"):
        remap_rows(ok, source.int())
    with pytest.raises(ValueError, match=r"source must have shape \[M\]"):
        remap_rows(ok, source[None])
    with pytest.raises(ValueError, match="zero_new must have one entry per tensor"):
        remap_rows(ok, source, [True])
    with pytest.raises(TypeError, match=r"zero_new\[1\] must be a bool"):
        remap_rows(ok, source, [True, 1])
    with pytest.raises(ValueError, match=r"is_new must have shape \[2\]"):
        remap_rows(ok, source, is_new=torch.zeros(3, dtype=torch.bool))
    with pytest.raises(TypeError, match="is_new must have dtype torch.bool"):
        remap_rows(ok, source, is_new=torch.zeros(2))
    with pytest.raises(ValueError, match=r"override_rows must be on cpu"):
        remap_rows(ok, source, override_rows=torch.zeros(2, dtype=torch.bool, device="meta"))
    is_new = torch.tensor([False, True])
    with pytest.raises(ValueError, match=r"overrides\[0\] must have shape \[2, 3\]"):
        remap_rows(ok, source, is_new=is_new, overrides={0: torch.zeros(4, 3)})
    with pytest.raises(ValueError, match="overrides keys must be tensor indices"):
        remap_rows(ok, source, is_new=is_new, overrides={2: torch.zeros(2)})
    with pytest.raises(ValueError, match="overrides need is_new or override_rows"):
        remap_rows(ok, source, overrides={1: torch.zeros(2)})


def test_remap_rows_is_thread_count_independent():
    generator = torch.Generator().manual_seed(4)
    tensors, source, zero_new, is_new = random_case(generator, 20000, 30000)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = remap_rows(tensors, source, zero_new, is_new)
        torch.set_num_threads(2)
        multi = remap_rows(tensors, source, zero_new, is_new)
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(single, multi):
        assert torch.equal(a, b)


def test_remap_rows_moves_integer_rows_as_they_are():
    generator = torch.Generator().manual_seed(9)
    ids64 = torch.randint(-2**62, 2**62, (50,), generator=generator)
    ids32 = torch.randint(-2**31, 2**31 - 1, (50, 3), generator=generator, dtype=torch.int32)
    floats = torch.randn(50, 2, generator=generator)
    source = torch.randint(0, 50, (80,), generator=generator)
    is_new = torch.rand(80, generator=generator) < 0.3
    override = torch.randint(0, 9, (80,), generator=generator)
    out64, out32, out_floats = remap_rows([ids64, ids32, floats], source, [False, True, True], is_new,
                                          {0: override})
    assert out64.dtype == torch.int64 and out32.dtype == torch.int32
    assert torch.equal(out64, torch.where(is_new, override, ids64[source]))
    assert torch.equal(out32, torch.where(is_new[:, None], 0, ids32[source]))
    assert torch.equal(out_floats, torch.where(is_new[:, None], 0.0, floats[source]))


def test_scene_ids_of_a_packed_model_follow_clones_splits_and_prunes():
    # One densify step of three scenes packed together: the rows of each scene in the result are
    # the rows of that scene densified alone, in the same order, scene ids and all.
    generator = torch.Generator().manual_seed(10)
    n = 600
    scene_ids = torch.randint(0, 3, (n,), generator=generator)
    means, moment = torch.randn(n, 3, generator=generator), torch.rand(n, 3, generator=generator)
    keep = torch.rand(n, generator=generator) > 0.1
    choice = torch.rand(n, generator=generator)
    clone, split = choice < 0.1, choice > 0.9
    plan = densify_plan(keep, clone, split)
    new_ids, new_means, new_moment = remap_rows([scene_ids, means, moment], plan.source, [False, False, True],
                                                plan.is_new)
    for s in range(3):
        rows = scene_ids == s
        alone = densify_plan(keep[rows], clone[rows], split[rows])
        alone_means, alone_moment = remap_rows([means[rows], moment[rows]], alone.source, [False, True],
                                               alone.is_new)
        mine = new_ids == s
        assert torch.equal(new_means[mine], alone_means) and torch.equal(new_moment[mine], alone_moment), s
        assert torch.equal(plan.is_split_child[mine], alone.is_split_child), s


def test_densify_plan_order_and_counts():
    keep = torch.tensor([True, True, False, True, True, True, False])
    clone = torch.tensor([True, False, True, False, True, False, False])
    split = torch.tensor([False, True, False, False, True, True, True])
    plan = densify_plan(keep, clone, split)
    # Survivors 0, 3 (rows 1, 4, 5 split, 2 and 6 pruned); clones 0, 4; children of 1, 4, 5 twice.
    assert plan.source.tolist() == [0, 3, 0, 4, 1, 4, 5, 1, 4, 5]
    assert plan.source.dtype == torch.int64
    assert plan.is_new.tolist() == [False, False] + [True] * 8
    assert plan.is_split_child.tolist() == [False] * 4 + [True] * 6
    assert (plan.num_survivors, plan.num_clones, plan.num_split_children) == (2, 2, 6)


def test_densify_plan_with_remap_equals_the_trainers_torch_way():
    generator = torch.Generator().manual_seed(5)
    n = 2000
    keep = torch.rand(n, generator=generator) > 0.05
    choice = torch.rand(n, generator=generator)
    clone, split = choice < 0.05, choice > 0.95
    means, moment = torch.randn(n, 3, generator=generator), torch.rand(n, 3, generator=generator)
    plan = densify_plan(keep, clone, split, n_split_children=3)
    children = means[keep & split].repeat(3, 1) + 1.0
    override = torch.empty(plan.source.shape[0], 3)
    override[plan.is_split_child] = children
    new_means, new_moment = remap_rows(
        [means, moment], plan.source, [False, True], plan.is_new, {0: override}, plan.is_split_child
    )
    survivors = keep & ~split
    assert torch.equal(new_means, torch.cat([means[survivors], means[keep & clone], children]))
    zeros = torch.zeros(int((keep & clone).sum()) + children.shape[0], 3)
    assert torch.equal(new_moment, torch.cat([moment[survivors], zeros]))


def test_densify_plan_everything_pruned_and_empty():
    n = 5
    nothing, everything = torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)
    plan = densify_plan(nothing, everything, everything)
    assert plan.source.shape == (0,) and plan.is_new.shape == (0,)
    assert remap_rows([torch.randn(n, 3)], plan.source, [True], plan.is_new)[0].shape == (0, 3)
    empty = torch.zeros(0, dtype=torch.bool)
    assert densify_plan(empty, empty, empty).source.shape == (0,)


def test_densify_plan_argument_errors():
    mask = torch.zeros(4, dtype=torch.bool)
    with pytest.raises(TypeError, match="keep must have dtype torch.bool"):
        densify_plan(mask.float(), mask, mask)
    with pytest.raises(ValueError, match=r"clone must have shape \[4\]"):
        densify_plan(mask, mask[:3], mask)
    with pytest.raises(ValueError, match="split must be on cpu"):
        densify_plan(mask, mask, mask.to("meta"))
    with pytest.raises(ValueError, match="n_split_children must be at least 1"):
        densify_plan(mask, mask, mask, 0)
    with pytest.raises(TypeError, match="n_split_children must be an int"):
        densify_plan(mask, mask, mask, 2.0)


def ieee_sqrt(x):
    """Correctly rounded float32 sqrt, like C++ and CUDA: torch's vectorised CPU sqrt is not
    always (it can be 1 ulp off); sqrt in float64 rounded to float32 is exact."""
    return x.double().sqrt().float()


def reference_stats(grad_acc, absgrad_acc, count, max_radii, screen_grad, screen_absgrad, radii, width, height):
    """Plain torch, camera by camera, in the documented order."""
    scale = torch.tensor([width / 2.0, height / 2.0])
    grad_acc, absgrad_acc, count, max_radii = (t.clone() for t in (grad_acc, absgrad_acc, count, max_radii))
    for c in range(radii.shape[0]):
        visible = (radii[c] > 0).any(dim=-1)
        g = screen_grad[c] * scale
        a = screen_absgrad[c] * scale
        grad_acc[visible] += ieee_sqrt(g[:, 0] * g[:, 0] + g[:, 1] * g[:, 1])[visible]
        absgrad_acc[visible] += ieee_sqrt(a[:, 0] * a[:, 0] + a[:, 1] * a[:, 1])[visible]
        count[visible] += 1
        largest = radii[c].max(dim=-1).values.float()
        max_radii[visible] = torch.maximum(max_radii[visible], largest[visible])
    return grad_acc, absgrad_acc, count, max_radii


def random_stats_case(generator, num_cameras, num_surfels):
    accumulators = (
        torch.rand(num_surfels, generator=generator),
        torch.rand(num_surfels, generator=generator),
        torch.randint(0, 5, (num_surfels,), generator=generator, dtype=torch.int32),
        torch.rand(num_surfels, generator=generator) * 10,
    )
    screen_grad = torch.randn(num_cameras, num_surfels, 2, generator=generator) * 1e-4
    screen_absgrad = screen_grad.abs() * 2
    radii = torch.randint(0, 30, (num_cameras, num_surfels, 2), generator=generator, dtype=torch.int32)
    culled = torch.rand(num_cameras, num_surfels, generator=generator) < 0.4
    radii[culled] = 0
    return accumulators, screen_grad, screen_absgrad, radii


@pytest.mark.parametrize("num_cameras, num_surfels", [(4, 3000), (1, 17), (0, 10), (3, 0)])
def test_accumulate_screen_stats_matches_reference(num_cameras, num_surfels):
    generator = torch.Generator().manual_seed(6)
    accumulators, screen_grad, screen_absgrad, radii = random_stats_case(generator, num_cameras, num_surfels)
    expected = reference_stats(*accumulators, screen_grad, screen_absgrad, radii, 801, 600)
    accumulate_screen_stats(*accumulators, screen_grad, screen_absgrad, radii, 801, 600)
    for got, want in zip(accumulators, expected):
        assert got.dtype == want.dtype
        assert torch.equal(got, want)


def test_accumulate_screen_stats_culled_cameras_change_nothing():
    accumulators = (torch.ones(3), torch.ones(3), torch.ones(3, dtype=torch.int32), torch.ones(3))
    screen_grad = torch.ones(2, 3, 2)
    culled = torch.zeros(2, 3, 2, dtype=torch.int32)
    accumulate_screen_stats(*accumulators, screen_grad, screen_grad, culled, 64, 48)
    for got in accumulators:
        assert torch.equal(got, torch.ones_like(got))


def test_accumulate_screen_stats_is_thread_count_independent():
    generator = torch.Generator().manual_seed(7)
    accumulators, screen_grad, screen_absgrad, radii = random_stats_case(generator, 4, 100000)
    results = []
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            copies = [t.clone() for t in accumulators]
            accumulate_screen_stats(*copies, screen_grad, screen_absgrad, radii, 640, 480)
            results.append(copies)
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_accumulate_screen_stats_argument_errors():
    n = 4

    def acc():
        return torch.zeros(n)

    count = torch.zeros(n, dtype=torch.int32)
    grads = torch.zeros(2, n, 2)
    radii = torch.zeros(2, n, 2, dtype=torch.int32)
    with pytest.raises(TypeError, match="count must have dtype torch.int32"):
        accumulate_screen_stats(acc(), acc(), count.float(), acc(), grads, grads, radii, 8, 8)
    with pytest.raises(ValueError, match="max_radii must have shape"):
        accumulate_screen_stats(acc(), acc(), count, torch.zeros(n + 1), grads, grads, radii, 8, 8)
    with pytest.raises(ValueError, match="screen_absgrad must have shape"):
        accumulate_screen_stats(acc(), acc(), count, acc(), grads, grads[:1], radii, 8, 8)
    with pytest.raises(TypeError, match="radii must have dtype torch.int32"):
        accumulate_screen_stats(acc(), acc(), count, acc(), grads, grads, radii.float(), 8, 8)
    with pytest.raises(ValueError, match="screen_grad must be on cpu"):
        accumulate_screen_stats(acc(), acc(), count, acc(), grads.to("meta"), grads, radii, 8, 8)
    with pytest.raises(ValueError, match="grad_acc must be contiguous"):
        accumulate_screen_stats(torch.zeros(n, 2)[:, 0], acc(), count, acc(), grads, grads, radii, 8, 8)
    with pytest.raises(ValueError, match="width must be positive"):
        accumulate_screen_stats(acc(), acc(), count, acc(), grads, grads, radii, 0, 8)
    with pytest.raises(TypeError, match="height must be an int"):
        accumulate_screen_stats(acc(), acc(), count, acc(), grads, grads, radii, 8, 8.0)


def packed_stats_case(generator, num_items, num_surfels):
    """Packed items in any order and the same items laid out per 'camera' for reference_stats:
    slot (r, n) holds surfel n's r-th item (in item order), unused slots are culled."""
    accumulators, screen_grad, screen_absgrad, radii = random_stats_case(generator, 1, num_items)
    screen_grad, screen_absgrad, radii = screen_grad[0], screen_absgrad[0], radii[0]
    accumulators = tuple(a[:num_surfels].clone() for a in random_stats_case(generator, 0, num_surfels)[0])
    item_surfels = torch.randint(0, num_surfels, (num_items,), generator=generator)
    rank = torch.zeros(num_items, dtype=torch.int64)
    seen = {}
    for i, n in enumerate(item_surfels.tolist()):
        rank[i] = seen.get(n, 0)
        seen[n] = rank[i] + 1
    slots = int(rank.max()) + 1 if num_items else 0
    dense = [torch.zeros(slots, num_surfels, 2, dtype=t.dtype) for t in (screen_grad, screen_absgrad, radii)]
    for d, t in zip(dense, (screen_grad, screen_absgrad, radii)):
        d[rank, item_surfels] = t
    return accumulators, (screen_grad, screen_absgrad, radii, item_surfels), dense


@pytest.mark.parametrize("num_items, num_surfels", [(5000, 700), (40, 1), (0, 5), (3, 10)])
def test_accumulate_screen_stats_of_packed_items_sums_each_surfels_items_in_order(num_items, num_surfels):
    generator = torch.Generator().manual_seed(8)
    accumulators, (grad, absgrad, radii, item_surfels), dense = packed_stats_case(generator, num_items, num_surfels)
    expected = reference_stats(*[a.clone() for a in accumulators], *dense, 128, 96)
    accumulate_screen_stats(*accumulators, grad, absgrad, radii, 128, 96, item_surfels=item_surfels)
    for got, want in zip(accumulators, expected):
        assert torch.equal(got, want)


def test_accumulate_screen_stats_of_packed_items_argument_errors():
    acc, count = torch.zeros(4), torch.zeros(4, dtype=torch.int32)
    grads, radii = torch.zeros(6, 2), torch.ones(6, 2, dtype=torch.int32)
    items = torch.tensor([0, 1, 2, 3, 3, 0])
    with pytest.raises(ValueError, match=r"item_surfels must hold surfel indices in \[0, 4\)"):
        accumulate_screen_stats(acc, acc.clone(), count, acc.clone(), grads, grads, radii, 8, 8,
                                item_surfels=items + 1)
    with pytest.raises(ValueError, match="item_surfels must have shape"):
        accumulate_screen_stats(acc, acc.clone(), count, acc.clone(), grads, grads, radii, 8, 8,
                                item_surfels=items[:5])
    with pytest.raises(TypeError, match="item_surfels must have dtype torch.int64"):
        accumulate_screen_stats(acc, acc.clone(), count, acc.clone(), grads, grads, radii, 8, 8,
                                item_surfels=items.int())
    with pytest.raises(ValueError, match="screen_grad must have shape"):  # per-camera tensors with packed items
        accumulate_screen_stats(acc, acc.clone(), count, acc.clone(), grads[None], grads, radii, 8, 8,
                                item_surfels=items)
