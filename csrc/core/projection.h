// Per (camera, surfel) projection of a 2D Gaussian and its vector-Jacobian product.
// docs/design.md, "Rasterizer semantics", projection steps 1-5.
#pragma once

#include "core/common.h"

namespace gsl {

constexpr int kTileSize = 16;
// Squared Mahalanobis radius of the support: the disk u^2 + v^2 <= 9 (3 sigma).
constexpr float kSupportRho = 9.0f;
// 3 sigma of the screen-space fallback filter (sigma^2 = 0.5 px^2): sqrt(4.5).
constexpr float kFallbackRadius = 2.12132034f;
// Slack added to every box so float rounding never drops a tile that a pixel needs.
constexpr float kBoxPadding = 0.5f;

// A pinhole camera: world-to-camera rotation W and translation t, intrinsics K.
struct Camera {
  mat3 W;
  vec3 t;
  mat3 K;
};

// viewmat: [4, 4] row-major world-to-camera; K: [3, 3] row-major.
GSL_HD Camera load_camera(const float* viewmat, const float* K) {
  Camera cam;
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) {
      cam.W.m[r][c] = viewmat[4 * r + c];
      cam.K.m[r][c] = K[3 * r + c];
    }
  }
  cam.t = {viewmat[3], viewmat[7], viewmat[11]};
  return cam;
}

// Rotation of the unit quaternion (w, x, y, z); columns are t_u, t_v, t_w.
GSL_HD mat3 quat_to_rotmat(float w, float x, float y, float z) {
  mat3 R;
  R.m[0][0] = 1.f - 2.f * (y * y + z * z);
  R.m[0][1] = 2.f * (x * y - w * z);
  R.m[0][2] = 2.f * (x * z + w * y);
  R.m[1][0] = 2.f * (x * y + w * z);
  R.m[1][1] = 1.f - 2.f * (x * x + z * z);
  R.m[1][2] = 2.f * (y * z - w * x);
  R.m[2][0] = 2.f * (x * z - w * y);
  R.m[2][1] = 2.f * (y * z + w * x);
  R.m[2][2] = 1.f - 2.f * (x * x + y * y);
  return R;
}

// VJP of quat_to_rotmat(q / |q|) with respect to the unnormalised q = (w, x, y, z).
GSL_HD void quat_to_rotmat_vjp(const float* quat, const mat3& v_R, float* v_quat) {
  const float norm2 = quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] + quat[3] * quat[3];
  const float inv_norm = 1.f / sqrtf(norm2);
  const float w = quat[0] * inv_norm, x = quat[1] * inv_norm, y = quat[2] * inv_norm, z = quat[3] * inv_norm;
  const float(*g)[3] = v_R.m;
  float v_n[4];
  v_n[0] = 2.f * (-z * g[0][1] + y * g[0][2] + z * g[1][0] - x * g[1][2] - y * g[2][0] + x * g[2][1]);
  v_n[1] = 2.f * (y * g[0][1] + z * g[0][2] + y * g[1][0] - 2.f * x * g[1][1] - w * g[1][2] + z * g[2][0] +
                  w * g[2][1] - 2.f * x * g[2][2]);
  v_n[2] = 2.f * (-2.f * y * g[0][0] + x * g[0][1] + w * g[0][2] + x * g[1][0] + z * g[1][2] - w * g[2][0] +
                  z * g[2][1] - 2.f * y * g[2][2]);
  v_n[3] = 2.f * (-2.f * z * g[0][0] - w * g[0][1] + x * g[0][2] + w * g[1][0] - 2.f * z * g[1][1] +
                  y * g[1][2] + x * g[2][0] + y * g[2][1]);
  // Through the normalisation: v_q = (v_n - n (n . v_n)) / |q|.
  const float n_dot = w * v_n[0] + x * v_n[1] + y * v_n[2] + z * v_n[3];
  const float n[4] = {w, x, y, z};
  for (int i = 0; i < 4; ++i) v_quat[i] = (v_n[i] - n[i] * n_dot) * inv_norm;
}

// What one camera sees of one surfel.
// Largest reported radius; exactly representable in float32.
constexpr float kMaxRadius = 1073741824.0f;  // 2^30

