// Ray-splat intersection at one pixel and alpha compositing, with their VJPs.
// docs/design.md, "Rasterizer semantics", per-pixel steps 1-8. Written for a lane type F
// (core/lanes.h): one pixel per thread on CUDA (F = float), a row of pixels on the CPU.
#pragma once

#include "core/common.h"
#include "core/lanes.h"
#include "core/projection.h"

namespace gsl {

constexpr float kAlphaMax = 0.99f;
constexpr float kAlphaMin = 1.0f / 255.0f;
// Not 1e-4: two surfels clamped at alpha 0.99 leave exactly 1e-4, a tie that float32 and
// float64 (the reference in tests) would break differently.
constexpr float kTransmittanceMin = 0.9e-4f;
// Upstream semantics stop at 1e-4 (forward.cu), tie and all.
constexpr float kUpstreamTransmittanceMin = 1e-4f;
// Inverse variance of the screen-space fallback: sigma^2 = 0.5 px^2.
constexpr float kFallbackInvVar = 2.0f;
// Below this q2^2 the ray is parallel to the surfel's plane: no 3D hit.
constexpr float kEdgeOnEps = 1e-30f;

// What a pixel needs of one projected surfel.
struct Splat {
  mat3 M;
  vec2 center;
  float opacity;
};

// The near and far planes with the factors the per-pair depth math needs, computed once per
// call instead of once per pair.
struct DepthRange {
  float near_plane, far_plane;
  float scale;       // far / (far - near): distortion_depth's factor
  float grad_scale;  // far near / (far - near): distortion_depth_grad's numerator
};
GSL_HD DepthRange depth_range(float near_plane, float far_plane) {
  return {near_plane, far_plane, far_plane / (far_plane - near_plane), far_plane * near_plane / (far_plane - near_plane)};
}

// One evaluated (pixel, surfel) pair per lane. The lanes of a group share a pixel row, so
// what depends only on y (l_y, dy) is a Row: a plain float (a row per half for a LanePair).
template <class F>
struct Hit {
  using Mask = typename Lanes<F>::Mask;
  using Row = typename Lanes<F>::Row;
  Mask use3d;    // the ray-splat footprint won; otherwise the screen fallback
  Mask clamped;  // o G was above 0.99
  F lx_x, lx_y, lx_z;  // l_x = px M_2 - M_0
  Row ly_x, ly_y, ly_z;  // l_y = py M_2 - M_1
  F q_x, q_y, q_z;     // q = l_x x l_y
  F inv_q2;            // 1 / q_z (3D path; 1 on the fallback)
  F u, v;              // local coordinates of the hit (3D path; 0 on the fallback in gsplat_lib semantics)
  F dx;                // pixel minus the splat's centre (fallback path)
  Row dy;
  F z;      // hit depth
  F G;      // exp(-rho / 2)
  F alpha;  // min(0.99, o G)
};

// What a splat's evaluation needs that depends only on the pixel columns px: the same for
// every row, so the CPU computes it once per column group of a splat's rectangle
// (for_each_lane_group).
template <class F>
struct SplatColumns {
  F px;
  F lx_x, lx_y, lx_z;  // l_x = px M_2 - M_0
  F dx, dx2;           // px minus the projected centre, squared
};
template <class F>
GSL_HD SplatColumns<F> splat_columns(const Splat& s, F px) {
  const mat3& M = s.M;
  SplatColumns<F> c;
  c.px = px;
  c.lx_x = px * M.m[2][0] - M.m[0][0];
  c.lx_y = px * M.m[2][1] - M.m[0][1];
  c.lx_z = px * M.m[2][2] - M.m[0][2];
  c.dx = px - s.center.x;
  c.dx2 = c.dx * c.dx;
  return c;
}

// G, the clamped alpha and the clamp's lanes from rho, in both semantics; returns alpha >= 1/255.
template <class F>
GSL_HD typename Lanes<F>::Mask set_alpha(const Splat& s, F rho, Hit<F>& h) {
  h.G = exp_nonpositive(-0.5f * rho);
  const F oG = s.opacity * h.G;
  h.clamped = oG > kAlphaMax;
  h.alpha = select(h.clamped, broadcast<F>(kAlphaMax), oG);
  return h.alpha >= kAlphaMin;
}

// Upstream semantics' hit (docs/design.md, "Faithful mode"): no 3-sigma cut; (u, v) = (q0, q1) / q2
// wherever q2 != 0 (else no hit), the fallback centred on s.center (= e), the depth from (u, v)
// on both paths. A pair whose rho3d or depth is not finite (float32 overflow next to the plane's
// horizon line) is skipped, so no Inf or NaN reaches a pixel.
template <class F>
GSL_HD typename Lanes<F>::Mask eval_hit_upstream(const Splat& s, const SplatColumns<F>& columns, F rho2d,
                                                 float near_plane, Hit<F>& h) {
  using Mask = typename Lanes<F>::Mask;
  const mat3& M = s.M;
  const Mask usable = h.q_z != 0.f;
  h.inv_q2 = 1.f / select(usable, h.q_z, broadcast<F>(1.f));
  h.u = h.q_x * h.inv_q2;
  h.v = h.q_y * h.inv_q2;
  const F rho3d = h.u * h.u + h.v * h.v;
  h.use3d = rho3d <= rho2d;
  const F rho = select(h.use3d, rho3d, rho2d);
  h.z = M.m[2][0] * h.u + M.m[2][1] * h.v + M.m[2][2];
  const Mask inside = usable & finite_lanes(rho3d) & finite_lanes(h.z) & lanes_not(Mask(h.z < near_plane));
  if (!any(inside)) return inside;
  return inside & set_alpha(s, rho, h);
}

// Evaluates the splat at pixel centres (columns.px, py). Returns the lanes that contribute:
// inside the 3-sigma support (gsplat_lib semantics), hit behind the near plane, and alpha at
// least 1/255. Values in the other lanes are unspecified (callers select them away).
template <Semantics S, class F>
GSL_HD typename Lanes<F>::Mask eval_hit(const Splat& s, const SplatColumns<F>& columns,
                                        typename Lanes<F>::Row py, float near_plane, Hit<F>& h) {
  using Mask = typename Lanes<F>::Mask;
  const mat3& M = s.M;
  h.lx_x = columns.lx_x;
  h.lx_y = columns.lx_y;
  h.lx_z = columns.lx_z;
  h.ly_x = py * M.m[2][0] - M.m[1][0];
  h.ly_y = py * M.m[2][1] - M.m[1][1];
  h.ly_z = py * M.m[2][2] - M.m[1][2];
  h.q_x = h.lx_y * h.ly_z - h.lx_z * h.ly_y;
  h.q_y = h.lx_z * h.ly_x - h.lx_x * h.ly_z;
  h.q_z = h.lx_x * h.ly_y - h.lx_y * h.ly_x;
  const F den = h.q_z * h.q_z;
  const F num = h.q_x * h.q_x + h.q_y * h.q_y;
  h.dx = columns.dx;
  h.dy = py - s.center.y;
  const F rho2d = kFallbackInvVar * (columns.dx2 + h.dy * h.dy);
  if constexpr (S == Semantics::kUpstream) return eval_hit_upstream(s, columns, rho2d, near_plane, h);
  // rho3d = num / den, compared without dividing: most pairs of a tile are rejected here.
  h.use3d = (den > kEdgeOnEps) & (num <= rho2d * den);
  Mask inside = select(h.use3d, Mask(num <= kSupportRho * den), Mask(rho2d <= kSupportRho));
  if (!any(inside)) return inside;
  h.inv_q2 = 1.f / select(h.use3d, h.q_z, broadcast<F>(1.f));
  h.u = select(h.use3d, h.q_x * h.inv_q2, broadcast<F>(0.f));
  h.v = select(h.use3d, h.q_y * h.inv_q2, broadcast<F>(0.f));
  const F rho = select(h.use3d, h.u * h.u + h.v * h.v, rho2d);
  // On the fallback u = v = 0, so this is M22 exactly (the centre depth, > 0): no select.
  h.z = M.m[2][0] * h.u + M.m[2][1] * h.v + M.m[2][2];
  inside = inside & lanes_not(Mask(h.z < near_plane));
  return inside & set_alpha(s, rho, h);
}
template <Semantics S, class F>
GSL_HD typename Lanes<F>::Mask eval_hit(const Splat& s, F px, typename Lanes<F>::Row py, float near_plane,
                                        Hit<F>& h) {
  return eval_hit<S>(s, splat_columns(s, px), py, near_plane, h);
}

// VJP of eval_hit: dL/dalpha and dL/dz of the pair into dL/dM (written to v_M, row-major)
// and dL/dopacity (returned). Upstream semantics differentiate o G also where alpha was clamped
// at 0.99, and on the fallback path give dL/d(s.center) (v_center; 0 on the ray-splat path,
// and in gsplat_lib semantics, whose fallback centre is a function of M chained here) and
// dL/dM_2 = (u, v, 1) dL/dz with (u, v) held constant (upstream's backward.cu).
template <Semantics S, class F>
GSL_HD F eval_hit_vjp(const Splat& s, F px, typename Lanes<F>::Row py, const Hit<F>& h, F v_alpha, F v_z, F v_M[9],
                      F v_center[2]) {
  constexpr bool kUpstream = S == Semantics::kUpstream;
  const mat3& M = s.M;
  const F zero = broadcast<F>(0.f);
  const F v_oG = kUpstream ? v_alpha : select(h.clamped, zero, v_alpha);
  v_center[0] = zero;
  v_center[1] = zero;
  const F v_opacity = v_oG * h.G;
  const F v_rho = -0.5f * h.G * s.opacity * v_oG;
  for (int k = 0; k < 9; ++k) v_M[k] = zero;
  if (any(h.use3d)) {
    // z = M_2 . (u, v, 1), rho = u^2 + v^2, (u, v) = (q0, q1) / q2.
    const F v_u = 2.f * h.u * v_rho + v_z * M.m[2][0];
    const F v_v = 2.f * h.v * v_rho + v_z * M.m[2][1];
    const F vq_x = v_u * h.inv_q2, vq_y = v_v * h.inv_q2, vq_z = -(v_u * h.u + v_v * h.v) * h.inv_q2;
    // q = l_x x l_y, l_x = px M_2 - M_0, l_y = py M_2 - M_1.
    const F vlx_x = h.ly_y * vq_z - h.ly_z * vq_y;  // v_lx = l_y x v_q
    const F vlx_y = h.ly_z * vq_x - h.ly_x * vq_z;
    const F vlx_z = h.ly_x * vq_y - h.ly_y * vq_x;
    const F vly_x = vq_y * h.lx_z - vq_z * h.lx_y;  // v_ly = v_q x l_x
    const F vly_y = vq_z * h.lx_x - vq_x * h.lx_z;
    const F vly_z = vq_x * h.lx_y - vq_y * h.lx_x;
    const F row2[3] = {v_z * h.u + (px * vlx_x + py * vly_x), v_z * h.v + (px * vlx_y + py * vly_y),
                       v_z + (px * vlx_z + py * vly_z)};
    const F rows01[6] = {-vlx_x, -vlx_y, -vlx_z, -vly_x, -vly_y, -vly_z};
    for (int k = 0; k < 6; ++k) v_M[k] = select(h.use3d, rows01[k], zero);
    for (int k = 0; k < 3; ++k) v_M[6 + k] = select(h.use3d, row2[k], zero);
  }
  if (any(lanes_not(h.use3d))) {
    // rho = 2 |(px, py) - c|^2.
    const F v_cx = -2.f * kFallbackInvVar * h.dx * v_rho;
    const F v_cy = -2.f * kFallbackInvVar * h.dy * v_rho;
    if constexpr (kUpstream) {
      // c = e, chained into M once per item (reduce_item); z = M_2 . (u, v, 1).
      v_center[0] = select(h.use3d, zero, v_cx);
      v_center[1] = select(h.use3d, zero, v_cy);
      v_M[6] = select(h.use3d, v_M[6], h.u * v_z);
      v_M[7] = select(h.use3d, v_M[7], h.v * v_z);
      v_M[8] = select(h.use3d, v_M[8], v_z);
    } else {
      // c = (M02, M12) / M22, z = M22.
      const float inv_z = 1.f / M.m[2][2];
      v_M[2] = select(h.use3d, v_M[2], v_cx * inv_z);
      v_M[5] = select(h.use3d, v_M[5], v_cy * inv_z);
      v_M[8] = select(h.use3d, v_M[8], v_z - (v_cx * s.center.x + v_cy * s.center.y) * inv_z);
    }
  }
  return v_opacity;
}

// Upstream semantics: dL/dM of the ellipse-box centre e = (C*02, C*12) / C*22, C* = M diag(9, 9, -1)
// M^T, given dL/de (v_e), added to v_M (row-major). e is what upstream's fallback is centred on.
GSL_HD void ellipse_centre_vjp(const mat3& M, const float v_e[2], float v_M[9]) {
  const float d[3] = {kSupportRho, kSupportRho, -1.f};
  const auto dual = [&](int i, int j) {
    return kSupportRho * (M.m[i][0] * M.m[j][0] + M.m[i][1] * M.m[j][1]) - M.m[i][2] * M.m[j][2];
  };
  const float inv_c22 = 1.f / dual(2, 2);
  const float e[2] = {dual(0, 2) * inv_c22, dual(1, 2) * inv_c22};
  for (int k = 0; k < 3; ++k) {
    const float a = d[k] * inv_c22;
    v_M[0 + k] += v_e[0] * a * M.m[2][k];
    v_M[3 + k] += v_e[1] * a * M.m[2][k];
    v_M[6 + k] += a * (v_e[0] * (M.m[0][k] - 2.f * e[0] * M.m[2][k]) + v_e[1] * (M.m[1][k] - 2.f * e[1] * M.m[2][k]));
  }
}

// Gradient of a pair's loss contribution with respect to a screen translation of the splat
// (M_0 += d_x M_2, M_1 += d_y M_2): the densification statistic, in pixels.
template <class F>
GSL_HD void screen_translation_grad(const mat3& M, const F v_M[9], F& grad_x, F& grad_y) {
  grad_x = v_M[0] * M.m[2][0] + v_M[1] * M.m[2][1] + v_M[2] * M.m[2][2];
  grad_y = v_M[3] * M.m[2][0] + v_M[4] * M.m[2][1] + v_M[5] * M.m[2][2];
}

// Hit depth mapped to [0, 1] between the near and far planes, for the distortion loss: one
// division per hit, the planes' factor comes with the range.
template <class F>
GSL_HD F distortion_depth(F z, const DepthRange& r) {
  return (1.f - r.near_plane / z) * r.scale;
}

template <class F>
GSL_HD F distortion_depth_grad(F z, const DepthRange& r) {
  return r.grad_scale / (z * z);
}

// Running sums of the one-pass distortion D = sum_i w_i sum_{j<i} w_j (m_i - m_j)^2.
template <class F>
struct DistortionSums {
  F weight{};  // A  = sum w_j
  F first{};   // S1 = sum w_j m_j
  F second{};  // S2 = sum w_j m_j^2
  F distortion{};

  // Adds (w, m): w and m finite (w = m = 0 adds nothing).
  GSL_HD void add(F w, F m) {
    distortion = distortion + w * (m * m * weight - 2.f * m * first + second);
    weight = weight + w;
    first = first + w * m;
    second = second + w * m * m;
  }
  // dD/dw_k and dD/dm_k given the final sums (the j = k terms vanish).
  GSL_HD F grad_weight(F m) const { return m * m * weight - 2.f * m * first + second; }
  GSL_HD F grad_depth(F w, F m) const { return 2.f * w * (m * weight - first); }
};

}  // namespace gsl
