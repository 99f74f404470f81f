// Lane types: the per-pixel math is written once for a lane type F. CUDA runs it with
// F = float, one pixel per thread; the CPU runs the same templates on short float vectors
// (GCC/Clang vector extensions), 4 or 8 pixels of a row at once. So a per-pixel branch is
// written as a mask: `Mask` per lane, `select(m, a, b)`, and `any(m)` where a whole group
// of lanes may skip work (for F = float, `any` is the plain branch).
#pragma once

#include "core/common.h"

namespace gsl {

template <class F>
struct Lanes;

template <>
struct Lanes<float> {
  using Mask = bool;
  using Int = int32_t;
  using Row = float;  // what depends only on the pixel row: one value for all lanes
  static constexpr int kWidth = 1;
};

GSL_HD bool any(bool m) { return m; }
GSL_HD bool lanes_not(bool m) { return !m; }
GSL_HD float select(bool m, float a, float b) { return m ? a : b; }
GSL_HD int32_t select(bool m, int32_t a, int32_t b) { return m ? a : b; }
GSL_HD bool select(bool m, bool a, bool b) { return m ? a : b; }
GSL_HD float sum_lanes(float x) { return x; }
GSL_HD void count_lanes(int32_t& counter, bool m) { counter += m ? 1 : 0; }
GSL_HD int32_t truncate_to_int(float x) { return static_cast<int32_t>(x); }
// x rounded up / down to an integer, for |x| < 2^31 (callers clamp first).
GSL_HD int32_t ceil_to_int(float x) { return static_cast<int32_t>(ceilf(x)); }
GSL_HD int32_t floor_to_int(float x) { return static_cast<int32_t>(floorf(x)); }
GSL_HD float float_from_bits(int32_t bits) { return bit_cast<float>(bits); }
GSL_HD int32_t shift_left(int32_t x, int s) {
  return static_cast<int32_t>(static_cast<uint32_t>(x) << s);  // no signed-shift UB
}

template <class F>
GSL_HD F broadcast(float x);
#if !defined(__CUDACC__)

template <int N>
struct VectorTypes;
template <>
struct VectorTypes<4> {
  typedef float F __attribute__((vector_size(16)));
  typedef int32_t I __attribute__((vector_size(16)));
};
template <>
struct VectorTypes<8> {
  typedef float F __attribute__((vector_size(32)));
  typedef int32_t I __attribute__((vector_size(32)));
};
using vf4 = VectorTypes<4>::F;
using vi4 = VectorTypes<4>::I;
using vf8 = VectorTypes<8>::F;
using vi8 = VectorTypes<8>::I;

template <>
struct Lanes<vf4> {
  using Mask = vi4;  // all bits set in a true lane
  using Int = vi4;
  using Row = float;  // the lanes are pixels of one row
  static constexpr int kWidth = 4;
};
template <>
struct Lanes<vf8> {
  using Mask = vi8;
  using Int = vi8;
  using Row = float;
  static constexpr int kWidth = 8;
};

// The host functions below are force-inlined so that a caller compiled for a wider
// instruction set (the AVX2 schedule in rasterize_cpu.cpp) gets its own copy of them.
#define GSL_LANES inline __attribute__((always_inline))

template <class V>
GSL_LANES bool any(V m) {
  uint64_t words[sizeof(V) / 8];
  __builtin_memcpy(words, &m, sizeof(V));
  uint64_t bits = 0;
  for (uint64_t w : words) bits |= w;
  return bits != 0;
}
#if (defined(__x86_64__) || defined(__i386__)) && defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
// Sign-bit masks: one vmovmskps. 4 lanes: SSE, so usable from every schedule.
GSL_LANES bool any(vi4 m) { return __builtin_ia32_movmskps(reinterpret_cast<vf4&>(m)) != 0; }
// 8 lanes exist only in the AVX2 schedule: one vmovmskps of the whole register, not three
// instructions through SSE. Not always_inline: the shared templates that call it (eval_hit,
// composite) are compiled for the baseline ISA before they are inlined into the AVX2
// schedule, and GCC refuses to force an AVX function into them; it inlines it once they sit
// in the AVX2 schedule.
inline __attribute__((target("avx"))) bool any(vi8 m) {
  return __builtin_ia32_movmskps256(reinterpret_cast<vf8&>(m)) != 0;
}
#endif
#endif
template <class V>
GSL_LANES V lanes_not(V m) {
  return ~m;
}
template <class M, class V>
GSL_LANES V select(M m, V a, V b) {
  return m ? a : b;
}
template <class V>
GSL_LANES void count_lanes(V& counter, V m) {
  counter -= m;  // a true lane is -1
}
template <class F>
GSL_LANES typename Lanes<F>::Int truncate_to_int(F x) {
  return __builtin_convertvector(x, typename Lanes<F>::Int);
}
// v[i] = p[i * stride] in every lane, built in registers: set lane by lane, a vector goes
// through memory, and its load then waits for the lanes' stores.
template <class F>
GSL_LANES F load_strided(const float* p, int64_t stride) {
  if constexpr (Lanes<F>::kWidth == 4)
    return F{p[0], p[stride], p[2 * stride], p[3 * stride]};
  else
    return F{p[0], p[stride], p[2 * stride], p[3 * stride], p[4 * stride], p[5 * stride], p[6 * stride], p[7 * stride]};
}
// ceilf and floorf as a truncation and a correction: the same integers, in every lane.
template <class F>
GSL_LANES typename Lanes<F>::Int ceil_to_int(F x) {
  const typename Lanes<F>::Int i = truncate_to_int(x);
  return i - (__builtin_convertvector(i, F) < x);  // a true lane is -1
}
template <class F>
GSL_LANES typename Lanes<F>::Int floor_to_int(F x) {
  const typename Lanes<F>::Int i = truncate_to_int(x);
  return i + (__builtin_convertvector(i, F) > x);
}
template <class I>
GSL_LANES auto float_from_bits(I bits) {
  typedef float F __attribute__((vector_size(sizeof(I))));
  return bit_cast<F>(bits);
}
template <class I>
GSL_LANES I shift_left(I x, int s) {
  return x << s;
}
template <>
GSL_LANES vf4 broadcast<vf4>(float x) {
  return vf4{x, x, x, x};
}
template <>
GSL_LANES vf8 broadcast<vf8>(float x) {
  return vf8{x, x, x, x, x, x, x, x};
}
// Through the float broadcast: GCC builds an int vector of one value with a chain of lane
// inserts, but a float one with a single broadcast.
template <class I>
GSL_LANES I broadcast_int(int32_t x) {
  return bit_cast<I>(broadcast<typename VectorTypes<sizeof(I) / 4>::F>(bit_cast<float>(x)));
}
// 0, 1, 2, ... across the lanes (0 for the scalar lane type).
template <class F>
GSL_LANES F lane_offsets() {
  if constexpr (Lanes<F>::kWidth == 1) {
    return 0.f;
  } else {
    F r;
    for (int i = 0; i < Lanes<F>::kWidth; ++i) r[i] = float(i);
    return r;
  }
}
template <class V>
GSL_LANES V load_lanes(const void* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof(V));
  return v;
}
// Sum of the lanes as a fixed tree: lane i += lane i + W/2 for i < W/2, then W/4, ... The
// order never depends on scheduling; with shuffles it takes log2(W) steps.
template <class F>
GSL_LANES float sum_lanes(F x) {
  float v[Lanes<F>::kWidth];
  for (int i = 0; i < Lanes<F>::kWidth; ++i) v[i] = x[i];
  for (int half = Lanes<F>::kWidth / 2; half >= 1; half /= 2)
    for (int i = 0; i < half; ++i) v[i] += v[i + half];
  return v[0];
}
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
// The same tree with shuffles.
GSL_LANES float sum_lanes(vf4 x) {
  x = x + __builtin_shufflevector(x, x, 2, 3, 0, 1);
  x = x + __builtin_shufflevector(x, x, 1, 0, 3, 2);
  return x[0];
}
GSL_LANES float sum_lanes(vf8 x) {
  return sum_lanes(vf4(__builtin_shufflevector(x, x, 0, 1, 2, 3) + __builtin_shufflevector(x, x, 4, 5, 6, 7)));
}
#endif
#endif

