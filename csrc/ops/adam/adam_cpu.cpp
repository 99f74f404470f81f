// CPU schedule of the fused Adam step: every tensor's rows cut into items of about 32K
// values, items handed to the threads; an item's rows are one flat loop that the compiler
// vectorises. Under a visibility mask every value is still computed, and a hidden row's
// values are written back unchanged (a blend by bits): a random mask leaves runs of visible
// rows too short to loop over, and skipping them defeats the hardware prefetcher. Every value
// is computed by one thread from its own inputs, so results do not depend on the thread count.
#include <cstdint>
#include <vector>

#include "core/adam.h"
#include "cpu/parallel.h"
#include "ops/adam/adam.h"

namespace gsl::adam {
namespace {

// Values [begin, end) of one tensor. kMasked: only values whose mask[i - begin] is all ones
// change; the others are written back as they were.
template <AdamPass kPass, bool kFma, bool kMasked>
GSL_HD void step_values(const AdamTensor& t, int64_t begin, int64_t end, const uint32_t* mask) {
  float* __restrict__ param = t.param;
  const float* __restrict__ grad = t.grad;
  float* __restrict__ exp_avg = t.exp_avg;
  float* __restrict__ exp_avg_sq = t.exp_avg_sq;
  const float* __restrict__ exp_avg_sq_sqrt = t.exp_avg_sq_sqrt;
  const AdamCoefficients c = t.coefficients;
  for (int64_t i = begin; i < end; ++i) {
    const uint32_t on = kMasked ? mask[i - begin] : ~uint32_t{0};
    const float old_param = param[i], old_avg = exp_avg[i], old_avg_sq = exp_avg_sq[i];
    if constexpr (kPass == AdamPass::full) {
      float p = old_param, m = old_avg, v = old_avg_sq;
      adam_step<kFma>(p, grad[i], m, v, c);
      param[i] = kMasked ? blend_bits(on, p, old_param) : p;
      exp_avg[i] = kMasked ? blend_bits(on, m, old_avg) : m;
      exp_avg_sq[i] = kMasked ? blend_bits(on, v, old_avg_sq) : v;
    } else if constexpr (kPass == AdamPass::moments) {
      float m = old_avg, v = old_avg_sq;
      adam_moments<kFma>(grad[i], m, v, c);
      exp_avg[i] = kMasked ? blend_bits(on, m, old_avg) : m;
      exp_avg_sq[i] = kMasked ? blend_bits(on, v, old_avg_sq) : v;
    } else {
      const float p = adam_parameter(old_param, old_avg, exp_avg_sq_sqrt[i], c);
      param[i] = kMasked ? blend_bits(on, p, old_param) : p;
    }
  }
}

// Values per block of a masked loop: the block's mask (one word per value) is on the stack.
constexpr int64_t kBlendValues = 4096;

// Rows [first_row, last_row) of one tensor: all of them, or only the visible ones (blocks
// with none are skipped, blocks with all take the plain loop).
template <AdamPass kPass, bool kFma>
GSL_HD void step_rows(const AdamTensor& t, int64_t first_row, int64_t last_row) {
  const int64_t w = t.row_floats;
  if (t.visible_rows == nullptr) {
    step_values<kPass, kFma, false>(t, first_row * w, last_row * w, nullptr);
    return;
  }
  if (w > kBlendValues) {  // rows wide enough to loop over one by one
    for (int64_t r = first_row; r < last_row; ++r)
      if (t.visible_rows[r]) step_values<kPass, kFma, false>(t, r * w, (r + 1) * w, nullptr);
    return;
  }
  uint32_t mask[kBlendValues];
  const int64_t rows_per_block = kBlendValues / w;
  for (int64_t block = first_row; block < last_row; block += rows_per_block) {
    const int64_t block_end = block + rows_per_block < last_row ? block + rows_per_block : last_row;
    const bool* rows = t.visible_rows + block;
    const int64_t count = block_end - block;
    int64_t visible = 0;
    for (int64_t r = 0; r < count; ++r) visible += rows[r];
    if (visible == 0) continue;
    if (visible == count) {
      step_values<kPass, kFma, false>(t, block * w, block_end * w, nullptr);
      continue;
    }
    if (w == 1) {
      for (int64_t r = 0; r < count; ++r) mask[r] = mask_of(rows[r]);
    } else {
      for (int64_t r = 0; r < count; ++r)
        for (int64_t k = 0; k < w; ++k) mask[r * w + k] = mask_of(rows[r]);
    }
    step_values<kPass, kFma, true>(t, block * w, block_end * w, mask);
  }
}

struct WorkItem {
  int64_t tensor;
  int64_t first_row;
  int64_t last_row;
};

using RowsFunction = void (*)(const AdamTensor&, int64_t, int64_t);

template <AdamPass kPass, bool kFma>
void step_rows_baseline(const AdamTensor& t, int64_t first_row, int64_t last_row) {
  step_rows<kPass, kFma>(t, first_row, last_row);
}

// The same loops compiled for AVX2 with FMA: 8 values per instruction, and the fused
// multiply-add as one instruction instead of a library call.
template <AdamPass kPass, bool kFma>
__attribute__((target("avx2,fma"))) void step_rows_avx2(const AdamTensor& t, int64_t first_row, int64_t last_row) {
  step_rows<kPass, kFma>(t, first_row, last_row);
}

template <AdamPass kPass>
RowsFunction pick_rows_function(bool fma) {
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (avx2) return fma ? &step_rows_avx2<kPass, true> : &step_rows_avx2<kPass, false>;
  return fma ? &step_rows_baseline<kPass, true> : &step_rows_baseline<kPass, false>;
}

RowsFunction pick_rows_function(AdamPass pass, bool fma) {
  switch (pass) {
    case AdamPass::moments:
      return pick_rows_function<AdamPass::moments>(fma);
    case AdamPass::parameters:
      return pick_rows_function<AdamPass::parameters>(fma);
    case AdamPass::full:
      break;
  }
  return pick_rows_function<AdamPass::full>(fma);
}

}  // namespace

void adam_step_cpu(const AdamParams& params, int num_threads) {
  // About 32K values per item: 128 KB of each array, large enough that the per-item work
  // dwarfs its scheduling, small enough to balance the threads.
  constexpr int64_t kValuesPerItem = 1 << 15;
  std::vector<WorkItem> items;
  for (int64_t i = 0; i < static_cast<int64_t>(params.tensors.size()); ++i) {
    const AdamTensor& t = params.tensors[i];
    if (t.num_rows <= 0 || t.row_floats <= 0) continue;
    const int64_t rows_per_item = (kValuesPerItem + t.row_floats - 1) / t.row_floats;
    for (int64_t first = 0; first < t.num_rows; first += rows_per_item)
      items.push_back({i, first, first + rows_per_item < t.num_rows ? first + rows_per_item : t.num_rows});
  }
  const RowsFunction step = pick_rows_function(params.pass, params.fused_multiply_add);
  cpu::parallel_for(static_cast<int64_t>(items.size()), num_threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) step(params.tensors[items[k].tensor], items[k].first_row, items[k].last_row);
  });
}

}  // namespace gsl::adam
