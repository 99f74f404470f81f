"""PLY files in the INRIA layout of 2DGS and 3DGS, through plyfile.

One ``vertex`` element, binary little-endian float32 properties, in this order::

    x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 f_rest_0 ... f_rest_{3(K-1)-1}
    opacity scale_0 scale_1 [scale_2] rot_0 rot_1 rot_2 rot_3

Values are the raw parameters: opacity as a logit, scales as natural logs, rotations as
unnormalised (w, x, y, z) quaternions. ``f_rest`` is channel-major like INRIA's
``rest.transpose(1, 2).flatten(1)``: all red coefficients, then green, then blue. Normals
are written as zeros (INRIA does the same).

2DGS files have two scales. With ``three_scales=True`` a third one, ``scale_2 =
log(1e-8)``, makes the file open in 3DGS viewers as flat discs. Loading accepts both: a
3DGS file's ellipsoid becomes the surfel spanned by its two largest axes (the rotation is
permuted cyclically so that the smallest axis becomes the normal), which reads a
``three_scales`` file back bit for bit.
"""

from __future__ import annotations

import math
import os
from typing import Dict, Mapping, Union

import numpy as np
import torch

from gsplat_lib.atomic_file import write_atomically
from gsplat_lib.param_schema import check_params

# plyfile is imported by the two functions that use it, so that `import gsplat_lib` works
# where it is not installed (a `pip install --no-deps` build on a machine with no registry).

__all__ = ["FLAT_SCALE", "load_ply", "save_ply"]

#: The third scale written by ``three_scales=True`` (a flat disc in 3DGS viewers).
FLAT_SCALE = 1e-8

PathLike = Union[str, os.PathLike]

# Quaternions (w, x, y, z) of the cyclic column permutations of a rotation matrix:
# R q_P has columns (R e1, R e2, R e0) for the first and (R e2, R e0, R e1) for the second.
_CYCLE_FORWARD = (0.5, 0.5, 0.5, 0.5)
_CYCLE_BACKWARD = (0.5, -0.5, -0.5, -0.5)


def _property_names(num_rest: int, three_scales: bool):
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(num_rest)]
    names += ["opacity", "scale_0", "scale_1"] + (["scale_2"] if three_scales else [])
    names += ["rot_0", "rot_1", "rot_2", "rot_3"]
    return names


def save_ply(path: PathLike, params: Mapping[str, torch.Tensor], *, three_scales: bool = False) -> None:
    """Writes surfels as an INRIA-layout PLY file, atomically.

    Args:
        path: destination file.
        params: the raw parameters of :class:`gsplat_lib.GaussianModel` (``model.params``):
            ``means`` [N, 3], ``log_scales`` [N, 2], ``quats`` [N, 4], ``opacity_logits`` [N],
            ``sh_dc`` [N, 1, 3], ``sh_rest`` [N, K-1, 3]; float32 on any device.
        three_scales: add ``scale_2 = log(FLAT_SCALE)`` so that 3DGS viewers open the file.
    """
    check_params(params)
    count = params["means"].shape[0]

    def columns(name: str) -> np.ndarray:
        value = params[name].detach().cpu()
        return (value[:, None] if value.dim() == 1 else value).numpy()

    def channel_major(name: str) -> np.ndarray:
        return params[name].detach().cpu().transpose(1, 2).flatten(1).numpy()

    blocks = [
        columns("means"),
        np.zeros((count, 3), dtype=np.float32),
        channel_major("sh_dc"),
        channel_major("sh_rest"),
        columns("opacity_logits"),
        columns("log_scales"),
    ]
    if three_scales:
        blocks.append(np.full((count, 1), math.log(FLAT_SCALE), dtype=np.float32))
    blocks.append(columns("quats"))
    table = np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32)
    names = _property_names(3 * params["sh_rest"].shape[1], three_scales)
    vertices = table.view(np.dtype([(name, "<f4") for name in names])).reshape(count)
    from plyfile import PlyData, PlyElement

    element = PlyElement.describe(vertices, "vertex")
    write_atomically(path, lambda stream: PlyData([element]).write(stream))


