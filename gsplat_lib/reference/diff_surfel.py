"""A float64 reference of the ``diff_surfel_rasterization`` API, in two semantics.

``render_diff_surfel`` takes upstream's inputs (hbb1/diff-surfel-rasterization at e0ed020, the
rasterizer of 2D Gaussian Splatting): one camera as row-vector ``viewmatrix`` and ``projmatrix``
with pixel centres at integer coordinates, ``opacities [N, 1]``, SH or precomputed colours,
scales and rotations or ``cov3D_precomp`` (the 3x3 surfel-to-pixel map M, row-major). It tests
every surfel at every pixel, front to back in a Python loop over the surfels, and is written
from the 2DGS paper and upstream's code read for its facts, independently of gsplat_lib's own
reference and kernels.

``semantics`` picks the rules:

- ``"gsplat_lib"``: docs/design.md "Rasterizer semantics" (3-sigma support, fallback centred on
  the projected centre with the centre's depth, stop below 0.9e-4, near and far cull, box radii),
  seen through the compat layer's conversion (pixel centres shifted by half a pixel, which
  moves nothing relative to the surfels).
- ``"upstream"``: upstream's forward. A surfel is evaluated in every pixel of the 16x16 tiles its
  screen rectangle touches and drawn where alpha >= 1/255 (no 3-sigma cut); the low-pass
  fallback ``rho2d = 2 |e - x|^2`` is centred on the ellipse-box centre e and the hit depth
  always comes from the ray-splat intersection; compositing stops when T would fall below
  1e-4; near is 0.2 (culling the centre and each hit), far 100 only scales the distortion;
  radii are ``ceil(max(h_x, h_y, 3 * 0.707106))`` with h floored at 1e-2.

The densification statistic comes from zero probes whose gradients ``densification_statistic``
reads after the caller's backward: in gsplat_lib semantics a screen translation of each splat
(per surfel, and per pixel for the absolute sum); in upstream semantics what upstream's backward
writes into ``means2D.grad``: dL/dM[0,2] and dL/dM[1,2] summed over the pixels that took the
ray-splat path, times ``M[2,2] * W' / 2`` and ``M[2,2] * H' / 2`` (W', H' as its backward
recomputes them from the focal length), with alpha's 0.99 clamp passing the gradient through
and the fallback's hit depth treated as a constant of the splat's axes, as its backward does
(for ``cov3D_precomp`` inputs upstream adds the fallback pixels' gradient through e);
columns 2:4 are GenFusion's absolute sum of the fallback pixels' gradients with respect to e,
in NDC units.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
import torch

__all__ = ["GSPLAT_LIB", "UPSTREAM", "DiffSurfelRender", "render_diff_surfel", "densification_statistic",
           "upstream_backward_image_size"]

GSPLAT_LIB = "gsplat_lib"
UPSTREAM = "upstream"

# Upstream's constants (cuda_rasterizer/auxiliary.h, forward.cu).
UPSTREAM_NEAR = 0.2
UPSTREAM_FAR = 100.0
UPSTREAM_TILE = 16
UPSTREAM_FILTER_SIZE = 0.707106  # 3 * this is the fallback's radius in pixels
UPSTREAM_MIN_HALF_EXTENT2 = 1e-4
UPSTREAM_MIN_TRANSMITTANCE = 1e-4

# gsplat_lib's (docs/design.md).
GSPLAT_MAX_RHO = 9.0
GSPLAT_MIN_TRANSMITTANCE = 0.9e-4
GSPLAT_FALLBACK_HALF_EXTENT = 2.1214
GSPLAT_BOX_PADDING = 0.5
GSPLAT_DISK_MARGIN = 0.999
GSPLAT_MIN_Q2_SQUARED = 1e-30

SIGMA_CUTOFF = 3.0
MAX_ALPHA = 0.99
MIN_ALPHA = 1.0 / 255.0
FALLBACK_INV_SIGMA2 = 2.0

_SH_C0 = 0.28209479177387814
_SH_C1 = 0.4886025119029199
_SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
          1.445305721320277, -0.5900435899266435)


class DiffSurfelRender(NamedTuple):
    color: torch.Tensor          # [3, H, W]
    radii: torch.Tensor          # [N] int64: upstream's radius, or the larger of gsplat_lib's two half sizes
    allmap: torch.Tensor         # [7, H, W]: depth sum, alpha, normal (3), median depth, distortion
    visible: torch.Tensor        # [N] bool
    surfel_probe: torch.Tensor   # [N, 2] zero leaf: d loss / d probe is the signed statistic (before units)
    pixel_probes: tuple          # N zero leaves [H * W, 2]: per-pixel terms of the absolute statistic
    statistic_scale: torch.Tensor  # [N, 4] multiplies (signed x, signed y, abs x, abs y) into NDC units
    fallback_chain: torch.Tensor   # [N]: d e_x / d M[0,2] (= d e_y / d M[1,2]) where upstream's signed
                                   # statistic includes the fallback's gradient (cov3D_precomp), else 0


def upstream_backward_image_size(width: int, height: int, tanfovx: float, tanfovy: float):
    """The image size upstream's backward recomputes, ``int(focal * tan(fov / 2) * 2)`` in float32:
    its statistic's NDC factor (it can be one pixel less than the image)."""
    def recomputed(size: int, tan_half_fov: float) -> int:
        tan32 = np.float32(tan_half_fov)
        focal = np.float32(size) / (np.float32(2.0) * tan32)
        return int(np.float32(np.float32(focal * tan32) * np.float32(2.0)))
    return recomputed(width, tanfovx), recomputed(height, tanfovy)


