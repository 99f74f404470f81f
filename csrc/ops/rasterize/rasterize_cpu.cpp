// CPU entry points of the rasterizer: each pass is compiled once per instruction set (scalar,
// SSE, AVX2) from the force-inlined tile passes of cpu/tile_passes.h, picked at run time by
// the lane width, and run over threads (cpu/parallel.h).
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/parallel.h"
#include "ops/rasterize/cpu/tile_passes.h"
#include "ops/rasterize/rasterize_impl.h"

namespace gsl::rasterize {

namespace {

using namespace cpu_tiles;

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define GSL_HAVE_AVX2_SCHEDULE 1
#define GSL_TARGET_AVX2 __attribute__((target("avx2")))
#else
#define GSL_HAVE_AVX2_SCHEDULE 0
#endif
// A pass's scalar, SSE and AVX2 entry points (no AVX2 one where this build has no AVX2
// schedule), the arguments pick_schedule takes after the lane width.
#if GSL_HAVE_AVX2_SCHEDULE
#define GSL_SCHEDULES(pass) pass##_scalar, pass##_sse, pass##_avx2
#else
#define GSL_SCHEDULES(pass) pass##_scalar, pass##_sse, nullptr
#endif

void project_range_scalar(const ProjectArgs& a, int64_t b, int64_t e) { project_range<float>(a, b, e); }
void project_backward_range_scalar(const ProjectBackwardArgs& a, int64_t b, int64_t e) {
  project_backward_range<float>(a, b, e);
}
void project_backward_range_sse(const ProjectBackwardArgs& a, int64_t b, int64_t e) {
  project_backward_range<vf4>(a, b, e);
}
void project_range_sse(const ProjectArgs& a, int64_t b, int64_t e) { project_range<vf4>(a, b, e); }
void forward_tiles_scalar(const ForwardArgs& a, const int64_t* t, int64_t n) { forward_tiles<float>(a, t, n); }
void forward_tiles_sse(const ForwardArgs& a, const int64_t* t, int64_t n) { forward_tiles<vf4>(a, t, n); }
void backward_tiles_scalar(const BackwardArgs& a, const int64_t* t, int64_t n) { backward_tiles<float>(a, t, n); }
void backward_tiles_sse(const BackwardArgs& a, const int64_t* t, int64_t n) { backward_tiles<vf4>(a, t, n); }
#if GSL_HAVE_AVX2_SCHEDULE
GSL_TARGET_AVX2 void project_backward_range_avx2(const ProjectBackwardArgs& a, int64_t b, int64_t e) {
  project_backward_range<vf8>(a, b, e);
}
GSL_TARGET_AVX2 void project_range_avx2(const ProjectArgs& a, int64_t b, int64_t e) { project_range<vf8>(a, b, e); }
GSL_TARGET_AVX2 void forward_tiles_avx2(const ForwardArgs& a, const int64_t* t, int64_t n) {
  forward_tiles<vf8>(a, t, n);
}
GSL_TARGET_AVX2 void backward_tiles_avx2(const BackwardArgs& a, const int64_t* t, int64_t n) {
  backward_tiles<vf8>(a, t, n);
}
#endif

// A pass over items [begin, end), and one over tiles[0, count).
template <class Args>
using ItemPass = void (*)(const Args&, int64_t, int64_t);
template <class Args>
using TilePass = void (*)(const Args&, const int64_t*, int64_t);

template <class Pass>
Pass pick_schedule(int lanes, Pass scalar, Pass sse, Pass avx2) {
  if (lanes == 0) lanes = max_cpu_lanes();
  if (lanes == 1) return scalar;
  if (lanes == 4) return sse;
  if (lanes == 8 && max_cpu_lanes() >= 8 && avx2 != nullptr) return avx2;
  throw std::invalid_argument("rasterize: cpu_lanes must be 0 (widest), 1, 4, or 8 where AVX2 is available; got " +
                              std::to_string(lanes));
}

// The tiles of a tile pass in the order the threads take them: with several threads the
// heaviest first (by pair count, then by index), so they finish together instead of one
// rendering a heavy tile taken last. Which thread renders a tile never changes its bits.
std::vector<int64_t> tile_order(const PixelPassInputs& in, int num_threads) {
  const int64_t num_tiles = in.dims.num_cameras * tiles_per_camera(in.dims);
  std::vector<int64_t> order(num_tiles);
  for (int64_t t = 0; t < num_tiles; ++t) order[t] = t;
  const auto pairs = [&](int64_t t) { return in.tile_starts[t + 1] - in.tile_starts[t]; };
  if (num_threads > 1)
    std::stable_sort(order.begin(), order.end(), [&](int64_t s, int64_t t) { return pairs(s) > pairs(t); });
  return order;
}

// Runs a tile pass over every tile, the threads taking them in tile_order.
template <class Args>
void run_tile_pass(TilePass<Args> pass, const Args& a, int num_threads) {
  const std::vector<int64_t> tiles = tile_order(a, num_threads);
  cpu::parallel_for(static_cast<int64_t>(tiles.size()), num_threads, 1,
                    [&](int64_t begin, int64_t end) { pass(a, tiles.data() + begin, end - begin); });
}

// Also checks the semantics before any thread runs a pass (their dispatch would throw in a worker).
void check_cpu_tiles(const Dims& d) {
  semantics_of(d);
  if (d.tile_width < 1 || d.tile_width > kMaxTileWidth)
    throw std::invalid_argument("rasterize: the CPU backend takes tile_width 1 to " + std::to_string(kMaxTileWidth) +
                                ", got " + std::to_string(d.tile_width));
}

}  // namespace

int max_cpu_lanes() {
#if GSL_HAVE_AVX2_SCHEDULE
  static const int lanes = __builtin_cpu_supports("avx2") ? 8 : 4;
  return lanes;
#else
  return 4;
#endif
}

void project_cpu(const ProjectArgs& args, int num_threads) {
  check_cpu_tiles(args.dims);
  const auto pass = pick_schedule<ItemPass<ProjectArgs>>(args.dims.cpu_lanes, GSL_SCHEDULES(project_range));
  const int64_t items = args.dims.num_cameras * args.dims.num_surfels;
  if (items == 0) return;  // empty buffers come as null pointers
  if ((args.tile_counts == nullptr) == (args.pair_ends == nullptr))
    throw std::invalid_argument("rasterize: project takes exactly one of tile_counts and pair_ends");
  ProjectArgs a = args;
  if (a.pair_ends != nullptr) a.tile_counts = a.pair_ends;  // the counts, summed in place below
  cpu::parallel_for(items, num_threads, 4096, [&](int64_t begin, int64_t end) { pass(a, begin, end); });
  // One serial loop, the sum kept in a register (reading back the previous store would chain
  // every item on store forwarding).
  if (a.pair_ends != nullptr) {
    int64_t sum = 0;
    for (int64_t item = 0; item < items; ++item) a.pair_ends[item] = sum += a.pair_ends[item];
  }
}

void emit_pairs_cpu(const EmitArgs& a, int num_threads) {
  check_cpu_tiles(a.dims);
  const int64_t items = a.dims.num_cameras * a.dims.num_surfels;
  cpu::parallel_for(items, num_threads, 4096, [&](int64_t begin, int64_t end) {
    for_each_camera(a.dims, begin, end, [&](int64_t c, int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) emit_item(a, c, c * a.dims.num_surfels + n);
    });
  });
}

