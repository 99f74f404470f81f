// Per (camera, surfel) projection of a 2D Gaussian and its vector-Jacobian product.
// docs/design.md, "Rasterizer semantics", projection steps 1-5.
#pragma once

#include "core/common.h"
#include "core/lanes.h"
#include "core/semantics.h"

namespace gsl {

constexpr int kTileSize = 16;
// Squared Mahalanobis radius of the support: the disk u^2 + v^2 <= 9 (3 sigma).
constexpr float kSupportRho = 9.0f;
// 3 sigma of the screen-space fallback filter (sigma^2 = 0.5 px^2): sqrt(4.5).
constexpr float kFallbackRadius = 2.12132034f;
// Slack added to every box so float rounding never drops a tile that a pixel needs.
constexpr float kBoxPadding = 0.5f;
// Upstream semantics: the floor under the squared half extents of the box, and the smallest
// radius (3 times its low-pass filter size, 0.707106 px; forward.cu).
constexpr float kUpstreamMinHalfExtent2 = 1e-4f;
constexpr float kUpstreamMinRadius = 3.f * 0.707106f;

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

// Largest reported radius; exactly representable in float32.
constexpr float kMaxRadius = 1073741824.0f;  // 2^30

// A 3-vector of lanes: one surfel per lane (F = float on CUDA, a vector on the CPU).
template <class F>
struct Vec3Lanes {
  F x, y, z;
};
template <class F>
GSL_HD F dot_lanes(const float* row, const Vec3Lanes<F>& v) {
  return v.x * row[0] + v.y * row[1] + v.z * row[2];
}
template <class F>
GSL_HD Vec3Lanes<F> mul_lanes(const mat3& a, const Vec3Lanes<F>& v) {
  return {dot_lanes(a.m[0], v), dot_lanes(a.m[1], v), dot_lanes(a.m[2], v)};
}
template <class F>
GSL_HD Vec3Lanes<F> scale_lanes(F s, const Vec3Lanes<F>& v) {
  return {s * v.x, s * v.y, s * v.z};
}

template <class F>
GSL_HD Vec3Lanes<F> mul_transposed_lanes(const mat3& a, const Vec3Lanes<F>& v) {
  return {v.x * a.m[0][0] + v.y * a.m[1][0] + v.z * a.m[2][0], v.x * a.m[0][1] + v.y * a.m[1][1] + v.z * a.m[2][1],
          v.x * a.m[0][2] + v.y * a.m[1][2] + v.z * a.m[2][2]};
}
template <class F>
GSL_HD F dot3_lanes(const Vec3Lanes<F>& a, const Vec3Lanes<F>& b) {
  return a.x * b.x + a.y * b.y + a.z * b.z;
}

// The rotation of q / |q|, q = (w, x, y, z): its columns are the tangents t_u, t_v and the
// normal t_w.
template <class F>
struct RotationLanes {
  F inv_norm;    // 1 / |q|
  F w, x, y, z;  // q / |q|
  Vec3Lanes<F> t_u, t_v, t_w;
};
template <class F>
GSL_HD RotationLanes<F> rotation_lanes(const F quat[4], F qn2) {
  RotationLanes<F> r;
  r.inv_norm = 1.f / sqrt_lanes(qn2);
  const F w = quat[0] * r.inv_norm, x = quat[1] * r.inv_norm, y = quat[2] * r.inv_norm, z = quat[3] * r.inv_norm;
  r.w = w, r.x = x, r.y = y, r.z = z;
  r.t_u = {1.f - 2.f * (y * y + z * z), 2.f * (x * y + w * z), 2.f * (x * z - w * y)};
  r.t_v = {2.f * (x * y - w * z), 1.f - 2.f * (x * x + z * z), 2.f * (y * z + w * x)};
  r.t_w = {2.f * (x * z + w * y), 2.f * (y * z - w * x), 1.f - 2.f * (x * x + y * y)};
  return r;
}
template <class F>
GSL_HD F squared_norm4(const F q[4]) {
  return q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3];
}

