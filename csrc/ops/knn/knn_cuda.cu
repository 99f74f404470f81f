// CUDA schedule of the k-nearest-neighbour search: one thread per point for the codes
// and the gather, one per leaf, one launch per tree level, then one thread per query
// in Morton order, so that a warp holds neighbouring queries that walk the same nodes.
// The math and the traversal are csrc/core/knn.h, the same code the CPU runs.
#include "core/knn.h"
#include "cuda/cuda_utils.h"
#include "ops/knn/knn.h"

namespace gsl::knn {
namespace {

constexpr int kThreads = 256;

// Up to this many neighbours the top-k list lives in the thread's local memory
// with int32 indices; above it the thread works in its output row directly.
constexpr int kLocalCapacity = 16;

__global__ void morton_codes_kernel(MortonParams p) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.num_points) return;
  const vec3 lo{p.bounds[0], p.bounds[1], p.bounds[2]};
  const vec3 hi{p.bounds[3], p.bounds[4], p.bounds[5]};
  const float* q = p.points + 3 * i;
  p.codes[i] = morton_code({q[0], q[1], q[2]}, lo, hi);
}

__global__ void gather_kernel(SearchParams p) {
  const int64_t s = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s < p.num_points) gather_sorted_point(p, s);
}

__global__ void leaf_nodes_kernel(TreeShape shape, const float* sorted_points, const int32_t* sorted_index,
                                  Node* nodes) {
  const int64_t leaf = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (leaf >= shape.num_leaf_slots) return;
  nodes[shape.num_leaf_slots + leaf] = leaf_node(shape, sorted_points, sorted_index, static_cast<int32_t>(leaf));
}

// Nodes [first, 2 * first): one tree level, from the level below.
__global__ void inner_nodes_kernel(int64_t first, Node* nodes) {
  const int64_t node = first + static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (node >= 2 * first) return;
  nodes[node] = merge_nodes(nodes[2 * node], nodes[2 * node + 1]);
}

template <int Capacity>
__global__ void query_kernel(SearchParams p, TreeShape shape, const Node* __restrict__ nodes) {
  const int64_t s = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s >= p.num_points) return;
  const int k = p.k;
  const int64_t row = p.sorted_index[s];
  float* out_d = p.sq_dists + row * k;
  int64_t* out_i = p.indices + row * k;
  if constexpr (Capacity > 0) {
    float best_d[Capacity];
    int32_t best_i[Capacity];
    query(shape, p.sorted_points, p.sorted_index, nodes, s, k, best_d, best_i);
    for (int slot = 0; slot < k; ++slot) {
      out_d[slot] = best_d[slot];
      out_i[slot] = best_i[slot] == kNoIndex ? -1 : best_i[slot];
    }
  } else {
    query(shape, p.sorted_points, p.sorted_index, nodes, s, k, out_d, out_i);
    for (int slot = 0; slot < k; ++slot)
      if (out_i[slot] == kNoIndex) out_i[slot] = -1;
  }
}

}  // namespace

void morton_codes_cuda(const MortonParams& p, int device, std::uintptr_t stream) {
  if (p.num_points <= 0) return;
  cuda::DeviceGuard guard(device);
  morton_codes_kernel<<<cuda::blocks_for(p.num_points, kThreads), kThreads, 0, cuda::as_stream(stream)>>>(p);
  cuda::check_launch("knn morton_codes_kernel");
}

void search_cuda(const SearchParams& p, int device, std::uintptr_t stream) {
  check_search_params(p);
  cuda::DeviceGuard guard(device);
  const cudaStream_t s = cuda::as_stream(stream);
  const TreeShape shape = tree_shape(p.num_points, p.leaf_size);
  Node* nodes = reinterpret_cast<Node*>(p.nodes);

  gather_kernel<<<cuda::blocks_for(p.num_points, kThreads), kThreads, 0, s>>>(p);
  cuda::check_launch("knn gather_kernel");
  leaf_nodes_kernel<<<cuda::blocks_for(shape.num_leaf_slots, kThreads), kThreads, 0, s>>>(
      shape, p.sorted_points, p.sorted_index, nodes);
  cuda::check_launch("knn leaf_nodes_kernel");
  for (int64_t first = shape.num_leaf_slots / 2; first >= 1; first /= 2) {
    inner_nodes_kernel<<<cuda::blocks_for(first, kThreads), kThreads, 0, s>>>(first, nodes);
    cuda::check_launch("knn inner_nodes_kernel");
  }

  const unsigned int blocks = cuda::blocks_for(p.num_points, kThreads);
  if (p.k <= kLocalCapacity) {
    query_kernel<kLocalCapacity><<<blocks, kThreads, 0, s>>>(p, shape, nodes);
  } else {
    query_kernel<0><<<blocks, kThreads, 0, s>>>(p, shape, nodes);
  }
  cuda::check_launch("knn query_kernel");
}

}  // namespace gsl::knn
