// One tile's pixel states on the CPU: a plane of floats or ints per field of PixelForward /
// PixelBackward (core/compositing.h), 64 x 16 pixels each, read and written a lane group at a
// time. Each state's field list is written once (its *_fields), and every load and store of a
// lane group's state goes through it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/compositing.h"
#include "cpu/inline.h"
#include "cpu/lane_pairs.h"
#include "ops/rasterize/rasterize.h"

namespace gsl::rasterize::cpu_tiles {

constexpr int kMaxLanes = 8;
// The planes' row stride.
constexpr int kMaxTileWidth = kMaxCpuTileWidth;
// A pixel plane of one tile, padded so a lane group may run past the last pixel (those
// lanes are masked).
constexpr int kPlane = kMaxTileWidth * kTileSize + kMaxLanes;

// A lane group's values in a tile plane (p: its plane index): consecutive pixels of a row,
// and for a lane pair (cpu/lane_pairs.h) its second half the same pixels a row below.
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

// Planes of floats and of ints, kPlane long each: one tile's pixel states, a plane a field
// (Names: a struct with the enums FloatPlane and IntPlane).
template <class Names>
class TilePlanes : public Names {
 public:
  float* plane(typename Names::FloatPlane k) { return floats(k); }
  int32_t* plane(typename Names::IntPlane k) { return ints(k); }

 protected:
  float* floats(int k) { return floats_.data() + static_cast<size_t>(k) * kPlane; }
  int32_t* ints(int k) { return ints_.data() + static_cast<size_t>(k) * kPlane; }
  void reset(int float_planes, int int_planes) {
    floats_.assign(static_cast<size_t>(float_planes) * kPlane, 0.f);
    ints_.assign(static_cast<size_t>(int_planes) * kPlane, 0);
  }

 public:
  // Stores (kStore) or loads the fields that Fields::visit(state, visit) lists, of the lane
  // group at plane index p.
  template <bool kStore, class Fields, class State>
  GSL_CPU_INLINE void transfer(int p, State& state) {
    Fields::visit(state, [&](auto field, auto& value) GSL_CPU_INLINE_LAMBDA {
      if constexpr (kStore)
        store_group(plane(field) + p, value);
      else
        value = load_group<std::remove_reference_t<decltype(value)>>(plane(field) + p);
    });
  }

 private:
  std::vector<float> floats_;
  std::vector<int32_t> ints_;
};

struct ForwardPlaneNames {
  enum FloatPlane { kT, kDepth, kMedianDepth, kNormalX, kNormalY, kNormalZ, kSumWeight, kSumFirst, kSumSecond,
                    kDistortion, kColor };
  enum IntPlane { kLast, kMedian, kVisited, kDone, kIntPlanes };
};

// One tile's PixelForward states.
class ForwardPlanes : public TilePlanes<ForwardPlaneNames> {
 public:
  void reset(int num_channels) {
    TilePlanes::reset(kColor + num_channels, kIntPlanes);
    std::fill_n(plane(kT), kPlane, 1.f);
    std::fill_n(plane(kMedian), kPlane, -1);
  }
  float* color(int ch) { return floats(kColor + ch); }

