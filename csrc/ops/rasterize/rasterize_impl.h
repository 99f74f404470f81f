// Per-item bodies of the rasterizer's passes, shared by rasterize_cpu.cpp and
// rasterize_cuda.cu (docs/design.md, decision 2): the launchers only loop.
#pragma once

#include "core/compositing.h"
#include "core/projection.h"
#include "ops/rasterize/rasterize.h"

namespace gsl::rasterize {

GSL_HD int64_t tiles_per_camera(const Dims& d) { return int64_t(d.tiles_x) * d.tiles_y; }

// n of item = c * N + n, without a 64-bit division in the common single-camera case.
GSL_HD int64_t surfel_of(const Dims& d, int64_t item) {
  return item < d.num_surfels ? item : item % d.num_surfels;
}

// The surfel an item draws, dense or packed (rasterize.h).
GSL_HD int64_t surfel_of_item(const PixelPassInputs& in, int64_t item) {
  return in.item_surfels != nullptr ? in.item_surfels[item] : surfel_of(in.dims, item);
}

// Where camera c's items start: c * N in a dense call (camera_items null), else camera_items[c].
GSL_HD int64_t first_item(const Dims& d, const int64_t* camera_items, int64_t c) {
  return camera_items != nullptr ? camera_items[c] : c * d.num_surfels;
}

// Of the `count` segments that start at starts[0], ..., starts[count - 1] (starts[count]: the end),
// the one holding `index`: the last s with starts[s] <= index (an empty segment starts where the
// next one does, so the last is the one that holds it).
GSL_HD int64_t segment_of(const int64_t* starts, int64_t count, int64_t index) {
  int64_t lo = 0, hi = count - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (starts[mid] <= index)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

GSL_HD int64_t camera_of_item(const Dims& d, const int64_t* camera_items, int64_t item) {
  return camera_items != nullptr ? segment_of(camera_items, d.num_cameras, item) : item / d.num_surfels;
}

// Camera c of the projection's arguments (ProjectArgs or ProjectBackwardArgs).
template <class Args>
GSL_HD Camera camera_of(const Args& a, int64_t c) {
  return load_camera(a.viewmats + 16 * c, a.Ks + 9 * c);
}

// Surfel of lane `lane` of a group of `count`: surfels[lane] when a list is given, else n0 + lane;
// the lanes from count on repeat the first.
GSL_HD int64_t lane_surfel(const int64_t* surfels, int64_t n0, int count, int lane) {
  const int l = lane < count ? lane : 0;
  return surfels != nullptr ? surfels[l] : n0 + l;
}

// Loads the means, quats and scales of surfels [n0, n0 + count), or surfels[0, count) when that
// list is given, one per lane; the lanes from count on repeat the first (Args: ProjectArgs or
// ProjectBackwardArgs).
template <class F, class Args>
GSL_HD void load_surfel_shapes(const Args& a, int64_t n0, int count, SurfelLanes<F>& s,
                               const int64_t* surfels = nullptr) {
#if !defined(__CUDACC__)  // vector lanes exist on the host only
  if constexpr (Lanes<F>::kWidth > 1) {
    // A listed group of consecutive surfels (lists ascend, so first + W - 1 == last says it)
    // loads as an unlisted one.
    if (count == Lanes<F>::kWidth && surfels != nullptr && surfels[count - 1] - surfels[0] == count - 1) {
      n0 = surfels[0];
      surfels = nullptr;
    }
    if (count == Lanes<F>::kWidth && surfels == nullptr) {
      for (int i = 0; i < 3; ++i) s.mean[i] = load_strided<F>(a.means + 3 * n0 + i, 3);
      for (int i = 0; i < 4; ++i) s.quat[i] = load_strided<F>(a.quats + 4 * n0 + i, 4);
      for (int i = 0; i < 2; ++i) s.scale[i] = load_strided<F>(a.scales + 2 * n0 + i, 2);
      return;
    }
  }
#endif
  for (int lane = 0; lane < Lanes<F>::kWidth; ++lane) {
    const int64_t n = lane_surfel(surfels, n0, count, lane);
    for (int i = 0; i < 3; ++i) set_lane(s.mean[i], lane, a.means[3 * n + i]);
    for (int i = 0; i < 4; ++i) set_lane(s.quat[i], lane, a.quats[4 * n + i]);
    for (int i = 0; i < 2; ++i) set_lane(s.scale[i], lane, a.scales[2 * n + i]);
  }
}

// Whether the n colour values from p are all usable: finite and within kColorLimit in
// magnitude (beyond it, their products with weights and cotangents in the backward overflow
// float32). x * s - x * s is 0 when x * s is finite and NaN otherwise (s = kColorCullScale),
// and a NaN makes the sum NaN. In lanes F, without a branch per value.
template <class F>
GSL_HD bool all_colors_usable(const float* p, int64_t n) {
  float tail = 0.f;
  int64_t i = 0;
#if !defined(__CUDACC__)  // vector lanes exist on the host only
  if constexpr (constexpr int W = Lanes<F>::kWidth; W > 1) {
    const F scale = broadcast<F>(kColorCullScale);
    F sum = broadcast<F>(0.f);
    for (; i + W <= n; i += W) {
      const F v = load_lanes<F>(p + i) * scale;
      sum = sum + (v - v);
    }
    tail = sum_lanes(sum);
  }
#endif
  for (; i < n; ++i) {
    const float v = p[i] * kColorCullScale;
    tail += v - v;
  }
  return tail == 0.f;
}

// Loads the inputs of items [item0, item0 + count) of one camera, one per lane: surfels
// [n0, n0 + count) in a dense call, their item_surfels when packed. The lanes from count on
// repeat the first.
template <class F>
GSL_HD SurfelLanes<F> load_surfels(const ProjectArgs& a, int64_t item0, int64_t n0, int count) {
  const int D = a.dims.num_channels;
  const int64_t* surfels = a.item_surfels != nullptr ? a.item_surfels + item0 : nullptr;
  SurfelLanes<F> s;
  load_surfel_shapes(a, n0, count, s, surfels);
  for (int lane = 0; lane < Lanes<F>::kWidth; ++lane)
    set_lane(s.opacity, lane, a.opacities[lane_surfel(surfels, n0, count, lane)]);
  // The lanes' colours are consecutive: one test for all of them, lane by lane only if it fails.
  const float* colors = a.colors + item0 * D;
  const bool all = all_colors_usable<F>(colors, int64_t(count) * D);
  for (int lane = 0; lane < Lanes<F>::kWidth; ++lane)
    set_mask_lane(s.usable_color, lane, all || all_colors_usable<float>(colors + (lane < count ? lane : 0) * D, D));
  return s;
}

// Writes a projection's lanes [0, count) as the outputs of items item0, item0 + 1, ...: the
// values are made in lanes (zeros where a surfel reaches no tile), then copied item by item.
template <Semantics S, class F>
GSL_HD void store_projection(const ProjectArgs& a, int64_t item0, const ProjectionLanes<F>& p, int count) {
  using Int = typename Lanes<F>::Int;
  using Mask = typename Lanes<F>::Mask;
  constexpr int W = Lanes<F>::kWidth;
  const Dims& d = a.dims;
  const TileColumns tiles(d.tile_width);
  const RectLanes<F> rect = S == Semantics::kUpstream
                                ? upstream_rect_lanes(p.center, p.radius, d.width, d.height, tiles)
                                : pixel_rect_lanes(p.box_lo, p.box_hi, d.width, d.height, tiles);
  const Int zero_int = broadcast_int_lanes<F>(0);
  const Mask kept = p.visible & Mask(rect.tiles > 0);
  const F zero = broadcast<F>(0.f);
  // Half extents around the projected centre, so means2d +- radii covers the box (never 0
  // for a visible surfel: the box covers the fallback filter). Upstream semantics: its radius.
  F half[2];
  if constexpr (S == Semantics::kUpstream) {
    half[0] = half[1] = p.radius;
  } else {
    half[0] = fmax_lanes(p.box_hi[0] - p.center[0], p.center[0] - p.box_lo[0]);
    half[1] = fmax_lanes(p.box_hi[1] - p.center[1], p.center[1] - p.box_lo[1]);
  }
  enum { kM = 0, kNormal = 9, kCenter = 12, kDepth = 14, kFloats = 15 };
  enum { kRect = 0, kRadii = 4, kTiles = 6, kInts = 7 };
  float floats[kFloats][W];
  int32_t ints[kInts][W];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) store_lanes(floats[kM + 3 * i + j], select(kept, p.M[i][j], zero));
  for (int i = 0; i < 3; ++i) store_lanes(floats[kNormal + i], select(kept, p.normal[i], zero));
  for (int i = 0; i < 2; ++i) store_lanes(floats[kCenter + i], select(kept, p.center[i], zero));
  store_lanes(floats[kDepth], select(kept, p.depth, zero));
  const Int rect_values[4] = {rect.x0, rect.y0, rect.x1, rect.y1};
  for (int i = 0; i < 4; ++i) store_lanes(ints[kRect + i], select(p.visible, rect_values[i], zero_int));
  for (int i = 0; i < 2; ++i)
    store_lanes(ints[kRadii + i], select(kept, ceil_to_int(fmin_lanes(half[i], broadcast<F>(kMaxRadius))), zero_int));
  store_lanes(ints[kTiles], select(kept, rect.tiles, zero_int));
  for (int lane = 0; lane < count; ++lane) {
    const int64_t item = item0 + lane;
    for (int k = 0; k < 9; ++k) a.M[9 * item + k] = floats[kM + k][lane];
    for (int k = 0; k < 3; ++k) a.normals[3 * item + k] = floats[kNormal + k][lane];
    for (int k = 0; k < 2; ++k) a.means2d[2 * item + k] = floats[kCenter + k][lane];
    a.depths[item] = floats[kDepth][lane];
    for (int k = 0; k < 4; ++k) a.pixel_rects[4 * item + k] = ints[kRect + k][lane];
    for (int k = 0; k < 2; ++k) a.radii[2 * item + k] = ints[kRadii + k][lane];
    a.tile_counts[item] = ints[kTiles][lane];
  }
}

// Projection of items [item0, item0 + count) of camera cam (count <= the lane width; surfels
// as load_surfels takes them), one per lane; unused lanes repeat the first and are not stored.
template <class F, Semantics S>
GSL_HD void project_items(const ProjectArgs& a, const Camera& cam, int64_t item0, int64_t n0, int count) {
  const Dims& d = a.dims;
  const SurfelLanes<F> s = load_surfels<F>(a, item0, n0, count);
  const ProjectionLanes<F> p = project_lanes<S>(s, cam, d.scale_modifier, d.near_plane, d.far_plane);
  store_projection<S>(a, item0, p, count);
}

// Writes the (tile, depth) keys of the pairs of an item of `camera`; positive depths sort like their bits.
GSL_HD void emit_item(const EmitArgs& a, int64_t camera, int64_t item) {
  const Dims& d = a.dims;
  const int32_t* r = a.pixel_rects + 4 * item;
  const PixelRect rect = {r[0], r[1], r[2], r[3]};
  const int64_t end = a.pair_ends[item];
  const TileColumns tiles(d.tile_width);
  int64_t out = end - rect.tile_count(tiles);
  const uint64_t depth_bits = float_bits(a.depths[item]);
  if (rect.empty()) return;
  for (int ty = rect.tile_y0(); ty < rect.tile_y1(); ++ty) {
    for (int tx = rect.tile_x0(tiles); tx < rect.tile_x1(tiles); ++tx) {
      // The buffers hold num_pairs slots, which may be fewer than the pairs (a capacity kept
      // across calls): the caller sees the total, grows them and emits again.
      if (out >= d.num_pairs) return;
      const uint64_t tile = uint64_t(camera * tiles_per_camera(d) + int64_t(ty) * d.tiles_x + tx);
      a.emitted_keys[out] = static_cast<int64_t>((tile << 32) | depth_bits);
      a.emitted_items[out] = item;
      ++out;
    }
  }
}

GSL_HD Splat load_splat(const PixelPassInputs& in, int64_t surfel_item) {
  Splat s;
  const float* M = in.M + 9 * surfel_item;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) s.M.m[i][j] = M[3 * i + j];
  s.center = {in.means2d[2 * surfel_item], in.means2d[2 * surfel_item + 1]};
  s.opacity = in.opacities[surfel_of_item(in, surfel_item)];
  return s;
}

