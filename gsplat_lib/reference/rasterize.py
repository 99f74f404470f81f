"""Brute-force surfel rasterizer in plain PyTorch: the oracle of the compiled kernels.

It computes exactly the function of docs/design.md, "Rasterizer semantics", with no
tiles: every surfel is tested at every pixel, vectorised over ``[C, pixels, N]``, and
torch autograd gives every gradient. It works in float32 and float64.

Gradient safety: culled surfels and skipped (pixel, surfel) pairs must get exactly zero
gradient, never NaN. ``torch.where`` passes zero gradient to its unselected branch, but
``0 * inf`` in that branch's own backward is still NaN, so every value that could be
non-finite is replaced by a safe one *before* it enters an operation (the "double
where"): bad inputs before the projection, zero denominators before each division.

Work and memory: the per-pixel stage runs in bands of image rows. For each band a
no-grad pass over every (pixel, surfel) pair finds the surfels whose support (rho <= 9)
reaches the band at all; only those enter the differentiable pass, which runs under
``torch.utils.checkpoint`` so that one band's ``[C, rows * W, K]`` intermediates are
alive at a time, in the forward and in the backward. Neither step changes a value.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple

import torch
from torch.utils.checkpoint import checkpoint

from gsplat_lib import _backend

__all__ = ["rasterize_surfels_reference", "distortion_running_sums"]

# Thresholds of the contract.
_MIN_QUAT_NORM2 = 1e-24
_MIN_Q2_SQUARED = 1e-30
_DISK_SIGMAS = 3.0
_DISK_IN_FRONT_MARGIN = 0.999
_FALLBACK_INV_SIGMA2 = 2.0  # rho2d = |d|^2 / sigma^2 with sigma^2 = 0.5 px^2
_FALLBACK_HALF_EXTENT = 2.1214  # 3 sigma of the fallback filter, in pixels
_BOX_PADDING = 0.5
_MAX_RHO = 9.0
_MAX_ALPHA = 0.99
_MIN_ALPHA = 1.0 / 255.0
# Not 1e-4: two surfels clamped at alpha 0.99 leave exactly 1e-4, a tie that float32 and
# float64 would break differently.
_MIN_TRANSMITTANCE = 0.9e-4
_MEDIAN_TRANSMITTANCE = 0.5

# Elements of one [C, rows * W, N] intermediate per chunk: a few dozen of them live at
# once, so 2^22 keeps a chunk's working set at a few hundred MB in float32. Bands of at
# most 8 rows let _surfels_in_support drop most surfels of a large image per band.
_CHUNK_ELEMENTS = 1 << 22
_MAX_ROWS_PER_CHUNK = 8

_MAX_RADIUS = 2**30  # exactly representable in float32


class SurfelProjection(NamedTuple):
    """Per (camera, surfel) quantities of the projection stage."""

    homography: torch.Tensor  # [C, N, 3, 3] M = K [W t_u s_u | W t_v s_v | p_c]; safe where culled
    means2d: torch.Tensor  # [C, N, 2] projected centre c = (M02, M12) / M22 (0 where culled)
    depths: torch.Tensor  # [C, N] centre depth z_c = M22 (0 where culled)
    normals: torch.Tensor  # [C, N, 3] camera-frame normal facing the camera
    visible: torch.Tensor  # [C, N] bool, not culled
    radii: torch.Tensor  # [C, N, 2] int32, 0 when culled


def _quat_to_rotation(quats: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[N, 3, 3]`` of non-zero quaternions ``[N, 4]`` (w, x, y, z)."""
    quats = quats / torch.linalg.vector_norm(quats, dim=-1, keepdim=True)
    w, x, y, z = quats.unbind(-1)
    rows = (
        (1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)),
        (2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)),
        (2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)),
    )
    return torch.stack([torch.stack(row, -1) for row in rows], -2)


def _all_finite(tensor: torch.Tensor, dims: int) -> torch.Tensor:
    """True where every entry of the trailing ``dims`` dimensions is finite."""
    finite = torch.isfinite(tensor)
    for _ in range(dims):
        finite = finite.all(-1)
    return finite


