"""The compiled core's boundary: every field of a pass is named, typed and sized where the
pointers cross (csrc/bindings/fields.h), and the constants Python sizes buffers with come from it."""

from __future__ import annotations

import pytest
import torch

from gsplat_lib import _backend
from gsplat_lib.ops.adam import torch_fuses_multiply_add
from gsplat_lib.ops.rasterize import raster_settings
from gsplat_lib.reference.tsdf import integrate_reference


def project_fields(tensors):
    """Valid fields of the projection pass for 2 cameras x 3 surfels; the tensors stay in
    ``tensors`` (the fields hold only their addresses)."""
    C, N, D = 2, 3, 3
    settings = raster_settings(C, N, D, 24, 16, 0.1, 10.0, torch.device("cpu"))
    viewmats = torch.eye(4).expand(C, 4, 4).clone()
    viewmats[:, 2, 3] = 3.0  # the surfels 3 units ahead of both cameras
    Ks = torch.tensor([[20.0, 0.0, 12.0], [0.0, 20.0, 8.0], [0.0, 0.0, 1.0]]).expand(C, 3, 3).clone()
    tensors.update(
        means=torch.rand(N, 3) - 0.5, quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]] * N), scales=torch.full((N, 2), 0.1),
        opacities=torch.full((N,), 0.5), colors=torch.rand(C, N, D), viewmats=viewmats, Ks=Ks, camera_items=None,
        item_surfels=None, M=torch.empty(C, N, 9), normals=torch.empty(C, N, 3), means2d=torch.empty(C, N, 2),
        depths=torch.empty(C, N), radii=torch.empty(C, N, 2, dtype=torch.int32),
        pixel_rects=torch.empty(C, N, 4, dtype=torch.int32), tile_counts=None,
        pair_ends=torch.empty(C * N, dtype=torch.int64))
    return dict(settings, **{name: _backend.buffer(t) for name, t in tensors.items()})


def test_valid_fields_run():
    tensors = {}
    _backend.launch("rasterize_project", torch.device("cpu"), project_fields(tensors))
    assert torch.equal(tensors["depths"], 3.0 + tensors["means"][:, 2].expand(2, 3))
    assert int(tensors["pair_ends"][-1]) > 0  # the surfels cover tiles


def wrong_fields(op, make_fields, cases):
    """Parameters of test_a_wrong_field_is_an_error_naming_it: each (change, message) of a pass
    whose valid fields ``make_fields`` builds."""
    return [pytest.param(op, make_fields, change, message, id=f"{op}-{i}") for i, (change, message) in enumerate(cases)]


PROJECT_WRONG_FIELDS = wrong_fields("rasterize_project", project_fields, [
    (lambda f: f.pop("M"), "missing field 'M'"),
    (lambda f: f.pop("num_pairs"), "missing field 'num_pairs'"),
    (lambda f: f.update(normal=f.pop("normals")), "unknown field 'normal'"),
    (lambda f: f.update(M=(f["M"][0], f["M"][1] - 9, f["M"][2])), r"M \[I, 9\] must have 54 elements, got 45"),
    (lambda f: f.update(pair_ends=f["pair_ends"][:2] + ("f",)), "pair_ends: dtype code 'f', expected 'l'"),
    (lambda f: f.update(means2d=None), r"means2d \[I, 2\] is required"),
    (lambda f: f.update(num_surfels=4), r"means \[N, 3\] must have 12 elements, got 9"),
])


# A bounded TSDF grid (csrc/core/tsdf.h, Grid), field by field: 2 cm voxels, a 10 cm band.
TSDF_GRID = dict(voxel_size=0.02, truncation=0.1, contracted=0, center_x=0.0, center_y=0.0, center_z=0.0,
                 radius=1.0, contracted_limit=1.9)


def tsdf_integrate_fields(tensors):
    """Valid fields of TSDF integration: 2 views of 4x3 pixels, looking down +z from the
    origin at a wall 10 cm away, fused into 2 blocks."""
    C, H, W, B = 2, 3, 4, 2
    tensors.update(
        viewmats=torch.eye(4).repeat(C, 1, 1), Ks=torch.tensor([[4.0, 0, 2], [0, 4.0, 1.5], [0, 0, 1]]).repeat(C, 1, 1),
        depths=torch.full((C, H, W), 0.1), block_coords=torch.tensor([[0, 0, 0], [-1, -1, 0]], dtype=torch.int32),
        tsdf=torch.ones(B, 512), weight=torch.zeros(B, 512), color=torch.zeros(B, 512, 3),
        colors=torch.rand(C, H, W, 3))
    return dict(TSDF_GRID, num_views=C, width=W, height=H, num_blocks=B, cpu_lanes=0,
                **{name: _backend.buffer(t) for name, t in tensors.items()})