struct Projection {
  bool visible;  // false: culled, nothing below is meaningful
  mat3 M;        // K [W t_u s_u | W t_v s_v | W p + t]: local (u, v, 1) -> homogeneous pixel
  vec3 normal;   // camera frame, facing the camera
  vec2 center;   // projected centre (pixels)
  float depth;   // camera-space z of the centre
  vec2 box_lo;   // screen box covering the 3-sigma disk and the fallback filter
  vec2 box_hi;
};

// The surfel's inputs: mean [3], quat [4], scale [2], opacity, colour [D].
GSL_HD Projection project_surfel(const float* mean, const float* quat, const float* scale, float opacity,
                                 const float* color, int num_channels, const Camera& cam, float scale_modifier,
                                 float near_plane, float far_plane) {
  Projection p;
  p.visible = false;
  bool finite = is_finite(opacity) && opacity > 0.f;
  for (int i = 0; i < 3; ++i) finite = finite && is_finite(mean[i]);
  for (int i = 0; i < 4; ++i) finite = finite && is_finite(quat[i]);
  for (int i = 0; i < num_channels; ++i) finite = finite && is_finite(color[i]);
  const float s_u = scale[0] * scale_modifier, s_v = scale[1] * scale_modifier;
  finite = finite && is_finite(s_u) && is_finite(s_v) && s_u > 0.f && s_v > 0.f;
  if (!finite) return p;
  const float qn2 = quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] + quat[3] * quat[3];
  if (!(qn2 > 1e-24f) || !is_finite(qn2)) return p;  // an overflowing |q|^2 would make q/|q| zero
  const float inv_q = 1.f / sqrtf(qn2);
  const mat3 R = quat_to_rotmat(quat[0] * inv_q, quat[1] * inv_q, quat[2] * inv_q, quat[3] * inv_q);

  const vec3 p_world = {mean[0], mean[1], mean[2]};
  const vec3 p_cam = mul(cam.W, p_world) + cam.t;
  if (!(p_cam.z >= near_plane && p_cam.z <= far_plane)) return p;

  const vec3 col0 = mul(cam.K, s_u * mul(cam.W, R.col(0)));
  const vec3 col1 = mul(cam.K, s_v * mul(cam.W, R.col(1)));
  const vec3 col2 = mul(cam.K, p_cam);
  const vec3 cols[3] = {col0, col1, col2};
  for (int c = 0; c < 3; ++c) {
    p.M.m[0][c] = cols[c].x;
    p.M.m[1][c] = cols[c].y;
    p.M.m[2][c] = cols[c].z;
  }
  const mat3& M = p.M;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      if (!is_finite(M.m[i][j])) return p;

  // The disk's nearest point must stay in front of the camera, else its outline is no ellipse.
  const float tilt = sqrtf(M.m[2][0] * M.m[2][0] + M.m[2][1] * M.m[2][1]);
  if (!(3.f * tilt < 0.999f * M.m[2][2])) return p;

  vec3 n = mul(cam.W, R.col(2));
  if (dot(n, p_cam) > 0.f) n = -1.f * n;
  p.normal = n;
  p.depth = p_cam.z;
  p.center = {M.m[0][2] / M.m[2][2], M.m[1][2] / M.m[2][2]};

  // Dual conic C* = M diag(9, 9, -1) M^T of the 3-sigma disk; its tangent lines x = const
  // and y = const give the exact perspective box.
  auto dual = [&](int i, int j) {
    return kSupportRho * (M.m[i][0] * M.m[j][0] + M.m[i][1] * M.m[j][1]) - M.m[i][2] * M.m[j][2];
  };
  const float c22 = dual(2, 2);  // < 0, guaranteed by the test above
  const float ex = dual(0, 2) / c22, ey = dual(1, 2) / c22;
  const float hx = sqrtf(fmaxf(0.f, ex * ex - dual(0, 0) / c22));
  const float hy = sqrtf(fmaxf(0.f, ey * ey - dual(1, 1) / c22));
  p.box_lo = {fminf(ex - hx, p.center.x - kFallbackRadius) - kBoxPadding,
              fminf(ey - hy, p.center.y - kFallbackRadius) - kBoxPadding};
  p.box_hi = {fmaxf(ex + hx, p.center.x + kFallbackRadius) + kBoxPadding,
              fmaxf(ey + hy, p.center.y + kFallbackRadius) + kBoxPadding};
  p.visible = is_finite(p.box_lo.x) && is_finite(p.box_lo.y) && is_finite(p.box_hi.x) && is_finite(p.box_hi.y);
  return p;
}