// VJP of rotation_lanes' columns with respect to the unnormalised q: v_cols[c] = dL/d(column c).
template <class F>
GSL_HD void rotation_vjp_lanes(const RotationLanes<F>& r, const Vec3Lanes<F> v_cols[3], F v_quat[4]) {
  const F w = r.w, x = r.x, y = r.y, z = r.z;
  // g[i][j] = dL/dR_ij, column j being v_cols[j].
  const F g00 = v_cols[0].x, g10 = v_cols[0].y, g20 = v_cols[0].z;
  const F g01 = v_cols[1].x, g11 = v_cols[1].y, g21 = v_cols[1].z;
  const F g02 = v_cols[2].x, g12 = v_cols[2].y, g22 = v_cols[2].z;
  F v_n[4];
  v_n[0] = 2.f * (-z * g01 + y * g02 + z * g10 - x * g12 - y * g20 + x * g21);
  v_n[1] = 2.f * (y * g01 + z * g02 + y * g10 - 2.f * x * g11 - w * g12 + z * g20 + w * g21 - 2.f * x * g22);
  v_n[2] = 2.f * (-2.f * y * g00 + x * g01 + w * g02 + x * g10 + z * g12 - w * g20 + z * g21 - 2.f * y * g22);
  v_n[3] = 2.f * (-2.f * z * g00 - w * g01 + x * g02 + w * g10 - 2.f * z * g11 + y * g12 + x * g20 + y * g21);
  // Through the normalisation: v_q = (v_n - n (n . v_n)) / |q|.
  const F n_dot = w * v_n[0] + x * v_n[1] + y * v_n[2] + z * v_n[3];
  const F n[4] = {w, x, y, z};
  for (int i = 0; i < 4; ++i) v_quat[i] = (v_n[i] - n[i] * n_dot) * r.inv_norm;
}

// A world point in the camera frame: W p + t.
template <class F>
GSL_HD Vec3Lanes<F> camera_point(const Camera& cam, const F p[3]) {
  const Vec3Lanes<F> rotated = mul_lanes(cam.W, Vec3Lanes<F>{p[0], p[1], p[2]});
  return {rotated.x + cam.t.x, rotated.y + cam.t.y, rotated.z + cam.t.z};
}

// Colours beyond this magnitude are culled like non-finite ones: the products the backward
// forms with them (weights, cotangents, sums over surfels) would overflow float32. A value x is
// within it when x * kColorCullScale is finite (kColorLimit = FLT_MAX / kColorCullScale).
constexpr float kColorCullScale = 1e20f;
constexpr float kColorLimit = 3.4028235e38f / kColorCullScale;

// The inputs of one surfel per lane. usable_color: every colour channel is finite and within
// kColorLimit.
template <class F>
struct SurfelLanes {
  F mean[3], quat[4], scale[2], opacity;
  typename Lanes<F>::Mask usable_color;
};

// What one camera sees of one surfel per lane.
template <class F>
struct ProjectionLanes {
  typename Lanes<F>::Mask visible;  // false: culled, nothing below is meaningful
  F M[3][3];       // K [W t_u s_u | W t_v s_v | W p + t]: local (u, v, 1) -> homogeneous pixel
  F normal[3];     // camera frame, facing the camera
  F center[2];     // projected centre (pixels)
  F depth;         // camera-space z of the centre
  F box_lo[2];     // screen box covering the 3-sigma disk and the fallback filter
  F box_hi[2];     //   (upstream semantics: e -+ radius; its pixels are upstream_rect_lanes')
  F radius;        // upstream semantics: its integer radius; unused in gsplat_lib's
};

