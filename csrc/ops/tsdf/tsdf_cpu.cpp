// CPU schedule of TSDF fusion and marching cubes: parallel_for over image rows (block
// candidates) and over blocks (integration, extraction). Every voxel, pixel and cube is
// computed by one thread, so the results never depend on the thread count.
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/parallel.h"
#include "ops/tsdf/tsdf.h"

namespace gsl::tsdf {

void check_grid(const Grid& g) {
  if (!(g.voxel_size > 0.0f) || !(g.truncation > 0.0f))
    throw std::invalid_argument("tsdf: voxel_size and truncation must be > 0");
  if (g.contracted && !(g.radius > 0.0f && g.contracted_limit > 0.0f && g.contracted_limit < 2.0f))
    throw std::invalid_argument("tsdf: a contraction needs radius > 0 and 0 < contracted_limit < 2");
}

int tsdf_max_cpu_lanes() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  static const int lanes = __builtin_cpu_supports("avx2") ? 8 : 4;
  return lanes;
#else
  return 4;
#endif
}

namespace {

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define GSL_TSDF_AVX2 1
#define GSL_TARGET_AVX2 __attribute__((target("avx2")))
#else
#define GSL_TSDF_AVX2 0
#endif
// Inlined into the per-ISA entry points below, so each gets code for its instruction set.
#define GSL_CPU_INLINE inline __attribute__((always_inline))

// Picks a lane width's entry point: 0 is the widest this CPU runs.
template <class Fn>
Fn pick_lanes(int lanes, Fn scalar, Fn sse, Fn avx2) {
  if (lanes == 0) lanes = tsdf_max_cpu_lanes();
  if (lanes == 1) return scalar;
  if (lanes == 4) return sse;
  if (lanes == 8 && tsdf_max_cpu_lanes() == 8 && avx2 != nullptr) return avx2;
  throw std::invalid_argument("tsdf: cpu_lanes must be 0 (widest), 1, 4, or 8 where AVX2 is available; got " +
                              std::to_string(lanes));
}

// The boxes of a row's pixels (j), a lane group at a time.
template <class F>
GSL_CPU_INLINE void row_boxes(const Grid& g, const View& v, const float* depth_row, int width, int j, PixelBox* out) {
  constexpr int kWidth = Lanes<F>::kWidth;
  for (int first = 0; first < width; first += kWidth) {
    float padded[kWidth] = {};  // past the row's end: no depth
    for (int k = 0; k < kWidth && first + k < width; ++k) padded[k] = depth_row[first + k];
    const F columns = broadcast<F>(static_cast<float>(first)) + lane_offsets<F>();
    const BoxLanes<F> lanes = block_box_lanes<F>(g, v, load_lanes<F>(padded), columns, j);
    for (int k = 0; k < kWidth && first + k < width; ++k) {
      PixelBox& box = out[first + k];
      box.kind = get_mask_lane(lanes.out_of_range, k) ? PixelBlocks::kOutOfRange
                 : get_mask_lane(lanes.box, k)        ? PixelBlocks::kBox
                                                      : PixelBlocks::kNone;
      for (int a = 0; a < 3; ++a) {
        if constexpr (kWidth == 1) {
          box.box.lo[a] = lanes.lo[a];
          box.box.hi[a] = lanes.hi[a];
        } else {
          box.box.lo[a] = lanes.lo[a][k];
          box.box.hi[a] = lanes.hi[a][k];
        }
      }
    }
  }
}

using RowBoxes = void (*)(const Grid&, const View&, const float*, int, int, PixelBox*);

void row_boxes_scalar(const Grid& g, const View& v, const float* d, int w, int j, PixelBox* out) {
  row_boxes<float>(g, v, d, w, j, out);
}
void row_boxes_sse(const Grid& g, const View& v, const float* d, int w, int j, PixelBox* out) {
  row_boxes<vf4>(g, v, d, w, j, out);
}
#if GSL_TSDF_AVX2
GSL_TARGET_AVX2 void row_boxes_avx2(const Grid& g, const View& v, const float* d, int w, int j, PixelBox* out) {
  row_boxes<vf8>(g, v, d, w, j, out);
}
#else
constexpr RowBoxes row_boxes_avx2 = nullptr;
#endif

// One block's voxels, structure of arrays, x fastest: a row of 8 voxels is one load.
struct BlockScratch {
  float x[kBlockVoxels], y[kBlockVoxels], z[kBlockVoxels];
  float truncation[kBlockVoxels], inv_truncation[kBlockVoxels];
  float tsdf[kBlockVoxels], weight[kBlockVoxels], rgb[3][kBlockVoxels];
};

// Fuses the views `seen` into a block held in `s`, a lane group of voxels at a time, the
// views in order for each group.
template <class F>
GSL_CPU_INLINE void fuse_block(const IntegrateParams& p, const View* views, const int* seen, int num_seen,
                               bool with_color, BlockScratch& s) {
  constexpr int kWidth = Lanes<F>::kWidth;
  const int64_t image = static_cast<int64_t>(p.width) * p.height;
  for (int first = 0; first < kBlockVoxels; first += kWidth) {
    const SiteLanes<F> site{load_lanes<F>(s.x + first), load_lanes<F>(s.y + first), load_lanes<F>(s.z + first),
                            load_lanes<F>(s.truncation + first), load_lanes<F>(s.inv_truncation + first)};
    StateLanes<F> state{load_lanes<F>(s.tsdf + first), load_lanes<F>(s.weight + first),
                        {load_lanes<F>(s.rgb[0] + first), load_lanes<F>(s.rgb[1] + first), load_lanes<F>(s.rgb[2] + first)}};
    for (int k = 0; k < num_seen; ++k) {
      const int c = seen[k];
      fuse_view<F>(views[c], p.depths + c * image, with_color ? p.colors + 3 * c * image : nullptr, p.width,
                   p.height, site, &state);
    }
    store_lanes(s.tsdf + first, state.tsdf);
    store_lanes(s.weight + first, state.weight);
    for (int k = 0; k < 3; ++k) store_lanes(s.rgb[k] + first, state.rgb[k]);
  }
}

using FuseBlock = void (*)(const IntegrateParams&, const View*, const int*, int, bool, BlockScratch&);

void fuse_block_scalar(const IntegrateParams& p, const View* v, const int* seen, int n, bool color, BlockScratch& s) {
  fuse_block<float>(p, v, seen, n, color, s);
}
void fuse_block_sse(const IntegrateParams& p, const View* v, const int* seen, int n, bool color, BlockScratch& s) {
  fuse_block<vf4>(p, v, seen, n, color, s);
}
#if GSL_TSDF_AVX2
GSL_TARGET_AVX2 void fuse_block_avx2(const IntegrateParams& p, const View* v, const int* seen, int n, bool color,
                                     BlockScratch& s) {
  fuse_block<vf8>(p, v, seen, n, color, s);
}
#else
constexpr FuseBlock fuse_block_avx2 = nullptr;
#endif

// Calls body(pixel, box, left box or null, upper box or null) for every pixel, each box
// computed once: a chunk of rows keeps the boxes of its previous row.
template <class Body>
void for_each_pixel_box(const BlockCandidatesParams& p, int num_threads, Body&& body) {
  check_grid(p.grid);
  const RowBoxes boxes = pick_lanes<RowBoxes>(p.cpu_lanes, row_boxes_scalar, row_boxes_sse, row_boxes_avx2);
  const int64_t rows = static_cast<int64_t>(p.num_views) * p.height;
  cpu::parallel_for(rows, num_threads, 16, [&](int64_t begin, int64_t end) {
    std::vector<PixelBox> above(p.width), current(p.width);
    for (int64_t row = begin; row < end; ++row) {
      const int c = static_cast<int>(row / p.height);
      const int j = static_cast<int>(row % p.height);
      const View v = load_view(p.viewmats + 16 * c, p.Ks + 9 * c);
      const float* depth = p.depths + static_cast<int64_t>(c) * p.width * p.height;
      if (j > 0 && row == begin)
        boxes(p.grid, v, depth + static_cast<int64_t>(j - 1) * p.width, p.width, j - 1, above.data());
      boxes(p.grid, v, depth + static_cast<int64_t>(j) * p.width, p.width, j, current.data());
      for (int i = 0; i < p.width; ++i)
        body(row * p.width + i, current[i], i > 0 ? &current[i - 1] : nullptr, j > 0 ? &above[i] : nullptr);
      above.swap(current);
    }
  });
}

}  // namespace