#undef GSL_LANES

#endif  // !__CUDACC__

// Stores a lane group to consecutive elements from p (for F = float, one element).
template <class T, class V>
GSL_HD void store_lanes(T* p, const V& v) {
  if constexpr (sizeof(V) == sizeof(T))
    *p = v;
  else
    __builtin_memcpy(p, &v, sizeof(V));
}

// Lane i of a value (for F = float, the value itself).
template <class F>
GSL_HD float get_lane(const F& v, int i) {
  if constexpr (Lanes<F>::kWidth == 1)
    return v;
  else
    return v[i];
}
template <class F>
GSL_HD void set_lane(F& v, int i, float x) {
  if constexpr (Lanes<F>::kWidth == 1)
    v = x;
  else
    v[i] = x;
}
template <class M>
GSL_HD bool get_mask_lane(const M& m, int i) {
  if constexpr (sizeof(M) == sizeof(bool))
    return m;
  else
    return m[i] != 0;
}

template <class M>
GSL_HD void set_mask_lane(M& m, int i, bool value) {
  if constexpr (sizeof(M) == sizeof(bool))
    m = value;
  else
    m[i] = value ? -1 : 0;
}

// NaN and +-Inf are the values where x - x is not 0.
template <class F>
GSL_HD typename Lanes<F>::Mask finite_lanes(F x) {
  return typename Lanes<F>::Mask(x - x == 0.f);
}
// The NaN-aware minimum and maximum of the library, host and device (fminf / fmaxf semantics:
// a NaN argument yields the other one), as a compare and a blend in every lane type.
template <class F>
GSL_HD F fmin_lanes(F a, F b) {
  using Mask = typename Lanes<F>::Mask;
  return select(Mask(Mask(a < b) | Mask(b != b)), a, b);
}
template <class F>
GSL_HD F fmax_lanes(F a, F b) {
  using Mask = typename Lanes<F>::Mask;
  return select(Mask(Mask(a > b) | Mask(b != b)), a, b);
}
// Correctly rounded, like sqrtf, in every lane.
template <class F>
GSL_HD F sqrt_lanes(F x) {
  if constexpr (Lanes<F>::kWidth == 1) {
    return sqrtf(x);
  } else {
    for (int i = 0; i < Lanes<F>::kWidth; ++i) x[i] = __builtin_sqrtf(x[i]);
    return x;
  }
}