def _rotation_columns(quats: torch.Tensor) -> torch.Tensor:
    """[N, 3, 3] rotation whose columns are the surfel axes t_u, t_v, t_w, from (w, x, y, z)."""
    w, x, y, z = (quats / quats.norm(dim=-1, keepdim=True)).unbind(-1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def _sh_colors(shs: torch.Tensor, degree: int, means: torch.Tensor, campos: torch.Tensor) -> torch.Tensor:
    """[N, 3] = max(SH(normalize(mean - campos)) + 0.5, 0), the 3DGS basis."""
    d = means - campos[None]
    x, y, z = (d / d.norm(dim=-1, keepdim=True)).unbind(-1)
    basis = [torch.full_like(x, _SH_C0)]
    if degree > 0:
        basis += [-_SH_C1 * y, _SH_C1 * z, -_SH_C1 * x]
    if degree > 1:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        basis += [_SH_C2[0] * xy, _SH_C2[1] * yz, _SH_C2[2] * (2 * zz - xx - yy), _SH_C2[3] * xz,
                  _SH_C2[4] * (xx - yy)]
    if degree > 2:
        basis += [_SH_C3[0] * y * (3 * xx - yy), _SH_C3[1] * xy * z, _SH_C3[2] * y * (4 * zz - xx - yy),
                  _SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), _SH_C3[4] * x * (4 * zz - xx - yy),
                  _SH_C3[5] * z * (xx - yy), _SH_C3[6] * x * (xx - 3 * yy)]
    basis = torch.stack(basis, -1)  # [N, K]
    return torch.clamp_min(torch.einsum("nk,nkc->nc", basis, shs[:, : basis.shape[1]]) + 0.5, 0.0)


def _ndc_to_pixels(width: int, height: int) -> torch.Tensor:
    """[4, 3] row-vector map from clip coordinates to homogeneous pixels (centres at integers)."""
    return torch.tensor([[width / 2, 0.0, 0.0], [0.0, height / 2, 0.0], [0.0, 0.0, 0.0],
                         [(width - 1) / 2, (height - 1) / 2, 1.0]], dtype=torch.float64)


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.linalg.cross(a, b, dim=-1)