GSL_HD PixelRect load_pixel_rect(const PixelPassInputs& in, int64_t surfel_item) {
  const int32_t* r = in.pixel_rects + 4 * surfel_item;
  return {r[0], r[1], r[2], r[3]};
}

GSL_HD vec3 load_normal(const PixelPassInputs& in, int64_t surfel_item) {
  const float* n = in.normals + 3 * surfel_item;
  return {n[0], n[1], n[2]};
}

// Writes the forward outputs of the lanes' pixels: consecutive pixels of a row from `pixel`
// (one pixel for F = float). color(ch) gives their accumulated colour channel ch.
template <class F, class Color>
GSL_HD void store_pixels(const ForwardArgs& a, int64_t camera, int64_t pixel, const PixelForward<F>& f,
                         Color color) {
  const int D = a.dims.num_channels;
  const float* bg = a.backgrounds ? a.backgrounds + camera * D : nullptr;
  for (int ch = 0; ch < D; ++ch) {
    const F value = color(ch) + (bg ? f.T * bg[ch] : broadcast<F>(0.f));
    for (int i = 0; i < Lanes<F>::kWidth; ++i) a.out_colors[(pixel + i) * D + ch] = get_lane(value, i);
  }
  for (int i = 0; i < Lanes<F>::kWidth; ++i) {
    a.out_normals[3 * (pixel + i) + 0] = get_lane(f.normal_x, i);
    a.out_normals[3 * (pixel + i) + 1] = get_lane(f.normal_y, i);
    a.out_normals[3 * (pixel + i) + 2] = get_lane(f.normal_z, i);
    a.saved_sums[3 * (pixel + i) + 0] = get_lane(f.sums.weight, i);
    a.saved_sums[3 * (pixel + i) + 1] = get_lane(f.sums.first, i);
    a.saved_sums[3 * (pixel + i) + 2] = get_lane(f.sums.second, i);
  }
  store_lanes(a.out_alphas + pixel, F(1.f - f.T));
  store_lanes(a.out_depths + pixel, f.depth);
  store_lanes(a.out_median_depths + pixel, f.median_depth);
  store_lanes(a.out_distortions + pixel, f.sums.distortion);
  store_lanes(a.saved_T + pixel, f.T);
  store_lanes(a.saved_last + pixel, f.last);
  store_lanes(a.saved_median + pixel, f.median);
  store_lanes(a.evaluated_pairs + pixel, f.visited);
}

