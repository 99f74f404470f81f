// CPU schedule of TSDF fusion and marching cubes: parallel_for over image rows (block
// candidates) and over blocks (integration, extraction). Every voxel, pixel and cube is
// computed by one thread, so the results never depend on the thread count.
#include <stdexcept>
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

namespace {

// Calls body(pixel, box, left box or null, upper box or null) for every pixel, each box
// computed once: a chunk of rows keeps the boxes of its previous row.
template <class Body>
void for_each_pixel_box(const BlockCandidatesParams& p, int num_threads, Body&& body) {
  check_grid(p.grid);
  const int64_t rows = static_cast<int64_t>(p.num_views) * p.height;
  cpu::parallel_for(rows, num_threads, 16, [&](int64_t begin, int64_t end) {
    std::vector<PixelBox> above(p.width), current(p.width);
    for (int64_t row = begin; row < end; ++row) {
      const int c = static_cast<int>(row / p.height);
      const int j = static_cast<int>(row % p.height);
      const View v = load_view(p.viewmats + 16 * c, p.Ks + 9 * c);
      const float* depth = p.depths + static_cast<int64_t>(c) * p.width * p.height;
      if (j > 0 && row == begin)
        for (int i = 0; i < p.width; ++i) above[i] = pixel_box(p.grid, v, depth, p.width, i, j - 1);
      for (int i = 0; i < p.width; ++i) current[i] = pixel_box(p.grid, v, depth, p.width, i, j);
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

// Per block: the views that may see it, then view by view over its 512 voxels, whose state
// (10 KiB) stays in L1 while one depth map is read at a time; each voxel still takes the
// views in order, so the result is that of the voxel-major CUDA schedule.
void integrate_cpu(const IntegrateParams& p, int num_threads) {
  check_grid(p.grid);
  std::vector<View> views(p.num_views);
  for (int c = 0; c < p.num_views; ++c) views[c] = load_view(p.viewmats + 16 * c, p.Ks + 9 * c);
  const int64_t image = static_cast<int64_t>(p.width) * p.height;
  const bool with_color = p.color != nullptr && p.colors != nullptr;
  cpu::parallel_for(p.num_blocks, num_threads, 4, [&](int64_t begin, int64_t end) {
    std::vector<int> seen;  // the views that may see the block, in order
    std::vector<VoxelSite> sites(kBlockVoxels);
    std::vector<VoxelState> states(kBlockVoxels);
    for (int64_t b = begin; b < end; ++b) {
      const int32_t* coords = p.block_coords + 3 * b;
      const Sphere bounds = block_bounds(p.grid, coords);
      seen.clear();
      for (int c = 0; c < p.num_views; ++c)
        if (sphere_may_be_seen(views[c], bounds, p.width, p.height)) seen.push_back(c);
      if (seen.empty()) continue;
      const int64_t first = b * kBlockVoxels;
      for (int local = 0; local < kBlockVoxels; ++local) {
        sites[local] = voxel_site(
            p.grid, {static_cast<float>(coords[0] * kBlockSide + local % kBlockSide),
                     static_cast<float>(coords[1] * kBlockSide + (local / kBlockSide) % kBlockSide),
                     static_cast<float>(coords[2] * kBlockSide + local / (kBlockSide * kBlockSide))});
        VoxelState& state = states[local];
        state = {p.tsdf[first + local], p.weight[first + local], {0.0f, 0.0f, 0.0f}};
        if (with_color)
          for (int k = 0; k < 3; ++k) state.rgb[k] = p.color[3 * (first + local) + k];
      }
      for (const int c : seen) {
        const float* depth = p.depths + c * image;
        const float* colors = with_color ? p.colors + 3 * c * image : nullptr;
        for (int local = 0; local < kBlockVoxels; ++local)
          fuse_view(views[c], depth, colors, p.width, p.height, sites[local], &states[local]);
      }
      for (int local = 0; local < kBlockVoxels; ++local) {
        p.tsdf[first + local] = states[local].tsdf;
        p.weight[first + local] = states[local].weight;
        if (with_color)
          for (int k = 0; k < 3; ++k) p.color[3 * (first + local) + k] = states[local].rgb[k];
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
