// Shared by the CPU and CUDA backends (docs/design.md, decision 2): everything
// in csrc/core is header-only math marked GSL_HD, with no torch and no CUDA
// runtime calls, so the CPU tests exercise exactly the code the GPU runs.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define GSL_HD __host__ __device__ __forceinline__
#else
#include <cmath>
// Force-inlined so that each caller compiled for a wider instruction set (the CPU's AVX2
// schedule) gets its own copy, and vector lane types never cross a call boundary.
#define GSL_HD inline __attribute__((always_inline))
#endif

namespace gsl {

#if defined(__CUDACC__)
using ::ceilf;
using ::floorf;
using ::sqrtf;
#else
inline float ceilf(float x) { return std::ceil(x); }
inline float floorf(float x) { return std::floor(x); }
inline float sqrtf(float x) { return std::sqrt(x); }
#endif
// A product and a sum rounded one at a time: on the device nvcc would otherwise fuse
// a * b + c into an FMA, and results that must match the host bit for bit would not.
GSL_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

GSL_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

// The bits of x as a value of type To, the same size (C++20's std::bit_cast).
template <class To, class From>
GSL_HD To bit_cast(const From& x) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast between types of different sizes");
  To y;
  __builtin_memcpy(&y, &x, sizeof(y));
  return y;
}

// The IEEE bits of x: positive floats sort like their bits (the pair keys' depth part).
GSL_HD uint32_t float_bits(float x) { return bit_cast<uint32_t>(x); }

struct vec2 {
  float x, y;
};

struct vec3 {
  float x, y, z;
};

GSL_HD vec3 operator+(vec3 a, vec3 b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
GSL_HD vec3 operator-(vec3 a, vec3 b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
GSL_HD vec3 operator*(float s, vec3 a) { return {s * a.x, s * a.y, s * a.z}; }

// Row-major 3x3 matrix: m[r][c].
struct mat3 {
  float m[3][3];
};

GSL_HD mat3 mul(const mat3& a, const mat3& b) {
  mat3 r;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) r.m[i][j] = a.m[i][0] * b.m[0][j] + a.m[i][1] * b.m[1][j] + a.m[i][2] * b.m[2][j];
  return r;
}

}  // namespace gsl