void forward_cpu(const ForwardArgs& a, int num_threads) {
  check_cpu_tiles(a.dims);
  run_tile_pass(pick_schedule<TilePass<ForwardArgs>>(a.dims.cpu_lanes, GSL_SCHEDULES(forward_tiles)), a, num_threads);
}

void backward_cpu(const BackwardArgs& a, int num_threads) {
  check_cpu_tiles(a.dims);
  // Each tile's thread writes its pairs' records; records shared by tiles would race.
  if (a.dims.item_records)
    throw std::invalid_argument("rasterize: the CPU backward writes a record per pair (it is always deterministic); "
                                "item_records is CUDA-only");
  run_tile_pass(pick_schedule<TilePass<BackwardArgs>>(a.dims.cpu_lanes, GSL_SCHEDULES(backward_tiles)), a, num_threads);
}

void reduce_cpu(const ReduceArgs& a, int num_threads) {
  const int64_t items = a.dims.num_cameras * a.dims.num_surfels;
  with_semantics(a.dims, [&](auto semantics) {
    constexpr Semantics S = decltype(semantics)::value;
    if (S == Semantics::kUpstream && a.center_grad == nullptr)
      throw std::invalid_argument("rasterize reduce: center_grad is required in upstream semantics");
    cpu::parallel_for(items, num_threads, 1024, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) reduce_item<S>(a, item);
    });
  });
}

void project_backward_cpu(const ProjectBackwardArgs& a, int num_threads) {
  const auto pass =
      pick_schedule<ItemPass<ProjectBackwardArgs>>(a.dims.cpu_lanes, GSL_SCHEDULES(project_backward_range));
  cpu::parallel_for(a.dims.num_surfels, num_threads, 1024, [&](int64_t begin, int64_t end) { pass(a, begin, end); });
}

}  // namespace gsl::rasterize
