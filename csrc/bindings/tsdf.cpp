// Python entry points of TSDF fusion and marching cubes (csrc/ops/tsdf):
// `tsdf_<pass>_cpu(fields, num_threads)` and, with CUDA, `tsdf_<pass>_cuda(fields, device, stream)`.
// The fields of each pass are listed once below, with their shapes (bindings/fields.h checks
// them); gsplat_lib/mesh/tsdf.py checks the input and allocates every buffer.
#include <pybind11/pybind11.h>

#include <vector>

#include "bindings/bindings.h"
#include "bindings/fields.h"
#include "ops/tsdf/tsdf.h"

namespace py = pybind11;

namespace gsl::bindings {
namespace {

static_assert(tsdf::kBlockVoxels == 512, "the shapes below write a block's voxels as 512");

// The sizes the shapes below are written in.
struct Sizes {
  int64_t C, H, W;  // views, image rows, image columns
  int64_t B;        // voxel blocks
  int64_t K;        // candidate blocks of the views' pixels
  int64_t V, T;     // mesh vertices and triangles
};
#define GSL_SIZE_NAMES(s)               \
  const auto [C, H, W, B, K, V, T] = s; \
  (void)C, (void)H, (void)W, (void)B, (void)K, (void)V, (void)T

// Every pass takes the grid (core/tsdf.h, Grid) as its eight numbers.
template <class Args>
std::vector<Field<Args, Sizes>> with_grid(const std::vector<Field<Args, Sizes>>& fields) {
  return joined<Args, Sizes>(
      {GSL_SCALAR(grid.voxel_size, voxel_size), GSL_SCALAR(grid.truncation, truncation),
       GSL_SCALAR(grid.contracted, contracted), GSL_SCALAR(grid.center[0], center_x),
       GSL_SCALAR(grid.center[1], center_y), GSL_SCALAR(grid.center[2], center_z), GSL_SCALAR(grid.radius, radius),
       GSL_SCALAR(grid.contracted_limit, contracted_limit)},
      fields);
}

// The cameras and depth maps of the fusion passes.
template <class Args>
std::vector<Field<Args, Sizes>> with_views(const std::vector<Field<Args, Sizes>>& fields) {
  return with_grid(joined<Args, Sizes>(
      {GSL_SCALAR(num_views, num_views), GSL_SCALAR(width, width), GSL_SCALAR(height, height),
       GSL_BUFFER(viewmats, false, C, 4, 4), GSL_BUFFER(Ks, false, C, 3, 3), GSL_BUFFER(depths, false, C, H, W)},
      fields));
}

// The volume as marching cubes reads it (core/marching_cubes.h, BlockField).
template <class Args>
std::vector<Field<Args, Sizes>> with_block_field(const std::vector<Field<Args, Sizes>>& fields) {
  return with_grid(joined<Args, Sizes>(
      {GSL_SCALAR(num_blocks, num_blocks), GSL_SCALAR(field.min_weight, min_weight),
       GSL_BUFFER_AT(field.block_coords, block_coords, false, B, 3),
       GSL_BUFFER_AT(field.neighbours, neighbours, false, B, 8), GSL_BUFFER_AT(field.tsdf, tsdf, false, B, 512),
       GSL_BUFFER_AT(field.weight, weight, false, B, 512)},
      fields));
}

Sizes candidate_sizes(const tsdf::BlockCandidatesParams& a) {
  return {a.num_views, a.height, a.width, 0, a.num_candidates, 0, 0};
}

GSL_FIELD_LIST(block_candidates_count, tsdf::BlockCandidatesParams, "tsdf block_candidates_count", &candidate_sizes,
               with_views<Args>({GSL_SCALAR(cpu_lanes, cpu_lanes), GSL_BUFFER(counts, false, C, H, W)}))

GSL_FIELD_LIST(block_candidates_fill, tsdf::BlockCandidatesParams, "tsdf block_candidates_fill", &candidate_sizes,
               with_views<Args>({GSL_SCALAR(num_candidates, num_candidates), GSL_BUFFER(counts, false, C, H, W),
                                 GSL_BUFFER(offsets, false, C, H, W), GSL_BUFFER(blocks, false, K, 3)}))

GSL_FIELD_LIST(integrate, tsdf::IntegrateParams, "tsdf integrate",
               [](const Args& a) { return Sizes{a.num_views, a.height, a.width, a.num_blocks, 0, 0, 0}; },
               with_views<Args>({GSL_SCALAR(cpu_lanes, cpu_lanes), GSL_SCALAR(num_blocks, num_blocks),
                                 GSL_BUFFER(block_coords, false, B, 3), GSL_BUFFER(tsdf, false, B, 512),
                                 GSL_BUFFER(weight, false, B, 512), GSL_BUFFER(color, true, B, 512, 3),
                                 GSL_BUFFER(colors, true, C, H, W, 3)}))

Sizes extract_sizes(const mc::ExtractParams& a) { return {0, 0, 0, a.num_blocks, 0, a.num_vertices, a.num_triangles}; }

GSL_FIELD_LIST(extract_count, mc::ExtractParams, "tsdf extract_count", &extract_sizes,
               with_block_field<Args>(
                   {GSL_BUFFER(edge_masks, false, B, 512), GSL_BUFFER(triangle_counts, false, B, 512)}))

GSL_FIELD_LIST(extract_fill, mc::ExtractParams, "tsdf extract_fill", &extract_sizes,
               with_block_field<Args>(
                   {GSL_BUFFER_AT(field.color, color, true, B, 512, 3), GSL_BUFFER(edge_masks, false, B, 512),
                    GSL_BUFFER(triangle_counts, false, B, 512), GSL_BUFFER(vertex_offsets, false, B, 512),
                    GSL_BUFFER(triangle_offsets, false, B, 512), GSL_SCALAR(num_vertices, num_vertices),
                    GSL_SCALAR(num_triangles, num_triangles), GSL_BUFFER(vertices, false, V, 3),
                    GSL_BUFFER(vertex_colors, true, V, 3), GSL_BUFFER(triangles, false, T, 3)}))

#if GSPLAT_LIB_WITH_CUDA
#define GSL_PASS(ns, name)                                       \
  bind_cpu(m, "tsdf_" #name, name##_fields(), &ns::name##_cpu); \
  bind_cuda(m, "tsdf_" #name, name##_fields(), &ns::name##_cuda)
#else
#define GSL_PASS(ns, name) bind_cpu(m, "tsdf_" #name, name##_fields(), &ns::name##_cpu)
#endif

}  // namespace

void bind_tsdf(py::module_& m) {
  GSL_PASS(tsdf, block_candidates_count);  // counts: blocks per pixel's truncation band, -1 out of range
  GSL_PASS(tsdf, block_candidates_fill);   // blocks: the blocks the count pass counted
  GSL_PASS(tsdf, integrate);               // fuses the views into every voxel of the blocks, in order
  GSL_PASS(mc, extract_count);             // crossed edges per voxel, triangles per cube
  GSL_PASS(mc, extract_fill);              // vertices, vertex colours, triangles
  m.def("tsdf_max_cpu_lanes", &tsdf::tsdf_max_cpu_lanes, "Voxels per CPU lane group: 8 where AVX2 runs, else 4");
}

#undef GSL_PASS
#undef GSL_SIZE_NAMES

}  // namespace gsl::bindings
