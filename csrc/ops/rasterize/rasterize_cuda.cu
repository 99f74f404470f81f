// CUDA schedule of the rasterizer: one thread per (camera, surfel) item or per surfel, one
// 16x16 block per tile with shared-memory batches of splats. The backward reduces each
// (tile, splat) pair's gradient over the block in a fixed order and writes it as the pair's
// own record: no atomics, so it is deterministic (decision 4). With item_records
// (deterministic=False) it adds the pair's sum to its item's record atomically instead: a
// record per (camera, surfel), not per pair, summed across tiles in no fixed order.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "cuda/cuda_utils.h"
#include "ops/rasterize/rasterize_impl.h"

namespace gsl::rasterize {

namespace {

constexpr int kBlock = kTileSize * kTileSize;
constexpr int kWarps = kBlock / 32;
constexpr int kItemThreads = 256;
// Up to this many channels a pixel accumulates its colour in registers (a kernel per channel
// count, so the channel loops unroll), beyond it in the output.
constexpr int kRegisterChannels = 4;
// Most splats the backward reduces per barrier (shared memory permitting).
constexpr size_t kMaxGroup = 32;
// Shared memory a block may use without opting in.
constexpr size_t kDefaultSharedLimit = 48 * 1024;

// The CUDA passes run one kTileSize x kTileSize block per tile.
// (And the call's semantics, which every pass takes.)
void check_cuda_tiles(const Dims& d) {
  semantics_of(d);
  if (d.tile_width != kTileSize)
    throw std::invalid_argument("rasterize: the CUDA backend needs tile_width " + std::to_string(kTileSize) + ", got " +
                                std::to_string(d.tile_width));
}

template <Semantics S>
__global__ void project_kernel(const ProjectArgs a, int64_t items) {
  const int64_t item = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (item >= items) return;
  const int64_t c = item / a.dims.num_surfels, n = item % a.dims.num_surfels;
  project_items<float, S>(a, camera_of(a, c), c, n, 1);
}

__global__ void emit_kernel(const EmitArgs a, int64_t items) {
  const int64_t item = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (item < items) emit_item(a, item / a.dims.num_surfels, item);
}

template <Semantics S>
__global__ void reduce_kernel(const ReduceArgs a, int64_t items) {
  const int64_t item = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (item < items) reduce_item<S>(a, item);
}

__global__ void project_backward_kernel(const ProjectBackwardArgs a) {
  const int64_t n = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (n < a.dims.num_surfels) project_backward_items<float>(a, n, 1);
}

struct TilePixel {
  int64_t camera;
  int x, y;
  bool inside;
};

__device__ TilePixel tile_pixel(const Dims& d, int64_t tile) {
  const int64_t per_camera = tiles_per_camera(d);
  const int64_t t = tile % per_camera;
  TilePixel p;
  p.camera = tile / per_camera;
  p.x = int(t % d.tiles_x) * kTileSize + int(threadIdx.x % kTileSize);
  p.y = int(t / d.tiles_x) * kTileSize + int(threadIdx.x / kTileSize);
  p.inside = p.x < d.width && p.y < d.height;
  return p;
}

__device__ void load_batch_entry(const PixelPassInputs& in, int64_t pair, Splat* splats, vec3* normals,
                                 int64_t* items, PixelRect* rects) {
  const int64_t item = in.pair_items[pair];
  splats[threadIdx.x] = load_splat(in, item);
  normals[threadIdx.x] = load_normal(in, item);
  items[threadIdx.x] = item;
  rects[threadIdx.x] = load_pixel_rect(in, item);
}

__device__ bool reaches(const PixelRect& r, int x, int y) { return x >= r.x0 && x < r.x1 && y >= r.y0 && y < r.y1; }

// A pixel's colour in K registers. Indexed only by unrolled loops: an array indexed at run
// time would live in local memory (the stack frame ptxas reports).
template <int K>
struct ColorRegisters {
  float value[K] = {};
  __device__ void add(int ch, float term) {
#pragma unroll
    for (int k = 0; k < K; ++k)
      if (k == ch) value[k] += term;
  }
  __device__ float operator()(int ch) const {
    float v = value[0];
#pragma unroll
    for (int k = 1; k < K; ++k) v = ch == k ? value[k] : v;
    return v;
  }
};
// Any number of channels, accumulated in the (zero-initialised) output itself.
struct ColorInOutput {
  float* value;
  int num_channels;
  __device__ void add(int ch, float term) { value[ch] += term; }
  __device__ float operator()(int ch) const { return value[ch]; }
};

// kChannels: D when it is at most kRegisterChannels (the colour stays in registers), else 0.
template <int kChannels, Semantics S>
__global__ void __launch_bounds__(kBlock) forward_kernel(const ForwardArgs a) {
  const Dims& d = a.dims;
  const int64_t tile = blockIdx.x;
  const TilePixel p = tile_pixel(d, tile);
  const int64_t begin = a.tile_starts[tile], end = a.tile_starts[tile + 1];
  const int D = d.num_channels;
  const int64_t pixel = (p.camera * d.height + p.y) * d.width + p.x;

  __shared__ Splat s_splats[kBlock];
  __shared__ vec3 s_normals[kBlock];
  __shared__ int64_t s_items[kBlock];
  __shared__ PixelRect s_rects[kBlock];

  const DepthRange range = depth_range(d.near_plane, d.far_plane);
  ForwardRegisters<float, std::conditional_t<(kChannels > 0), ColorRegisters<kChannels>, ColorInOutput>> state;
  PixelForward<float>& f = state.f;
  f.start(p.x + 0.5f, p.y + 0.5f);
  f.done = !p.inside;
  if constexpr (kChannels == 0) state.colors = {p.inside ? a.out_colors + pixel * D : nullptr, D};
  const int channels = kChannels > 0 ? kChannels : D;

  for (int64_t batch = begin; batch < end; batch += kBlock) {
    // Also the barrier that protects the shared batch from being overwritten too early.
    if (__syncthreads_count(f.done) == kBlock) break;
    if (batch + threadIdx.x < end) load_batch_entry(a, batch + threadIdx.x, s_splats, s_normals, s_items, s_rects);
    __syncthreads();
    const int count = int(min(int64_t(kBlock), end - batch));
    for (int j = 0; j < count && !f.done; ++j) {
      if (!reaches(s_rects[j], p.x, p.y)) continue;
      visit_splat<float, S>(state, s_splats[j], s_normals[j], a.colors + s_items[j] * D, channels, true,
                         splat_columns(s_splats[j], f.px), f.py, int32_t(batch - begin + j), range);
    }
  }
  if (p.inside) store_pixels(a, p.camera, pixel, f, state.colors);
}

__device__ float warp_sum(float value) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
  return value;
}

// One butterfly step: the lanes pair up across `offset`; the lower one keeps the first half of
// its N values, the upper one the second, each adding its partner's copy of the half it keeps.
template <int N>
__device__ void butterfly_step(float (&v)[16], bool upper, int offset) {
#pragma unroll
  for (int i = 0; i < N / 2; ++i) {
    const float received = __shfl_xor_sync(0xffffffffu, upper ? v[i] : v[i + N / 2], offset);
    v[i] = (upper ? v[i + N / 2] : v[i]) + received;
  }
}

// Sums 16 values over the warp in 16 shuffles instead of warp_sum's 80. Every lane ends with
// the total of value butterfly_index(lane), added in warp_sum's tree (bits 16, 8, 4, 2, 1 of
// the lane, each pair's two halves commuted at most), so the bits are warp_sum's.
__device__ float butterfly_sum(float (&v)[16], int lane) {
  butterfly_step<16>(v, lane & 16, 16);
  butterfly_step<8>(v, lane & 8, 8);
  butterfly_step<4>(v, lane & 4, 4);
  butterfly_step<2>(v, lane & 2, 2);
  return v[0] + __shfl_xor_sync(0xffffffffu, v[0], 1);
}

__device__ int butterfly_index(int lane) {
  return ((lane >> 4) & 1) * 8 + ((lane >> 3) & 1) * 4 + ((lane >> 2) & 1) * 2 + ((lane >> 1) & 1);
}

// The backward walks each tile's splats back to front in groups of up to `group`: per splat,
// each warp sums its pixels' gradients into its own partial record in shared memory; after a
// group, one barrier, and the block adds each record's warp partials in warp order (the order
// the pair's record is written in does not depend on the group size).
template <Semantics S>
__global__ void __launch_bounds__(kBlock) backward_kernel(const BackwardArgs a, int group) {
  constexpr int kColor = kPairGradColorOf<S>;
  const Dims& d = a.dims;
  const int64_t tile = blockIdx.x;
  const int64_t begin = a.tile_starts[tile], end = a.tile_starts[tile + 1];
  if (end == begin) return;
  const TilePixel p = tile_pixel(d, tile);
  const int D = d.num_channels;
  const int width = kColor + D;
  const int64_t pixel = (p.camera * d.height + p.y) * d.width + p.x;

  __shared__ Splat s_splats[kBlock];
  __shared__ vec3 s_normals[kBlock];
  __shared__ int64_t s_items[kBlock];
  __shared__ PixelRect s_rects[kBlock];
  __shared__ int32_t s_max_last;
  extern __shared__ float s_partials[];  // [group, kWarps, width], then [group, kWarps] hit flags
  int* s_warp_hits = reinterpret_cast<int*>(s_partials + group * kWarps * width);

  const DepthRange range = depth_range(d.near_plane, d.far_plane);
  PixelBackward<float> b;
  int32_t last = 0, visited = 0;
  if (p.inside) {
    b = load_pixels_backward(a, p.camera, pixel, p.x + 0.5f, p.y + 0.5f);
    last = b.last;
  }
  const float* v_color = a.v_out_colors + pixel * D;
  const auto v_color_of = [v_color](int ch) { return v_color[ch]; };
  if (threadIdx.x == 0) s_max_last = 0;
  __syncthreads();
  atomicMax(&s_max_last, last);
  __syncthreads();

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  // This lane's butterfly total: record slot 0 to 15. In gsplat_lib semantics those are the 15
  // geometry values and colour channel 0 (slot kPairGradColor, which exists only when there are
  // colour channels); in upstream semantics 16 of its 17 geometry values. The other slots are
  // summed one at a time (warp_sum).
  static_assert(kPairGradColor == 15 && kPairGradColorUpstream == 17, "the butterfly sums record slots 0 to 15");
  constexpr int kButterfly = 16;
  const int my_slot = butterfly_index(lane);
  const bool my_slot_exists = my_slot < width;
  for (int64_t batch_end = begin + s_max_last; batch_end > begin; batch_end -= kBlock) {
    const int64_t batch_begin = max(begin, batch_end - kBlock);
    const int count = int(batch_end - batch_begin);
    __syncthreads();
    if (threadIdx.x < count) load_batch_entry(a, batch_begin + threadIdx.x, s_splats, s_normals, s_items, s_rects);
    __syncthreads();
    for (int top = count - 1; top >= 0; top -= group) {
      const int members = min(group, top + 1);
      for (int m = 0; m < members; ++m) {
        const int j = top - m;
        const int32_t index = int32_t(batch_begin + j - begin);
        float g[kColor > kButterfly ? kColor : kButterfly];
        bool hit = false;
        if (p.inside && index < last && reaches(s_rects[j], p.x, p.y)) {
          ++visited;
          Hit<float> h;
          hit = eval_hit<S>(s_splats[j], b.px, b.py, d.near_plane, h);
          if (hit)
            b.template backprop<S>(s_splats[j], h, true, s_normals[j], a.colors + s_items[j] * D, D, v_color_of,
                                   index, range, g);
        }
        const bool warp_hit = __any_sync(0xffffffffu, hit);
        if (lane == 0) s_warp_hits[m * kWarps + warp] = warp_hit;
        if (!warp_hit) continue;
        // Record slots: the geometry values g (indexed only in unrolled loops, so g stays in
        // registers), then the colour channels.
        const auto color_slot = [&](int ch) { return hit ? color_grad_term(b.weight, v_color[ch]) : 0.f; };
        float butterfly[kButterfly];
#pragma unroll
        for (int k = 0; k < kButterfly; ++k)
          butterfly[k] = k < kColor ? (hit ? g[k] : 0.f) : (k - kColor < D ? color_slot(k - kColor) : 0.f);
        float* partial = s_partials + (m * kWarps + warp) * width;
        const float total = butterfly_sum(butterfly, lane);
        if ((lane & 1) == 0 && my_slot_exists) partial[my_slot] = total;
#pragma unroll
        for (int k = kButterfly; k < kColor; ++k) {
          const float value = warp_sum(hit ? g[k] : 0.f);
          if (lane == 0) partial[k] = value;
        }
        for (int ch = kColor < kButterfly ? kButterfly - kColor : 0; ch < D; ++ch) {
          const float value = warp_sum(color_slot(ch));
          if (lane == 0) partial[kColor + ch] = value;
        }
      }
      __syncthreads();
      // The block adds the warps' partials of the group's records in warp order.
      for (int slot = threadIdx.x; slot < members * width; slot += kBlock) {
        const int m = slot / width, k = slot - m * width;
        float total = 0.f;
        bool any_hit = false;
        for (int w = 0; w < kWarps; ++w) {
          if (!s_warp_hits[m * kWarps + w]) continue;
          total += s_partials[(m * kWarps + w) * width + k];
          any_hit = true;
        }
        if (!any_hit) continue;
        const int j = top - m;
        float* record = a.pair_grads + (a.dims.item_records ? s_items[j] : a.pair_emit_index[batch_begin + j]) * width;
        if (a.dims.item_records)
          atomicAdd(record + k, total);
        else
          record[k] = total;
      }
      __syncthreads();
    }
  }
  if (p.inside) a.backward_pairs[pixel] = visited;
}

}  // namespace

