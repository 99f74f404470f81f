// Lane pairs: two lane groups computed side by side, a lane type of its own (the CPU schedule
// only: CUDA runs one pixel per thread).
//
// One lane group's chain through the per-pixel math (ray-splat hit, division, exp,
// compositing) is long, and with the branches between groups the core overlaps little of one
// group with the next. A LanePair issues every operation for both halves, so two independent
// chains overlap. The CPU forward puts two rows of a splat's rectangle in one pair (the
// backward's larger state spills in pairs, so it keeps single rows). Each half has its own row (RowPair), so what depends only on the row stays a scalar
// per half.
//
// Every operation acts on each half alone, in the same order as on a single group, so a
// pair gives exactly the bits of its two halves computed apart.
#pragma once

#include <type_traits>

#include "core/lanes.h"

namespace gsl {

template <class V>
struct LanePair {
  V lo, hi;
};

// The rows of the two halves: the pair's counterpart of Lanes<F>::Row.
struct RowPair {
  float lo, hi;
};

template <class V>
struct Lanes<LanePair<V>> {
  using Mask = LanePair<typename Lanes<V>::Mask>;
  using Int = LanePair<typename Lanes<V>::Int>;
  using Row = RowPair;
  static constexpr int kWidth = 2 * Lanes<V>::kWidth;
};

template <class T>
struct IsLanePair : std::false_type {};
template <class V>
struct IsLanePair<LanePair<V>> : std::true_type {};

#define GSL_PAIRS inline __attribute__((always_inline))

// Arithmetic, comparisons and bit operations act on each half. A scalar operand (a float,
// or an int for integer lanes) is broadcast; a RowPair gives each half its own scalar.
#define GSL_PAIR_OPERATOR(op)                                                                   \
  template <class V>                                                                            \
  GSL_PAIRS auto operator op(const LanePair<V>& a, const LanePair<V>& b) {                      \
    return LanePair<decltype(a.lo op b.lo)>{a.lo op b.lo, a.hi op b.hi};                        \
  }                                                                                             \
  template <class V, class S, class = std::enable_if_t<std::is_arithmetic_v<S>>>                \
  GSL_PAIRS auto operator op(const LanePair<V>& a, S b) {                                       \
    return LanePair<decltype(a.lo op b)>{a.lo op b, a.hi op b};                                 \
  }                                                                                             \
  template <class V, class S, class = std::enable_if_t<std::is_arithmetic_v<S>>>                \
  GSL_PAIRS auto operator op(S a, const LanePair<V>& b) {                                       \
    return LanePair<decltype(a op b.lo)>{a op b.lo, a op b.hi};                                 \
  }                                                                                             \
  template <class V>                                                                            \
  GSL_PAIRS auto operator op(const LanePair<V>& a, RowPair b) {                                 \
    return LanePair<decltype(a.lo op b.lo)>{a.lo op b.lo, a.hi op b.hi};                        \
  }                                                                                             \
  template <class V>                                                                            \
  GSL_PAIRS auto operator op(RowPair a, const LanePair<V>& b) {                                 \
    return LanePair<decltype(a.lo op b.lo)>{a.lo op b.lo, a.hi op b.hi};                        \
  }
GSL_PAIR_OPERATOR(+)
GSL_PAIR_OPERATOR(-)
GSL_PAIR_OPERATOR(*)
GSL_PAIR_OPERATOR(/)
GSL_PAIR_OPERATOR(<)
GSL_PAIR_OPERATOR(<=)
GSL_PAIR_OPERATOR(>)
GSL_PAIR_OPERATOR(>=)
GSL_PAIR_OPERATOR(==)
GSL_PAIR_OPERATOR(!=)
GSL_PAIR_OPERATOR(&)
GSL_PAIR_OPERATOR(|)
#undef GSL_PAIR_OPERATOR

template <class V>
GSL_PAIRS LanePair<V> operator-(const LanePair<V>& a) {
  return {-a.lo, -a.hi};
}
template <class V>
GSL_PAIRS LanePair<V> operator~(const LanePair<V>& a) {
  return {~a.lo, ~a.hi};
}

// Rows: what depends only on y.
#define GSL_ROW_OPERATOR(op)                                                     \
  GSL_PAIRS RowPair operator op(RowPair a, RowPair b) { return {a.lo op b.lo, a.hi op b.hi}; } \
  GSL_PAIRS RowPair operator op(RowPair a, float b) { return {a.lo op b, a.hi op b}; }        \
  GSL_PAIRS RowPair operator op(float a, RowPair b) { return {a op b.lo, a op b.hi}; }
GSL_ROW_OPERATOR(+)
GSL_ROW_OPERATOR(-)
GSL_ROW_OPERATOR(*)
#undef GSL_ROW_OPERATOR

template <class M>
GSL_PAIRS bool any(const LanePair<M>& m) {
  return any(m.lo | m.hi);
}
template <class M>
GSL_PAIRS LanePair<M> lanes_not(const LanePair<M>& m) {
  return {lanes_not(m.lo), lanes_not(m.hi)};
}
template <class M, class V>
GSL_PAIRS LanePair<V> select(const LanePair<M>& m, const LanePair<V>& a, const LanePair<V>& b) {
  return {select(m.lo, a.lo, b.lo), select(m.hi, a.hi, b.hi)};
}
template <class V>
GSL_PAIRS void count_lanes(LanePair<V>& counter, const LanePair<V>& m) {
  count_lanes(counter.lo, m.lo);
  count_lanes(counter.hi, m.hi);
}
template <class V>
GSL_PAIRS auto truncate_to_int(const LanePair<V>& x) {
  return typename Lanes<LanePair<V>>::Int{truncate_to_int(x.lo), truncate_to_int(x.hi)};
}
template <class I>
GSL_PAIRS auto float_from_bits(const LanePair<I>& bits) {
  auto lo = float_from_bits(bits.lo);
  return LanePair<decltype(lo)>{lo, float_from_bits(bits.hi)};
}
template <class I>
GSL_PAIRS LanePair<I> shift_left(const LanePair<I>& x, int s) {
  return {shift_left(x.lo, s), shift_left(x.hi, s)};
}
template <>
GSL_PAIRS LanePair<vf4> broadcast<LanePair<vf4>>(float x) {
  return {broadcast<vf4>(x), broadcast<vf4>(x)};
}
template <>
GSL_PAIRS LanePair<vf8> broadcast<LanePair<vf8>>(float x) {
  return {broadcast<vf8>(x), broadcast<vf8>(x)};
}
template <>
GSL_PAIRS LanePair<vi4> broadcast_int_lanes<LanePair<vf4>>(int32_t x) {
  return {broadcast_int_lanes<vf4>(x), broadcast_int_lanes<vf4>(x)};
}
template <>
GSL_PAIRS LanePair<vi8> broadcast_int_lanes<LanePair<vf8>>(int32_t x) {
  return {broadcast_int_lanes<vf8>(x), broadcast_int_lanes<vf8>(x)};
}
// A pair whose halves are the same group: lane i of both halves is the same column.
template <class V>
GSL_PAIRS LanePair<V> pair_of(const V& v) {
  return {v, v};
}

#undef GSL_PAIRS

}  // namespace gsl
