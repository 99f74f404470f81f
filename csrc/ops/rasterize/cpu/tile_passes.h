// The CPU tile passes and item loops of the rasterizer, for a lane type F. Force-inlined
// throughout: rasterize_cpu.cpp instantiates them in one entry point per instruction set.
//
// Within a tile the passes are splat-major: each splat visits only the pixels of its
// rectangle, a row at a time in groups of lanes (core/lanes.h: 8 with AVX2, 4 with SSE,
// or 1, the instantiation the CUDA backend runs). Every pixel still sees its splats in
// depth order, so this equals the per-pixel loop of the CUDA backend. Each tile is
// composited by one thread and each pair's gradient record is written only by its tile's
// thread, so results are bit-identical for any thread count (decision 4).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu/inline.h"
#include "cpu/lane_pairs.h"
#include "ops/rasterize/cpu/tile_planes.h"
#include "ops/rasterize/rasterize_impl.h"

namespace gsl::rasterize::cpu_tiles {

constexpr int64_t kPrefetchAhead = 8;

// Force-inlined: GCC deems an out-of-line function holding only prefetches pure and
// deletes the call.
GSL_CPU_INLINE void prefetch_item(const PixelPassInputs& in, int64_t item) {
  __builtin_prefetch(in.M + 9 * item);
  __builtin_prefetch(in.M + 9 * item + 8);
  __builtin_prefetch(in.means2d + 2 * item);
  __builtin_prefetch(in.normals + 3 * item);
  __builtin_prefetch(in.pixel_rects + 4 * item);
  __builtin_prefetch(in.colors + item * in.dims.num_channels);
  __builtin_prefetch(in.opacities + surfel_of_item(in, item));
}

// The colour channels D of a pass: kChannels when it is fixed at compile time (the passes are
// instantiated for D = 3, so its per-channel loops unroll), else the call's.
template <int kChannels>
GSL_CPU_INLINE int channel_count(const Dims& d) {
  return kChannels > 0 ? kChannels : d.num_channels;
}

struct TileCoords {
  int64_t camera;
  int x0, y0, x1, y1;  // pixel range [x0, x1) x [y0, y1)
  // The part of a splat's pixel rectangle inside this tile.
  PixelRect clip(const PixelRect& r) const {
    return {std::max(r.x0, x0), std::max(r.y0, y0), std::min(r.x1, x1), std::min(r.y1, y1)};
  }
  int plane_index(int x, int y) const { return (y - y0) * kMaxTileWidth + (x - x0); }
  int64_t image_pixel(const Dims& d, int x, int y) const { return (camera * d.height + y) * d.width + x; }
};

GSL_CPU_INLINE TileCoords tile_coords(const Dims& d, int64_t tile) {
  const int64_t per_camera = tiles_per_camera(d);
  const int64_t t = tile % per_camera;
  TileCoords tc;
  tc.camera = tile / per_camera;
  tc.x0 = static_cast<int>(t % d.tiles_x) * d.tile_width;
  tc.y0 = static_cast<int>(t / d.tiles_x) * kTileSize;
  tc.x1 = std::min(tc.x0 + d.tile_width, d.width);
  tc.y1 = std::min(tc.y0 + kTileSize, d.height);
  return tc;
}

// One splat of a tile, read where a tile pass reaches it. The pass reads its tile's items in
// a known order (front to back, or back to front), so it starts the cache misses of the item
// kPrefetchAhead places further on instead of copying the tile's splats first (slower:
// docs/design.md, "CPU tile passes").
struct TileSplat {
  Splat s;
  vec3 n;
  const float* color;  // [D]
  PixelRect rect;      // the pixels it can reach, within the tile
};
GSL_CPU_INLINE TileSplat load_tile_splat(const PixelPassInputs& in, const TileCoords& tc, int64_t item) {
  return {load_splat(in, item), load_normal(in, item), in.colors + item * in.dims.num_channels,
          tc.clip(load_pixel_rect(in, item))};
}

// Calls visit(p, lanes, columns, py) for each lane group of rectangle r (within the tile): p
// its plane index, lanes those inside r. The rectangle is walked a column group at a time, so
// what eval_hit computes from the columns alone (SplatColumns) is computed once per column
// group, for all its rows. With kPairRows two rows go in one lane pair (py a RowPair), so the
// pair's two independent chains overlap (cpu/lane_pairs.h); the last row of an odd count
// goes alone.
template <class F, bool kPairRows, class Visit>
GSL_CPU_INLINE void for_each_lane_group(const TileCoords& tc, const PixelRect& r, const Splat& s, Visit&& visit) {
  using Mask = typename Lanes<F>::Mask;
  constexpr int W = Lanes<F>::kWidth;
  const auto visit_rows = [&](int x, Mask m, const SplatColumns<F>& columns) GSL_CPU_INLINE_LAMBDA {
    int y = r.y0;
    if constexpr (kPairRows && W > 1) {  // the scalar form (CUDA's math) visits one pixel at a time
      const auto pair_mask = pair_of(m);
      const auto pair_columns = columns_pair(columns);
      for (; y + 1 < r.y1; y += 2) visit(tc.plane_index(x, y), pair_mask, pair_columns, RowPair{y + 0.5f, y + 1.5f});
    }
    for (; y < r.y1; ++y) visit(tc.plane_index(x, y), m, columns, y + 0.5f);
  };
  // Lane centres px < x1 exactly where the lanes' columns are < x1 (both are integers + 0.5).
  const F x_end = broadcast<F>(float(r.x1));
  const F px_start = lane_centres<F>(r.x0);
  const F step = broadcast<F>(float(W));
  F px = px_start;  // exact: small integers + 0.5
  for (int x = r.x0; x < r.x1; x += W, px = px + step) visit_rows(x, px < x_end, splat_columns(s, px));
}

// Writes the outputs of the lane group of pixels at (x, y) from the tile's planes.
template <class F>
GSL_CPU_INLINE void store_tile_pixels(const ForwardArgs& a, const TileCoords& tc, ForwardPlanes& planes, int x, int y) {
  const int p = tc.plane_index(x, y);
  PixelForward<F> f = planes.load<F>(p, lane_centres<F>(x), y + 0.5f);
  f.visited = load_lanes<typename Lanes<F>::Int>(planes.plane(ForwardPlanes::kVisited) + p);
  store_pixels(a, tc.camera, tc.image_pixel(a.dims, x, y), f, PlaneColumn<F>{planes.color(0) + p});
}

template <class F, int kChannels, Semantics S>
GSL_CPU_INLINE void forward_tile(const ForwardArgs& a, int64_t tile, ForwardPlanes& planes) {
  constexpr int W = Lanes<F>::kWidth;
  const Dims& d = a.dims;
  const int D = channel_count<kChannels>(d);
  const int64_t begin = a.tile_starts[tile], end = a.tile_starts[tile + 1];
  const int64_t* items = a.pair_items + begin;
  planes.reset(D);
  const TileCoords tc = tile_coords(d, tile);
  int remaining = (tc.x1 - tc.x0) * (tc.y1 - tc.y0);  // pixels not done
  const int32_t count = static_cast<int32_t>(end - begin);
  // The splat (t, below) and the depth range are copies, not references: the compiler cannot
  // tell that the pixel planes' stores leave them be, and would reload them (and redo what it
  // derived from them) after every store.
  const DepthRange range = depth_range(d.near_plane, d.far_plane);
  for (int32_t i = 0; i < count && i < kPrefetchAhead; ++i) prefetch_item(a, items[i]);
  for (int32_t i = 0; i < count && remaining > 0; ++i) {
    if (i + kPrefetchAhead < count) prefetch_item(a, items[i + kPrefetchAhead]);
    const TileSplat t = load_tile_splat(a, tc, items[i]);
    const typename Lanes<F>::Int index = broadcast_int_lanes<F>(i);
    // visit_splat at the lane group (G = F) or lane pair (G = LanePair<F>) at plane index p.
    const auto visit = [&](int p, auto m, const auto& columns, auto py) GSL_CPU_INLINE_LAMBDA {
      using G = std::decay_t<decltype(columns.px)>;
      ForwardPlaneVisit<G> state{planes, p, remaining};
      if constexpr (IsLanePair<G>::value)
        visit_splat<G, S>(state, t.s, t.n, t.color, D, m, columns, py, pair_of(index), range);
      else
        visit_splat<G, S>(state, t.s, t.n, t.color, D, m, columns, py, index, range);
    };
    for_each_lane_group<F, true>(tc, t.rect, t.s, visit);
  }
  // The tile's outputs, a lane group at a time where one fits in the row, then pixel by pixel.
  for (int y = tc.y0; y < tc.y1; ++y) {
    int x = tc.x0;
    for (; x + W <= tc.x1; x += W) store_tile_pixels<F>(a, tc, planes, x, y);
    for (; x < tc.x1; ++x) store_tile_pixels<float>(a, tc, planes, x, y);
  }
}

// Sets the backward states of the lane group of pixels at (x, y); returns their largest `last`.
template <class F>
GSL_CPU_INLINE int32_t load_tile_pixels(const BackwardArgs& a, const TileCoords& tc, BackwardPlanes& planes, int x,
                                        int y) {
  const int64_t pixel = tc.image_pixel(a.dims, x, y);
  const PixelBackward<F> b = load_pixels_backward(a, tc.camera, pixel, lane_centres<F>(x), y + 0.5f);
  planes.set(tc.plane_index(x, y), b, a.v_out_colors + pixel * a.dims.num_channels, a.dims.num_channels);
  if constexpr (Lanes<F>::kWidth == 1) {
    return b.last;
  } else {
    int32_t max_last = 0;
    for (int i = 0; i < Lanes<F>::kWidth; ++i) max_last = std::max<int32_t>(max_last, b.last[i]);
    return max_last;
  }
}

// Back to front; each pair's record sums its lanes' gradients over its rectangle's groups,
// then across the lanes: a fixed order.
template <class F, int kChannels, Semantics S>
GSL_CPU_INLINE void backward_tile(const BackwardArgs& a, int64_t tile, BackwardPlanes& planes,
                                  std::vector<float>& color_acc) {
  using Mask = typename Lanes<F>::Mask;
  using Int = typename Lanes<F>::Int;
  constexpr int W = Lanes<F>::kWidth;
  constexpr int kColor = kPairGradColorOf<S>;
  const Dims& d = a.dims;
  const int D = channel_count<kChannels>(d);
  const int width = kColor + D;
  const int64_t begin = a.tile_starts[tile], end = a.tile_starts[tile + 1];
  if (end == begin) return;
  // Every pair's record is written here (zeros where no pixel hits), so the Python layer
  // need not zero the buffer first.
  const auto record_of = [&](int32_t i) {
    return a.pair_grads + (a.pair_emit_index[begin + i] - a.first_record) * width;
  };
  const int64_t* items = a.pair_items + begin;
  planes.reset(D);
  const TileCoords tc = tile_coords(d, tile);
  // The pixels' states, a lane group at a time where one fits in the row, then pixel by pixel.
  int32_t max_last = 0;
  for (int y = tc.y0; y < tc.y1; ++y) {
    int x = tc.x0;
    for (; x + W <= tc.x1; x += W) max_last = std::max(max_last, load_tile_pixels<F>(a, tc, planes, x, y));
    for (; x < tc.x1; ++x) max_last = std::max(max_last, load_tile_pixels<float>(a, tc, planes, x, y));
  }
  for (int32_t i = max_last; i < static_cast<int32_t>(end - begin); ++i) std::fill_n(record_of(i), width, 0.f);
  color_acc.resize(static_cast<size_t>(D) * W);  // per colour channel, a lane group (unaligned)
  const int32_t* last = planes.plane(BackwardPlanes::kLast);
  int32_t* visited = planes.plane(BackwardPlanes::kVisited);
  const DepthRange range = depth_range(d.near_plane, d.far_plane);  // a copy, as in forward_tile
  for (int32_t i = max_last - 1; i >= 0 && i >= max_last - kPrefetchAhead; --i) prefetch_item(a, items[i]);
  for (int32_t i = max_last - 1; i >= 0; --i) {
    if (i >= kPrefetchAhead) prefetch_item(a, items[i - kPrefetchAhead]);
    const TileSplat t = load_tile_splat(a, tc, items[i]);
    const Int index = broadcast_int_lanes<F>(i);
    bool any_hit = false;
    F sums[kColor];  // the fixed part of the record, in registers
    // Back-propagates the lane group at plane index p.
    const auto visit = [&](int p, Mask m, const SplatColumns<F>& columns, float py) GSL_CPU_INLINE_LAMBDA {
      m = m & Mask(index < load_lanes<Int>(last + p));
      count_visits<F>(visited + p, m);
      if (!any(m)) return;
      Hit<F> h;
      const Mask hit = m & eval_hit<S>(t.s, columns, py, range.near_plane, h);
      if (!any(hit)) return;
      if (!any_hit) {
        for (F& sum : sums) sum = broadcast<F>(0.f);
        std::fill(color_acc.begin(), color_acc.end(), 0.f);
        any_hit = true;
      }
      PixelBackward<F> b = planes.load<F>(p, columns.px, py);
      const PlaneColumn<F> v_color{planes.v_color(0) + p};
      F g[kColor];
      b.template backprop<S>(t.s, h, hit, t.n, t.color, D, v_color, index, range, g);
      planes.store_walk(p, b);
      for (int k = 0; k < kColor; ++k) sums[k] = sums[k] + g[k];
      for (int ch = 0; ch < D; ++ch) {
        float* sum = color_acc.data() + ch * W;
        store_lanes(sum, load_lanes<F>(sum) + color_grad_term(b.weight, v_color(ch)));
      }
    };
    // Single rows: the backward's state is larger, and in pairs it spills (slower).
    for_each_lane_group<F, false>(tc, t.rect, t.s, visit);
    float* record = record_of(i);
    if (!any_hit) {
      std::fill_n(record, width, 0.f);
      continue;
    }
    for (int k = 0; k < kColor; ++k) record[k] = sum_lanes(sums[k]);
    for (int ch = 0; ch < D; ++ch) record[kColor + ch] = sum_lanes(load_lanes<F>(color_acc.data() + ch * W));
  }
  for (int y = tc.y0; y < tc.y1; ++y)
    for (int x = tc.x0; x < tc.x1; ++x) a.backward_pairs[tc.image_pixel(d, x, y)] = visited[tc.plane_index(x, y)];
}

// Per-thread scratch and the tile loops over tiles[0, count), one instantiation per lane type
// and semantics (chosen here, once per chunk of tiles).
template <class F>
GSL_CPU_INLINE void forward_tiles(const ForwardArgs& a, const int64_t* tiles, int64_t count) {
  ForwardPlanes planes;
  with_semantics(a.dims, [&](auto semantics) GSL_CPU_INLINE_LAMBDA {
    constexpr Semantics S = decltype(semantics)::value;
    if (a.dims.num_channels == 3) {
      for (int64_t k = 0; k < count; ++k) forward_tile<F, 3, S>(a, tiles[k], planes);
    } else {
      for (int64_t k = 0; k < count; ++k) forward_tile<F, 0, S>(a, tiles[k], planes);
    }
  });
}

template <class F>
GSL_CPU_INLINE void backward_tiles(const BackwardArgs& a, const int64_t* tiles, int64_t count) {
  BackwardPlanes planes;
  std::vector<float> color_acc;
  with_semantics(a.dims, [&](auto semantics) GSL_CPU_INLINE_LAMBDA {
    constexpr Semantics S = decltype(semantics)::value;
    if (a.dims.num_channels == 3) {
      for (int64_t k = 0; k < count; ++k) backward_tile<F, 3, S>(a, tiles[k], planes, color_acc);
    } else {
      for (int64_t k = 0; k < count; ++k) backward_tile<F, 0, S>(a, tiles[k], planes, color_acc);
    }
  });
}

// Splits items [begin, end) by camera: body(c, item0, item1) for each camera's items
// [item0, item1) there (none for a camera without items), so a loop over items finds the
// camera once per camera, not once per item.
template <class Body>
GSL_CPU_INLINE void for_each_camera(const Dims& d, const int64_t* camera_items, int64_t begin, int64_t end,
                                    Body&& body) {
  if (begin >= end) return;
  for (int64_t c = camera_of_item(d, camera_items, begin), item = begin; item < end; ++c) {
    const int64_t next = std::min(end, first_item(d, camera_items, c + 1));
    if (next > item) body(c, item, next);
    item = std::max(item, next);
  }
}

// Projects items [begin, end) a lane group at a time; a group never spans two cameras.
template <class F>
GSL_CPU_INLINE void project_range(const ProjectArgs& a, int64_t begin, int64_t end) {
  constexpr int W = Lanes<F>::kWidth;
  with_semantics(a.dims, [&](auto semantics) GSL_CPU_INLINE_LAMBDA {
    constexpr Semantics S = decltype(semantics)::value;
    for_each_camera(a.dims, a.camera_items, begin, end, [&](int64_t c, int64_t item0, int64_t item1)
                                                            GSL_CPU_INLINE_LAMBDA {
      const Camera cam = camera_of(a, c);
      const int64_t n_offset = a.item_surfels != nullptr ? 0 : c * a.dims.num_surfels;  // dense: n = item - c N
      for (int64_t item = item0; item < item1; item += W)
        project_items<F, S>(a, cam, item, item - n_offset, static_cast<int>(std::min<int64_t>(W, item1 - item)));
    });
  });
}

// A run of surfels whose gradients one camera group gives, with the group's cameras that see
// them, in order: dense, surfels [first, first + count) and cameras[0, num_cameras); packed, the
// surfels at scene_surfels[first, first + count), all of one scene, and the scene's cameras in
// the group. `accumulate`: an earlier group gave them gradients already, to add on to.
struct SurfelSegment {
  int64_t first, count;
  const int64_t* cameras;
  int64_t num_cameras;
  bool accumulate;
};

// Adds the segment's cameras' gradients of its surfels [begin, end) (offsets in the segment),
// a lane group at a time.
template <class F>
GSL_CPU_INLINE void project_backward_segment(const ProjectBackwardArgs& a, const SurfelSegment& g, int64_t begin,
                                             int64_t end) {
  constexpr int W = Lanes<F>::kWidth;
  ProjectBackwardArgs args = a;
  args.accumulate = g.accumulate;
  const bool packed = a.camera_items != nullptr;
  for (int64_t k = begin; k < end; k += W) {
    const int count = static_cast<int>(std::min<int64_t>(W, end - k));
    if (packed)
      project_backward_lanes<F>(args, a.scene_surfels + g.first + k, 0, count, g.cameras, g.num_cameras, k);
    else
      project_backward_lanes<F>(args, nullptr, g.first + k, count, g.cameras, g.num_cameras, g.first + k);
  }
}

}  // namespace gsl::rasterize::cpu_tiles