def render_diff_surfel(settings, means3D: torch.Tensor, opacities: torch.Tensor, shs: Optional[torch.Tensor] = None,
                       colors_precomp: Optional[torch.Tensor] = None, scales: Optional[torch.Tensor] = None,
                       rotations: Optional[torch.Tensor] = None, cov3D_precomp: Optional[torch.Tensor] = None, *,
                       semantics: str = GSPLAT_LIB, near: float = UPSTREAM_NEAR,
                       far: float = UPSTREAM_FAR) -> DiffSurfelRender:
    """Renders one camera from upstream's arguments (``settings`` has the fields of
    ``GaussianRasterizationSettings``). ``near`` and ``far`` are gsplat_lib semantics' planes
    (upstream's are fixed). Inputs are converted to float64; gradients flow to them."""
    if semantics not in (GSPLAT_LIB, UPSTREAM):
        raise ValueError(f"semantics must be {GSPLAT_LIB!r} or {UPSTREAM!r}, got {semantics!r}")
    upstream = semantics == UPSTREAM
    f64 = torch.float64
    width, height = int(settings.image_width), int(settings.image_height)
    means = means3D.to(f64)
    opacity = opacities.to(f64).reshape(-1)
    num = means.shape[0]
    view = settings.viewmatrix.to(f64).detach()  # row vector: p_view = [p, 1] @ view
    world_to_pixels = settings.projmatrix.to(f64).detach() @ _ndc_to_pixels(width, height)  # [4, 3]
    p_view = means @ view[:3, :3] + view[3, :3]

    if cov3D_precomp is None:
        axes = _rotation_columns(rotations.to(f64))
        scaled = scales.to(f64) * settings.scale_modifier
        rows = torch.cat([
            torch.cat([axes[:, :, 0] * scaled[:, 0:1], torch.zeros(num, 1, dtype=f64)], -1)[:, None],
            torch.cat([axes[:, :, 1] * scaled[:, 1:2], torch.zeros(num, 1, dtype=f64)], -1)[:, None],
            torch.cat([means, torch.ones(num, 1, dtype=f64)], -1)[:, None],
        ], 1)  # [N, 3, 4]: the rows of splat2world^T
        homography = (rows @ world_to_pixels).transpose(1, 2)  # M [N, 3, 3]: rows x w, y w, w
        normal = axes[:, :, 2] @ view[:3, :3]
        surfel_ok = (scaled > 0).all(-1) & ((rotations.to(f64) ** 2).sum(-1) > 1e-24)
    else:
        homography = cov3D_precomp.to(f64).reshape(num, 3, 3)
        surfel_ok = torch.ones(num, dtype=torch.bool)
        if upstream:
            normal = torch.tensor([0.0, 0.0, 1.0], dtype=f64).expand(num, 3)
        else:
            # The plane's normal in camera coordinates: the axes are the columns of K^-1 M.
            camera_to_pixels = torch.linalg.inv(view) @ world_to_pixels  # [4, 3], rows 0-2 = K^T
            camera_axes = homography.transpose(1, 2)[:, :2] @ torch.linalg.inv(camera_to_pixels[:3])
            normal = _cross(camera_axes[:, 0], camera_axes[:, 1])
            normal = normal / normal.norm(dim=-1, keepdim=True)
    facing = -(p_view * normal).sum(-1)
    normal = torch.where(facing[:, None] >= 0, normal, -normal)

    if shs is not None:
        colors = _sh_colors(shs.to(f64), int(settings.sh_degree), means, settings.campos.to(f64).detach())
    else:
        colors = colors_precomp.to(f64)
    background = settings.bg.to(f64)

    m0, m1, m2 = homography[:, 0], homography[:, 1], homography[:, 2]
    with torch.no_grad():
        diag = torch.tensor([SIGMA_CUTOFF**2, SIGMA_CUTOFF**2, -1.0], dtype=f64)
        conic = torch.einsum("nij,j,nkj->nik", homography, diag, homography)
        conic22 = conic[:, 2, 2]
        safe22 = torch.where(conic22 != 0, conic22, torch.ones_like(conic22))
        ellipse_centre = torch.stack([conic[:, 0, 2], conic[:, 1, 2]], -1) / safe22[:, None]
        half2 = ellipse_centre**2 - torch.stack([conic[:, 0, 0], conic[:, 1, 1]], -1) / safe22[:, None]
        pixel_x = torch.arange(width, dtype=f64).repeat(height)
        pixel_y = torch.arange(height, dtype=f64).repeat_interleave(width)
        if upstream:
            half = torch.sqrt(torch.clamp_min(half2, UPSTREAM_MIN_HALF_EXTENT2))
            radius = torch.ceil(torch.maximum(half.max(-1).values,
                                              torch.tensor(SIGMA_CUTOFF * UPSTREAM_FILTER_SIZE, dtype=f64)))
            grid = torch.tensor([-(-width // UPSTREAM_TILE), -(-height // UPSTREAM_TILE)], dtype=f64)
            # getRect: (int) truncates towards zero, then clamps to the tile grid.
            rect_min = torch.clamp(torch.trunc((ellipse_centre - radius[:, None]) / UPSTREAM_TILE), min=0)
            rect_min = torch.minimum(rect_min, grid)
            rect_max = torch.clamp(torch.trunc((ellipse_centre + radius[:, None] + UPSTREAM_TILE - 1) / UPSTREAM_TILE),
                                   min=0)
            rect_max = torch.minimum(rect_max, grid)
            visible = ((p_view[:, 2] > UPSTREAM_NEAR) & (facing != 0) & (conic22 != 0)
                       & ((rect_max - rect_min).prod(-1) > 0))
            radii = torch.where(visible, radius, torch.zeros_like(radius)).long()
            tile_x, tile_y = torch.floor(pixel_x / UPSTREAM_TILE), torch.floor(pixel_y / UPSTREAM_TILE)
            support = ((tile_x[:, None] >= rect_min[None, :, 0]) & (tile_x[:, None] < rect_max[None, :, 0])
                       & (tile_y[:, None] >= rect_min[None, :, 1]) & (tile_y[:, None] < rect_max[None, :, 1]))
            depth_key = p_view[:, 2]
        else:
            centre_depth = m2[:, 2]
            safe_depth = torch.where(centre_depth != 0, centre_depth, torch.ones_like(centre_depth))
            centre = torch.stack([m0[:, 2], m1[:, 2]], -1) / safe_depth[:, None]
            half = torch.sqrt(torch.clamp_min(half2, 0.0))
            low = torch.minimum(ellipse_centre - half, centre - GSPLAT_FALLBACK_HALF_EXTENT) - GSPLAT_BOX_PADDING
            high = torch.maximum(ellipse_centre + half, centre + GSPLAT_FALLBACK_HALF_EXTENT) + GSPLAT_BOX_PADDING
            size = torch.tensor([width - 1.0, height - 1.0], dtype=f64)
            any_pixel = (torch.ceil(torch.clamp_min(low, 0.0)) <= torch.floor(torch.minimum(high, size))).all(-1)
            in_front = SIGMA_CUTOFF * torch.sqrt(m2[:, 0] ** 2 + m2[:, 1] ** 2) < GSPLAT_DISK_MARGIN * centre_depth
            finite = torch.isfinite(homography).all(-1).all(-1) & torch.isfinite(colors).all(-1)
            visible = (surfel_ok & finite & (opacity > 0) & (centre_depth >= near) & (centre_depth <= far)
                       & in_front & any_pixel)
            half_sizes = torch.ceil(torch.maximum(high - centre, centre - low))
            radii = torch.where(visible, half_sizes.max(-1).values, torch.zeros_like(centre_depth)).long()
            support = ((pixel_x[:, None] >= low[None, :, 0]) & (pixel_x[:, None] <= high[None, :, 0])
                       & (pixel_y[:, None] >= low[None, :, 1]) & (pixel_y[:, None] <= high[None, :, 1]))
            depth_key = centre_depth
        support &= visible[None, :]
        order = torch.argsort(torch.where(visible, depth_key, torch.full_like(depth_key, torch.inf)), stable=True)

    num_pixels = width * height
    surfel_probe = torch.zeros(num, 2, dtype=f64, requires_grad=True)
    pixel_probes = tuple(torch.zeros(num_pixels, 2, dtype=f64, requires_grad=True) for _ in range(num))
    transmittance = torch.ones(num_pixels, dtype=f64)
    done = torch.zeros(num_pixels, dtype=torch.bool)
    color = torch.zeros(num_pixels, colors.shape[-1], dtype=f64)
    depth_sum = torch.zeros(num_pixels, dtype=f64)
    normal_sum = torch.zeros(num_pixels, 3, dtype=f64)
    median = torch.zeros(num_pixels, dtype=f64)
    distortion = torch.zeros(num_pixels, dtype=f64)
    weight_sum = torch.zeros(num_pixels, dtype=f64)
    mapped_sum = torch.zeros(num_pixels, dtype=f64)
    mapped2_sum = torch.zeros(num_pixels, dtype=f64)
    planes = (UPSTREAM_NEAR, UPSTREAM_FAR) if upstream else (float(near), float(far))

    for n in order[: int(visible.sum())].tolist():
        pixels = support[:, n] & ~done
        if not bool(pixels.any()):
            continue
        hit = (_upstream_hit if upstream else _gsplat_hit)(
            homography[n], surfel_probe[n], pixel_probes[n], pixel_x, pixel_y, opacity[n], planes[0])
        alpha, z, drawn = hit
        drawn = drawn & pixels
        next_t = transmittance * (1 - alpha)
        stop_below = UPSTREAM_MIN_TRANSMITTANCE if upstream else GSPLAT_MIN_TRANSMITTANCE
        stops = drawn & (next_t < stop_below)
        done = done | stops
        adds = drawn & ~stops
        weight = torch.where(adds, alpha * transmittance, torch.zeros_like(alpha))
        safe_z = torch.where(adds, z, torch.ones_like(z))
        mapped = planes[1] * (1 - planes[0] / safe_z) / (planes[1] - planes[0])
        distortion = distortion + weight * (mapped**2 * weight_sum - 2 * mapped * mapped_sum + mapped2_sum)
        weight_sum = weight_sum + weight
        mapped_sum = mapped_sum + weight * mapped
        mapped2_sum = mapped2_sum + weight * mapped**2
        color = color + weight[:, None] * colors[n]
        depth_sum = depth_sum + weight * safe_z
        normal_sum = normal_sum + weight[:, None] * normal[n]
        median = torch.where(adds & (transmittance > 0.5), safe_z, median)
        transmittance = torch.where(adds, next_t, transmittance)

    color = color + transmittance[:, None] * background
    allmap = torch.cat([depth_sum[:, None], (1 - transmittance)[:, None], normal_sum, median[:, None],
                        distortion[:, None]], -1)

    ndc = torch.tensor([width / 2, height / 2], dtype=f64)
    if upstream:
        signed_scale = torch.tensor(upstream_backward_image_size(width, height, settings.tanfovx, settings.tanfovy),
                                    dtype=f64) / 2 * homography[:, 2, 2, None].detach()
    else:
        signed_scale = ndc.expand(num, 2)
    statistic_scale = torch.cat([signed_scale, ndc.expand(num, 2)], -1) * visible[:, None]
    # With cov3D_precomp upstream writes the fallback's gradient (with respect to e) back into
    # dL/dM before reading dL/dM[0,2]: through e_x = C*02 / C*22, d e_x / d M02 = -M22 / C*22.
    fallback_chain = torch.zeros(num, dtype=f64)
    if upstream and cov3D_precomp is not None:
        fallback_chain = (-homography[:, 2, 2] / torch.where(conic22 != 0, conic22, torch.ones_like(conic22))).detach()
    return DiffSurfelRender(
        color=color.T.reshape(-1, height, width), radii=radii, allmap=allmap.T.reshape(7, height, width),
        visible=visible, surfel_probe=surfel_probe, pixel_probes=pixel_probes, statistic_scale=statistic_scale,
        fallback_chain=fallback_chain)


def _gsplat_hit(m, surfel_probe, pixel_probe, x, y, opacity, near):
    """gsplat_lib's per-pixel rule; the probes translate the splat by (surfel + pixel) pixels."""
    shift = surfel_probe[None] + pixel_probe  # [P, 2]
    x = x - shift[:, 0]
    y = y - shift[:, 1]
    l_x = x[:, None] * m[2] - m[0]
    l_y = y[:, None] * m[2] - m[1]
    q = _cross(l_x, l_y)
    usable = q[:, 2] ** 2 > GSPLAT_MIN_Q2_SQUARED
    q2 = torch.where(usable, q[:, 2], torch.ones_like(q[:, 2]))
    u, v = q[:, 0] / q2, q[:, 1] / q2
    rho3d = torch.where(usable, u * u + v * v, torch.full_like(u, torch.inf))
    centre = m[:2, 2] / m[2, 2]
    rho2d = FALLBACK_INV_SIGMA2 * ((x - centre[0]) ** 2 + (y - centre[1]) ** 2)
    on_splat = rho3d <= rho2d
    rho = torch.where(on_splat, torch.where(usable, u * u + v * v, torch.zeros_like(u)), rho2d)
    z = torch.where(on_splat, m[2, 0] * u + m[2, 1] * v + m[2, 2], m[2, 2].expand_as(u))
    alpha = torch.clamp_max(opacity * torch.exp(-0.5 * torch.clamp_max(rho, GSPLAT_MAX_RHO)), MAX_ALPHA)
    drawn = (rho <= GSPLAT_MAX_RHO) & (z >= near) & (alpha >= MIN_ALPHA)
    return alpha, z, drawn


def _upstream_hit(m, surfel_probe, pixel_probe, x, y, opacity, near):
    """Upstream's per-pixel rule. surfel_probe is added to M[0, 2] and M[1, 2] where the pixel
    takes the ray-splat path; pixel_probe to the fallback's centre where it does not."""
    k_plain = x[:, None] * m[2] - m[0]
    l_plain = y[:, None] * m[2] - m[1]
    unit_z = torch.tensor([0.0, 0.0, 1.0], dtype=m.dtype)
    k = k_plain - surfel_probe[0] * unit_z  # M[0, 2] + probe_x
    l = l_plain - surfel_probe[1] * unit_z
    p = _cross(k, l)
    p_plain = _cross(k_plain, l_plain).detach()
    usable = p_plain[:, 2] != 0
    pz = torch.where(usable, p[:, 2], torch.ones_like(p[:, 2]))
    s = p[:, :2] / pz[:, None]
    s_plain = p_plain[:, :2] / torch.where(usable, p_plain[:, 2], torch.ones_like(p_plain[:, 2]))[:, None]
    rho3d = (s * s).sum(-1)
    diag = torch.tensor([SIGMA_CUTOFF**2, SIGMA_CUTOFF**2, -1.0], dtype=m.dtype)
    conic = m @ torch.diag(diag) @ m.T
    ellipse_centre = torch.stack([conic[0, 2], conic[1, 2]]) / conic[2, 2]  # upstream differentiates it too
    offset = ellipse_centre[None] + pixel_probe - torch.stack([x, y], -1)
    rho2d = FALLBACK_INV_SIGMA2 * (offset * offset).sum(-1)
    on_splat = rho3d.detach() <= rho2d.detach()
    rho = torch.where(on_splat, rho3d, rho2d)
    z = torch.where(on_splat, (s * m[2, :2]).sum(-1), (s_plain * m[2, :2]).sum(-1)) + m[2, 2]
    raw_alpha = opacity * torch.exp(-0.5 * rho)
    # Upstream's backward differentiates opacity * G even where alpha was clamped at 0.99.
    alpha = raw_alpha + (torch.clamp_max(raw_alpha, MAX_ALPHA) - raw_alpha).detach()
    drawn = usable & (z >= near) & (alpha >= MIN_ALPHA)
    return alpha, z, drawn


def densification_statistic(render: DiffSurfelRender) -> torch.Tensor:
    """[N, 4] after backward: the signed statistic (x, y) and the absolute one (x, y), in NDC
    units, in the semantics ``render`` was made with; zero for culled surfels."""
    signed = render.surfel_probe.grad
    signed = torch.zeros_like(render.surfel_probe) if signed is None else signed
    per_pixel = [torch.zeros(1, 2, dtype=torch.float64) if probe.grad is None else probe.grad
                 for probe in render.pixel_probes]
    absolute = torch.stack([terms.abs().sum(0) for terms in per_pixel]).reshape(-1, 2)
    fallback = torch.stack([terms.sum(0) for terms in per_pixel]).reshape(-1, 2)
    signed = signed + fallback * render.fallback_chain[:, None]
    return torch.cat([signed, absolute], -1) * render.statistic_scale