// Every test is a mask, not an early return, so the lanes of a vector project together; a
// culled lane computes garbage that `visible` discards.
// In upstream semantics (docs/design.md, "Faithful mode"): no far cull, no disk-in-front test, no
// opacity cull (alpha >= 1/255 decides), the centre must lie beyond near and the normal must not
// be perpendicular to the line of sight; the centre and fallback centre is the ellipse-box
// centre e and the box is upstream's square of its integer radius around e.
template <Semantics S, class F>
GSL_HD ProjectionLanes<F> project_lanes(const SurfelLanes<F>& s, const Camera& cam, float scale_modifier,
                                        float near_plane, float far_plane) {
  using Mask = typename Lanes<F>::Mask;
  constexpr bool kUpstream = S == Semantics::kUpstream;
  ProjectionLanes<F> p;
  Mask ok = s.usable_color & finite_lanes(s.opacity);
  if constexpr (!kUpstream) ok = ok & Mask(s.opacity > 0.f);
  for (int i = 0; i < 3; ++i) ok = ok & finite_lanes(s.mean[i]);
  for (int i = 0; i < 4; ++i) ok = ok & finite_lanes(s.quat[i]);
  const F s_u = s.scale[0] * scale_modifier, s_v = s.scale[1] * scale_modifier;
  ok = ok & finite_lanes(s_u) & finite_lanes(s_v) & Mask(s_u > 0.f) & Mask(s_v > 0.f);
  const F qn2 = squared_norm4(s.quat);
  ok = ok & Mask(qn2 > 1e-24f) & finite_lanes(qn2);  // an overflowing |q|^2 would make q/|q| zero
  const RotationLanes<F> R = rotation_lanes(s.quat, qn2);
  const Vec3Lanes<F>&t_u = R.t_u, &t_v = R.t_v, &t_w = R.t_w;

  const Vec3Lanes<F> p_cam = camera_point(cam, s.mean);
  if constexpr (kUpstream)
    ok = ok & Mask(p_cam.z > near_plane);
  else
    ok = ok & Mask(p_cam.z >= near_plane) & Mask(p_cam.z <= far_plane);

  const Vec3Lanes<F> cols[3] = {mul_lanes(cam.K, scale_lanes(s_u, mul_lanes(cam.W, t_u))),
                                mul_lanes(cam.K, scale_lanes(s_v, mul_lanes(cam.W, t_v))), mul_lanes(cam.K, p_cam)};
  for (int c = 0; c < 3; ++c) {
    p.M[0][c] = cols[c].x;
    p.M[1][c] = cols[c].y;
    p.M[2][c] = cols[c].z;
  }
  const auto& M = p.M;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) ok = ok & finite_lanes(M[i][j]);

  // The disk's nearest point must stay in front of the camera, else its outline is no ellipse.
  if constexpr (!kUpstream) {
    const F tilt = sqrt_lanes(M[2][0] * M[2][0] + M[2][1] * M[2][1]);
    ok = ok & Mask(3.f * tilt < 0.999f * M[2][2]);
  }

  const Vec3Lanes<F> n = mul_lanes(cam.W, t_w);
  const F facing = n.x * p_cam.x + n.y * p_cam.y + n.z * p_cam.z;
  if constexpr (kUpstream) ok = ok & Mask(facing != 0.f);
  const Mask away = facing > 0.f;
  p.normal[0] = select(away, -1.f * n.x, n.x);
  p.normal[1] = select(away, -1.f * n.y, n.y);
  p.normal[2] = select(away, -1.f * n.z, n.z);
  p.depth = p_cam.z;
  p.center[0] = M[0][2] / M[2][2];
  p.center[1] = M[1][2] / M[2][2];

  // Dual conic C* = M diag(9, 9, -1) M^T of the 3-sigma disk; its tangent lines x = const
  // and y = const give the exact perspective box.
  auto dual = [&](int i, int j) {
    return kSupportRho * (M[i][0] * M[j][0] + M[i][1] * M[j][1]) - M[i][2] * M[j][2];
  };
  const F c22 = dual(2, 2);  // < 0 where the tilt test passed
  const F e[2] = {dual(0, 2) / c22, dual(1, 2) / c22};
  if constexpr (kUpstream) {
    ok = ok & Mask(c22 != 0.f);
    const F floor = broadcast<F>(kUpstreamMinHalfExtent2);
    const F h[2] = {sqrt_lanes(fmax_lanes(floor, e[0] * e[0] - dual(0, 0) / c22)),
                    sqrt_lanes(fmax_lanes(floor, e[1] * e[1] - dual(1, 1) / c22))};
    p.radius = ceil_lanes(fmax_lanes(fmax_lanes(h[0], h[1]), broadcast<F>(kUpstreamMinRadius)));
    for (int k = 0; k < 2; ++k) {
      p.center[k] = e[k];
      p.box_lo[k] = e[k] - p.radius;
      p.box_hi[k] = e[k] + p.radius;
      ok = ok & finite_lanes(p.box_lo[k]) & finite_lanes(p.box_hi[k]);
    }
  } else {
    const F zero = broadcast<F>(0.f);
    const F h[2] = {sqrt_lanes(fmax_lanes(zero, e[0] * e[0] - dual(0, 0) / c22)),
                    sqrt_lanes(fmax_lanes(zero, e[1] * e[1] - dual(1, 1) / c22))};
    for (int k = 0; k < 2; ++k) {
      p.box_lo[k] = fmin_lanes(e[k] - h[k], p.center[k] - kFallbackRadius) - kBoxPadding;
      p.box_hi[k] = fmax_lanes(e[k] + h[k], p.center[k] + kFallbackRadius) + kBoxPadding;
      ok = ok & finite_lanes(p.box_lo[k]) & finite_lanes(p.box_hi[k]);
    }
  }
  p.visible = ok;
  return p;
}

