"""Spherical-harmonics colours, shared by every backend (pure torch, differentiable).

The basis and constants are those of 3D Gaussian Splatting (real SH up to degree 3,
coefficient order 0, then -1 0 1 of band 1, then -2..2, then -3..3). A surfel's colour
for camera c is ``max(eval_sh(dir) + 0.5, 0)`` with ``dir`` the unit vector from the
camera centre to the surfel's mean (docs/design.md, "Rasterizer semantics").
"""

from __future__ import annotations

import torch

__all__ = ["SH_C0", "SH_C1", "SH_C2", "SH_C3", "num_sh_bases", "eval_sh", "sh_to_colors", "sh_to_item_colors"]

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)

MAX_SH_DEGREE = 3

# Squared distances below this (or non-finite ones) give no usable direction: the
# surfel sits on the camera centre (and is culled by the rasterizer, z < near) or its
# mean is not finite. Its direction is replaced by a fixed unit vector (the camera's own
# axis may be zero: viewmats are only required to be finite) so that neither the colour nor
# any gradient becomes NaN. 1e-20 keeps 1/|d|^3 in the normalisation's backward far below
# float32's maximum.
_MIN_DIRECTION_NORM2 = 1e-20

# A surfel whose evaluated coefficients are non-finite or beyond this magnitude gets a NaN
# colour, which the rasterizer culls; its coefficients are replaced by zeros before the
# evaluation, so that its zero colour gradient meets no Inf (0 * Inf is NaN) on its way to
# the means. Colours this large are culled by the core anyway (docs/design.md, culling).
_MAX_SH_COEFFICIENT = 1e18


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients of a degree: ``(degree + 1)^2``."""
    if isinstance(degree, bool) or not isinstance(degree, int):
        raise TypeError(f"sh_degree must be an int, got {type(degree).__name__}")
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"sh_degree must be in 0..{MAX_SH_DEGREE}, got {degree}")
    return (degree + 1) ** 2


def eval_sh(degree: int, coeffs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Evaluate real SH of ``degree`` at unit directions.

    Args:
        degree: 0..3; only the first ``(degree + 1)^2`` coefficients are read.
        coeffs: ``[..., K, 3]`` with ``K >= (degree + 1)^2``.
        dirs: ``[..., 3]`` unit vectors (not normalised here), broadcastable with
            ``coeffs[..., 0, :]``.

    Returns:
        ``[..., 3]``: ``sum_k coeffs[..., k, :] * Y_k(dirs)`` (no +0.5 offset, no clamp).
    """
    needed = num_sh_bases(degree)
    if coeffs.dim() < 2 or coeffs.shape[-1] != 3:
        raise ValueError(f"sh must have shape [..., K, 3], got {tuple(coeffs.shape)}")
    if coeffs.shape[-2] < needed:
        raise ValueError(
            f"sh has K={coeffs.shape[-2]} coefficients but sh_degree={degree} needs "
            f"at least {needed}"
        )
    if dirs.shape[-1] != 3:
        raise ValueError(f"dirs must have shape [..., 3], got {tuple(dirs.shape)}")

    return _add_sh_bands(degree, SH_C0 * coeffs[..., 0, :], coeffs, dirs)


def _add_sh_bands(degree: int, result: torch.Tensor, coeffs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """``result`` (the degree-0 term) plus the bands 1..degree of ``coeffs`` at ``dirs``."""

    def term(index: int, basis: torch.Tensor) -> torch.Tensor:
        return basis[..., None] * coeffs[..., index, :]

    if degree == 0:
        return result.expand(torch.broadcast_shapes(result.shape, dirs.shape))
    x, y, z = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    result = result - term(1, SH_C1 * y) + term(2, SH_C1 * z) - term(3, SH_C1 * x)
    if degree == 1:
        return result
    xx, yy, zz = x * x, y * y, z * z
    xy, yz, xz = x * y, y * z, x * z
    result = (
        result
        + term(4, SH_C2[0] * xy)
        + term(5, SH_C2[1] * yz)
        + term(6, SH_C2[2] * (2.0 * zz - xx - yy))
        + term(7, SH_C2[3] * xz)
        + term(8, SH_C2[4] * (xx - yy))
    )
    if degree == 2:
        return result
    return (
        result
        + term(9, SH_C3[0] * y * (3.0 * xx - yy))
        + term(10, SH_C3[1] * xy * z)
        + term(11, SH_C3[2] * y * (4.0 * zz - xx - yy))
        + term(12, SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy))
        + term(13, SH_C3[4] * x * (4.0 * zz - xx - yy))
        + term(14, SH_C3[5] * z * (xx - yy))
        + term(15, SH_C3[6] * x * (xx - 3.0 * yy))
    )


def _camera_centres(viewmats: torch.Tensor) -> torch.Tensor:
    """Camera centres ``-R^T t``: ``[C, 3]``."""
    rotations = viewmats[:, :3, :3]  # [C, 3, 3]
    translations = viewmats[:, :3, 3]  # [C, 3]
    return -torch.einsum("cji,cj->ci", rotations, translations)


def _unit_directions(offsets: torch.Tensor) -> torch.Tensor:
    """``offsets / |offsets|``; where that is unusable (a mean on the camera centre, or not
    finite), (0, 0, 1) instead, through a double ``torch.where`` so the gradient stays finite."""
    with torch.no_grad():
        norm2 = (offsets * offsets).sum(-1, keepdim=True)
        usable = torch.isfinite(norm2) & (norm2 > _MIN_DIRECTION_NORM2)
    # Made on the device: torch.tensor(..., device="cuda") would copy from pageable memory, which synchronises.
    fallback = torch.zeros(3, dtype=offsets.dtype, device=offsets.device)
    fallback[2] = 1.0
    fallback = fallback.expand_as(offsets)
    safe_offsets = torch.where(usable, offsets, fallback)
    return safe_offsets / torch.linalg.vector_norm(safe_offsets, dim=-1, keepdim=True)