def load_ply(path: PathLike) -> Dict[str, torch.Tensor]:
    """Reads a 2DGS or 3DGS INRIA-layout PLY file into raw parameters (CPU, float32).

    Returns ``{"means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest"}`` with
    the shapes of :func:`save_ply`. Extra properties (normals, ...) are ignored. A file with
    three scales is read as the surfels spanned by each ellipsoid's two largest axes.

    Raises:
        FileNotFoundError: no such file.
        ValueError (naming the file and, where one is at fault, the property): not a PLY
            file, truncated, more data than the header declares, no ``vertex`` element, a
            list-typed or missing property, an ``f_rest`` count that is not 3 (K - 1) for a
            square K, or a non-finite value.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_ply: no PLY file at {path!r}")
    from plyfile import PlyData, PlyListProperty

    try:
        ply = PlyData.read(path, mmap=False)
    except Exception as error:
        raise ValueError(f"{path}: cannot be read as a PLY file (truncated or malformed): {error}") from error
    names = [element.name for element in ply.elements]
    if "vertex" not in names:
        raise ValueError(f"{path}: PLY file has no 'vertex' element (elements: {names})")
    vertex = ply["vertex"]
    lists = [prop.name for prop in vertex.properties if isinstance(prop, PlyListProperty)]
    if lists:
        raise ValueError(f"{path}: property '{lists[0]}' of the vertex element is a list; surfel properties are scalars")
    _check_nothing_after_the_data(path, ply)
    present = {prop.name for prop in vertex.properties}
    count = vertex.count
    if len(vertex.data) != count:
        raise ValueError(f"{path}: the vertex element declares {count} rows but holds {len(vertex.data)}")

    num_rest = 0
    while f"f_rest_{num_rest}" in present:
        num_rest += 1
    stray = sorted(name for name in present if name.startswith("f_rest_") and name not in
                   {f"f_rest_{i}" for i in range(num_rest)})
    if stray:
        raise ValueError(f"{path}: property {stray[0]} without the f_rest properties before it")
    sh_coefficients = num_rest // 3 + 1
    if num_rest % 3 != 0 or round(math.sqrt(sh_coefficients)) ** 2 != sh_coefficients or sh_coefficients > 16:
        raise ValueError(
            f"{path}: property f_rest_*: {num_rest} values per vertex; expected 3 (K - 1) with K "
            "a square of SH degree 0 to 3 (0, 9, 24 or 45)"
        )
    three_scales = "scale_2" in present
    required = [n for n in _property_names(num_rest, three_scales) if n not in ("nx", "ny", "nz")]
    for name in required:
        if name not in present:
            raise ValueError(f"{path}: PLY vertex element lacks the property '{name}'")

    def read(*property_names: str) -> np.ndarray:
        columns = []
        for name in property_names:
            column = np.asarray(vertex[name], dtype=np.float32)
            if not np.isfinite(column).all():
                row = int(np.flatnonzero(~np.isfinite(column))[0])
                raise ValueError(f"{path}: property '{name}' is not finite (row {row}: {column[row]})")
            columns.append(column)
        return np.stack(columns, axis=1) if columns else np.zeros((count, 0), dtype=np.float32)

    means = torch.from_numpy(read("x", "y", "z"))
    sh_dc = torch.from_numpy(read("f_dc_0", "f_dc_1", "f_dc_2")).reshape(count, 3, 1).transpose(1, 2)
    rest = read(*(f"f_rest_{i}" for i in range(num_rest)))
    sh_rest = torch.from_numpy(rest).reshape(count, 3, num_rest // 3).transpose(1, 2)
    opacity_logits = torch.from_numpy(read("opacity"))[:, 0]
    quats = torch.from_numpy(read("rot_0", "rot_1", "rot_2", "rot_3"))
    if three_scales:
        log_scales, quats = _surfels_of_ellipsoids(torch.from_numpy(read("scale_0", "scale_1", "scale_2")), quats)
    else:
        log_scales = torch.from_numpy(read("scale_0", "scale_1"))
    return {
        "means": means.contiguous(),
        "log_scales": log_scales.contiguous(),
        "quats": quats.contiguous(),
        "opacity_logits": opacity_logits.contiguous(),
        "sh_dc": sh_dc.contiguous(),
        "sh_rest": sh_rest.contiguous(),
    }


def _check_nothing_after_the_data(path: str, ply) -> None:
    """ValueError when the file holds more than its header declares: plyfile reads the declared
    rows and ignores the rest, so a header count that is too low would load part of the file."""
    from plyfile import PlyListProperty

    declared = sum(element.count for element in ply.elements)
    with open(path, "rb") as stream:
        for line in stream:
            if line.strip() == b"end_header":
                break
        if ply.text:  # one line per row
            rows = sum(1 for line in stream if line.strip())
            if rows != declared:
                raise ValueError(f"{path}: the header declares {declared} rows but the file has {rows} data lines")
            return
        data_start = stream.tell()
    expected = 0
    for element in ply.elements:
        for prop in element.properties:
            if isinstance(prop, PlyListProperty):
                length_type, value_type = prop.list_dtype()
                values = sum(len(row) for row in element.data[prop.name])
                expected += element.count * np.dtype(length_type).itemsize + values * np.dtype(value_type).itemsize
            else:
                expected += element.count * np.dtype(prop.dtype()).itemsize
    extra = os.path.getsize(path) - data_start - expected
    if extra != 0:
        raise ValueError(
            f"{path}: {extra} bytes follow the {declared} rows the header declares: the header's element counts "
            "disagree with the data"
        )


def _quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of (w, x, y, z) quaternions, [K, 4] by [4]."""
    aw, ax, ay, az = a.unbind(dim=1)
    bw, bx, by, bz = (float(v) for v in b)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=1,
    )


def _surfels_of_ellipsoids(log_scales3: torch.Tensor, quats: torch.Tensor):
    """Two log-scales [N, 2] and quaternions [N, 4] of the surfels spanned by the two largest
    axes of 3DGS ellipsoids (log-scales [N, 3], quaternions [N, 4]).

    The rotation's columns are permuted cyclically (a proper rotation again) so that the
    smallest axis becomes the third one, the surfel's normal. Rows whose third scale is
    already the smallest are passed through unchanged.
    """
    smallest = torch.argmin(log_scales3, dim=1)
    log_scales = log_scales3[:, :2].clone()
    quats = quats.clone()
    first_smallest = smallest == 0
    second_smallest = smallest == 1
    forward = torch.tensor(_CYCLE_FORWARD, dtype=torch.float32)
    backward = torch.tensor(_CYCLE_BACKWARD, dtype=torch.float32)
    log_scales[first_smallest] = log_scales3[first_smallest][:, [1, 2]]
    quats[first_smallest] = _quat_multiply(quats[first_smallest], forward)
    log_scales[second_smallest] = log_scales3[second_smallest][:, [2, 0]]
    quats[second_smallest] = _quat_multiply(quats[second_smallest], backward)
    return log_scales, quats