void block_candidates_count_cpu(const BlockCandidatesParams& p, int num_threads) {
  for_each_pixel_box(p, num_threads, [&](int64_t pixel, const PixelBox& self, const PixelBox* left, const PixelBox* up) {
    p.counts[pixel] = emitted_blocks(self, left, up);
  });
}

void block_candidates_fill_cpu(const BlockCandidatesParams& p, int num_threads) {
  check_grid(p.grid);
  // Only the pixels the count pass found emitting need their box again.
  const int64_t rows = static_cast<int64_t>(p.num_views) * p.height;
  cpu::parallel_for(rows, num_threads, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int c = static_cast<int>(row / p.height);
      const int j = static_cast<int>(row % p.height);
      const View v = load_view(p.viewmats + 16 * c, p.Ks + 9 * c);
      const float* depth = p.depths + static_cast<int64_t>(c) * p.width * p.height;
      for (int i = 0; i < p.width; ++i) {
        const int64_t pixel = row * p.width + i;
        if (p.counts[pixel] > 0) write_box_blocks(pixel_box(p.grid, v, depth, p.width, i, j).box, p.blocks + 3 * p.offsets[pixel]);
      }
    }
  });
}

// Per block: the views that may see it, then its voxels a lane group at a time, each group
// taking those views in order (the order of the CUDA kernel's voxels: the same bits).
void integrate_cpu(const IntegrateParams& p, int num_threads) {
  check_grid(p.grid);
  const FuseBlock fuse = pick_lanes<FuseBlock>(p.cpu_lanes, fuse_block_scalar, fuse_block_sse, fuse_block_avx2);
  std::vector<View> views(p.num_views);
  for (int c = 0; c < p.num_views; ++c) views[c] = load_view(p.viewmats + 16 * c, p.Ks + 9 * c);
  const bool with_color = p.color != nullptr && p.colors != nullptr;
  cpu::parallel_for(p.num_blocks, num_threads, 4, [&](int64_t begin, int64_t end) {
    std::vector<int> seen;  // the views that may see the block, in order
    std::vector<BlockScratch> scratch(1);
    BlockScratch& s = scratch[0];
    for (int64_t b = begin; b < end; ++b) {
      const int32_t* coords = p.block_coords + 3 * b;
      const Sphere bounds = block_bounds(p.grid, coords);
      seen.clear();
      for (int c = 0; c < p.num_views; ++c)
        if (sphere_may_be_seen(views[c], bounds, p.width, p.height)) seen.push_back(c);
      if (seen.empty()) continue;
      const int64_t first = b * kBlockVoxels;
      for (int local = 0; local < kBlockVoxels; ++local) {
        const VoxelSite site = voxel_site(
            p.grid, {static_cast<float>(coords[0] * kBlockSide + local % kBlockSide),
                     static_cast<float>(coords[1] * kBlockSide + (local / kBlockSide) % kBlockSide),
                     static_cast<float>(coords[2] * kBlockSide + local / (kBlockSide * kBlockSide))});
        s.x[local] = site.world.x;
        s.y[local] = site.world.y;
        s.z[local] = site.world.z;
        s.truncation[local] = site.truncation;
        s.inv_truncation[local] = site.inv_truncation;
        s.tsdf[local] = p.tsdf[first + local];
        s.weight[local] = p.weight[first + local];
        for (int k = 0; k < 3; ++k) s.rgb[k][local] = with_color ? p.color[3 * (first + local) + k] : 0.0f;
      }
      fuse(p, views.data(), seen.data(), static_cast<int>(seen.size()), with_color, s);
      for (int local = 0; local < kBlockVoxels; ++local) {
        p.tsdf[first + local] = s.tsdf[local];
        p.weight[first + local] = s.weight[local];
        if (with_color)
          for (int k = 0; k < 3; ++k) p.color[3 * (first + local) + k] = s.rgb[k][local];
      }
    }
  });
}

}  // namespace gsl::tsdf

