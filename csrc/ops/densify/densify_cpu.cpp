// CPU schedule of the densification kernels: rows split into chunks across threads.
// Each output value is written by exactly one thread and the statistics of a surfel are
// summed by one thread in camera order, so results do not depend on the thread count.
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/densify.h"
#include "cpu/huge_pages.h"
#include "cpu/parallel.h"
#include "ops/densify/densify.h"

namespace gsl::densify {
namespace {

// Output rows [out_begin, out_begin + length) come from input rows [source_begin, ...),
// all with the same flags: one memcpy (or memset) per run instead of one per row.
struct RowRun {
  int64_t out_begin;
  int64_t source_begin;
  int64_t length;
  bool is_new;
  bool override_row;
};

void find_runs(const RemapParams& p, int64_t begin, int64_t end, std::vector<RowRun>& runs) {
  runs.clear();
  for (int64_t r = begin; r < end; ++r) {
    const bool is_new = p.is_new != nullptr && p.is_new[r];
    const bool override_row = p.override_rows != nullptr && p.override_rows[r];
    if (!runs.empty()) {
      RowRun& last = runs.back();
      if (last.is_new == is_new && last.override_row == override_row &&
          last.source_begin + last.length == p.source[r]) {
        ++last.length;
        continue;
      }
    }
    runs.push_back({r, p.source[r], 1, is_new, override_row});
  }
}

void copy_runs(const RemapTensor& t, const std::vector<RowRun>& runs) {
  const int64_t w = t.row_floats;
  const size_t row_bytes = static_cast<size_t>(w) * sizeof(float);
  for (const RowRun& run : runs) {
    float* out = t.output + run.out_begin * w;
    const size_t bytes = row_bytes * static_cast<size_t>(run.length);
    switch (remap_row_origin(run.is_new, run.override_row, t.zero_new, t.overrides != nullptr)) {
      case RowOrigin::copy_source:
        std::memcpy(out, t.input + run.source_begin * w, bytes);
        break;
      case RowOrigin::zero:
        std::memset(out, 0, bytes);  // all-zero bytes are +0.0f
        break;
      case RowOrigin::override_value:
        std::memcpy(out, t.overrides + run.out_begin * w, bytes);
        break;
    }
  }
}

}  // namespace

void remap_rows_cpu(const RemapParams& params, int num_threads) {
  // Chunks of a few thousand rows: every tensor's slice of a chunk is copied while the
  // chunk's runs are hot, and there are enough chunks to balance the threads.
  constexpr int64_t kRowsPerChunk = 4096;
  for (const RemapTensor& t : params.tensors) cpu::advise_huge_pages(t.output, params.num_rows * t.row_floats);
  cpu::parallel_for(params.num_rows, num_threads, kRowsPerChunk, [&](int64_t begin, int64_t end) {
    std::vector<RowRun> runs;
    runs.reserve(static_cast<size_t>(end - begin));
    find_runs(params, begin, end, runs);
    for (const RemapTensor& t : params.tensors)
      if (t.row_floats > 0) copy_runs(t, runs);
  });
}

void accumulate_screen_stats_cpu(const ScreenStatsParams& p, int num_threads) {
  if (p.item_surfels != nullptr) {
    // Packed items, in order: one pass, each item added to its surfel as it comes.
    for (int64_t i = 0; i < p.num_items; ++i) {
      const int64_t n = p.item_surfels[i];
      SurfelScreenStats s = load_screen_stats(n, p.grad_acc, p.absgrad_acc, p.count, p.max_radii);
      add_item_screen_stats(i, p.screen_grad, p.screen_absgrad, p.radii, p.half_width, p.half_height, s);
      store_screen_stats(n, s, p.grad_acc, p.absgrad_acc, p.count, p.max_radii);
    }
    return;
  }
  cpu::parallel_for(p.num_surfels, num_threads, 16384, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n)
      accumulate_surfel_screen_stats(n, p.num_surfels, p.num_cameras, p.screen_grad, p.screen_absgrad, p.radii,
                                     p.half_width, p.half_height, p.grad_acc, p.absgrad_acc, p.count,
                                     p.max_radii);
  });
}

}  // namespace gsl::densify
