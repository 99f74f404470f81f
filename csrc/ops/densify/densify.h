// Densification kernels: one-pass row remapping of parameters and their Adam moments,
// and the per-surfel screen statistics that decide cloning and splitting.
// Pointers and sizes only; the Python layer (gsplat_lib/ops/densify.py) checks and allocates.
#pragma once

#include <cstdint>
#include <vector>

namespace gsl::densify {

// One tensor of a remap: [N, *feat] in, [M, *feat] out, float32, contiguous.
struct RemapTensor {
  const float* input = nullptr;      // [N, *feat]
  float* output = nullptr;           // [M, *feat]
  const float* overrides = nullptr;  // [M, *feat], read on override rows; null when absent
  int64_t row_floats = 0;            // prod(feat)
  bool zero_new = false;             // new rows start at zero (Adam moments)
};

struct RemapParams {
  std::vector<RemapTensor> tensors;
  const int64_t* source = nullptr;      // [M], values in [0, N), checked by the caller
  const bool* is_new = nullptr;         // [M]; null: no row is new
  const bool* override_rows = nullptr;  // [M]; null: no row is overridden
  int64_t num_rows = 0;                 // M
};

// Screen statistics of one densification step, accumulated in place: per camera ([C, N, 2],
// item c * N + n), or of packed (camera, surfel) items ([I, 2], item i of surfel
// item_surfels[i]), each surfel's items summed in item order. The CPU walks the items in order;
// CUDA takes each surfel's items from surfel_items (item_surfels sorted stably by torch).
struct ScreenStatsParams {
  const float* screen_grad = nullptr;     // [C, N, 2] or [I, 2], pixels
  const float* screen_absgrad = nullptr;  // [C, N, 2] or [I, 2], pixels
  const int32_t* radii = nullptr;         // [C, N, 2] or [I, 2]
  const int64_t* item_surfels = nullptr;  // [I] packed items (CPU), else null
  const int64_t* surfel_items = nullptr;  // [I] packed items (CUDA): the items by surfel, in item order
  const int64_t* surfel_item_starts = nullptr;  // [N + 1] packed items (CUDA): where each surfel's start
  float* grad_acc = nullptr;              // [N]
  float* absgrad_acc = nullptr;           // [N]
  int32_t* count = nullptr;               // [N]
  float* max_radii = nullptr;             // [N], pixels
  int64_t num_cameras = 0;                // C (0 for packed items)
  int64_t num_surfels = 0;                // N
  int64_t num_items = 0;                  // I (packed items; C N per camera)
  float half_width = 0.0f;                // width / 2
  float half_height = 0.0f;               // height / 2
};

void remap_rows_cpu(const RemapParams& params, int num_threads);
void accumulate_screen_stats_cpu(const ScreenStatsParams& params, int num_threads);

#if GSPLAT_LIB_WITH_CUDA
void remap_rows_cuda(const RemapParams& params, int device, std::uintptr_t stream);
void accumulate_screen_stats_cuda(const ScreenStatsParams& params, int device, std::uintptr_t stream);
#endif

}  // namespace gsl::densify