// ceilf in every lane, for any float (no int conversion).
template <class F>
GSL_HD F ceil_lanes(F x) {
  if constexpr (Lanes<F>::kWidth == 1) {
    return ceilf(x);
  } else {
    for (int i = 0; i < Lanes<F>::kWidth; ++i) x[i] = __builtin_ceilf(x[i]);
    return x;
  }
}

// |x| as a select, so that every lane type gives the same bits (-0 stays -0).
template <class F>
GSL_HD F abs_lanes(F x) {
  return select(x < 0.f, -x, x);
}
template <>
GSL_HD float broadcast<float>(float x) {
  return x;
}

// exp(x) for x <= 0 (x below -87 taken as -87, so the exponent shift stays in range): a
// Cody-Waite reduction to r in [-ln2/2, ln2/2], a degree-7 Taylor polynomial (truncation error
// below 1e-8 relative) and an exponent shift. Used instead of expf so that every lane type,
// scalar or vector, computes the same bits.
template <class F>
GSL_HD F exp_nonpositive(F x) {
  x = select(x < -87.f, broadcast<F>(-87.f), x);
  const float kRound = 12582912.f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  const F n = (x * 1.44269504f + kRound) - kRound;
  const F r = (x - n * 0.693359375f) + n * 2.12194440e-4f;  // ln 2 = 0.693359375 - 2.12194440e-4
  // Estrin's scheme: the same polynomial as Horner's, with a dependency chain half as long.
  const F r2 = r * r;
  const F r4 = r2 * r2;
  const F low = (r + 1.f) + r2 * (r * (1.f / 6.f) + 0.5f);
  const F high = (r * (1.f / 120.f) + (1.f / 24.f)) + r2 * (r * (1.f / 5040.f) + (1.f / 720.f));
  const F p = low + r4 * high;
  return p * float_from_bits(shift_left(truncate_to_int(n) + 127, 23));
}

template <class F>
GSL_HD typename Lanes<F>::Int broadcast_int_lanes(int32_t x) {
#if defined(__CUDACC__)
  return x;
#else
  if constexpr (Lanes<F>::kWidth == 1)
    return x;
  else
    return broadcast_int<typename Lanes<F>::Int>(x);
#endif
}

}  // namespace gsl
