// TSDF fusion into sparse voxel blocks and marching cubes over them (csrc/core/tsdf.h and
// csrc/core/marching_cubes.h hold the math). Pointers and sizes only; the Python layer
// (gsplat_lib/mesh/tsdf.py) checks the input, keeps the block list and allocates every buffer.
// Sizes known only after counting are allocated in two phases: count, prefix sum, fill.
#pragma once

#include <cstdint>

#include "core/marching_cubes.h"
#include "core/tsdf.h"

namespace gsl::tsdf {

// The blocks that a batch of depth maps touches, a box of blocks per pixel.
struct BlockCandidatesParams {
  Grid grid;
  const float* viewmats = nullptr;  // [C, 4, 4] world-to-camera
  const float* Ks = nullptr;        // [C, 3, 3]
  const float* depths = nullptr;    // [C, H, W], <= 0 where there is no measurement
  int32_t num_views = 0;            // C
  int32_t width = 0;                // W
  int32_t height = 0;               // H
  int64_t* counts = nullptr;        // [C, H, W] blocks per pixel, -1 when out of range (count pass out, fill pass in)
  const int64_t* offsets = nullptr; // [C, H, W] fill pass in: exclusive prefix sum of counts
  int64_t num_candidates = 0;       // K = sum(counts), fill pass: the rows of blocks
  int32_t* blocks = nullptr;        // [K, 3] fill pass out: block coordinates
  int32_t cpu_lanes = 0;            // CPU pixels per lane group: 0 (the widest here), 1, 4, or 8 with AVX2
};

// Fuses a batch of views into every voxel of the given blocks.
struct IntegrateParams {
  Grid grid;
  const int32_t* block_coords = nullptr;  // [B, 3]
  int64_t num_blocks = 0;                 // B
  float* tsdf = nullptr;                  // [B, 512] in/out
  float* weight = nullptr;                // [B, 512] in/out
  float* color = nullptr;                 // [B, 512, 3] in/out, or null (no colour)
  const float* viewmats = nullptr;        // [C, 4, 4]
  const float* Ks = nullptr;              // [C, 3, 3]
  const float* depths = nullptr;          // [C, H, W]
  const float* colors = nullptr;          // [C, H, W, 3], or null (then color is not updated)
  int32_t num_views = 0;
  int32_t width = 0;
  int32_t height = 0;
  int32_t cpu_lanes = 0;                  // CPU voxels per lane group: 0 (the widest here), 1, 4, or 8 with AVX2
};

// Throws std::invalid_argument on sizes that cannot be right (a bug in the caller).
void check_grid(const Grid& grid);

void block_candidates_count_cpu(const BlockCandidatesParams& params, int num_threads);
void block_candidates_fill_cpu(const BlockCandidatesParams& params, int num_threads);
void integrate_cpu(const IntegrateParams& params, int num_threads);
int tsdf_max_cpu_lanes();  // 8 where AVX2 runs, else 4

#if GSPLAT_LIB_WITH_CUDA
void block_candidates_count_cuda(const BlockCandidatesParams& params, int device, std::uintptr_t stream);
void block_candidates_fill_cuda(const BlockCandidatesParams& params, int device, std::uintptr_t stream);
void integrate_cuda(const IntegrateParams& params, int device, std::uintptr_t stream);
#endif

}  // namespace gsl::tsdf

namespace gsl::mc {

// Marching cubes over B blocks of a TSDF volume, one thread item per voxel.
struct ExtractParams {
  BlockField field;
  tsdf::Grid grid;
  int64_t num_blocks = 0;                   // B
  uint8_t* edge_masks = nullptr;            // [B, 512] count pass out: crossed edges per voxel (bits x, y, z)
  int32_t* triangle_counts = nullptr;       // [B, 512] count pass out: triangles per cube
  const int64_t* vertex_offsets = nullptr;  // [B, 512] fill pass in: exclusive prefix sum of the vertex counts
  const int64_t* triangle_offsets = nullptr;// [B, 512] fill pass in: exclusive prefix sum of triangle_counts
  int64_t num_vertices = 0;                 // V, fill pass: the sum of the vertex counts
  int64_t num_triangles = 0;                // T, fill pass: the sum of triangle_counts
  float* vertices = nullptr;                // [V, 3] fill pass out (world)
  float* vertex_colors = nullptr;           // [V, 3] fill pass out, or null
  int64_t* triangles = nullptr;             // [T, 3] fill pass out: vertex indices
};

void extract_count_cpu(const ExtractParams& params, int num_threads);
void extract_fill_cpu(const ExtractParams& params, int num_threads);

#if GSPLAT_LIB_WITH_CUDA
void extract_count_cuda(const ExtractParams& params, int device, std::uintptr_t stream);
void extract_fill_cuda(const ExtractParams& params, int device, std::uintptr_t stream);
#endif

}  // namespace gsl::mc