def tsdf_extract_count_fields(tensors):
    """Valid fields of marching cubes' count pass: one block, alone, cut by the plane z = 3.5 voxels."""
    z = torch.arange(512) // 64
    tensors.update(
        block_coords=torch.zeros(1, 3, dtype=torch.int32), neighbours=torch.tensor([[0] + [-1] * 7], dtype=torch.int32),
        tsdf=((z - 3.5) / 4).float()[None], weight=torch.ones(1, 512),
        edge_masks=torch.empty(1, 512, dtype=torch.uint8), triangle_counts=torch.empty(1, 512, dtype=torch.int32))
    return dict(TSDF_GRID, num_blocks=1, min_weight=0.0, **{name: _backend.buffer(t) for name, t in tensors.items()})


def test_valid_tsdf_fields_run():
    tensors = {}
    _backend.launch("tsdf_integrate", torch.device("cpu"), tsdf_integrate_fields(tensors))
    fused = integrate_reference(
        tensors["block_coords"], torch.ones(2, 512), torch.zeros(2, 512), torch.zeros(2, 512, 3), tensors["viewmats"],
        tensors["Ks"], tensors["depths"], tensors["colors"], tuple(TSDF_GRID.values()))
    assert bool((tensors["weight"] == 2).any(dim=1).all())  # both views reach both blocks
    assert torch.equal(tensors["weight"], fused[1])
    torch.testing.assert_close(tensors["tsdf"], fused[0], rtol=0, atol=2e-6)

    tensors = {}
    _backend.launch("tsdf_extract_count", torch.device("cpu"), tsdf_extract_count_fields(tensors))
    crossed_z = torch.zeros(8, 8, 8, dtype=torch.uint8)
    crossed_z[3] = 4  # bit 2: the voxel's +z edge crosses the surface
    assert torch.equal(tensors["edge_masks"].view(8, 8, 8), crossed_z)
    assert int(tensors["triangle_counts"].sum()) == 2 * 7 * 7  # cubes reaching x or y = 8 need a neighbour


TSDF_WRONG_FIELDS = wrong_fields("tsdf_integrate", tsdf_integrate_fields, [
    (lambda f: f.pop("center_y"), "tsdf integrate: missing field 'center_y'"),
    (lambda f: f.update(truncaton=f.pop("truncation")), "unknown field 'truncaton'"),
    (lambda f: f.update(tsdf=(f["tsdf"][0], 1000, "f")), r"tsdf \[B, 512\] must have 1024 elements, got 1000"),
    (lambda f: f.update(num_blocks=3), r"block_coords \[B, 3\] must have 9 elements, got 6"),
    (lambda f: f.update(width=5), r"depths \[C, H, W\] must have 30 elements, got 24"),
    (lambda f: f.update(block_coords=f["block_coords"][:2] + ("l",)), "block_coords: dtype code 'l', expected 'i'"),
    (lambda f: f.update(depths=None), r"depths \[C, H, W\] is required"),
    (lambda f: f.update(voxel_size=0.0), "voxel_size and truncation must be > 0"),
    (lambda f: f.update(cpu_lanes=3), "cpu_lanes must be 0"),
]) + wrong_fields("tsdf_extract_count", tsdf_extract_count_fields, [
    (lambda f: f.update(edge_masks=f["edge_masks"][:2] + ("b",)), "edge_masks: dtype code 'b', expected 'B'"),
    (lambda f: f.update(min_weigth=f.pop("min_weight")), "unknown field 'min_weigth'"),
    (lambda f: f.update(neighbours=(f["neighbours"][0], 1, "i")), r"neighbours \[B, 8\] must have 8 elements, got 1"),
    (lambda f: f.update(triangle_counts=None), r"triangle_counts \[B, 512\] is required"),
])


def test_marching_cubes_fill_runs_on_its_counts_and_refuses_a_short_output():
    tensors = {}
    fields = tsdf_extract_count_fields(tensors)
    _backend.launch("tsdf_extract_count", torch.device("cpu"), fields)
    vertex_counts = (tensors["edge_masks"] != 0).to(torch.int64)  # one crossed edge per voxel here
    num_vertices, num_triangles = int(vertex_counts.sum()), int(tensors["triangle_counts"].sum())

    def fill_fields(vertex_rows):
        triangle_counts = tensors["triangle_counts"].to(torch.int64)
        outputs = dict(
            color=None, vertex_offsets=torch.cumsum(vertex_counts, 1) - vertex_counts,
            triangle_offsets=torch.cumsum(triangle_counts, 1) - triangle_counts, vertices=torch.empty(vertex_rows, 3),
            vertex_colors=None, triangles=torch.empty(num_triangles, 3, dtype=torch.int64))
        tensors.update(outputs)
        return dict(fields, num_vertices=num_vertices, num_triangles=num_triangles,
                    **{name: _backend.buffer(t) for name, t in outputs.items()})

    _backend.launch("tsdf_extract_fill", torch.device("cpu"), fill_fields(num_vertices))
    assert torch.equal(tensors["vertices"][:, 2], torch.full((64,), 3.5 * 0.02))
    assert int(tensors["triangles"].max()) < num_vertices
    with pytest.raises(ValueError, match=r"tsdf extract_fill: vertices \[V, 3\] must have 192 elements, got 189"):
        _backend.launch("tsdf_extract_fill", torch.device("cpu"), fill_fields(num_vertices - 1))


