// CUDA schedule of the fused Adam step: one launch for up to 16 tensors, blockIdx.y picks
// the tensor and threads stride over its values, so every access is coalesced. The math is
// csrc/core/adam.h's, with the IEEE sqrt (AdamPass::full).
#include <algorithm>
#include <stdexcept>
#include <vector>

#include "core/adam.h"
#include "cuda/cuda_utils.h"
#include "ops/adam/adam.h"

namespace gsl::adam {
namespace {

// Tensors per launch, passed by value as a kernel argument (16 x 88 bytes, far below the
// 4 KiB limit); a surfel model has 6.
constexpr int kTensorsPerLaunch = 16;

struct AdamBatch {
  AdamTensor tensors[kTensorsPerLaunch];
};

template <bool kFma>
__global__ void adam_step_kernel(AdamBatch batch) {
  const AdamTensor& t = batch.tensors[blockIdx.y];
  const int64_t w = t.row_floats;
  const int64_t total = t.num_rows * w;
  const AdamCoefficients c = t.coefficients;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    if (t.visible_rows != nullptr && !t.visible_rows[e / w]) continue;
    float param = t.param[e], exp_avg = t.exp_avg[e], exp_avg_sq = t.exp_avg_sq[e];
    adam_step<kFma>(param, t.grad[e], exp_avg, exp_avg_sq, c);
    t.param[e] = param;
    t.exp_avg[e] = exp_avg;
    t.exp_avg_sq[e] = exp_avg_sq;
  }
}

}  // namespace

void adam_step_cuda(const AdamParams& params, int device, std::uintptr_t stream) {
  if (params.pass != AdamPass::full) throw std::invalid_argument("adam_step_cuda: only AdamPass::full runs on CUDA");
  cuda::DeviceGuard guard(device);
  constexpr int kThreads = 256;
  constexpr int64_t kMaxBlocks = 4096;  // per tensor; the grid-stride loop covers the rest
  const std::vector<AdamTensor>& tensors = params.tensors;
  for (size_t first = 0; first < tensors.size(); first += kTensorsPerLaunch) {
    AdamBatch batch{};
    const size_t count = std::min<size_t>(kTensorsPerLaunch, tensors.size() - first);
    std::copy_n(tensors.begin() + first, count, batch.tensors);
    int64_t most_values = 0;
    for (const AdamTensor& t : batch.tensors) most_values = std::max(most_values, t.num_rows * t.row_floats);
    if (most_values == 0) continue;
    const dim3 grid(static_cast<unsigned int>(std::min(kMaxBlocks, (most_values + kThreads - 1) / kThreads)),
                    static_cast<unsigned int>(count));
    if (params.fused_multiply_add)
      adam_step_kernel<true><<<grid, kThreads, 0, cuda::as_stream(stream)>>>(batch);
    else
      adam_step_kernel<false><<<grid, kThreads, 0, cuda::as_stream(stream)>>>(batch);
    cuda::check_launch("adam_step_kernel");
  }
}

}  // namespace gsl::adam
