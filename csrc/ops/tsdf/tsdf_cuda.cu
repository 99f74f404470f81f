// CUDA schedule of TSDF fusion and marching cubes: a thread per pixel (block candidates), a
// thread block of 512 per voxel block (integration: the views that can see the block are
// found once, in shared memory), a thread per voxel (extraction). The math is
// csrc/core/tsdf.h and csrc/core/marching_cubes.h, the code the CPU runs; each voxel is
// written by one thread, views in order, so CUDA is deterministic too.
#include "cuda/cuda_utils.h"
#include "ops/tsdf/tsdf.h"

namespace gsl::tsdf {
namespace {

constexpr int kThreads = 256;

// The pixel's box and its left and upper neighbours' (null at the image's edge).
__device__ int64_t pixel_emitted_blocks(const BlockCandidatesParams& p, int64_t pixel, PixelBox* self) {
  const int64_t image = static_cast<int64_t>(p.width) * p.height;
  const int c = static_cast<int>(pixel / image);
  const int j = static_cast<int>((pixel % image) / p.width);
  const int i = static_cast<int>(pixel % p.width);
  const View v = load_view(p.viewmats + 16 * c, p.Ks + 9 * c);
  const float* depth = p.depths + c * image;
  *self = pixel_box(p.grid, v, depth, p.width, i, j);
  PixelBox left, up;
  if (i > 0) left = pixel_box(p.grid, v, depth, p.width, i - 1, j);
  if (j > 0) up = pixel_box(p.grid, v, depth, p.width, i, j - 1);
  return emitted_blocks(*self, i > 0 ? &left : nullptr, j > 0 ? &up : nullptr);
}

__global__ void block_candidates_count_kernel(BlockCandidatesParams p) {
  const int64_t pixel = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (pixel >= static_cast<int64_t>(p.width) * p.height * p.num_views) return;
  PixelBox self;
  p.counts[pixel] = pixel_emitted_blocks(p, pixel, &self);
}

// Only the pixels the count pass found emitting need their box again.
__global__ void block_candidates_fill_kernel(BlockCandidatesParams p) {
  const int64_t pixel = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t image = static_cast<int64_t>(p.width) * p.height;
  if (pixel >= image * p.num_views || p.counts[pixel] <= 0) return;
  const int c = static_cast<int>(pixel / image);
  const View v = load_view(p.viewmats + 16 * c, p.Ks + 9 * c);
  const PixelBox self = pixel_box(p.grid, v, p.depths + c * image, p.width, static_cast<int>(pixel % p.width),
                                  static_cast<int>((pixel % image) / p.width));
  write_box_blocks(self.box, p.blocks + 3 * p.offsets[pixel]);
}

// One thread block per voxel block, one thread per voxel. The views go by in chunks of 32:
// the chunk's cameras and which of them may see the block are loaded into shared memory once,
// then every voxel fuses the visible ones, in order.
__global__ void integrate_kernel(IntegrateParams p) {
  constexpr int kChunk = 32;
  __shared__ View views[kChunk];
  __shared__ uint32_t visible;
  const int64_t b = blockIdx.x;
  const int32_t* coords = p.block_coords + 3 * b;
  const int local = threadIdx.x;
  const int64_t voxel_index = b * kBlockVoxels + local;
  const int64_t image = static_cast<int64_t>(p.width) * p.height;
  const bool with_color = p.color != nullptr && p.colors != nullptr;
  const VoxelSite voxel = voxel_site(
      p.grid, {static_cast<float>(coords[0] * kBlockSide + local % kBlockSide),
               static_cast<float>(coords[1] * kBlockSide + (local / kBlockSide) % kBlockSide),
               static_cast<float>(coords[2] * kBlockSide + local / (kBlockSide * kBlockSide))});
  const SiteLanes<float> site{voxel.world.x, voxel.world.y, voxel.world.z, voxel.truncation, voxel.inv_truncation};
  StateLanes<float> state{p.tsdf[voxel_index], p.weight[voxel_index], {0.0f, 0.0f, 0.0f}};
  if (with_color)
    for (int k = 0; k < 3; ++k) state.rgb[k] = p.color[3 * voxel_index + k];
  const Sphere bounds = block_bounds(p.grid, coords);
  for (int first = 0; first < p.num_views; first += kChunk) {
    const int count = min(kChunk, p.num_views - first);
    if (threadIdx.x == 0) visible = 0u;
    __syncthreads();
    if (threadIdx.x < count) {
      const int c = first + threadIdx.x;
      views[threadIdx.x] = load_view(p.viewmats + 16 * c, p.Ks + 9 * c);
      if (sphere_may_be_seen(views[threadIdx.x], bounds, p.width, p.height)) atomicOr(&visible, 1u << threadIdx.x);
    }
    __syncthreads();
    for (int k = 0; k < count; ++k) {
      if (!((visible >> k) & 1u)) continue;
      const int c = first + k;
      fuse_view<float>(views[k], p.depths + c * image, with_color ? p.colors + 3 * c * image : nullptr, p.width,
                       p.height, site, &state);
    }
    __syncthreads();  // views[] is overwritten by the next chunk
  }
  p.tsdf[voxel_index] = state.tsdf;
  p.weight[voxel_index] = state.weight;
  if (with_color)
    for (int k = 0; k < 3; ++k) p.color[3 * voxel_index + k] = state.rgb[k];
}

// One thread per pixel of the batch.
void launch_per_pixel(void (*kernel)(BlockCandidatesParams), const BlockCandidatesParams& p, int device,
                      std::uintptr_t stream, const char* name) {
  check_grid(p.grid);
  const int64_t pixels = static_cast<int64_t>(p.num_views) * p.width * p.height;
  if (pixels == 0) return;
  cuda::DeviceGuard guard(device);
  kernel<<<cuda::blocks_for(pixels, kThreads), kThreads, 0, cuda::as_stream(stream)>>>(p);
  cuda::check_launch(name);
}

}  // namespace

void block_candidates_count_cuda(const BlockCandidatesParams& p, int device, std::uintptr_t stream) {
  launch_per_pixel(block_candidates_count_kernel, p, device, stream, "tsdf block_candidates_count_kernel");
}

void block_candidates_fill_cuda(const BlockCandidatesParams& p, int device, std::uintptr_t stream) {
  launch_per_pixel(block_candidates_fill_kernel, p, device, stream, "tsdf block_candidates_fill_kernel");
}

void integrate_cuda(const IntegrateParams& p, int device, std::uintptr_t stream) {
  check_grid(p.grid);
  if (p.num_blocks == 0 || p.num_views == 0) return;
  cuda::DeviceGuard guard(device);
  integrate_kernel<<<static_cast<unsigned int>(p.num_blocks), kBlockVoxels, 0, cuda::as_stream(stream)>>>(p);
  cuda::check_launch("tsdf integrate_kernel");
}

}  // namespace gsl::tsdf