  // The fields PixelForward::advance changes (done aside: visit_splat reads it first, alone).
  struct AdvanceFields {
    template <class PF, class Visit>
    GSL_CPU_INLINE static void visit(PF& f, Visit&& visit) {
      visit(kT, f.T);
      visit(kMedianDepth, f.median_depth);
      visit(kLast, f.last);
      visit(kMedian, f.median);
    }
  };
  // The fields PixelForward::accumulate changes.
  struct SumFields {
    template <class PF, class Visit>
    GSL_CPU_INLINE static void visit(PF& f, Visit&& visit) {
      visit(kDepth, f.depth);
      visit(kNormalX, f.normal_x);
      visit(kNormalY, f.normal_y);
      visit(kNormalZ, f.normal_z);
      visit(kSumWeight, f.sums.weight);
      visit(kSumFirst, f.sums.first);
      visit(kSumSecond, f.sums.second);
      visit(kDistortion, f.sums.distortion);
    }
  };
  // Every field (the tile's outputs); visited is the caller's.
  template <class F>
  GSL_CPU_INLINE PixelForward<F> load(int p, F px, typename Lanes<F>::Row py) {
    PixelForward<F> f;
    f.px = px;
    f.py = py;
    transfer<false, AdvanceFields>(p, f);
    transfer<false, SumFields>(p, f);
    f.done = load_mask<F>(plane(kDone) + p);
    return f;
  }
};

// visit_splat's state (core/compositing.h) of the lane group (or lane pair) G at plane index p:
// the tile's planes, loaded and stored in the parts each step of a visit needs.
template <class G>
struct ForwardPlaneVisit {
  using Mask = typename Lanes<G>::Mask;
  ForwardPlanes& planes;
  int p;
  int& remaining;  // the tile's pixels not done
  GSL_CPU_INLINE Mask done() const { return load_mask<G>(planes.plane(ForwardPlanes::kDone) + p); }
  GSL_CPU_INLINE void count_visits(Mask m) { cpu_tiles::count_visits<G>(planes.plane(ForwardPlanes::kVisited) + p, m); }
  GSL_CPU_INLINE void load_advance(PixelForward<G>& f, Mask m) {
    f.done = lanes_not(m);  // within m none is done; outside m, done or not, none changes
    planes.transfer<false, ForwardPlanes::AdvanceFields>(p, f);
  }
  GSL_CPU_INLINE void store_done(const PixelForward<G>&, Mask newly_done) {
    if (!any(newly_done)) return;
    int32_t* done = planes.plane(ForwardPlanes::kDone) + p;
    remaining -= count_true<G>(newly_done);
    store_mask<G>(done, load_mask<G>(done) | newly_done);
  }
  GSL_CPU_INLINE void store_advance(const PixelForward<G>& f) {
    planes.transfer<true, ForwardPlanes::AdvanceFields>(p, f);
  }
  GSL_CPU_INLINE void load_sums(PixelForward<G>& f) { planes.transfer<false, ForwardPlanes::SumFields>(p, f); }
  GSL_CPU_INLINE void store_sums(const PixelForward<G>& f) { planes.transfer<true, ForwardPlanes::SumFields>(p, f); }
  GSL_CPU_INLINE void add_color(int ch, G term) {
    float* acc = planes.color(ch) + p;
    store_group(acc, load_group<G>(acc) + term);
  }
};

struct BackwardPlaneNames {
  enum FloatPlane { kT, kBehind, kSumWeight, kSumFirst, kSumSecond, kVDepth, kVMedian, kVDistortion, kVNormalX,
                    kVNormalY, kVNormalZ, kVColor };
  enum IntPlane { kLast, kMedian, kVisited, kIntPlanes };
};

// One tile's PixelBackward states.
class BackwardPlanes : public TilePlanes<BackwardPlaneNames> {
 public:
  // last = 0: the padding is never revisited.
  void reset(int num_channels) { TilePlanes::reset(kVColor + num_channels, kIntPlanes); }
  float* v_color(int ch) { return floats(kVColor + ch); }

  // The fields a visit changes.
  struct WalkFields {
    template <class PB, class Visit>
    GSL_CPU_INLINE static void visit(PB& b, Visit&& visit) {
      visit(kT, b.T);
      visit(kBehind, b.behind);
    }
  };
  // Every field but the pixel centres and the colour cotangents.
  struct StateFields {
    template <class PB, class Visit>
    GSL_CPU_INLINE static void visit(PB& b, Visit&& visit) {
      WalkFields::visit(b, visit);
      visit(kLast, b.last);
      visit(kMedian, b.median);
      visit(kSumWeight, b.sums.weight);
      visit(kSumFirst, b.sums.first);
      visit(kSumSecond, b.sums.second);
      visit(kVDepth, b.v_depth);
      visit(kVMedian, b.v_median);
      visit(kVDistortion, b.v_distortion);
      visit(kVNormalX, b.v_normal_x);
      visit(kVNormalY, b.v_normal_y);
      visit(kVNormalZ, b.v_normal_z);
    }
  };

  // Sets the states of a lane group of pixels; v_colors: their [W, D] colour cotangents.
  template <class F>
  GSL_CPU_INLINE void set(int p, const PixelBackward<F>& b, const float* v_colors, int num_channels) {
    transfer<true, StateFields>(p, b);
    for (int ch = 0; ch < num_channels; ++ch)
      for (int i = 0; i < Lanes<F>::kWidth; ++i) v_color(ch)[p + i] = v_colors[i * num_channels + ch];
  }
  template <class F>
  GSL_CPU_INLINE PixelBackward<F> load(int p, F px, typename Lanes<F>::Row py) {
    PixelBackward<F> b;
    b.px = px;
    b.py = py;
    transfer<false, StateFields>(p, b);
    return b;
  }
  template <class F>
  GSL_CPU_INLINE void store_walk(int p, const PixelBackward<F>& b) {
    transfer<true, WalkFields>(p, b);
  }
};

// Reads colour channel ch of a lane group from planes kPlane apart (a struct, not a lambda,
// so that it is force-inlined into each instruction set's schedule).
template <class F>
struct PlaneColumn {
  const float* first;
  GSL_CPU_INLINE F operator()(int ch) const { return load_group<F>(first + static_cast<size_t>(ch) * kPlane); }
};

}  // namespace gsl::rasterize::cpu_tiles