// Divides a pixel column (>= 0) by the tile width: a shift where the width is a power of two
// (every width the library picks), not an integer division per surfel.
struct TileColumns {
  int width;
  int shift;  // log2(width), or -1 when width is not a power of two
  GSL_HD explicit TileColumns(int tile_width) : width(tile_width), shift(-1) {
    if ((tile_width & (tile_width - 1)) == 0)
      for (shift = 0; (1 << shift) < tile_width; ++shift) {
      }
  }
  template <class I>  // int32_t, or int lanes
  GSL_HD I tile_of(I x) const {
    if (shift >= 0) return x >> shift;
    return x / width;
  }
};

// Pixels [x0, x1) x [y0, y1): as stored per item by the projection.
struct PixelRect {
  int x0, y0, x1, y1;
  GSL_HD bool empty() const { return x1 <= x0 || y1 <= y0; }
  // The tiles a non-empty rectangle overlaps: tiles.width pixels wide, kTileSize high.
  GSL_HD int tile_x0(const TileColumns& tiles) const { return tiles.tile_of(x0); }
  GSL_HD int tile_y0() const { return y0 / kTileSize; }
  GSL_HD int tile_x1(const TileColumns& tiles) const { return tiles.tile_of(x1 - 1) + 1; }
  GSL_HD int tile_y1() const { return (y1 - 1) / kTileSize + 1; }
  GSL_HD int64_t tile_count(const TileColumns& tiles) const {
    return empty() ? 0 : int64_t(tile_x1(tiles) - tile_x0(tiles)) * int64_t(tile_y1() - tile_y0());
  }
};

// One PixelRect per lane, with its tile count.
template <class F>
struct RectLanes {
  using Int = typename Lanes<F>::Int;
  Int x0, y0, x1, y1;
  Int tiles;  // PixelRect::tile_count (fewer than 2^31: the Python layer bounds the tiles)
};

// Sets r.tiles: how many tiles rectangle r overlaps (0 when it is empty).
template <class F>
GSL_HD void count_rect_tiles(RectLanes<F>& r, const TileColumns& tiles) {
  using Int = typename Lanes<F>::Int;
  using Mask = typename Lanes<F>::Mask;
  const Int cols = tiles.tile_of(Int(r.x1 - 1)) + 1 - tiles.tile_of(r.x0);
  const Int rows = (r.y1 - 1) / kTileSize + 1 - r.y0 / kTileSize;
  r.tiles = select(Mask(Mask(r.x1 > r.x0) & Mask(r.y1 > r.y0)), Int(cols * rows), broadcast_int_lanes<F>(0));
}

// The pixels whose centres (i + 0.5, j + 0.5) lie in the box [lo, hi], clamped to the image:
// every pixel a splat can reach (outside its padded box rho > 9 everywhere). Computed in
// lanes, like the rest of the projection (one lane at a time it dominated the pass).
template <class F>
GSL_HD RectLanes<F> pixel_rect_lanes(const F lo[2], const F hi[2], int width, int height, const TileColumns& tiles) {
  using Int = typename Lanes<F>::Int;
  using Mask = typename Lanes<F>::Mask;
  const F zero = broadcast<F>(0.f), minus_one = broadcast<F>(-1.f);
  // Clamped in float first: huge boxes must not overflow the int conversion.
  const auto first = [&](F v, int size) {
    return ceil_to_int(fmin_lanes(fmax_lanes(v - 0.5f, zero), broadcast<F>(float(size))));
  };
  const auto end = [&](F v, int size) {
    return floor_to_int(fmin_lanes(fmax_lanes(v - 0.5f, minus_one), broadcast<F>(float(size - 1)))) + 1;
  };
  RectLanes<F> r;
  r.x0 = first(lo[0], width);
  r.y0 = first(lo[1], height);
  r.x1 = end(hi[0], width);
  r.y1 = end(hi[1], height);
  count_rect_tiles(r, tiles);
  return r;
}