// Loads lane group v of consecutive values (stride apart) from p (for F = float, one value);
// a null p (an absent cotangent: the loss does not use that output) reads as zero.
template <class V, class T>
GSL_HD V load_consecutive(const T* p, int stride = 1) {
  V v{};
  if (p == nullptr) return v;
  if constexpr (sizeof(V) == sizeof(T)) {
    v = *p;
  } else {
    for (int i = 0; i < int(sizeof(V) / sizeof(T)); ++i) v[i] = p[i * stride];
  }
  return v;
}

// Loads what the backward needs of the lanes' pixels (consecutive pixels of a row from
// `pixel`, centres px, py; one pixel for F = float) and starts their walk back.
template <class F>
GSL_HD PixelBackward<F> load_pixels_backward(const BackwardArgs& a, int64_t camera, int64_t pixel, F px, float py) {
  using Int = typename Lanes<F>::Int;
  const int D = a.dims.num_channels;
  PixelBackward<F> b;
  b.px = px;
  b.py = py;
  b.last = load_consecutive<Int>(a.saved_last + pixel);
  b.median = load_consecutive<Int>(a.saved_median + pixel);
  b.sums.weight = load_consecutive<F>(a.saved_sums + 3 * pixel + 0, 3);
  b.sums.first = load_consecutive<F>(a.saved_sums + 3 * pixel + 1, 3);
  b.sums.second = load_consecutive<F>(a.saved_sums + 3 * pixel + 2, 3);
  const auto at = [pixel](const float* v, int k = 1, int i = 0) {
    return load_consecutive<F>(v != nullptr ? v + k * pixel + i : nullptr, k);
  };
  b.v_depth = at(a.v_out_depths);
  b.v_median = at(a.v_out_median_depths);
  b.v_distortion = at(a.v_out_distortions);
  b.v_normal_x = at(a.v_out_normals, 3, 0);
  b.v_normal_y = at(a.v_out_normals, 3, 1);
  b.v_normal_z = at(a.v_out_normals, 3, 2);
  const float* v_color = a.v_out_colors + pixel * D;
  b.start(at(a.saved_T), at(a.v_out_alphas), a.backgrounds ? a.backgrounds + camera * D : nullptr, D,
          [v_color, D](int ch) { return load_consecutive<F>(v_color + ch, D); });
  return b;
}

