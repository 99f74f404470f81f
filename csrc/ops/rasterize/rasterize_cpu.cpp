// CPU entry points of the rasterizer: each pass is compiled once per instruction set (scalar,
// SSE, AVX2) from the force-inlined tile passes of cpu/tile_passes.h, picked at run time by
// the lane width, and run over threads (cpu/parallel.h).
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/huge_pages.h"
#include "cpu/parallel.h"
#include "cpu/scratch.h"
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
void project_range_sse(const ProjectArgs& a, int64_t b, int64_t e) { project_range<vf4>(a, b, e); }
void project_backward_segment_scalar(const ProjectBackwardArgs& a, const SurfelSegment& g, int64_t b, int64_t e) {
  project_backward_segment<float>(a, g, b, e);
}
void project_backward_segment_sse(const ProjectBackwardArgs& a, const SurfelSegment& g, int64_t b, int64_t e) {
  project_backward_segment<vf4>(a, g, b, e);
}
void forward_tiles_scalar(const ForwardArgs& a, const int64_t* t, int64_t n) { forward_tiles<float>(a, t, n); }
void forward_tiles_sse(const ForwardArgs& a, const int64_t* t, int64_t n) { forward_tiles<vf4>(a, t, n); }
void backward_tiles_scalar(const BackwardArgs& a, const int64_t* t, int64_t n) { backward_tiles<float>(a, t, n); }
void backward_tiles_sse(const BackwardArgs& a, const int64_t* t, int64_t n) { backward_tiles<vf4>(a, t, n); }
#if GSL_HAVE_AVX2_SCHEDULE
GSL_TARGET_AVX2 void project_backward_segment_avx2(const ProjectBackwardArgs& a, const SurfelSegment& g, int64_t b,
                                                   int64_t e) {
  project_backward_segment<vf8>(a, g, b, e);
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
using SegmentPass = void (*)(const ProjectBackwardArgs&, const SurfelSegment&, int64_t, int64_t);

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
// rendering a heavy tile taken last. Packed items (many scenes) go camera by camera, each
// camera's heaviest first: the threads then share one camera's splats in cache, and the many
// cameras balance the load. Which thread renders a tile never changes its bits.
// Tiles [first_tile, end_tile): all of them, or a camera group's.
std::vector<int64_t> tile_order(const PixelPassInputs& in, int num_threads, int64_t first_tile, int64_t end_tile) {
  const int64_t per_camera = tiles_per_camera(in.dims);
  const int64_t num_tiles = end_tile - first_tile;
  std::vector<int64_t> order(num_tiles);
  for (int64_t t = 0; t < num_tiles; ++t) order[t] = first_tile + t;
  const auto pairs = [&](int64_t t) { return in.tile_starts[t + 1] - in.tile_starts[t]; };
  if (num_threads == 1) return order;
  if (in.item_surfels == nullptr) {
    std::stable_sort(order.begin(), order.end(), [&](int64_t s, int64_t t) { return pairs(s) > pairs(t); });
  } else {
    for (int64_t first = 0; first < num_tiles; first += per_camera)
      std::stable_sort(order.begin() + first, order.begin() + first + per_camera,
                       [&](int64_t s, int64_t t) { return pairs(s) > pairs(t); });
  }
  return order;
}

// Runs a tile pass over tiles [first_tile, end_tile) (by default every tile), the threads taking
// them in tile_order.
template <class Args>
void run_tile_pass(TilePass<Args> pass, const Args& a, int num_threads, int64_t first_tile = 0,
                   int64_t end_tile = -1) {
  if (end_tile < 0) end_tile = a.dims.num_cameras * tiles_per_camera(a.dims);
  const std::vector<int64_t> tiles = tile_order(a, num_threads, first_tile, end_tile);
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
  const int64_t items = args.dims.num_items;
  if (items == 0) return;  // empty buffers come as null pointers
  if ((args.tile_counts == nullptr) == (args.pair_ends == nullptr))
    throw std::invalid_argument("rasterize: project takes exactly one of tile_counts and pair_ends");
  ProjectArgs a = args;
  if (a.pair_ends != nullptr) a.tile_counts = a.pair_ends;  // the counts, summed in place below
  // Many cameras' items are large fresh buffers (a packed multi-scene call's above all).
  cpu::advise_huge_pages(a.M, 9 * items);
  cpu::advise_huge_pages(a.normals, 3 * items);
  cpu::advise_huge_pages(a.means2d, 2 * items);
  cpu::advise_huge_pages(a.depths, items);
  cpu::advise_huge_pages(a.radii, 2 * items);
  cpu::advise_huge_pages(a.pixel_rects, 4 * items);
  cpu::advise_huge_pages(a.tile_counts, items);
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
  cpu::parallel_for(a.dims.num_items, num_threads, 4096, [&](int64_t begin, int64_t end) {
    for_each_camera(a.dims, a.camera_items, begin, end, [&](int64_t c, int64_t item0, int64_t item1) {
      for (int64_t item = item0; item < item1; ++item) emit_item(a, c, item);
    });
  });
}

void forward_cpu(const ForwardArgs& a, int num_threads) {
  check_cpu_tiles(a.dims);
  run_tile_pass(pick_schedule<TilePass<ForwardArgs>>(a.dims.cpu_lanes, GSL_SCHEDULES(forward_tiles)), a, num_threads);
}

namespace {

// The scratch a camera group's records and item gradients fill: kept from call to call by the
// calling thread (cpu/scratch.h), as large as the largest group it ran.
thread_local cpu::ScratchBuffer<float> group_records, group_item_grads;

// Per item, a group keeps v_M (9 floats), v_normals (3) and v_opacities_cn (1).
constexpr int64_t kItemGradFloats = 13;
// The cameras [c0, c1) a group takes: at least one, then more while their records and item
// gradients stay within the call's cpu_group_bytes (docs/design.md, "Camera groups").
int64_t camera_group_end(const Dims& d, const ProjectBackwardArgs& p, const int64_t* record_ends, int64_t c0,
                         int64_t record_width) {
  const auto records_before = [&](int64_t item) { return item == 0 ? int64_t(0) : record_ends[item - 1]; };
  const int64_t i0 = first_item(d, p.camera_items, c0), r0 = records_before(i0);
  const int64_t budget = d.cpu_group_bytes > 0 ? d.cpu_group_bytes : kCameraGroupBytes;
  int64_t c1 = c0 + 1;
  for (; c1 < d.num_cameras; ++c1) {
    const int64_t i1 = first_item(d, p.camera_items, c1 + 1);
    const int64_t bytes = 4 * ((records_before(i1) - r0) * record_width + (i1 - i0) * kItemGradFloats);
    if (bytes > budget) break;
  }
  return c1;
}

// The segments of surfels whose gradients cameras [c0, c1) give (tile_passes.h); `given`: per
// scene, whether an earlier group gave its surfels gradients (dense: one entry for all).
std::vector<SurfelSegment> group_segments(const ProjectBackwardArgs& p, int64_t c0, int64_t c1,
                                          const std::vector<int64_t>& all_cameras,
                                          const std::vector<int64_t>& scene_of_camera, std::vector<char>& given) {
  std::vector<SurfelSegment> segments;
  if (p.camera_items == nullptr) {
    segments.push_back({0, p.dims.num_surfels, all_cameras.data() + c0, c1 - c0, given[0] != 0});
    given[0] = 1;
    return segments;
  }
  // Each scene once, with its cameras in the group: a run of its camera list (ascending).
  for (int64_t c = c0; c < c1; ++c) {
    const int64_t s = scene_of_camera[c];
    const int64_t* cameras = p.scene_cameras + p.scene_camera_starts[s];
    const int64_t* cameras_end = p.scene_cameras + p.scene_camera_starts[s + 1];
    const int64_t* first = std::lower_bound(cameras, cameras_end, c);
    if (first != cameras && *(first - 1) >= c0) continue;  // an earlier camera of the group added the scene
    const int64_t* last = std::lower_bound(first, cameras_end, c1);
    const int64_t begin = p.scene_surfel_starts[s], count = p.scene_surfel_starts[s + 1] - begin;
    if (count > 0) segments.push_back({begin, count, first, last - first, given[s] != 0});
    given[s] = 1;
  }
  return segments;
}

// Zero gradients for the surfels no camera gave any: those of scenes without a camera (all of
// them when there is no camera).
void zero_unseen_surfels(const ProjectBackwardArgs& p, const std::vector<char>& given) {
  const Dims& d = p.dims;
  const auto zero = [&](int64_t n) {
    std::fill_n(p.v_means + 3 * n, 3, 0.f);
    std::fill_n(p.v_quats + 4 * n, 4, 0.f);
    std::fill_n(p.v_scales + 2 * n, 2, 0.f);
    p.v_opacities[n] = 0.f;
  };
  if (p.camera_items == nullptr) {
    if (!given[0])
      for (int64_t n = 0; n < d.num_surfels; ++n) zero(n);
    return;
  }
  for (int64_t s = 0; s < d.num_scenes; ++s)
    if (!given[s])
      for (int64_t k = p.scene_surfel_starts[s]; k < p.scene_surfel_starts[s + 1]; ++k) zero(p.scene_surfels[k]);
}

// Camera c's scene, from the scenes' camera lists (packed items).
std::vector<int64_t> scene_of_each_camera(const ProjectBackwardArgs& p) {
  std::vector<int64_t> scene_of_camera(static_cast<size_t>(p.dims.num_cameras));
  for (int64_t s = 0; s < p.dims.num_scenes; ++s)
    for (int64_t k = p.scene_camera_starts[s]; k < p.scene_camera_starts[s + 1]; ++k)
      scene_of_camera[p.scene_cameras[k]] = s;
  return scene_of_camera;
}

}  // namespace

void fill_backward_scratch_cpu(float value) {
  group_records.fill(value);
  group_item_grads.fill(value);
}

void backward_by_camera_groups_cpu(const CpuBackwardArgs& a, int num_threads) {
  check_cpu_tiles(a.dims);
  const Dims& d = a.dims;
  if (d.item_records)
    throw std::invalid_argument("rasterize: the CPU backward writes a record per pair (it is always deterministic); "
                                "item_records is CUDA-only");
  const Semantics semantics = semantics_of(d);
  if (semantics == Semantics::kUpstream && a.reduce.center_grad == nullptr && d.num_items > 0)
    throw std::invalid_argument("rasterize backward: center_grad is required in upstream semantics");
  const auto tiles = pick_schedule<TilePass<BackwardArgs>>(d.cpu_lanes, GSL_SCHEDULES(backward_tiles));
  const auto segment_pass = pick_schedule<SegmentPass>(d.cpu_lanes, GSL_SCHEDULES(project_backward_segment));
  ReduceArgs reduce = a.reduce;
  reduce.dims = d;
  reduce.M = a.M;
  ProjectBackwardArgs project = a.project;
  project.dims = d;
  const int64_t record_width = pair_grad_width(d.num_channels, semantics);
  std::vector<int64_t> all_cameras(static_cast<size_t>(d.num_cameras));
  for (int64_t c = 0; c < d.num_cameras; ++c) all_cameras[c] = c;
  const std::vector<int64_t> scene_of_camera =
      project.camera_items != nullptr ? scene_of_each_camera(project) : std::vector<int64_t>{};
  std::vector<char> given(static_cast<size_t>(std::max<int64_t>(d.num_scenes, 1)), 0);
  const int64_t per_camera = tiles_per_camera(d);
  for (int64_t c0 = 0, c1; c0 < d.num_cameras; c0 = c1) {
    c1 = camera_group_end(d, project, reduce.record_ends, c0, record_width);
    const int64_t i0 = first_item(d, project.camera_items, c0), i1 = first_item(d, project.camera_items, c1);
    if (i1 == i0) continue;
    const int64_t r0 = i0 == 0 ? 0 : reduce.record_ends[i0 - 1], r1 = reduce.record_ends[i1 - 1];

    BackwardArgs pixels = a;
    pixels.pair_grads = group_records.get(static_cast<size_t>((r1 - r0) * record_width));
    pixels.first_record = r0;
    run_tile_pass(tiles, pixels, num_threads, c0 * per_camera, c1 * per_camera);

    float* item_grads = group_item_grads.get(static_cast<size_t>((i1 - i0) * kItemGradFloats));
    reduce.pair_grads = pixels.pair_grads;
    project.v_M = reduce.v_M = item_grads;
    project.v_normals = reduce.v_normals = item_grads + 9 * (i1 - i0);
    project.v_opacities_cn = reduce.v_opacities_cn = item_grads + 12 * (i1 - i0);
    reduce.first_record = r0;
    reduce.first_item = project.first_item = i0;
    with_semantics(d, [&](auto tag) {
      constexpr Semantics S = decltype(tag)::value;
      cpu::parallel_for(i1 - i0, num_threads, 1024, [&](int64_t begin, int64_t end) {
        for (int64_t item = i0 + begin; item < i0 + end; ++item) reduce_item<S>(reduce, item);
      });
    });

    const std::vector<SurfelSegment> segments = group_segments(project, c0, c1, all_cameras, scene_of_camera, given);
    std::vector<int64_t> segment_starts(segments.size() + 1, 0);
    for (size_t k = 0; k < segments.size(); ++k) segment_starts[k + 1] = segment_starts[k] + segments[k].count;
    cpu::parallel_for(segment_starts.back(), num_threads, 1024, [&](int64_t begin, int64_t end) {
      for (int64_t k = segment_of(segment_starts.data(), int64_t(segments.size()), begin); begin < end; ++k) {
        const int64_t stop = std::min(end, segment_starts[k + 1]);
        if (stop > begin) segment_pass(project, segments[k], begin - segment_starts[k], stop - segment_starts[k]);
        begin = std::max(begin, stop);
      }
    });
  }
  zero_unseen_surfels(project, given);
}

void plan_scenes_cpu(const ScenePlanArgs& a, int num_threads) {
  const ScenePlanArgs& d = a;
  const int64_t S = d.num_scenes;
  // A stable counting sort of the surfels by scene. The scenes' sizes are counted again
  // first, so ids out of range or starts that do not match them never index out of bounds.
  std::vector<int64_t> cursor(static_cast<size_t>(S), 0);
  for (int64_t n = 0; n < d.num_surfels; ++n) {
    const int64_t s = a.scene_ids[n];
    if (s < 0 || s >= S)
      throw std::invalid_argument("rasterize plan_scenes: scene_ids[" + std::to_string(n) + "] = " +
                                  std::to_string(s) + " is outside [0, " + std::to_string(S) + ")");
    ++cursor[s];
  }
  for (int64_t s = 0; s < S; ++s) {
    if (a.scene_surfel_starts[s + 1] - a.scene_surfel_starts[s] != cursor[s])
      throw std::invalid_argument("rasterize plan_scenes: scene_surfel_starts does not match scene_ids");
    cursor[s] = a.scene_surfel_starts[s];
  }
  for (int64_t n = 0; n < d.num_surfels; ++n) a.scene_surfels[cursor[a.scene_ids[n]]++] = n;
  // Camera c's items: its scene's surfels, in order.
  for (int64_t c = 0; c < d.num_cameras; ++c) {
    const int64_t s = a.camera_scene_ids[c];
    const int64_t begin = a.camera_items[c], count = a.camera_items[c + 1] - begin;
    if (s < 0 || s >= S || count != a.scene_surfel_starts[s + 1] - a.scene_surfel_starts[s] || begin < 0 ||
        a.camera_items[c + 1] > d.num_items)
      throw std::invalid_argument("rasterize plan_scenes: camera_items does not match camera_scene_ids");
  }
  cpu::parallel_for(d.num_cameras, num_threads, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t begin = a.camera_items[c], end = a.camera_items[c + 1];
      std::copy(a.scene_surfels + a.scene_surfel_starts[a.camera_scene_ids[c]],
                a.scene_surfels + a.scene_surfel_starts[a.camera_scene_ids[c]] + (end - begin), a.item_surfels + begin);
      std::fill(a.item_cameras + begin, a.item_cameras + end, c);
    }
  });
}

}  // namespace gsl::rasterize
