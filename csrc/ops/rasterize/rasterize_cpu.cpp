// CPU schedule of the rasterizer: threads over (camera, surfel) items and over tiles.
// Each tile is composited by one thread and each pair's gradient record is written only by
// its tile's thread, so results are bit-identical for any thread count (decision 4).
//
// Within a tile the passes are splat-major: each splat visits only the pixels of its
// rectangle, a row at a time in groups of lanes (core/lanes.h: 8 with AVX2, 4 with SSE,
// or 1, the instantiation the CUDA backend runs). Every pixel still sees its splats in
// depth order, so this equals the per-pixel loop of the CUDA backend.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "core/lane_pairs.h"
#include "cpu/parallel.h"
#include "ops/rasterize/rasterize_impl.h"

namespace gsl::rasterize {

namespace {

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define GSL_HAVE_AVX2_SCHEDULE 1
#define GSL_TARGET_AVX2 __attribute__((target("avx2")))
#else
#define GSL_HAVE_AVX2_SCHEDULE 0
#endif
// A pass's scalar, SSE and AVX2 entry points (no AVX2 one where this build has no AVX2
// schedule), the arguments pick_schedule takes after the lane width.
#if GSL_HAVE_AVX2_SCHEDULE
#define GSL_SCHEDULES(pass) pass##_scalar, pass##_sse, pass##_avx2
#else
#define GSL_SCHEDULES(pass) pass##_scalar, pass##_sse, nullptr
#endif
// Inlined into the per-ISA entry points below, so each gets code for its instruction set.
#define GSL_CPU_INLINE inline __attribute__((always_inline))
// The same for a lambda in a schedule: one left out of line is compiled for the baseline
// instruction set (SSE2), whatever its caller's target, and runs vf8 as pairs of vf4.
#define GSL_CPU_INLINE_LAMBDA __attribute__((always_inline))

constexpr int kMaxLanes = 8;
// The pixel planes' row stride.
constexpr int kMaxTileWidth = kMaxCpuTileWidth;
// A pixel plane of one tile, padded so a lane group may run past the last pixel (those
// lanes are masked).
constexpr int kPlane = kMaxTileWidth * kTileSize + kMaxLanes;

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
  __builtin_prefetch(in.opacities + surfel_of(in.dims, item));
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

TileCoords tile_coords(const Dims& d, int64_t tile) {
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
// kPrefetchAhead places further on instead of copying the tile's splats first: the copy cost
// more than the misses it moved off the pixel loop (100k surfels, 256x256: forward 27.5 ms
// against 29.2).
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

// A lane group's values in a tile plane (p: its plane index): consecutive pixels of a row,
// and for a lane pair (core/lane_pairs.h) its second half the same pixels a row below.
template <class V, class T>
GSL_CPU_INLINE V load_group(const T* p) {
  if constexpr (IsLanePair<V>::value) {
    using Half = decltype(V::lo);
    return {load_group<Half>(p), load_group<Half>(p + kMaxTileWidth)};
  } else {
    return load_lanes<V>(p);
  }
}
template <class T, class V>
GSL_CPU_INLINE void store_group(T* p, const V& v) {
  if constexpr (IsLanePair<V>::value) {
    store_group(p, v.lo);
    store_group(p + kMaxTileWidth, v.hi);
  } else {
    store_lanes(p, v);
  }
}

// Lane helpers that the scalar lane type and the lane pair need in their own forms.
template <class F>
GSL_CPU_INLINE typename Lanes<F>::Mask load_mask(const int32_t* p) {
  if constexpr (IsLanePair<F>::value)
    return {load_mask<decltype(F::lo)>(p), load_mask<decltype(F::lo)>(p + kMaxTileWidth)};
  else if constexpr (Lanes<F>::kWidth == 1)
    return *p != 0;
  else
    return load_lanes<typename Lanes<F>::Mask>(p);
}
template <class F>
GSL_CPU_INLINE void store_mask(int32_t* p, typename Lanes<F>::Mask m) {
  if constexpr (IsLanePair<F>::value) {
    store_mask<decltype(F::lo)>(p, m.lo);
    store_mask<decltype(F::lo)>(p + kMaxTileWidth, m.hi);
  } else if constexpr (Lanes<F>::kWidth == 1) {
    *p = m ? -1 : 0;
  } else {
    store_lanes(p, m);
  }
}
template <class F>
GSL_CPU_INLINE int count_true(typename Lanes<F>::Mask m) {
  if constexpr (IsLanePair<F>::value) {
    return count_true<decltype(F::lo)>(m.lo) + count_true<decltype(F::lo)>(m.hi);
  } else if constexpr (Lanes<F>::kWidth == 1) {
    return m ? 1 : 0;
  } else {
    int n = 0;
    for (int i = 0; i < Lanes<F>::kWidth; ++i) n += m[i] != 0;
    return n;
  }
}
// Adds the lanes of m to the per-pixel visit counts of a lane group.
template <class F>
GSL_CPU_INLINE void count_visits(int32_t* visits, typename Lanes<F>::Mask m) {
  using Int = typename Lanes<F>::Int;
  Int counts = load_group<Int>(visits);
  count_lanes(counts, m);
  store_group(visits, counts);
}
template <class F>
GSL_CPU_INLINE F lane_centres(int x) {
  return (float(x) + lane_offsets<F>()) + 0.5f;
}
// The lane pair of two rows of the same columns.
template <class F>
GSL_CPU_INLINE SplatColumns<LanePair<F>> columns_pair(const SplatColumns<F>& c) {
  return {pair_of(c.px), pair_of(c.lx_x), pair_of(c.lx_y), pair_of(c.lx_z), pair_of(c.dx), pair_of(c.dx2)};
}

// Calls visit(p, lanes, columns, py) for each lane group of rectangle r (within the tile): p
// its plane index, lanes those inside r. The rectangle is walked a column group at a time, so
// what eval_hit computes from the columns alone (SplatColumns) is computed once per column
// group, for all its rows. With kPairRows two rows go in one lane pair (py a RowPair), so the
// pair's two independent chains overlap (core/lane_pairs.h); the last row of an odd count
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

// Planes of floats and of ints, kPlane long each: one tile's pixel states, a plane a field.
class TilePlanes {
 public:
  float* floats(int k) { return floats_.data() + static_cast<size_t>(k) * kPlane; }
  int32_t* ints(int k) { return ints_.data() + static_cast<size_t>(k) * kPlane; }

 protected:
  void reset(int float_planes, int int_planes) {
    floats_.assign(static_cast<size_t>(float_planes) * kPlane, 0.f);
    ints_.assign(static_cast<size_t>(int_planes) * kPlane, 0);
  }

 private:
  std::vector<float> floats_;
  std::vector<int32_t> ints_;
};

// One tile's PixelForward states.
class ForwardPlanes : public TilePlanes {
 public:
  enum FloatPlane { kT, kDepth, kMedianDepth, kNormalX, kNormalY, kNormalZ, kSumWeight, kSumFirst, kSumSecond,
                    kDistortion, kColor };
  enum IntPlane { kLast, kMedian, kVisited, kDone, kIntPlanes };

  void reset(int num_channels) {
    TilePlanes::reset(kColor + num_channels, kIntPlanes);
    std::fill_n(plane(kT), kPlane, 1.f);
    std::fill_n(plane(kMedian), kPlane, -1);
  }
  float* plane(FloatPlane k) { return floats(k); }
  int32_t* plane(IntPlane k) { return ints(k); }
  float* color(int ch) { return floats(kColor + ch); }

  // The fields of PixelForward::advance (done aside: the tile pass reads it first, alone).
  template <class F>
  GSL_CPU_INLINE void load_advance(int p, PixelForward<F>& f) {
    using Int = typename Lanes<F>::Int;
    f.T = load_group<F>(plane(kT) + p);
    f.median_depth = load_group<F>(plane(kMedianDepth) + p);
    f.last = load_group<Int>(plane(kLast) + p);
    f.median = load_group<Int>(plane(kMedian) + p);
  }
  template <class F>
  GSL_CPU_INLINE void store_advance(int p, const PixelForward<F>& f) {
    store_group(plane(kT) + p, f.T);
    store_group(plane(kMedianDepth) + p, f.median_depth);
    store_group(plane(kLast) + p, f.last);
    store_group(plane(kMedian) + p, f.median);
  }
  // The fields of PixelForward::accumulate.
  template <class F>
  GSL_CPU_INLINE void load_sums(int p, PixelForward<F>& f) {
    f.depth = load_group<F>(plane(kDepth) + p);
    f.normal_x = load_group<F>(plane(kNormalX) + p);
    f.normal_y = load_group<F>(plane(kNormalY) + p);
    f.normal_z = load_group<F>(plane(kNormalZ) + p);
    f.sums.weight = load_group<F>(plane(kSumWeight) + p);
    f.sums.first = load_group<F>(plane(kSumFirst) + p);
    f.sums.second = load_group<F>(plane(kSumSecond) + p);
    f.sums.distortion = load_group<F>(plane(kDistortion) + p);
  }
  template <class F>
  GSL_CPU_INLINE void store_sums(int p, const PixelForward<F>& f) {
    store_group(plane(kDepth) + p, f.depth);
    store_group(plane(kNormalX) + p, f.normal_x);
    store_group(plane(kNormalY) + p, f.normal_y);
    store_group(plane(kNormalZ) + p, f.normal_z);
    store_group(plane(kSumWeight) + p, f.sums.weight);
    store_group(plane(kSumFirst) + p, f.sums.first);
    store_group(plane(kSumSecond) + p, f.sums.second);
    store_group(plane(kDistortion) + p, f.sums.distortion);
  }
  // Every field (the tile's outputs); visited is the caller's.
  template <class F>
  GSL_CPU_INLINE PixelForward<F> load(int p, F px, typename Lanes<F>::Row py) {
    PixelForward<F> f;
    f.px = px;
    f.py = py;
    load_advance(p, f);
    load_sums(p, f);
    f.done = load_mask<F>(plane(kDone) + p);
    return f;
  }
};

// One tile's PixelBackward states.
class BackwardPlanes : public TilePlanes {
 public:
  enum FloatPlane { kT, kBehind, kSumWeight, kSumFirst, kSumSecond, kVDepth, kVMedian, kVDistortion, kVNormalX,
                    kVNormalY, kVNormalZ, kVColor };
  enum IntPlane { kLast, kMedian, kVisited, kIntPlanes };

  // last = 0: the padding is never revisited.
  void reset(int num_channels) { TilePlanes::reset(kVColor + num_channels, kIntPlanes); }
  float* plane(FloatPlane k) { return floats(k); }
  int32_t* plane(IntPlane k) { return ints(k); }
  float* v_color(int ch) { return floats(kVColor + ch); }

  // Sets the states of a lane group of pixels; v_colors: their [W, D] colour cotangents.
  template <class F>
  GSL_CPU_INLINE void set(int p, const PixelBackward<F>& b, const float* v_colors, int num_channels) {
    store_group(plane(kT) + p, b.T);
    store_group(plane(kBehind) + p, b.behind);
    store_group(plane(kSumWeight) + p, b.sums.weight);
    store_group(plane(kSumFirst) + p, b.sums.first);
    store_group(plane(kSumSecond) + p, b.sums.second);
    store_group(plane(kVDepth) + p, b.v_depth);
    store_group(plane(kVMedian) + p, b.v_median);
    store_group(plane(kVDistortion) + p, b.v_distortion);
    store_group(plane(kVNormalX) + p, b.v_normal_x);
    store_group(plane(kVNormalY) + p, b.v_normal_y);
    store_group(plane(kVNormalZ) + p, b.v_normal_z);
    store_group(plane(kLast) + p, b.last);
    store_group(plane(kMedian) + p, b.median);
    for (int ch = 0; ch < num_channels; ++ch)
      for (int i = 0; i < Lanes<F>::kWidth; ++i) v_color(ch)[p + i] = v_colors[i * num_channels + ch];
  }

  template <class F>
  GSL_CPU_INLINE PixelBackward<F> load(int p, F px, typename Lanes<F>::Row py) {
    using Int = typename Lanes<F>::Int;
    PixelBackward<F> b;
    b.px = px;
    b.py = py;
    b.last = load_group<Int>(plane(kLast) + p);
    b.median = load_group<Int>(plane(kMedian) + p);
    b.sums.weight = load_group<F>(plane(kSumWeight) + p);
    b.sums.first = load_group<F>(plane(kSumFirst) + p);
    b.sums.second = load_group<F>(plane(kSumSecond) + p);
    b.v_depth = load_group<F>(plane(kVDepth) + p);
    b.v_median = load_group<F>(plane(kVMedian) + p);
    b.v_distortion = load_group<F>(plane(kVDistortion) + p);
    b.v_normal_x = load_group<F>(plane(kVNormalX) + p);
    b.v_normal_y = load_group<F>(plane(kVNormalY) + p);
    b.v_normal_z = load_group<F>(plane(kVNormalZ) + p);
    b.T = load_group<F>(plane(kT) + p);
    b.behind = load_group<F>(plane(kBehind) + p);
    return b;
  }

  // What a visit changes.
  template <class F>
  GSL_CPU_INLINE void store_walk(int p, const PixelBackward<F>& b) {
    store_group(plane(kT) + p, b.T);
    store_group(plane(kBehind) + p, b.behind);
  }
};

// Reads colour channel ch of a lane group from planes kPlane apart (a struct, not a lambda,
// so that it is force-inlined into each instruction set's schedule).
template <class F>
struct PlaneColumn {
  const float* first;
  GSL_CPU_INLINE F operator()(int ch) const { return load_group<F>(first + static_cast<size_t>(ch) * kPlane); }
};

// Writes the outputs of the lane group of pixels at (x, y) from the tile's planes.
template <class F>
GSL_CPU_INLINE void store_tile_pixels(const ForwardArgs& a, const TileCoords& tc, ForwardPlanes& planes, int x, int y) {
  const int p = tc.plane_index(x, y);
  PixelForward<F> f = planes.load<F>(p, lane_centres<F>(x), y + 0.5f);
  f.visited = load_lanes<typename Lanes<F>::Int>(planes.plane(ForwardPlanes::kVisited) + p);
  store_pixels(a, tc.camera, tc.image_pixel(a.dims, x, y), f, PlaneColumn<F>{planes.color(0) + p});
}

template <class F, int kChannels>
GSL_CPU_INLINE void forward_tile(const ForwardArgs& a, int64_t tile, ForwardPlanes& planes) {
  using Mask = typename Lanes<F>::Mask;
  constexpr int W = Lanes<F>::kWidth;
  const Dims& d = a.dims;
  const int D = channel_count<kChannels>(d);
  const int64_t begin = a.tile_starts[tile], end = a.tile_starts[tile + 1];
  const int64_t* items = a.pair_items + begin;
  planes.reset(D);
  const TileCoords tc = tile_coords(d, tile);
  int remaining = (tc.x1 - tc.x0) * (tc.y1 - tc.y0);  // pixels not done
  int32_t* done = planes.plane(ForwardPlanes::kDone);
  int32_t* visited = planes.plane(ForwardPlanes::kVisited);
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
    // PixelForward::visit of the lane group (G = F) or lane pair (G = LanePair<F>) at plane
    // index p, with the state loaded only where the splat contributes.
    const auto visit = [&](int p, auto m, const auto& columns, auto py) GSL_CPU_INLINE_LAMBDA {
      using G = std::decay_t<decltype(columns.px)>;
      using GMask = typename Lanes<G>::Mask;
      m = m & lanes_not(load_mask<G>(done + p));
      count_visits<G>(visited + p, m);
      if (!any(m)) return;
      Hit<G> h;
      GMask ok = m & eval_hit(t.s, columns, py, range.near_plane, h);
      if (!any(ok)) return;
      // PixelForward::composite, each step's fields loaded and stored around it (kept live
      // across both steps, they would not fit in registers).
      PixelForward<G> f;
      f.done = lanes_not(m);  // within m none is done; outside m, done or not, none changes
      planes.load_advance(p, f);
      if constexpr (IsLanePair<G>::value)
        ok = f.advance(h, ok, pair_of(index));
      else
        ok = f.advance(h, ok, index);
      const GMask newly_done = f.done & m;
      if (any(newly_done)) {
        remaining -= count_true<G>(newly_done);
        store_mask<G>(done + p, load_mask<G>(done + p) | newly_done);
      }
      if (!any(ok)) return;
      planes.store_advance(p, f);
      planes.load_sums(p, f);
      f.accumulate(h, ok, t.n, range);
      planes.store_sums(p, f);
      for (int ch = 0; ch < D; ++ch) {
        float* acc = planes.color(ch) + p;
        store_group(acc, load_group<G>(acc) + f.weight * t.color[ch]);
      }
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
template <class F, int kChannels>
GSL_CPU_INLINE void backward_tile(const BackwardArgs& a, int64_t tile, BackwardPlanes& planes,
                                  std::vector<float>& color_acc) {
  using Mask = typename Lanes<F>::Mask;
  using Int = typename Lanes<F>::Int;
  constexpr int W = Lanes<F>::kWidth;
  const Dims& d = a.dims;
  const int D = channel_count<kChannels>(d);
  const int width = pair_grad_width(D);
  const int64_t begin = a.tile_starts[tile], end = a.tile_starts[tile + 1];
  if (end == begin) return;
  // Every pair's record is written here (zeros where no pixel hits), so the Python layer
  // need not zero the buffer first.
  const auto record_of = [&](int32_t i) { return a.pair_grads + a.pair_emit_index[begin + i] * width; };
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
    F sums[kPairGradColor];  // the fixed part of the record, in registers
    // Back-propagates the lane group at plane index p.
    const auto visit = [&](int p, Mask m, const SplatColumns<F>& columns, float py) GSL_CPU_INLINE_LAMBDA {
      m = m & Mask(index < load_lanes<Int>(last + p));
      count_visits<F>(visited + p, m);
      if (!any(m)) return;
      Hit<F> h;
      const Mask hit = m & eval_hit(t.s, columns, py, range.near_plane, h);
      if (!any(hit)) return;
      if (!any_hit) {
        for (F& sum : sums) sum = broadcast<F>(0.f);
        std::fill(color_acc.begin(), color_acc.end(), 0.f);
        any_hit = true;
      }
      PixelBackward<F> b = planes.load<F>(p, columns.px, py);
      const PlaneColumn<F> v_color{planes.v_color(0) + p};
      F g[kPairGradColor];
      b.backprop(t.s, h, hit, t.n, t.color, D, v_color, index, range, g);
      planes.store_walk(p, b);
      for (int k = 0; k < kPairGradColor; ++k) sums[k] = sums[k] + g[k];
      for (int ch = 0; ch < D; ++ch) {
        float* sum = color_acc.data() + ch * W;
        store_lanes(sum, load_lanes<F>(sum) + b.weight * v_color(ch));
      }
    };
    // Single rows: the backward's state is larger, and in pairs it spills (slower).
    for_each_lane_group<F, false>(tc, t.rect, t.s, visit);
    float* record = record_of(i);
    if (!any_hit) {
      std::fill_n(record, width, 0.f);
      continue;
    }
    for (int k = 0; k < kPairGradColor; ++k) record[k] = sum_lanes(sums[k]);
    for (int ch = 0; ch < D; ++ch) record[kPairGradColor + ch] = sum_lanes(load_lanes<F>(color_acc.data() + ch * W));
  }
  for (int y = tc.y0; y < tc.y1; ++y)
    for (int x = tc.x0; x < tc.x1; ++x) a.backward_pairs[tc.image_pixel(d, x, y)] = visited[tc.plane_index(x, y)];
}

// Per-thread scratch and the tile loops over tiles[0, count), one instantiation per lane type.
template <class F>
GSL_CPU_INLINE void forward_tiles(const ForwardArgs& a, const int64_t* tiles, int64_t count) {
  ForwardPlanes planes;
  if (a.dims.num_channels == 3) {
    for (int64_t k = 0; k < count; ++k) forward_tile<F, 3>(a, tiles[k], planes);
  } else {
    for (int64_t k = 0; k < count; ++k) forward_tile<F, 0>(a, tiles[k], planes);
  }
}

template <class F>
GSL_CPU_INLINE void backward_tiles(const BackwardArgs& a, const int64_t* tiles, int64_t count) {
  BackwardPlanes planes;
  std::vector<float> color_acc;
  if (a.dims.num_channels == 3) {
    for (int64_t k = 0; k < count; ++k) backward_tile<F, 3>(a, tiles[k], planes, color_acc);
  } else {
    for (int64_t k = 0; k < count; ++k) backward_tile<F, 0>(a, tiles[k], planes, color_acc);
  }
}

// Splits items [begin, end) (item = c * N + n) by camera: body(c, n0, n1) for each camera's
// surfels [n0, n1), so a loop over items divides once per camera, not once per item.
template <class Body>
GSL_CPU_INLINE void for_each_camera(const Dims& d, int64_t begin, int64_t end, Body&& body) {
  for (int64_t item = begin; item < end;) {
    const int64_t c = item / d.num_surfels, n0 = item % d.num_surfels;
    const int64_t n1 = std::min(d.num_surfels, n0 + (end - item));
    body(c, n0, n1);
    item += n1 - n0;
  }
}

// Projects items [begin, end) a lane group at a time; a group never spans two cameras.
template <class F>
GSL_CPU_INLINE void project_range(const ProjectArgs& a, int64_t begin, int64_t end) {
  constexpr int W = Lanes<F>::kWidth;
  for_each_camera(a.dims, begin, end, [&](int64_t c, int64_t n0, int64_t n1) GSL_CPU_INLINE_LAMBDA {
    const Camera cam = camera_of(a, c);
    for (int64_t n = n0; n < n1; n += W) project_items<F>(a, cam, c, n, static_cast<int>(std::min<int64_t>(W, n1 - n)));
  });
}

template <class F>
GSL_CPU_INLINE void project_backward_range(const ProjectBackwardArgs& a, int64_t begin, int64_t end) {
  constexpr int W = Lanes<F>::kWidth;
  for (int64_t n = begin; n < end; n += W)
    project_backward_items<F>(a, n, static_cast<int>(std::min<int64_t>(W, end - n)));
}

void project_range_scalar(const ProjectArgs& a, int64_t b, int64_t e) { project_range<float>(a, b, e); }
void project_backward_range_scalar(const ProjectBackwardArgs& a, int64_t b, int64_t e) {
  project_backward_range<float>(a, b, e);
}
void project_backward_range_sse(const ProjectBackwardArgs& a, int64_t b, int64_t e) {
  project_backward_range<vf4>(a, b, e);
}
void project_range_sse(const ProjectArgs& a, int64_t b, int64_t e) { project_range<vf4>(a, b, e); }
void forward_tiles_scalar(const ForwardArgs& a, const int64_t* t, int64_t n) { forward_tiles<float>(a, t, n); }
void forward_tiles_sse(const ForwardArgs& a, const int64_t* t, int64_t n) { forward_tiles<vf4>(a, t, n); }
void backward_tiles_scalar(const BackwardArgs& a, const int64_t* t, int64_t n) { backward_tiles<float>(a, t, n); }
void backward_tiles_sse(const BackwardArgs& a, const int64_t* t, int64_t n) { backward_tiles<vf4>(a, t, n); }
#if GSL_HAVE_AVX2_SCHEDULE
GSL_TARGET_AVX2 void project_backward_range_avx2(const ProjectBackwardArgs& a, int64_t b, int64_t e) {
  project_backward_range<vf8>(a, b, e);
}
GSL_TARGET_AVX2 void project_range_avx2(const ProjectArgs& a, int64_t b, int64_t e) { project_range<vf8>(a, b, e); }
GSL_TARGET_AVX2 void forward_tiles_avx2(const ForwardArgs& a, const int64_t* t, int64_t n) {
  forward_tiles<vf8>(a, t, n);
}
GSL_TARGET_AVX2 void backward_tiles_avx2(const BackwardArgs& a, const int64_t* t, int64_t n) {
  backward_tiles<vf8>(a, t, n);
}
#endif

// A pass over items [begin, end), and one over tiles[0, count).
template <class Args>
using ItemPass = void (*)(const Args&, int64_t, int64_t);
template <class Args>
using TilePass = void (*)(const Args&, const int64_t*, int64_t);

template <class Pass>
Pass pick_schedule(int lanes, Pass scalar, Pass sse, Pass avx2) {
  if (lanes == 0) lanes = max_cpu_lanes();
  if (lanes == 1) return scalar;
  if (lanes == 4) return sse;
  if (lanes == 8 && max_cpu_lanes() >= 8 && avx2 != nullptr) return avx2;
  throw std::invalid_argument("rasterize: cpu_lanes must be 0 (widest), 1, 4, or 8 where AVX2 is available; got " +
                              std::to_string(lanes));
}

// The tiles of a tile pass in the order the threads take them: with several threads the
// heaviest first (by pair count, then by index), so they finish together instead of one
// rendering a heavy tile taken last. Which thread renders a tile never changes its bits.
std::vector<int64_t> tile_order(const PixelPassInputs& in, int num_threads) {
  const int64_t num_tiles = in.dims.num_cameras * tiles_per_camera(in.dims);
  std::vector<int64_t> order(num_tiles);
  for (int64_t t = 0; t < num_tiles; ++t) order[t] = t;
  const auto pairs = [&](int64_t t) { return in.tile_starts[t + 1] - in.tile_starts[t]; };
  if (num_threads > 1)
    std::stable_sort(order.begin(), order.end(), [&](int64_t s, int64_t t) { return pairs(s) > pairs(t); });
  return order;
}

// Runs a tile pass over every tile, the threads taking them in tile_order.
template <class Args>
void run_tile_pass(TilePass<Args> pass, const Args& a, int num_threads) {
  const std::vector<int64_t> tiles = tile_order(a, num_threads);
  cpu::parallel_for(static_cast<int64_t>(tiles.size()), num_threads, 1,
                    [&](int64_t begin, int64_t end) { pass(a, tiles.data() + begin, end - begin); });
}

void check_cpu_tiles(const Dims& d) {
  if (d.tile_width < 1 || d.tile_width > kMaxTileWidth)
    throw std::invalid_argument("rasterize: the CPU backend takes tile_width 1 to " + std::to_string(kMaxTileWidth) +
                                ", got " + std::to_string(d.tile_width));
}

}  // namespace

int max_cpu_lanes() {
#if GSL_HAVE_AVX2_SCHEDULE
  static const int lanes = __builtin_cpu_supports("avx2") ? 8 : 4;
  return lanes;
#else
  return 4;
#endif
}

void project_cpu(const ProjectArgs& args, int num_threads) {
  check_cpu_tiles(args.dims);
  const auto pass = pick_schedule<ItemPass<ProjectArgs>>(args.dims.cpu_lanes, GSL_SCHEDULES(project_range));
  const int64_t items = args.dims.num_cameras * args.dims.num_surfels;
  if (items == 0) return;  // empty buffers come as null pointers
  if ((args.tile_counts == nullptr) == (args.pair_ends == nullptr))
    throw std::invalid_argument("rasterize: project takes exactly one of tile_counts and pair_ends");
  ProjectArgs a = args;
  if (a.pair_ends != nullptr) a.tile_counts = a.pair_ends;  // the counts, summed in place below
  cpu::parallel_for(items, num_threads, 4096, [&](int64_t begin, int64_t end) { pass(a, begin, end); });
  // One serial loop, the sum kept in a register (reading back the previous store would chain
  // every item on store forwarding), where torch.cumsum took 0.16 ms at 100k items.
  if (a.pair_ends != nullptr) {
    int64_t sum = 0;
    for (int64_t item = 0; item < items; ++item) a.pair_ends[item] = sum += a.pair_ends[item];
  }
}

void emit_pairs_cpu(const EmitArgs& a, int num_threads) {
  check_cpu_tiles(a.dims);
  const int64_t items = a.dims.num_cameras * a.dims.num_surfels;
  cpu::parallel_for(items, num_threads, 4096, [&](int64_t begin, int64_t end) {
    for_each_camera(a.dims, begin, end, [&](int64_t c, int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) emit_item(a, c, c * a.dims.num_surfels + n);
    });
  });
}

void forward_cpu(const ForwardArgs& a, int num_threads) {
  check_cpu_tiles(a.dims);
  run_tile_pass(pick_schedule<TilePass<ForwardArgs>>(a.dims.cpu_lanes, GSL_SCHEDULES(forward_tiles)), a, num_threads);
}

void backward_cpu(const BackwardArgs& a, int num_threads) {
  check_cpu_tiles(a.dims);
  // Each tile's thread writes its pairs' records; records shared by tiles would race.
  if (a.dims.item_records)
    throw std::invalid_argument("rasterize: the CPU backward writes a record per pair (it is always deterministic); "
                                "item_records is CUDA-only");
  run_tile_pass(pick_schedule<TilePass<BackwardArgs>>(a.dims.cpu_lanes, GSL_SCHEDULES(backward_tiles)), a, num_threads);
}

void reduce_cpu(const ReduceArgs& a, int num_threads) {
  const int64_t items = a.dims.num_cameras * a.dims.num_surfels;
  cpu::parallel_for(items, num_threads, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) reduce_item(a, item);
  });
}

void project_backward_cpu(const ProjectBackwardArgs& a, int num_threads) {
  const auto pass =
      pick_schedule<ItemPass<ProjectBackwardArgs>>(a.dims.cpu_lanes, GSL_SCHEDULES(project_backward_range));
  cpu::parallel_for(a.dims.num_surfels, num_threads, 1024, [&](int64_t begin, int64_t end) { pass(a, begin, end); });
}

}  // namespace gsl::rasterize