def _colors_usable(colors: torch.Tensor) -> torch.Tensor:
    """[C, N]: every channel is finite and within the core's colour limit, tested as the core
    tests it, in float32: x * COLOR_CULL_SCALE is finite (docs/design.md, culling)."""
    scale = torch.tensor(_backend.core().COLOR_CULL_SCALE, dtype=torch.float32)
    return _all_finite(colors.detach().to(torch.float32) * scale, 1)


def _project(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    colors_finite: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    near: float,
    far: float,
    scale_modifier: float,
) -> SurfelProjection:
    """Projection stage of the contract (cull rules, M, normal, bounds)."""
    num_cameras, num_surfels = viewmats.shape[0], means.shape[0]
    dtype = means.dtype

    # Per-surfel validity, then safe stand-ins so no later op sees NaN, Inf or 0/0.
    scales = scales * scale_modifier
    quat_norm2 = (quats * quats).sum(-1)
    surfel_ok = (
        _all_finite(means, 1)
        & _all_finite(quats, 1)
        & _all_finite(scales, 1)
        & torch.isfinite(opacities)
        & torch.isfinite(quat_norm2)  # |q|^2 overflowing makes q/|q| 0/inf: cull it too
        & (quat_norm2 > _MIN_QUAT_NORM2)
        & (scales > 0).all(-1)
        & (opacities > 0)
    )
    ok = surfel_ok[:, None]
    means = torch.where(ok, means, torch.zeros_like(means))
    quats = torch.where(ok, quats, torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=dtype))
    scales = torch.where(ok, scales, torch.ones_like(scales))

    rotations = _quat_to_rotation(quats)  # [N, 3, 3], columns t_u, t_v, t_w
    world_to_cam = viewmats[:, :3, :3]  # [C, 3, 3]
    cam_translation = viewmats[:, :3, 3]  # [C, 3]
    axes_cam = torch.einsum("cij,njk->cnik", world_to_cam, rotations)  # [C, N, 3, 3] W R
    means_cam = torch.einsum("cij,nj->cni", world_to_cam, means) + cam_translation[:, None]
    columns = torch.stack(
        [axes_cam[..., 0] * scales[:, 0, None], axes_cam[..., 1] * scales[:, 1, None], means_cam],
        dim=-1,
    )  # [C, N, 3, 3]: [W t_u s_u | W t_v s_v | p_c]
    homography = torch.einsum("cij,cnjk->cnik", Ks, columns)

    normals = axes_cam[..., 2]  # W t_w
    facing_away = (normals * means_cam).sum(-1, keepdim=True) > 0
    normals = torch.where(facing_away, -normals, normals)

    with torch.no_grad():
        m = homography
        depth = m[..., 2, 2]
        visible = (
            surfel_ok[None, :]
            & colors_finite
            & _all_finite(m, 2)
            & (depth >= near)
            & (depth <= far)
            & (
                _DISK_SIGMAS * torch.sqrt(m[..., 2, 0] ** 2 + m[..., 2, 1] ** 2)
                < _DISK_IN_FRONT_MARGIN * depth
            )
        )
        # Box of the k=3 disk's projected ellipse (dual conic C* = M diag(9, 9, -1) M^T).
        diag = torch.tensor([_DISK_SIGMAS**2, _DISK_SIGMAS**2, -1.0], dtype=dtype)
        conic = torch.einsum("cnij,j,cnkj->cnik", m, diag, m)
        conic22 = torch.where(visible, conic[..., 2, 2], torch.ones_like(depth))
        safe_depth = torch.where(visible, depth, torch.ones_like(depth))
        ellipse_centre = torch.stack([conic[..., 0, 2], conic[..., 1, 2]], -1) / conic22[..., None]
        ellipse_half = torch.sqrt(
            torch.clamp_min(
                ellipse_centre**2
                - torch.stack([conic[..., 0, 0], conic[..., 1, 1]], -1) / conic22[..., None],
                0.0,
            )
        )
        centre = torch.stack([m[..., 0, 2], m[..., 1, 2]], -1) / safe_depth[..., None]
        low = torch.minimum(ellipse_centre - ellipse_half, centre - _FALLBACK_HALF_EXTENT)
        high = torch.maximum(ellipse_centre + ellipse_half, centre + _FALLBACK_HALF_EXTENT)
        low, high = low - _BOX_PADDING, high + _BOX_PADDING
        # Visible only if some pixel centre i + 0.5 (0 <= i < size) lies in [low, high].
        image_size = torch.tensor([float(width), float(height)], dtype=dtype)
        first = torch.ceil(torch.clamp(low - 0.5, min=0.0))
        last = torch.floor(torch.minimum(high - 0.5, image_size - 1))
        visible &= (first <= last).all(-1)
        # Half extents around the projected centre, so means2d +- radii covers the box.
        half_sizes = torch.ceil(torch.maximum(high - centre, centre - low).double()).clamp(0, _MAX_RADIUS)
        half_sizes = torch.where(visible[..., None], half_sizes, torch.zeros_like(half_sizes))
        radii = half_sizes.to(torch.int32)

    safe_homography = torch.eye(3, dtype=dtype).expand(num_cameras, num_surfels, 3, 3)
    homography = torch.where(visible[..., None, None], homography, safe_homography)
    # The safe M of a culled surfel has c = (0, 0) and z_c = 1; report its depth as 0.
    means2d = homography[..., :2, 2] / homography[..., 2, 2, None]
    depths = torch.where(visible, homography[..., 2, 2], torch.zeros_like(depth))
    normals = torch.where(visible[..., None], normals, torch.zeros_like(normals))
    return SurfelProjection(homography, means2d, depths, normals, visible, radii)


