// Fused Adam step over many tensors in one call: each value's parameter, gradient and
// two moments are read and written once (math: csrc/core/adam.h). Pointers and sizes only;
// the Python layer (gsplat_lib/ops/adam.py) checks, allocates and computes the scalars.
#pragma once

#include <cstdint>
#include <vector>

#include "core/adam.h"

namespace gsl::adam {

// One parameter tensor, seen as [R, F] float32, contiguous.
struct AdamTensor {
  float* param = nullptr;                  // [R, F]
  const float* grad = nullptr;             // [R, F]
  float* exp_avg = nullptr;                // [R, F]
  float* exp_avg_sq = nullptr;             // [R, F]
  const float* exp_avg_sq_sqrt = nullptr;  // [R, F], read by AdamPass::parameters only
  const bool* visible_rows = nullptr;      // [R]; null: every row. Other rows keep all four values.
  int64_t num_rows = 0;                    // R
  int64_t row_floats = 0;                  // F
  AdamCoefficients coefficients;
};

// What one call computes. The CPU path that equals torch bit for bit runs `moments`, then
// torch's sqrt of exp_avg_sq, then `parameters`; `full` is one pass with the IEEE sqrt.
enum class AdamPass : int { full = 0, moments = 1, parameters = 2 };

struct AdamParams {
  std::vector<AdamTensor> tensors;
  AdamPass pass = AdamPass::full;
  bool fused_multiply_add = true;  // round torch's lerp / addcmul multiply-adds once (see core/adam.h)
};

void adam_step_cpu(const AdamParams& params, int num_threads);

#if GSPLAT_LIB_WITH_CUDA
// CUDA runs AdamPass::full only, every tensor in one launch.
void adam_step_cuda(const AdamParams& params, int device, std::uintptr_t stream);
#endif

}  // namespace gsl::adam