// Pixels [x0, x1) x [y0, y1) whose centres (i + 0.5, j + 0.5) lie in a box, clamped to the
// image: every pixel a splat can reach (outside its padded box rho > 9 everywhere).
struct PixelRect {
  int x0, y0, x1, y1;
  GSL_HD bool empty() const { return x1 <= x0 || y1 <= y0; }
  // The tiles the rectangle overlaps.
  GSL_HD int tile_x0() const { return x0 / kTileSize; }
  GSL_HD int tile_y0() const { return y0 / kTileSize; }
  GSL_HD int tile_x1() const { return (x1 - 1) / kTileSize + 1; }
  GSL_HD int tile_y1() const { return (y1 - 1) / kTileSize + 1; }
  GSL_HD int64_t tile_count() const {
    return empty() ? 0 : int64_t(tile_x1() - tile_x0()) * int64_t(tile_y1() - tile_y0());
  }
};

// Clamped in float first: huge boxes must not overflow the int conversion.
GSL_HD int first_pixel(float lo, int size) { return static_cast<int>(ceilf(fminf(fmaxf(lo - 0.5f, 0.f), float(size)))); }
GSL_HD int end_pixel(float hi, int size) {
  return static_cast<int>(floorf(fminf(fmaxf(hi - 0.5f, -1.f), float(size - 1)))) + 1;
}

GSL_HD PixelRect pixel_rect(vec2 lo, vec2 hi, int width, int height) {
  return {first_pixel(lo.x, width), first_pixel(lo.y, height), end_pixel(hi.x, width), end_pixel(hi.y, height)};
}

// VJP of project_surfel for a visible surfel: from dL/dM and dL/dnormal to the surfel's
// mean, quat and scales (accumulated into v_mean [3], v_quat [4], v_scale [2]).
GSL_HD void project_surfel_vjp(const float* mean, const float* quat, const float* scale, const Camera& cam,
                               float scale_modifier, const mat3& v_M, vec3 v_normal, float* v_mean, float* v_quat,
                               float* v_scale) {
  const float s_u = scale[0] * scale_modifier, s_v = scale[1] * scale_modifier;
  const float qn2 = quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] + quat[3] * quat[3];
  const float inv_q = 1.f / sqrtf(qn2);
  const mat3 R = quat_to_rotmat(quat[0] * inv_q, quat[1] * inv_q, quat[2] * inv_q, quat[3] * inv_q);
  const mat3 A = mul(cam.K, cam.W);
  const vec3 p_world = {mean[0], mean[1], mean[2]};
  const vec3 p_cam = mul(cam.W, p_world) + cam.t;

  // Column 2 = K (W p + t).
  const vec3 v_p = mul_transposed(A, v_M.col(2));
  v_mean[0] += v_p.x;
  v_mean[1] += v_p.y;
  v_mean[2] += v_p.z;
  // Columns 0 and 1 = A t_u s_u and A t_v s_v.
  const vec3 v_col0 = v_M.col(0), v_col1 = v_M.col(1);
  const vec3 A_tu = mul(A, R.col(0)), A_tv = mul(A, R.col(1));
  v_scale[0] += dot(v_col0, A_tu) * scale_modifier;
  v_scale[1] += dot(v_col1, A_tv) * scale_modifier;
  const vec3 v_tu = s_u * mul_transposed(A, v_col0);
  const vec3 v_tv = s_v * mul_transposed(A, v_col1);
  // The normal W t_w, flipped to face the camera (the flip is locally constant).
  const vec3 n = mul(cam.W, R.col(2));
  const float sign = dot(n, p_cam) > 0.f ? -1.f : 1.f;
  const vec3 v_tw = sign * mul_transposed(cam.W, v_normal);
  mat3 v_R;
  const vec3 v_cols[3] = {v_tu, v_tv, v_tw};
  for (int c = 0; c < 3; ++c) {
    v_R.m[0][c] = v_cols[c].x;
    v_R.m[1][c] = v_cols[c].y;
    v_R.m[2][c] = v_cols[c].z;
  }
  float v_q[4];
  quat_to_rotmat_vjp(quat, v_R, v_q);
  for (int i = 0; i < 4; ++i) v_quat[i] += v_q[i];
}

}  // namespace gsl
