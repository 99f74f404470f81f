"""The compiled core's boundary: every field of a pass is named, typed and sized where the
pointers cross (csrc/bindings/fields.h), and the constants Python sizes buffers with come from it."""

from __future__ import annotations

import pytest
import torch

from gsplat_lib import _backend
from gsplat_lib.ops.rasterize import raster_settings


def reduce_fields(tensors):
    """Valid fields of the reduce pass for 2 cameras x 3 surfels with 4 pairs; the tensors stay
    in ``tensors`` (the fields hold only their addresses)."""
    C, N, D, P = 2, 3, 3, 4
    settings = raster_settings(C, N, D, 24, 16, 0.1, 10.0, torch.device("cpu"))
    settings["num_pairs"] = P
    width = _backend.core().PAIR_GRAD_COLOR + D
    tensors.update(
        record_ends=torch.tensor([1, 1, 2, 3, 3, 4], dtype=torch.int64), pair_grads=torch.rand(P, width),
        M=torch.rand(C, N, 9), v_M=torch.empty(C, N, 9), v_opacities_cn=torch.empty(C, N),
        v_normals=torch.empty(C, N, 3), v_colors=torch.empty(C, N, D), screen_grad=torch.empty(C, N, 2),
        screen_absgrad=torch.empty(C, N, 2))
    return dict(settings, **{name: _backend.buffer(t) for name, t in tensors.items()})


def test_valid_fields_run():
    tensors = {}
    _backend.launch("rasterize_reduce", torch.device("cpu"), reduce_fields(tensors))
    assert torch.equal(tensors["v_colors"][0, 0], tensors["pair_grads"][0, -3:])


@pytest.mark.parametrize("change,message", [
    (lambda f: f.pop("v_M"), "missing field 'v_M'"),
    (lambda f: f.pop("num_pairs"), "missing field 'num_pairs'"),
    (lambda f: f.update(v_opacities=f.pop("v_opacities_cn")), "unknown field 'v_opacities'"),
    (lambda f: f.update(M=(f["M"][0], f["M"][1] - 9, f["M"][2])), r"M \[I, 9\] must have 54 elements, got 45"),
    (lambda f: f.update(record_ends=f["record_ends"][:2] + ("f",)), "record_ends: dtype code 'f', expected 'l'"),
    (lambda f: f.update(screen_grad=None), r"screen_grad \[I, 2\] is required"),
    (lambda f: f.update(num_pairs=5), r"pair_grads \[R, G\] must have 90 elements, got 72"),
])
def test_a_wrong_field_is_an_error_naming_it(change, message):
    tensors = {}
    fields = reduce_fields(tensors)
    change(fields)
    with pytest.raises(ValueError, match=message):
        _backend.launch("rasterize_reduce", torch.device("cpu"), fields)


def test_buffers_are_described_by_address_count_and_dtype():
    values = torch.zeros(3, 4, dtype=torch.int32)
    assert _backend.buffer(values) == (values.data_ptr(), 12, "i")
    assert _backend.buffer(torch.zeros(0, 3)) == (0, 0, "f")
    assert _backend.buffer(None) is None


def test_shared_constants_come_from_the_core():
    core = _backend.core()
    assert core.TILE_SIZE == 16 and core.CPU_TILE_WIDTH % core.TILE_SIZE == 0
    assert core.PAIR_GRAD_COLOR == 15  # dL/dM (9), opacity, normal (3), |screen gradient| (2)
    assert core.KNN_MAX_POINTS == 2**31 - 2