namespace gsl::mc {

void extract_count_cpu(const ExtractParams& p, int num_threads) {
  cpu::parallel_for(p.num_blocks, num_threads, 8, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      for (int64_t local = 0; local < tsdf::kBlockVoxels; ++local) {
        const int64_t voxel = b * tsdf::kBlockVoxels + local;
        p.edge_masks[voxel] = static_cast<uint8_t>(voxel_edge_mask(p.field, b, local));
        p.triangle_counts[voxel] = cube_triangle_count(p.field, b, local);
      }
    }
  });
}

void extract_fill_cpu(const ExtractParams& p, int num_threads) {
  tsdf::check_grid(p.grid);
  cpu::parallel_for(p.num_blocks, num_threads, 8, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      for (int64_t local = 0; local < tsdf::kBlockVoxels; ++local) {
        const int64_t voxel = b * tsdf::kBlockVoxels + local;
        if (p.edge_masks[voxel] != 0)
          write_voxel_vertices(p.field, p.grid, b, local, p.edge_masks[voxel], p.vertex_offsets[voxel], p.vertices,
                               p.vertex_colors);
        if (p.triangle_counts[voxel] > 0)
          write_cube_triangles(p.field, b, local, p.edge_masks, p.vertex_offsets, p.triangle_offsets[voxel],
                               p.triangles);
      }
    }
  });
}

}  // namespace gsl::mc