void project_cuda(const ProjectArgs& a, int device, std::uintptr_t stream) {
  check_cuda_tiles(a.dims);
  const int64_t items = a.dims.num_cameras * a.dims.num_surfels;
  if (items == 0) return;
  if (a.tile_counts == nullptr || a.pair_ends != nullptr)
    throw std::invalid_argument("rasterize: the CUDA projection writes tile_counts (torch.cumsum sums them), not pair_ends");
  cuda::DeviceGuard guard(device);
  with_semantics(a.dims, [&](auto semantics) {
    project_kernel<decltype(semantics)::value>
        <<<cuda::blocks_for(items, kItemThreads), kItemThreads, 0, cuda::as_stream(stream)>>>(a, items);
  });
  cuda::check_launch("rasterize project_kernel");
}

void emit_pairs_cuda(const EmitArgs& a, int device, std::uintptr_t stream) {
  check_cuda_tiles(a.dims);
  const int64_t items = a.dims.num_cameras * a.dims.num_surfels;
  if (items == 0) return;
  cuda::DeviceGuard guard(device);
  emit_kernel<<<cuda::blocks_for(items, kItemThreads), kItemThreads, 0, cuda::as_stream(stream)>>>(a, items);
  cuda::check_launch("rasterize emit_kernel");
}