// Upstream semantics: every pixel of the 16x16 tiles of upstream's getRect around the ellipse
// centre e with its radius r, whatever the backend's tile width. getRect works in upstream's
// pixel coordinates, whose pixel centres are integers: e - 1/2 in ours. Its (int) of the tile
// coordinate truncates towards zero before the clamp to [0, grid]; that is the floor of the
// clamped value, which is what is computed here (clamped in float first, so huge boxes do not
// overflow the int conversion).
template <class F>
GSL_HD RectLanes<F> upstream_rect_lanes(const F centre[2], F radius, int width, int height, const TileColumns& tiles) {
  using Int = typename Lanes<F>::Int;
  const F zero = broadcast<F>(0.f);
  const auto tile_bound = [&](F v, int size) {
    const float grid = float((size + kTileSize - 1) / kTileSize);
    return shift_left(floor_to_int(fmin_lanes(fmax_lanes(v * (1.f / kTileSize), zero), broadcast<F>(grid))), 4);
  };
  static_assert(kTileSize == 16, "tile_bound multiplies by the tile size with a shift by 4");
  const auto clamp_end = [](Int x, int size) {
    const Int limit = broadcast_int_lanes<F>(size);
    return select(typename Lanes<F>::Mask(x < limit), x, limit);
  };
  const F e[2] = {centre[0] - 0.5f, centre[1] - 0.5f};
  RectLanes<F> r;
  r.x0 = tile_bound(e[0] - radius, width);
  r.y0 = tile_bound(e[1] - radius, height);
  r.x1 = clamp_end(tile_bound((e[0] + radius) + float(kTileSize - 1), width), width);
  r.y1 = clamp_end(tile_bound((e[1] + radius) + float(kTileSize - 1), height), height);
  count_rect_tiles(r, tiles);
  return r;
}

// VJP of project_lanes for one camera, in the lanes of `on` (visible surfels): from dL/dM
// (rows of v_M) and dL/dnormal to each surfel's mean, quat and scales, added to v_mean,
// v_quat and v_scale. R is rotation_lanes of the quats; A = K W of the camera.
template <class F>
GSL_HD void project_vjp_lanes(const SurfelLanes<F>& s, const RotationLanes<F>& R, const Camera& cam, const mat3& A,
                              float scale_modifier, const F v_M[3][3], const Vec3Lanes<F>& v_normal,
                              typename Lanes<F>::Mask on, F v_mean[3], F v_quat[4], F v_scale[2]) {
  const F s_u = s.scale[0] * scale_modifier, s_v = s.scale[1] * scale_modifier;
  const Vec3Lanes<F> p_cam = camera_point(cam, s.mean);
  const Vec3Lanes<F> v_col0 = {v_M[0][0], v_M[1][0], v_M[2][0]};
  const Vec3Lanes<F> v_col1 = {v_M[0][1], v_M[1][1], v_M[2][1]};
  const Vec3Lanes<F> v_col2 = {v_M[0][2], v_M[1][2], v_M[2][2]};

  // Column 2 = K (W p + t).
  const Vec3Lanes<F> v_p = mul_transposed_lanes(A, v_col2);
  // Columns 0 and 1 = A t_u s_u and A t_v s_v.
  const F v_s_u = dot3_lanes(v_col0, mul_lanes(A, R.t_u)) * scale_modifier;
  const F v_s_v = dot3_lanes(v_col1, mul_lanes(A, R.t_v)) * scale_modifier;
  // The normal W t_w, flipped to face the camera (the flip is locally constant).
  const Vec3Lanes<F> n = mul_lanes(cam.W, R.t_w);
  const F sign = select(typename Lanes<F>::Mask(dot3_lanes(n, p_cam) > 0.f), broadcast<F>(-1.f), broadcast<F>(1.f));
  const Vec3Lanes<F> v_cols[3] = {scale_lanes(s_u, mul_transposed_lanes(A, v_col0)),
                                  scale_lanes(s_v, mul_transposed_lanes(A, v_col1)),
                                  scale_lanes(sign, mul_transposed_lanes(cam.W, v_normal))};
  F v_q[4];
  rotation_vjp_lanes(R, v_cols, v_q);
  v_mean[0] = select(on, v_mean[0] + v_p.x, v_mean[0]);
  v_mean[1] = select(on, v_mean[1] + v_p.y, v_mean[1]);
  v_mean[2] = select(on, v_mean[2] + v_p.z, v_mean[2]);
  for (int i = 0; i < 4; ++i) v_quat[i] = select(on, v_quat[i] + v_q[i], v_quat[i]);
  v_scale[0] = select(on, v_scale[0] + v_s_u, v_scale[0]);
  v_scale[1] = select(on, v_scale[1] + v_s_v, v_scale[1]);
}

}  // namespace gsl
