// Python bindings of TSDF fusion and marching cubes (csrc/ops/tsdf). Addresses are integers
// from tensor.data_ptr() (0 for an absent optional input); gsplat_lib/mesh/tsdf.py checks the
// input and allocates every buffer. The grid travels as 8 numbers: voxel_size, truncation,
// contracted (0 or 1), center x, y, z, radius, contracted_limit.
#include <pybind11/stl.h>

#include <stdexcept>
#include <vector>

#include "bindings/bindings.h"
#include "ops/tsdf/tsdf.h"

namespace py = pybind11;

namespace gsl::bindings {
namespace {

using Address = std::uintptr_t;

tsdf::Grid make_grid(const std::vector<double>& values) {
  if (values.size() != 8) throw std::invalid_argument("tsdf: the grid takes 8 numbers");
  tsdf::Grid g;
  g.voxel_size = static_cast<float>(values[0]);
  g.truncation = static_cast<float>(values[1]);
  g.contracted = values[2] != 0.0 ? 1 : 0;
  for (int a = 0; a < 3; ++a) g.center[a] = static_cast<float>(values[3 + a]);
  g.radius = static_cast<float>(values[6]);
  g.contracted_limit = static_cast<float>(values[7]);
  tsdf::check_grid(g);
  return g;
}

tsdf::BlockCandidatesParams candidates_params(const std::vector<double>& grid, Address viewmats, Address Ks,
                                              Address depths, int32_t num_views, int32_t width, int32_t height,
                                              Address counts, Address offsets, Address blocks) {
  tsdf::BlockCandidatesParams p;
  p.grid = make_grid(grid);
  p.viewmats = ptr<const float>(viewmats);
  p.Ks = ptr<const float>(Ks);
  p.depths = ptr<const float>(depths);
  p.num_views = num_views;
  p.width = width;
  p.height = height;
  p.counts = ptr<int64_t>(counts);
  p.offsets = ptr<const int64_t>(offsets);
  p.blocks = ptr<int32_t>(blocks);
  return p;
}

tsdf::IntegrateParams integrate_params(const std::vector<double>& grid, Address block_coords, int64_t num_blocks,
                                       Address tsdf_values, Address weight, Address color, Address viewmats,
                                       Address Ks, Address depths, Address colors, int32_t num_views, int32_t width,
                                       int32_t height) {
  tsdf::IntegrateParams p;
  p.grid = make_grid(grid);
  p.block_coords = ptr<const int32_t>(block_coords);
  p.num_blocks = num_blocks;
  p.tsdf = ptr<float>(tsdf_values);
  p.weight = ptr<float>(weight);
  p.color = ptr<float>(color);
  p.viewmats = ptr<const float>(viewmats);
  p.Ks = ptr<const float>(Ks);
  p.depths = ptr<const float>(depths);
  p.colors = ptr<const float>(colors);
  p.num_views = num_views;
  p.width = width;
  p.height = height;
  return p;
}

mc::ExtractParams extract_params(const std::vector<double>& grid, Address block_coords, Address neighbours,
                                 Address tsdf_values, Address weight, Address color, double min_weight,
                                 int64_t num_blocks, Address edge_masks, Address triangle_counts,
                                 Address vertex_offsets, Address triangle_offsets, Address vertices,
                                 Address vertex_colors, Address triangles) {
  mc::ExtractParams p;
  p.grid = make_grid(grid);
  p.field.block_coords = ptr<const int32_t>(block_coords);
  p.field.neighbours = ptr<const int32_t>(neighbours);
  p.field.tsdf = ptr<const float>(tsdf_values);
  p.field.weight = ptr<const float>(weight);
  p.field.color = ptr<const float>(color);
  p.field.min_weight = static_cast<float>(min_weight);
  p.num_blocks = num_blocks;
  p.edge_masks = ptr<uint8_t>(edge_masks);
  p.triangle_counts = ptr<int32_t>(triangle_counts);
  p.vertex_offsets = ptr<const int64_t>(vertex_offsets);
  p.triangle_offsets = ptr<const int64_t>(triangle_offsets);
  p.vertices = ptr<float>(vertices);
  p.vertex_colors = ptr<float>(vertex_colors);
  p.triangles = ptr<int64_t>(triangles);
  return p;
}

}  // namespace

void bind_tsdf(py::module_& m) {
  using Grid = const std::vector<double>&;
  m.def(
      "tsdf_block_candidates_count_cpu",
      [](Grid grid, Address viewmats, Address Ks, Address depths, int32_t C, int32_t W, int32_t H, Address counts,
         int32_t cpu_lanes, int num_threads) {
        auto p = candidates_params(grid, viewmats, Ks, depths, C, W, H, counts, 0, 0);
        p.cpu_lanes = cpu_lanes;
        py::gil_scoped_release release;
        tsdf::block_candidates_count_cpu(p, num_threads);
      },
      "counts [C, H, W] = blocks each pixel's truncation band touches (-1: out of range; cpu_lanes: 0, 1, 4, 8)");
  m.def(
      "tsdf_block_candidates_fill_cpu",
      [](Grid grid, Address viewmats, Address Ks, Address depths, int32_t C, int32_t W, int32_t H, Address counts,
         Address offsets, Address blocks, int num_threads) {
        const auto p = candidates_params(grid, viewmats, Ks, depths, C, W, H, counts, offsets, blocks);
        py::gil_scoped_release release;
        tsdf::block_candidates_fill_cpu(p, num_threads);
      },
      "blocks [sum(counts), 3] int32: the blocks counted by tsdf_block_candidates_count (given its counts)");
  m.def(
      "tsdf_integrate_cpu",
      [](Grid grid, Address block_coords, int64_t B, Address tsdf_values, Address weight, Address color,
         Address viewmats, Address Ks, Address depths, Address colors, int32_t C, int32_t W, int32_t H,
         int32_t cpu_lanes, int num_threads) {
        auto p = integrate_params(grid, block_coords, B, tsdf_values, weight, color, viewmats, Ks, depths, colors,
                                  C, W, H);
        p.cpu_lanes = cpu_lanes;
        py::gil_scoped_release release;
        tsdf::integrate_cpu(p, num_threads);
      },
      "Fuses C depth maps (and colours) into every voxel of B blocks, views in order (cpu_lanes: 0 widest, 1, 4, 8)");
  m.def("tsdf_max_cpu_lanes", &tsdf::tsdf_max_cpu_lanes, "Voxels per CPU lane group: 8 where AVX2 runs, else 4");
  m.def(
      "tsdf_extract_count_cpu",
      [](Grid grid, Address block_coords, Address neighbours, Address tsdf_values, Address weight, double min_weight,
         int64_t B, Address edge_masks, Address triangle_counts, int num_threads) {
        const auto p = extract_params(grid, block_coords, neighbours, tsdf_values, weight, 0, min_weight, B,
                                      edge_masks, triangle_counts, 0, 0, 0, 0, 0);
        py::gil_scoped_release release;
        mc::extract_count_cpu(p, num_threads);
      },
      "Marching cubes, first pass: crossed edges per voxel [B, 512] uint8 and triangles per cube [B, 512] int32");
  m.def(
      "tsdf_extract_fill_cpu",
      [](Grid grid, Address block_coords, Address neighbours, Address tsdf_values, Address weight, Address color,
         double min_weight, int64_t B, Address edge_masks, Address triangle_counts, Address vertex_offsets,
         Address triangle_offsets, Address vertices, Address vertex_colors, Address triangles, int num_threads) {
        const auto p = extract_params(grid, block_coords, neighbours, tsdf_values, weight, color, min_weight, B,
                                      edge_masks, triangle_counts, vertex_offsets, triangle_offsets, vertices,
                                      vertex_colors, triangles);
        py::gil_scoped_release release;
        mc::extract_fill_cpu(p, num_threads);
      },
      "Marching cubes, second pass: vertices [V, 3], vertex colours [V, 3] and triangles [T, 3] int64");
#if GSPLAT_LIB_WITH_CUDA
  m.def(
      "tsdf_block_candidates_count_cuda",
      [](Grid grid, Address viewmats, Address Ks, Address depths, int32_t C, int32_t W, int32_t H, Address counts,
         int device, std::uintptr_t stream) {
        const auto p = candidates_params(grid, viewmats, Ks, depths, C, W, H, counts, 0, 0);
        py::gil_scoped_release release;
        tsdf::block_candidates_count_cuda(p, device, stream);
      },
      "CUDA tsdf_block_candidates_count on the given stream");
  m.def(
      "tsdf_block_candidates_fill_cuda",
      [](Grid grid, Address viewmats, Address Ks, Address depths, int32_t C, int32_t W, int32_t H, Address counts,
         Address offsets, Address blocks, int device, std::uintptr_t stream) {
        const auto p = candidates_params(grid, viewmats, Ks, depths, C, W, H, counts, offsets, blocks);
        py::gil_scoped_release release;
        tsdf::block_candidates_fill_cuda(p, device, stream);
      },
      "CUDA tsdf_block_candidates_fill on the given stream");
  m.def(
      "tsdf_integrate_cuda",
      [](Grid grid, Address block_coords, int64_t B, Address tsdf_values, Address weight, Address color,
         Address viewmats, Address Ks, Address depths, Address colors, int32_t C, int32_t W, int32_t H, int device,
         std::uintptr_t stream) {
        const auto p = integrate_params(grid, block_coords, B, tsdf_values, weight, color, viewmats, Ks, depths,
                                        colors, C, W, H);
        py::gil_scoped_release release;
        tsdf::integrate_cuda(p, device, stream);
      },
      "CUDA tsdf_integrate on the given stream");
  m.def(
      "tsdf_extract_count_cuda",
      [](Grid grid, Address block_coords, Address neighbours, Address tsdf_values, Address weight, double min_weight,
         int64_t B, Address edge_masks, Address triangle_counts, int device, std::uintptr_t stream) {
        const auto p = extract_params(grid, block_coords, neighbours, tsdf_values, weight, 0, min_weight, B,
                                      edge_masks, triangle_counts, 0, 0, 0, 0, 0);
        py::gil_scoped_release release;
        mc::extract_count_cuda(p, device, stream);
      },
      "CUDA tsdf_extract_count on the given stream");
  m.def(
      "tsdf_extract_fill_cuda",
      [](Grid grid, Address block_coords, Address neighbours, Address tsdf_values, Address weight, Address color,
         double min_weight, int64_t B, Address edge_masks, Address triangle_counts, Address vertex_offsets,
         Address triangle_offsets, Address vertices, Address vertex_colors, Address triangles, int device,
         std::uintptr_t stream) {
        const auto p = extract_params(grid, block_coords, neighbours, tsdf_values, weight, color, min_weight, B,
                                      edge_masks, triangle_counts, vertex_offsets, triangle_offsets, vertices,
                                      vertex_colors, triangles);
        py::gil_scoped_release release;
        mc::extract_fill_cuda(p, device, stream);
      },
      "CUDA tsdf_extract_fill on the given stream");
#endif
}

}  // namespace gsl::bindings