def view_directions(means: torch.Tensor, viewmats: torch.Tensor) -> torch.Tensor:
    """Unit vectors from each camera centre ``-R^T t`` to each mean: ``[C, N, 3]``.

    A mean on a camera centre or a non-finite mean gets the direction (0, 0, 1) instead,
    through a double ``torch.where`` so the gradient stays finite.
    """
    offsets = means[None, :, :] - _camera_centres(viewmats)[:, None, :]  # [C, N, 3]
    return _unit_directions(offsets)


def _usable_sh(sh: torch.Tensor, needed: int):
    """``(usable [N], safe_sh)``: whether a surfel's evaluated coefficients are all finite and
    within 1e18, and the coefficients with the unusable surfels' replaced by zeros."""
    with torch.no_grad():
        evaluated = sh[:, :needed]
        usable = (torch.isfinite(evaluated) & (evaluated.abs() <= _MAX_SH_COEFFICIENT)).flatten(1).all(1)  # [N]
    return usable, torch.where(usable[:, None, None], sh, torch.zeros((), dtype=sh.dtype, device=sh.device))


def _colors_of(values: torch.Tensor, usable: torch.Tensor) -> torch.Tensor:
    """max(values + 0.5, 0), NaN (the rasterizer culls it) where not ``usable``."""
    colors = torch.clamp_min(values + 0.5, 0.0)
    return torch.where(usable[..., None], colors, torch.full((), float("nan"), dtype=values.dtype,
                                                             device=values.device))


def sh_to_colors(
    sh: torch.Tensor, sh_degree: int, means: torch.Tensor, viewmats: torch.Tensor
) -> torch.Tensor:
    """Per-camera RGB colours of surfels from their SH coefficients.

    Args:
        sh: ``[N, K, 3]`` coefficients, ``K >= (sh_degree + 1)^2``.
        sh_degree: 0..3, the degree evaluated (the active degree while training).
        means: ``[N, 3]`` surfel centres (world).
        viewmats: ``[C, 4, 4]`` world-to-camera matrices (OpenCV).

    Returns:
        ``[C, N, 3]``: ``max(eval_sh(sh_degree, sh, normalize(mean - campos_c)) + 0.5, 0)``;
        NaN (the rasterizer culls it) for a surfel whose first ``(sh_degree + 1)^2``
        coefficients are not all finite and within 1e18 in magnitude.
    """
    if not isinstance(sh, torch.Tensor) or sh.dim() != 3 or sh.shape[-1] != 3:
        shape = tuple(sh.shape) if isinstance(sh, torch.Tensor) else type(sh).__name__
        raise ValueError(f"sh must have shape [N, K, 3], got {shape}")
    needed = num_sh_bases(sh_degree)
    if sh.shape[1] < needed:
        raise ValueError(
            f"sh has K={sh.shape[1]} coefficients but sh_degree={sh_degree} needs at least {needed}"
        )
    if means.dim() != 2 or means.shape[-1] != 3 or means.shape[0] != sh.shape[0]:
        raise ValueError(f"means must have shape [{sh.shape[0]}, 3], got {tuple(means.shape)}")
    if viewmats.dim() != 3 or viewmats.shape[1:] != (4, 4):
        raise ValueError(f"viewmats must have shape [C, 4, 4], got {tuple(viewmats.shape)}")
    dirs = view_directions(means, viewmats.to(means.dtype))  # [C, N, 3]
    usable, safe_sh = _usable_sh(sh, needed)
    values = eval_sh(sh_degree, safe_sh[None], dirs)  # [C, N, 3]
    return _colors_of(values, usable[None, :])


def sh_to_item_colors(sh: torch.Tensor, sh_degree: int, means: torch.Tensor, viewmats: torch.Tensor,
                      item_cameras: torch.Tensor, item_surfels: torch.Tensor) -> torch.Tensor:
    """:func:`sh_to_colors` of (camera, surfel) items: ``[I, 3]``, row i the colour of surfel
    ``item_surfels[i]`` seen from camera ``item_cameras[i]`` (the same values, op for op).

    Only the coefficients of ``sh_degree`` are gathered per item (``[I, (sh_degree + 1)^2, 3]``).
    The degree-0 term is made per surfel and then gathered, as :func:`sh_to_colors` broadcasts
    it, so its gradient is summed over the cameras before the constant multiplies it there too.
    """
    needed = num_sh_bases(sh_degree)
    if sh.shape[1] < needed:
        raise ValueError(
            f"sh has K={sh.shape[1]} coefficients but sh_degree={sh_degree} needs at least {needed}"
        )
    offsets = means[item_surfels] - _camera_centres(viewmats.to(means.dtype))[item_cameras]  # [I, 3]
    dirs = _unit_directions(offsets)
    usable, safe_sh = _usable_sh(sh, needed)
    base = (SH_C0 * safe_sh[:, 0, :])[item_surfels]
    coeffs = safe_sh[:, :needed][item_surfels] if sh_degree > 0 else safe_sh[:0, :1]  # [I, needed, 3]
    values = _add_sh_bands(sh_degree, base, coeffs, dirs)  # [I, 3]
    return _colors_of(values, usable[item_surfels])