def distortion_running_sums(weights: torch.Tensor, mapped_depths: torch.Tensor) -> torch.Tensor:
    """Depth distortion ``sum_i w_i sum_{j<i} w_j (m_i - m_j)^2`` along the last dim.

    Computed in one pass from the exclusive running sums ``A = sum_{j<i} w_j``,
    ``S1 = sum_{j<i} w_j m_j``, ``S2 = sum_{j<i} w_j m_j^2`` as
    ``sum_i w_i (m_i^2 A - 2 m_i S1 + S2)``, the kernels' form.

    Args:
        weights: ``[..., N]`` blending weights ``w_i`` in compositing order.
        mapped_depths: ``[..., N]`` ``m_i`` (finite everywhere).

    Returns:
        ``[...]``.
    """
    def exclusive_cumsum(values: torch.Tensor) -> torch.Tensor:
        zero = torch.zeros_like(values[..., :1])
        return torch.cat([zero, torch.cumsum(values, -1)[..., :-1]], -1)

    weighted = weights * mapped_depths
    total = exclusive_cumsum(weights)
    first_moment = exclusive_cumsum(weighted)
    second_moment = exclusive_cumsum(weighted * mapped_depths)
    per_surfel = mapped_depths * mapped_depths * total - 2 * mapped_depths * first_moment
    return (weights * (per_surfel + second_moment)).sum(-1)


