// Ray-splat intersection at one pixel and alpha compositing, with their VJPs.
// docs/design.md, "Rasterizer semantics", per-pixel steps 1-8.
#pragma once

#include "core/common.h"
#include "core/projection.h"

namespace gsl {

constexpr float kAlphaMax = 0.99f;
constexpr float kAlphaMin = 1.0f / 255.0f;
// Not 1e-4: two surfels clamped at alpha 0.99 leave exactly 1e-4, a tie that float32 and
// float64 (the reference in tests) would break differently.
constexpr float kTransmittanceMin = 0.9e-4f;
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

// One evaluated (pixel, surfel) pair.
struct Hit {
  bool use3d;  // the ray-splat footprint won; otherwise the screen fallback
  vec3 l_x, l_y, q;
  float u, v;  // local coordinates of the hit (3D path)
  float dx, dy;  // pixel minus projected centre (fallback path)
  float z;      // hit depth
  float G;      // exp(-rho / 2)
  float alpha;  // min(0.99, o G)
  bool clamped; // o G was above 0.99
};

// Evaluates the splat at pixel centre (px, py). Returns false when the pair is skipped
// (outside the 3-sigma support, hit in front of the near plane, or alpha below 1/255).
GSL_HD bool eval_hit(const Splat& s, float px, float py, float near_plane, Hit& h) {
  const mat3& M = s.M;
  h.l_x = px * M.row(2) - M.row(0);
  h.l_y = py * M.row(2) - M.row(1);
  h.q = cross(h.l_x, h.l_y);
  const float den = h.q.z * h.q.z;
  const float num = h.q.x * h.q.x + h.q.y * h.q.y;
  h.dx = px - s.center.x;
  h.dy = py - s.center.y;
  const float rho2d = kFallbackInvVar * (h.dx * h.dx + h.dy * h.dy);
  // rho3d = num / den, compared without dividing: most pairs of a tile are rejected here.
  h.use3d = den > kEdgeOnEps && num <= rho2d * den;
  if (h.use3d ? !(num <= kSupportRho * den) : !(rho2d <= kSupportRho)) return false;
  float rho;
  if (h.use3d) {
    const float inv_q2 = 1.f / h.q.z;
    h.u = h.q.x * inv_q2;
    h.v = h.q.y * inv_q2;
    rho = h.u * h.u + h.v * h.v;
    h.z = M.m[2][0] * h.u + M.m[2][1] * h.v + M.m[2][2];
  } else {
    h.u = h.v = 0.f;
    rho = rho2d;
    h.z = M.m[2][2];
  }
  if (h.z < near_plane) return false;
  h.G = expf(-0.5f * rho);
  const float oG = s.opacity * h.G;
  h.clamped = oG > kAlphaMax;
  h.alpha = h.clamped ? kAlphaMax : oG;
  return h.alpha >= kAlphaMin;
}

// VJP of eval_hit: dL/dalpha and dL/dz of this pair into dL/dM (accumulated into v_M)
// and dL/dopacity (returned).
GSL_HD float eval_hit_vjp(const Splat& s, float px, float py, const Hit& h, float v_alpha, float v_z, mat3& v_M) {
  const mat3& M = s.M;
  const float v_oG = h.clamped ? 0.f : v_alpha;
  const float v_opacity = v_oG * h.G;
  const float v_rho = -0.5f * h.G * s.opacity * v_oG;
  if (h.use3d) {
    // z = M_2 . (u, v, 1), rho = u^2 + v^2, (u, v) = (q0, q1) / q2.
    const float v_u = 2.f * h.u * v_rho + v_z * M.m[2][0];
    const float v_v = 2.f * h.v * v_rho + v_z * M.m[2][1];
    v_M.m[2][0] += v_z * h.u;
    v_M.m[2][1] += v_z * h.v;
    v_M.m[2][2] += v_z;
    const float inv_q2 = 1.f / h.q.z;
    const vec3 v_q = {v_u * inv_q2, v_v * inv_q2, -(v_u * h.u + v_v * h.v) * inv_q2};
    // q = l_x x l_y, l_x = px M_2 - M_0, l_y = py M_2 - M_1.
    const vec3 v_lx = cross(h.l_y, v_q);
    const vec3 v_ly = cross(v_q, h.l_x);
    const vec3 v_row2 = px * v_lx + py * v_ly;
    v_M.m[2][0] += v_row2.x;
    v_M.m[2][1] += v_row2.y;
    v_M.m[2][2] += v_row2.z;
    v_M.m[0][0] -= v_lx.x;
    v_M.m[0][1] -= v_lx.y;
    v_M.m[0][2] -= v_lx.z;
    v_M.m[1][0] -= v_ly.x;
    v_M.m[1][1] -= v_ly.y;
    v_M.m[1][2] -= v_ly.z;
  } else {
    // rho = 2 |(px, py) - c|^2, c = (M02, M12) / M22, z = M22.
    const float v_cx = -2.f * kFallbackInvVar * h.dx * v_rho;
    const float v_cy = -2.f * kFallbackInvVar * h.dy * v_rho;
    const float inv_z = 1.f / M.m[2][2];
    v_M.m[0][2] += v_cx * inv_z;
    v_M.m[1][2] += v_cy * inv_z;
    v_M.m[2][2] += v_z - (v_cx * s.center.x + v_cy * s.center.y) * inv_z;
  }
  return v_opacity;
}

// Gradient of a pair's loss contribution with respect to a screen translation of the splat
// (M_0 += d_x M_2, M_1 += d_y M_2): the densification statistic, in pixels.
GSL_HD vec2 screen_translation_grad(const mat3& M, const mat3& v_M) {
  return {dot(v_M.row(0), M.row(2)), dot(v_M.row(1), M.row(2))};
}

// Hit depth mapped to [0, 1] between the near and far planes, for the distortion loss.
// Written so the factor of the planes is loop-invariant: one division per hit.
GSL_HD float distortion_depth(float z, float near_plane, float far_plane) {
  return (1.f - near_plane / z) * (far_plane / (far_plane - near_plane));
}

GSL_HD float distortion_depth_grad(float z, float near_plane, float far_plane) {
  return (far_plane * near_plane / (far_plane - near_plane)) / (z * z);
}

// Running sums of the one-pass distortion D = sum_i w_i sum_{j<i} w_j (m_i - m_j)^2.
struct DistortionSums {
  float weight = 0.f;   // A  = sum w_j
  float first = 0.f;    // S1 = sum w_j m_j
  float second = 0.f;   // S2 = sum w_j m_j^2
  float distortion = 0.f;

  GSL_HD void add(float w, float m) {
    distortion += w * (m * m * weight - 2.f * m * first + second);
    weight += w;
    first += w * m;
    second += w * m * m;
  }
  // dD/dw_k and dD/dm_k given the final sums (the j = k terms vanish).
  GSL_HD float grad_weight(float m) const { return m * m * weight - 2.f * m * first + second; }
  GSL_HD float grad_depth(float w, float m) const { return 2.f * w * (m * weight - first); }
};

}  // namespace gsl
