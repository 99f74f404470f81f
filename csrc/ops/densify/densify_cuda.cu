// CUDA schedule of the densification kernels. remap_rows copies every tensor in one launch:
// blockIdx.y picks the tensor, threads stride over its M * row_floats output floats, so
// writes are coalesced and reads are too wherever consecutive rows have consecutive sources.
#include <algorithm>

#include "core/densify.h"
#include "cuda/cuda_utils.h"
#include "ops/densify/densify.h"

namespace gsl::densify {
namespace {

// Tensors per launch, passed by value as a kernel argument (about 1 KiB, far below the
// 4 KiB limit); a 2DGS or 3DGS model has 18 (6 parameters, 2 moments each).
constexpr int kTensorsPerLaunch = 32;

struct RemapBatch {
  const float* input[kTensorsPerLaunch];
  float* output[kTensorsPerLaunch];
  const float* overrides[kTensorsPerLaunch];
  int64_t row_floats[kTensorsPerLaunch];
  bool zero_new[kTensorsPerLaunch];
};

__global__ void remap_rows_kernel(RemapBatch batch, const int64_t* __restrict__ source,
                                  const bool* __restrict__ is_new, const bool* __restrict__ override_rows,
                                  int64_t num_rows) {
  const int t = blockIdx.y;
  const int64_t w = batch.row_floats[t];
  const int64_t total = num_rows * w;
  const float* __restrict__ input = batch.input[t];
  float* __restrict__ output = batch.output[t];
  const float* __restrict__ overrides = batch.overrides[t];
  const bool zero_new = batch.zero_new[t];
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const int64_t r = e / w;
    const int64_t k = e - r * w;
    const bool row_is_new = is_new != nullptr && is_new[r];
    const bool row_overridden = override_rows != nullptr && override_rows[r];
    switch (remap_row_origin(row_is_new, row_overridden, zero_new, overrides != nullptr)) {
      case RowOrigin::copy_source:
        output[e] = input[source[r] * w + k];
        break;
      case RowOrigin::zero:
        output[e] = 0.0f;
        break;
      case RowOrigin::override_value:
        output[e] = overrides[e];
        break;
    }
  }
}

__global__ void accumulate_screen_stats_kernel(ScreenStatsParams p) {
  const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (n >= p.num_surfels) return;
  if (p.surfel_items != nullptr) {  // packed items: this surfel's, in item order
    SurfelScreenStats s = load_screen_stats(n, p.grad_acc, p.absgrad_acc, p.count, p.max_radii);
    for (int64_t k = p.surfel_item_starts[n]; k < p.surfel_item_starts[n + 1]; ++k)
      add_item_screen_stats(p.surfel_items[k], p.screen_grad, p.screen_absgrad, p.radii, p.half_width,
                            p.half_height, s);
    store_screen_stats(n, s, p.grad_acc, p.absgrad_acc, p.count, p.max_radii);
    return;
  }
  accumulate_surfel_screen_stats(n, p.num_surfels, p.num_cameras, p.screen_grad, p.screen_absgrad, p.radii,
                                 p.half_width, p.half_height, p.grad_acc, p.absgrad_acc, p.count, p.max_radii);
}

}  // namespace

void remap_rows_cuda(const RemapParams& params, int device, std::uintptr_t stream) {
  if (params.num_rows <= 0 || params.tensors.empty()) return;
  cuda::DeviceGuard guard(device);
  constexpr int kThreads = 256;
  // Enough blocks to fill any current GPU; the grid-stride loop covers the rest.
  constexpr int64_t kMaxBlocksPerTensor = 4096;
  const int64_t num_tensors = static_cast<int64_t>(params.tensors.size());
  for (int64_t first = 0; first < num_tensors; first += kTensorsPerLaunch) {
    const int count = static_cast<int>(std::min<int64_t>(kTensorsPerLaunch, num_tensors - first));
    RemapBatch batch{};
    int64_t widest = 0;
    for (int i = 0; i < count; ++i) {
      const RemapTensor& t = params.tensors[first + i];
      batch.input[i] = t.input;
      batch.output[i] = t.output;
      batch.overrides[i] = t.overrides;
      batch.row_floats[i] = t.row_floats;
      batch.zero_new[i] = t.zero_new;
      widest = std::max(widest, t.row_floats);
    }
    if (widest == 0) continue;
    const int64_t blocks = std::min<int64_t>(kMaxBlocksPerTensor, (params.num_rows * widest + kThreads - 1) / kThreads);
    remap_rows_kernel<<<dim3(static_cast<unsigned int>(blocks), count), kThreads, 0, cuda::as_stream(stream)>>>(
        batch, params.source, params.is_new, params.override_rows, params.num_rows);
    cuda::check_launch("remap_rows_kernel");
  }
}

void accumulate_screen_stats_cuda(const ScreenStatsParams& params, int device, std::uintptr_t stream) {
  if (params.num_surfels <= 0) return;
  cuda::DeviceGuard guard(device);
  constexpr int kThreads = 256;
  accumulate_screen_stats_kernel<<<cuda::blocks_for(params.num_surfels, kThreads), kThreads, 0,
                                   cuda::as_stream(stream)>>>(params);
  cuda::check_launch("accumulate_screen_stats_kernel");
}

}  // namespace gsl::densify