ADAM_MOMENTS_PASS = 1
# lerp weight 1 - beta1, beta2, 1 - beta2, sqrt(1 - beta2^1), eps, -lr / (1 - beta1^1)
ADAM_COEFFICIENTS = dict(lerp_weight=0.1, beta2=0.999, one_minus_beta2=0.001, bias_correction2_sqrt=0.001**0.5,
                         eps=1e-15, neg_step_size=-0.01)


def adam_fields(tensors):
    """Valid fields of the Adam moments pass over two tensors, [4, 3] and [5] (rows of 1 float);
    ``tensors[i]`` gets the tensors of entry i."""
    generator = torch.Generator().manual_seed(0)
    for i, shape in enumerate(((4, 3), (5,))):
        tensors[i] = dict(
            param=torch.zeros(shape), grad=torch.randn(shape, generator=generator),
            exp_avg=torch.randn(shape, generator=generator), exp_avg_sq=torch.rand(shape, generator=generator),
            visible_rows=None, exp_avg_sq_sqrt=None)
    return {"pass": ADAM_MOMENTS_PASS, "fused_multiply_add": torch_fuses_multiply_add(), "tensors": [
        dict(ADAM_COEFFICIENTS, num_rows=t["param"].shape[0], row_floats=t["param"][0].numel(),
             **{name: _backend.buffer(value) for name, value in t.items()}) for t in tensors.values()]}


def test_valid_adam_fields_run():
    tensors = {}
    fields = adam_fields(tensors)
    expected = [  # torch.optim.Adam's moments
        (t["exp_avg"].lerp(t["grad"], 0.1), t["exp_avg_sq"].mul(0.999).addcmul(t["grad"], t["grad"], value=0.001))
        for t in tensors.values()]
    _backend.launch("adam_step", torch.device("cpu"), fields)
    for t, (exp_avg, exp_avg_sq) in zip(tensors.values(), expected):
        assert torch.equal(t["exp_avg"], exp_avg) and torch.equal(t["exp_avg_sq"], exp_avg_sq)


ADAM_WRONG_FIELDS = wrong_fields("adam_step", adam_fields, [
    (lambda f: f.pop("pass"), "adam_step: missing field 'pass'"),
    (lambda f: f.update(tensors=tuple(f["tensors"])), "tensors must be a list of fields dicts"),
    (lambda f: f.update({"pass": 3}), r"pass must be 0 \(full\), 1 \(moments\) or 2 \(parameters\), got 3"),
    (lambda f: f.update({"pass": 2}), r"exp_avg_sq_sqrt \[R, F\] is required by the parameters pass \(tensors\[0\]\)"),
    (lambda f: f["tensors"][1].pop("eps"), r"adam_step tensor: missing field 'eps' \(tensors\[1\]\)"),
    (lambda f: f["tensors"][0].update(exp_avgsq=f["tensors"][0].pop("exp_avg_sq")), "unknown field 'exp_avgsq'"),
    (lambda f: f["tensors"][0].update(row_floats=2), r"param \[R, F\] must have 8 elements, got 12 \(tensors\[0\]\)"),
    (lambda f: f["tensors"][1].update(grad=None), r"grad \[R, F\] is required, got None \(tensors\[1\]\)"),
    (lambda f: f["tensors"][1].update(visible_rows=f["tensors"][1]["grad"]), "visible_rows: dtype code 'f', expected"),
    (lambda f: f["tensors"][0].update(num_rows=-4, row_floats=-3), "num_rows and row_floats must be >= 0, got -4 and"),
])


@pytest.mark.parametrize("op,make_fields,change,message", PROJECT_WRONG_FIELDS + TSDF_WRONG_FIELDS + ADAM_WRONG_FIELDS)
def test_a_wrong_field_is_an_error_naming_it(op, make_fields, change, message):
    fields = make_fields({})
    change(fields)
    with pytest.raises(ValueError, match=message):
        _backend.launch(op, torch.device("cpu"), fields)


def test_buffers_are_described_by_address_count_and_dtype():
    values = torch.zeros(3, 4, dtype=torch.int32)
    assert _backend.buffer(values) == (values.data_ptr(), 12, "i")
    assert _backend.buffer(torch.zeros(2, dtype=torch.uint8))[1:] == (2, "B")
    assert _backend.buffer(torch.zeros(0, 3)) == (0, 0, "f")
    assert _backend.buffer(None) is None


def test_shared_constants_come_from_the_core():
    core = _backend.core()
    assert core.TILE_SIZE == 16 and core.CPU_TILE_WIDTH % core.TILE_SIZE == 0
    assert core.PAIR_GRAD_COLOR == 15  # dL/dM (9), opacity, normal (3), |screen gradient| (2)
    assert core.KNN_MAX_POINTS == 2**31 - 2