void forward_cuda(const ForwardArgs& a, int device, std::uintptr_t stream) {
  check_cuda_tiles(a.dims);
  const int64_t tiles = a.dims.num_cameras * tiles_per_camera(a.dims);
  if (tiles == 0) return;
  cuda::DeviceGuard guard(device);
  const auto launch = [&](auto kernel) {
    kernel<<<static_cast<unsigned int>(tiles), kBlock, 0, cuda::as_stream(stream)>>>(a);
  };
  static_assert(kRegisterChannels == 4, "one case per register channel count");
  with_semantics(a.dims, [&](auto semantics) {
    constexpr Semantics S = decltype(semantics)::value;
    switch (a.dims.num_channels) {
      case 1: launch(forward_kernel<1, S>); break;
      case 2: launch(forward_kernel<2, S>); break;
      case 3: launch(forward_kernel<3, S>); break;
      case 4: launch(forward_kernel<4, S>); break;
      default: launch(forward_kernel<0, S>); break;
    }
  });
  cuda::check_launch("rasterize forward_kernel");
}

namespace {

// The backward of one semantics on a tile grid of `tiles` blocks.
template <Semantics S>
void launch_backward(const BackwardArgs& a, int64_t tiles, int device, std::uintptr_t stream) {
  // Static shared memory (a batch of splats) as the compiler laid it out, read once, plus per
  // member of a group each warp's partial record (kPairGradColorOf<S> + D floats) and hit flag.
  // Groups fill what a block may use without opting in; many channels need the GPU's opt-in
  // maximum, which is read only then; when not even one member fits, an error names num_channels.
  static const size_t static_bytes = [] {
    cudaFuncAttributes attributes;
    cuda::check(cudaFuncGetAttributes(&attributes, backward_kernel<S>), "cudaFuncGetAttributes(backward_kernel)");
    return attributes.sharedSizeBytes;
  }();
  const int D = a.dims.num_channels;
  const size_t per_channel = sizeof(float) * kWarps;
  const size_t per_member = per_channel * (pair_grad_width(D, S) + 1);
  size_t limit = kDefaultSharedLimit;
  if (static_bytes + per_member > limit) {
    int optin_limit = 0;
    cuda::check(cudaDeviceGetAttribute(&optin_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
                "cudaDeviceGetAttribute(MaxSharedMemoryPerBlockOptin)");
    limit = static_cast<size_t>(optin_limit);
    if (static_bytes + per_member > limit) {
      const int64_t max_channels =
          (static_cast<int64_t>(limit) - static_cast<int64_t>(static_bytes)) / static_cast<int64_t>(per_channel) -
          kPairGradColorOf<S> - 1;
      throw std::invalid_argument("rasterize: the CUDA backward takes at most " + std::to_string(max_channels) +
                                  " colour channels on this GPU (shared memory per block), got num_channels " +
                                  std::to_string(D));
    }
  }
  const int group = static_cast<int>(std::min<size_t>(kMaxGroup, (limit - static_bytes) / per_member));
  const size_t dynamic_bytes = per_member * group;
  if (static_bytes + dynamic_bytes > kDefaultSharedLimit)
    cuda::check(cudaFuncSetAttribute(backward_kernel<S>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(dynamic_bytes)),
                "cudaFuncSetAttribute(backward_kernel)");
  backward_kernel<S><<<static_cast<unsigned int>(tiles), kBlock, dynamic_bytes, cuda::as_stream(stream)>>>(a, group);
  cuda::check_launch("rasterize backward_kernel");
}

}  // namespace

void backward_cuda(const BackwardArgs& a, int device, std::uintptr_t stream) {
  check_cuda_tiles(a.dims);
  const int64_t tiles = a.dims.num_cameras * tiles_per_camera(a.dims);
  if (tiles == 0) return;
  cuda::DeviceGuard guard(device);
  with_semantics(a.dims,
                 [&](auto semantics) { launch_backward<decltype(semantics)::value>(a, tiles, device, stream); });
}

void reduce_cuda(const ReduceArgs& a, int device, std::uintptr_t stream) {
  const int64_t items = a.dims.num_cameras * a.dims.num_surfels;
  if (items == 0) return;
  cuda::DeviceGuard guard(device);
  with_semantics(a.dims, [&](auto semantics) {
    constexpr Semantics S = decltype(semantics)::value;
    if (S == Semantics::kUpstream && a.center_grad == nullptr)
      throw std::invalid_argument("rasterize reduce: center_grad is required in upstream semantics");
    reduce_kernel<S><<<cuda::blocks_for(items, kItemThreads), kItemThreads, 0, cuda::as_stream(stream)>>>(a, items);
  });
  cuda::check_launch("rasterize reduce_kernel");
}

void project_backward_cuda(const ProjectBackwardArgs& a, int device, std::uintptr_t stream) {
  if (a.dims.num_surfels == 0) return;
  cuda::DeviceGuard guard(device);
  project_backward_kernel<<<cuda::blocks_for(a.dims.num_surfels, kItemThreads), kItemThreads, 0,
                            cuda::as_stream(stream)>>>(a);
  cuda::check_launch("rasterize project_backward_kernel");
}

}  // namespace gsl::rasterize