// Sums the pair gradient records of (camera, surfel) item in emission order.
//
// Upstream semantics: the screen statistic is upstream's, dL/dM02 and dL/dM12 (which only the
// ray-splat pixels touch there: the fallback's reach M through e alone) times M22, in pixels;
// dL/de goes to center_grad and is chained into v_M (e depends on M only).
template <Semantics S>
GSL_HD void reduce_item(const ReduceArgs& a, int64_t item) {
  constexpr int kColor = kPairGradColorOf<S>;
  const int D = a.dims.num_channels;
  const int width = kColor + D;
  const int64_t end = a.record_ends[item];
  const int64_t begin = item == 0 ? 0 : a.record_ends[item - 1];
  const int64_t grad = item - a.first_item;  // where v_M, v_opacities_cn and v_normals hold it
  float sums[kColor];
  for (int k = 0; k < kColor; ++k) sums[k] = 0.f;
  float* v_colors = a.v_colors + item * D;
  for (int ch = 0; ch < D; ++ch) v_colors[ch] = 0.f;
  for (int64_t p = begin; p < end; ++p) {
    const float* g = a.pair_grads + (p - a.first_record) * width;
    for (int k = 0; k < kColor; ++k) sums[k] += g[k];
    for (int ch = 0; ch < D; ++ch) v_colors[ch] += g[kColor + ch];
  }
  a.v_opacities_cn[grad] = sums[kPairGradOpacity];
  for (int k = 0; k < 3; ++k) a.v_normals[3 * grad + k] = sums[kPairGradNormal + k];
  a.screen_absgrad[2 * item + 0] = sums[kPairGradAbsStat + 0];
  a.screen_absgrad[2 * item + 1] = sums[kPairGradAbsStat + 1];
  mat3 M;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) M.m[i][j] = a.M[9 * item + 3 * i + j];
  if constexpr (S == Semantics::kUpstream) {
    a.screen_grad[2 * item + 0] = sums[kPairGradM + 2] * M.m[2][2];
    a.screen_grad[2 * item + 1] = sums[kPairGradM + 5] * M.m[2][2];
    const float* v_e = sums + kPairGradCenter;
    a.center_grad[2 * item + 0] = v_e[0];
    a.center_grad[2 * item + 1] = v_e[1];
    // Only visible items have a fallback pixel (culled ones have M = 0: no e to differentiate).
    if (v_e[0] != 0.f || v_e[1] != 0.f) ellipse_centre_vjp(M, v_e, sums + kPairGradM);
  } else {
    screen_translation_grad(M, sums + kPairGradM, a.screen_grad[2 * item + 0], a.screen_grad[2 * item + 1]);
  }
  for (int k = 0; k < 9; ++k) a.v_M[9 * grad + k] = sums[kPairGradM + k];
}