namespace gsl::mc {
namespace {

constexpr int kThreads = 256;

__global__ void extract_count_kernel(ExtractParams p) {
  const int64_t voxel = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (voxel >= p.num_blocks * tsdf::kBlockVoxels) return;
  const int64_t b = voxel / tsdf::kBlockVoxels;
  const int64_t local = voxel % tsdf::kBlockVoxels;
  p.edge_masks[voxel] = static_cast<uint8_t>(voxel_edge_mask(p.field, b, local));
  p.triangle_counts[voxel] = cube_triangle_count(p.field, b, local);
}

__global__ void extract_fill_kernel(ExtractParams p) {
  const int64_t voxel = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (voxel >= p.num_blocks * tsdf::kBlockVoxels) return;
  const int64_t b = voxel / tsdf::kBlockVoxels;
  const int64_t local = voxel % tsdf::kBlockVoxels;
  if (p.edge_masks[voxel] != 0)
    write_voxel_vertices(p.field, p.grid, b, local, p.edge_masks[voxel], p.vertex_offsets[voxel], p.vertices,
                         p.vertex_colors);
  if (p.triangle_counts[voxel] > 0)
    write_cube_triangles(p.field, b, local, p.edge_masks, p.vertex_offsets, p.triangle_offsets[voxel], p.triangles);
}

}  // namespace

void extract_count_cuda(const ExtractParams& p, int device, std::uintptr_t stream) {
  if (p.num_blocks == 0) return;
  cuda::DeviceGuard guard(device);
  extract_count_kernel<<<cuda::blocks_for(p.num_blocks * tsdf::kBlockVoxels, kThreads), kThreads, 0,
                         cuda::as_stream(stream)>>>(p);
  cuda::check_launch("marching cubes extract_count_kernel");
}

void extract_fill_cuda(const ExtractParams& p, int device, std::uintptr_t stream) {
  tsdf::check_grid(p.grid);
  if (p.num_blocks == 0) return;
  cuda::DeviceGuard guard(device);
  extract_fill_kernel<<<cuda::blocks_for(p.num_blocks * tsdf::kBlockVoxels, kThreads), kThreads, 0,
                        cuda::as_stream(stream)>>>(p);
  cuda::check_launch("marching cubes extract_fill_kernel");
}

}  // namespace gsl::mc