def _shifted_pixels(
    pixel_x: torch.Tensor, pixel_y: torch.Tensor, shift: Optional[torch.Tensor]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres as seen by each splat: ``[1, P, 1]``, or ``[C, P, N]`` with a shift.

    Shifting a splat by d (M_0 += d_x M_2, M_1 += d_y M_2, so c += d) is the same, at a
    pixel, as evaluating the unshifted splat at (x - d_x, y - d_y).
    """
    x = pixel_x[None, :, None]
    y = pixel_y[None, :, None]
    if shift is not None:
        x = x - shift[..., 0]
        y = y - shift[..., 1]
    return x, y


def _ray_splat_intersection(x, y, homography, means2d):
    """Steps 1-2 of the per-pixel contract: ``q = l_x x l_y`` and the fallback ``rho2d``.

    Args:
        x: pixel centres' x, broadcastable to ``[C, P, N]``.
        y: pixel centres' y, broadcastable to ``[C, P, N]``.
        homography: ``[C, N, 3, 3]``. means2d: ``[C, N, 2]``.

    Returns:
        q0, q1, q2, rho2d, each ``[C, P, N]``.
    """
    m = homography[:, None]  # [C, 1, N, 3, 3]
    lx0 = x * m[..., 2, 0] - m[..., 0, 0]
    lx1 = x * m[..., 2, 1] - m[..., 0, 1]
    lx2 = x * m[..., 2, 2] - m[..., 0, 2]
    ly0 = y * m[..., 2, 0] - m[..., 1, 0]
    ly1 = y * m[..., 2, 1] - m[..., 1, 1]
    ly2 = y * m[..., 2, 2] - m[..., 1, 2]
    q0 = lx1 * ly2 - lx2 * ly1
    q1 = lx2 * ly0 - lx0 * ly2
    q2 = lx0 * ly1 - lx1 * ly0
    dx = x - means2d[:, None, :, 0]
    dy = y - means2d[:, None, :, 1]
    rho2d = _FALLBACK_INV_SIGMA2 * (dx * dx + dy * dy)
    return q0, q1, q2, rho2d


@torch.no_grad()
def _footprint_choice(q0, q1, q2, rho2d) -> Tuple[torch.Tensor, torch.Tensor]:
    """Whether the 3D footprint is taken (``[C, P, N]`` bool) and ``rho = min(rho3d, rho2d)``."""
    usable = q2 * q2 > _MIN_Q2_SQUARED
    safe_q2 = torch.where(usable, q2, torch.ones_like(q2))
    rho3d = (q0 * q0 + q1 * q1) / (safe_q2 * safe_q2)
    use3d = usable & (rho3d <= rho2d)
    return use3d, torch.where(use3d, rho3d, rho2d)


@torch.no_grad()
def _surfels_in_support(pixel_x, pixel_y, shift, homography, means2d, visible) -> torch.Tensor:
    """Indices ``[K]`` of the (sorted) surfel slots whose support reaches any of the pixels
    for any camera. The others contribute nothing there, not even to T, so dropping them
    before the differentiable pass changes no value and no gradient; it only saves work.
    """
    x, y = _shifted_pixels(pixel_x, pixel_y, shift)
    _, rho = _footprint_choice(*_ray_splat_intersection(x, y, homography, means2d))
    # A margin far above rounding differences; the exact test is applied again later.
    reaches = visible[:, None, :] & (rho <= _MAX_RHO * (1 + 1e-3))
    return torch.nonzero(reaches.any(1).any(0)).reshape(-1)


def _composite_pixels(
    pixel_x: torch.Tensor,
    pixel_y: torch.Tensor,
    shift: Optional[torch.Tensor],
    homography: torch.Tensor,
    means2d: torch.Tensor,
    normals: torch.Tensor,
    colors: torch.Tensor,
    opacities: torch.Tensor,
    visible: torch.Tensor,
    near: float,
    far: float,
):
    """Per-pixel stage for P pixels over depth-sorted surfels.

    Args:
        pixel_x: ``[P]`` pixel-centre x coordinates.
        pixel_y: ``[P]`` pixel-centre y coordinates.
        shift: ``[C, P, N, 2]`` screen translation of each splat at each pixel, or None.
        homography: ``[C, N, 3, 3]``; means2d ``[C, N, 2]``; normals ``[C, N, 3]``;
        colors ``[C, N, D]``; opacities ``[C, N]``; visible ``[C, N]`` bool — all in
        compositing order.

    Returns:
        colour ``[C, P, D]`` (without background), final transmittance, depth, median
        depth, distortion ``[C, P]`` and normal ``[C, P, 3]``.
    """
    x, y = _shifted_pixels(pixel_x, pixel_y, shift)
    q0, q1, q2, rho2d = _ray_splat_intersection(x, y, homography, means2d)
    use3d, _ = _footprint_choice(q0, q1, q2, rho2d)
    # Divide only where the 3D path is taken: there u^2 + v^2 <= rho2d keeps u, v finite.
    one, zero = torch.ones_like(q2), torch.zeros_like(q2)
    q2_3d = torch.where(use3d, q2, one)
    u = torch.where(use3d, q0, zero) / q2_3d
    v = torch.where(use3d, q1, zero) / q2_3d
    rho = torch.where(use3d, u * u + v * v, rho2d)
    m = homography[:, None]
    depth_3d = m[..., 2, 0] * u + m[..., 2, 1] * v + m[..., 2, 2]
    hit_depth = torch.where(use3d, depth_3d, m[..., 2, 2].expand_as(depth_3d))

    # Pairs with rho > 9 are skipped; clamping there keeps exp out of the (slow)
    # subnormal range and changes nothing that is used.
    gaussian = torch.exp(-0.5 * torch.clamp_max(rho, _MAX_RHO))
    alpha = torch.clamp_max(opacities[:, None, :] * gaussian, _MAX_ALPHA)
    with torch.no_grad():
        contributes = (
            visible[:, None, :]
            & (rho <= _MAX_RHO)
            & (hit_depth >= near)
            & (alpha >= _MIN_ALPHA)
        )
        # Stop rule: the pixel ends before the first surfel whose T_next would fall
        # below 1e-4. T_next never increases, so those are exactly the entries of the
        # running product below the threshold (that surfel and every later one).
        running = torch.cumprod(1 - torch.where(contributes, alpha, zero), -1)
        contributes &= running >= _MIN_TRANSMITTANCE
    alpha = torch.where(contributes, alpha, zero)
    transmittance_after = torch.cumprod(1 - alpha, -1)  # [C, P, N]
    transmittance = torch.cat(
        [torch.ones_like(alpha[..., :1]), transmittance_after[..., :-1]], -1
    )  # T before each surfel
    if alpha.shape[-1]:
        final_transmittance = transmittance_after[..., -1]
    else:
        final_transmittance = torch.ones(alpha.shape[:-1], dtype=alpha.dtype)
    weights = alpha * transmittance

    color = torch.bmm(weights, colors)  # [C, P, D]
    normal = torch.bmm(weights, normals)  # [C, P, 3]
    safe_depth = torch.where(contributes, hit_depth, one)
    depth = (weights * safe_depth).sum(-1)

    with torch.no_grad():
        # Median: the last contributor whose T before it exceeds 0.5.
        median_candidate = contributes & (transmittance > _MEDIAN_TRANSMITTANCE)
        later_candidates = torch.flip(
            torch.cumsum(torch.flip(median_candidate.to(torch.int32), [-1]), -1), [-1]
        )
        is_median = median_candidate & (later_candidates == 1)
    median_depth = torch.where(is_median, safe_depth, zero).sum(-1)

    mapped = far * (1 - near / safe_depth) / (far - near)
    distortion = distortion_running_sums(weights, mapped)
    return color, final_transmittance, depth, median_depth, distortion, normal


def _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height, backgrounds):
    def shape_error(name, expected, value):
        return ValueError(f"{name} must have shape {expected}, got {tuple(value.shape)}")

    for name, value in (("means", means), ("quats", quats), ("scales", scales),
                        ("opacities", opacities), ("colors", colors),
                        ("viewmats", viewmats), ("Ks", Ks)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
    for name, value in (("quats", quats), ("scales", scales), ("opacities", opacities), ("colors", colors)):
        if value.dtype != means.dtype:
            raise TypeError(f"{name} must have the dtype of means ({means.dtype}), got {value.dtype}")
    num_surfels = means.shape[0] if means.dim() == 2 else -1
    if means.dim() != 2 or means.shape[1] != 3:
        raise shape_error("means", "[N, 3]", means)
    if quats.shape != (num_surfels, 4):
        raise shape_error("quats", f"[{num_surfels}, 4]", quats)
    if scales.shape != (num_surfels, 2):
        raise shape_error("scales", f"[{num_surfels}, 2]", scales)
    if opacities.shape != (num_surfels,):
        raise shape_error("opacities", f"[{num_surfels}]", opacities)
    if viewmats.dim() != 3 or viewmats.shape[1:] != (4, 4):
        raise shape_error("viewmats", "[C, 4, 4]", viewmats)
    num_cameras = viewmats.shape[0]
    if Ks.shape != (num_cameras, 3, 3):
        raise shape_error("Ks", f"[{num_cameras}, 3, 3]", Ks)
    if colors.dim() == 2:
        if colors.shape[0] != num_surfels:
            raise shape_error("colors", f"[{num_surfels}, D] or [{num_cameras}, {num_surfels}, D]", colors)
    elif colors.dim() != 3 or colors.shape[:2] != (num_cameras, num_surfels):
        raise shape_error("colors", f"[{num_surfels}, D] or [{num_cameras}, {num_surfels}, D]", colors)
    channels = colors.shape[-1]
    if backgrounds is not None:
        if not isinstance(backgrounds, torch.Tensor) or not backgrounds.is_floating_point():
            raise TypeError("backgrounds must be a floating-point torch.Tensor")
        if backgrounds.shape != (num_cameras, channels):
            raise shape_error("backgrounds", f"[{num_cameras}, {channels}]", backgrounds)
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    if not (torch.isfinite(viewmats).all() and torch.isfinite(Ks).all()):
        raise ValueError("viewmats and Ks must be finite")
    last_row = torch.tensor([0.0, 0.0, 1.0], dtype=Ks.dtype)
    if not bool((Ks[:, 2] == last_row).all()):
        raise ValueError("Ks[:, 2] must be (0, 0, 1) for every camera")


def rasterize_surfels_reference(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    near: float = 0.01,
    far: float = 1000.0,
    backgrounds: Optional[torch.Tensor] = None,
    scale_modifier: float = 1.0,
    screen_shift: Optional[torch.Tensor] = None,
) -> Dict[str, torch.Tensor]:
    """Render surfels by brute force, differentiably (torch autograd).

    Args:
        means: ``[N, 3]`` centres (world). quats: ``[N, 4]`` (w, x, y, z), normalised
            here. scales: ``[N, 2]``. opacities: ``[N]``.
        colors: ``[N, D]`` or per camera ``[C, N, D]``, any D.
        viewmats: ``[C, 4, 4]`` world-to-camera (OpenCV). Ks: ``[C, 3, 3]`` pixels.
            Cameras get no gradient.
        width: image width in pixels.
        height: image height in pixels.
        near: nearest depth of a surfel centre; also where the distortion's depth mapping starts.
        far: farthest depth of a surfel centre; also where the distortion's depth mapping ends.
        backgrounds: ``[C, D]`` added with the final transmittance (default none).
        scale_modifier: multiplies ``scales``.
        screen_shift: screen translation ``d`` of each splat in pixels, broadcastable to
            ``[C, H, W, N, 2]``; applied per pixel as ``M_0 += d_x M_2, M_1 += d_y M_2``.
            Pass zeros that require grad to read the densification statistic from
            ``.grad``: shape ``[C, 1, 1, N, 2]`` gives its value, ``[C, H, W, N, 2]``
            the per-pixel terms (sum their absolute values for the abs variant). It
            does not move ``means2d`` nor change culling or radii.

    Returns:
        dict with ``colors [C, H, W, D]``, ``alphas``, ``depths`` (accumulated hit
        depth), ``expected_depths``, ``median_depths``, ``distortions`` ``[C, H, W, 1]``,
        ``normals`` (camera frame) and ``normals_world`` ``[C, H, W, 3]``, and per
        (camera, surfel) ``radii [C, N, 2]`` int32, ``means2d [C, N, 2]``,
        ``depths_surfel [C, N]``, ``visible [C, N]`` bool. Dtype follows ``means``.
    """
    _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height, backgrounds)
    dtype = means.dtype
    num_cameras, num_surfels = viewmats.shape[0], means.shape[0]
    viewmats = viewmats.detach().to(dtype)
    Ks = Ks.detach().to(dtype)
    if colors.dim() == 2:
        colors = colors[None].expand(num_cameras, -1, -1)
    colors_finite = _colors_usable(colors)
    colors = torch.where(colors_finite[..., None], colors, torch.zeros_like(colors))

    projection = _project(
        means, quats, scales, opacities, colors_finite, viewmats, Ks,
        width, height, near, far, scale_modifier,
    )

    # Compositing order: centre depth, ties by index (stable); culled surfels last.
    visible = projection.visible
    sort_keys = torch.where(visible, projection.depths, torch.full_like(projection.depths, torch.inf))
    order = torch.sort(sort_keys.detach(), dim=-1, stable=True).indices  # [C, N]
    # Culled surfels sort last and never contribute: keep only the slots any camera draws.
    num_drawn = int(visible.sum(1).max()) if num_cameras else 0
    order = order[:, :num_drawn]

    def by_depth(values: torch.Tensor) -> torch.Tensor:
        index = order.reshape(order.shape + (1,) * (values.dim() - 2))
        return torch.gather(values, 1, index.expand(order.shape + values.shape[2:]))

    safe_opacities = torch.where(visible, opacities[None, :], torch.ones_like(visible, dtype=dtype))
    sorted_args = (
        by_depth(projection.homography),
        by_depth(projection.means2d),
        by_depth(projection.normals),
        by_depth(colors),
        by_depth(safe_opacities),
        by_depth(visible),
    )
    if screen_shift is not None:
        screen_shift = screen_shift.to(dtype).broadcast_to(
            (num_cameras, height, width, num_surfels, 2)
        )

    rows_per_chunk = max(
        1, min(_MAX_ROWS_PER_CHUNK, _CHUNK_ELEMENTS // max(1, num_cameras * width * num_drawn))
    )
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (means, quats, scales, opacities, colors, screen_shift)
        if t is not None
    )
    pixel_cols = torch.arange(width, dtype=dtype) + 0.5
    chunks = []
    for row_start in range(0, height, rows_per_chunk):
        rows = torch.arange(row_start, min(height, row_start + rows_per_chunk), dtype=dtype) + 0.5
        pixel_y = rows[:, None].expand(-1, width).reshape(-1)
        pixel_x = pixel_cols[None, :].expand(rows.shape[0], -1).reshape(-1)
        shift = None
        if screen_shift is not None:
            shift = screen_shift[:, row_start : row_start + rows.shape[0]]
            shift = by_depth(shift.reshape(num_cameras, -1, num_surfels, 2).transpose(1, 2))
            shift = shift.transpose(1, 2)  # [C, P, N, 2] in compositing order
        kept = _surfels_in_support(
            pixel_x, pixel_y, shift, sorted_args[0], sorted_args[1], sorted_args[5]
        )
        args = (pixel_x, pixel_y, None if shift is None else shift.index_select(2, kept))
        args += tuple(value.index_select(1, kept) for value in sorted_args) + (near, far)
        if needs_grad:
            chunks.append(checkpoint(_composite_pixels, *args, use_reentrant=False))
        else:
            chunks.append(_composite_pixels(*args))

    def image(index: int, channels: int) -> torch.Tensor:
        return torch.cat([chunk[index] for chunk in chunks], 1).reshape(
            num_cameras, height, width, channels
        )

    channels = colors.shape[-1]
    color = image(0, channels)
    transmittance = image(1, 1)
    if backgrounds is not None:
        color = color + transmittance * backgrounds.to(dtype)[:, None, None, :]
    alphas = 1 - transmittance
    depths = image(2, 1)
    has_alpha = alphas > 0
    expected_depths = torch.where(
        has_alpha, depths / torch.where(has_alpha, alphas, torch.ones_like(alphas)), torch.zeros_like(depths)
    )
    normals = image(5, 3)
    normals_world = torch.einsum("chwi,cij->chwj", normals, viewmats[:, :3, :3])
    return {
        "colors": color,
        "alphas": alphas,
        "depths": depths,
        "expected_depths": expected_depths,
        "median_depths": image(3, 1),
        "normals": normals,
        "normals_world": normals_world,
        "distortions": image(4, 1),
        "radii": projection.radii,
        "means2d": projection.means2d,
        "depths_surfel": projection.depths,
        "visible": visible,
    }