// Gradients of one lane group of surfels (n0 + lane, or surfels[lane] when that list is given;
// count <= the lane width), summed over the cameras j = 0 .. num_cameras - 1 in that order:
// camera cameras[j] (or j, without a list), where lane l's item is first_item(c) + first + l.
// Unused lanes repeat the first and are not stored.
template <class F>
GSL_HD void project_backward_lanes(const ProjectBackwardArgs& a, const int64_t* surfels, int64_t n0, int count,
                                   const int64_t* cameras, int64_t num_cameras, int64_t first) {
  using Mask = typename Lanes<F>::Mask;
  const Dims& d = a.dims;
  constexpr int W = Lanes<F>::kWidth;
  SurfelLanes<F> s;
  load_surfel_shapes(a, n0, count, s, surfels);
  const RotationLanes<F> R = rotation_lanes(s.quat, squared_norm4(s.quat));
  const F zero = broadcast<F>(0.f);
  F v_mean[3] = {zero, zero, zero}, v_quat[4] = {zero, zero, zero, zero}, v_scale[2] = {zero, zero};
  F v_opacity = zero;
  if (a.accumulate) {  // the sums of the cameras before (adding on from them keeps the camera order)
    for (int lane = 0; lane < W; ++lane) {
      const int64_t n = lane_surfel(surfels, n0, count, lane);
      for (int i = 0; i < 3; ++i) set_lane(v_mean[i], lane, a.v_means[3 * n + i]);
      for (int i = 0; i < 4; ++i) set_lane(v_quat[i], lane, a.v_quats[4 * n + i]);
      for (int i = 0; i < 2; ++i) set_lane(v_scale[i], lane, a.v_scales[2 * n + i]);
      set_lane(v_opacity, lane, a.v_opacities[n]);
    }
  }
  for (int64_t j = 0; j < num_cameras; ++j) {
    const int64_t c = cameras != nullptr ? cameras[j] : j;
    const int64_t item0 = first_item(d, a.camera_items, c) + first;
    Mask on{};
    F v_M[3][3], v_opacity_c;
    Vec3Lanes<F> v_normal;
    for (int lane = 0; lane < W; ++lane) {
      const int64_t item = item0 + (lane < count ? lane : 0);
      const int64_t grad = item - a.first_item;  // where v_M, v_normals and v_opacities_cn hold it
      set_mask_lane(on, lane, lane < count && (a.radii[2 * item] != 0 || a.radii[2 * item + 1] != 0));
      for (int i = 0; i < 3; ++i)
        for (int k = 0; k < 3; ++k) set_lane(v_M[i][k], lane, a.v_M[9 * grad + 3 * i + k]);
      set_lane(v_normal.x, lane, a.v_normals[3 * grad + 0]);
      set_lane(v_normal.y, lane, a.v_normals[3 * grad + 1]);
      set_lane(v_normal.z, lane, a.v_normals[3 * grad + 2]);
      set_lane(v_opacity_c, lane, a.v_opacities_cn[grad]);
    }
    if (!any(on)) continue;
    const Camera cam = camera_of(a, c);
    const mat3 A = mul(cam.K, cam.W);
    project_vjp_lanes(s, R, cam, A, d.scale_modifier, v_M, v_normal, on, v_mean, v_quat, v_scale);
    v_opacity = select(on, v_opacity + v_opacity_c, v_opacity);
  }
  for (int lane = 0; lane < count; ++lane) {
    const int64_t n = lane_surfel(surfels, n0, count, lane);
    for (int i = 0; i < 3; ++i) a.v_means[3 * n + i] = get_lane(v_mean[i], lane);
    for (int i = 0; i < 4; ++i) a.v_quats[4 * n + i] = get_lane(v_quat[i], lane);
    for (int i = 0; i < 2; ++i) a.v_scales[2 * n + i] = get_lane(v_scale[i], lane);
    a.v_opacities[n] = get_lane(v_opacity, lane);
  }
}

// Gradients of surfels [n0, n0 + count) of a dense call, summed over all cameras in order.
template <class F>
GSL_HD void project_backward_items(const ProjectBackwardArgs& a, int64_t n0, int count) {
  project_backward_lanes<F>(a, nullptr, n0, count, nullptr, a.dims.num_cameras, n0);
}

// Gradients of the surfels at scene_surfels[k0, k0 + count), all of scene s (packed items),
// summed over the scene's cameras in order.
template <class F>
GSL_HD void project_backward_scene_items(const ProjectBackwardArgs& a, int64_t s, int64_t k0, int count) {
  const int64_t cameras_begin = a.scene_camera_starts[s];
  project_backward_lanes<F>(a, a.scene_surfels + k0, 0, count, a.scene_cameras + cameras_begin,
                            a.scene_camera_starts[s + 1] - cameras_begin, k0 - a.scene_surfel_starts[s]);
}

}  // namespace gsl::rasterize
