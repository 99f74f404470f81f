// Exact k-nearest-neighbour search (csrc/core/knn.h holds the math and the algorithm).
// Pointers and sizes only; the Python layer (gsplat_lib/ops/knn.py) checks the input,
// orders the points (kd order on the CPU, Morton codes sorted by torch on the GPU) and
// allocates every buffer.
#pragma once

#include <cstdint>

#include "core/common.h"

namespace gsl::knn {

struct MortonParams {
  const float* points = nullptr;  // [N, 3]
  const float* bounds = nullptr;  // [2, 3]: per-axis minimum, then maximum, of points
  int64_t* codes = nullptr;       // [N] out: 63-bit Morton codes
  int64_t num_points = 0;         // N
};

// The CPU's order: a kd-tree by median splits on the tree's own leaf boundaries, which
// gives tighter boxes than the Morton order (3x fewer nodes visited) at the cost of a
// build that is cheap on the CPU but awkward on the GPU.
struct KdOrderParams {
  const float* points = nullptr;   // [N, 3], finite
  int64_t num_points = 0;          // N, below 2^31 - 1
  int32_t leaf_size = 0;           // the leaf_size later given to the search
  float* scratch = nullptr;        // [N, 4] scratch (may be the search's sorted_points)
  int64_t* order = nullptr;        // [N] out: a permutation of [0, N)
};

struct SearchParams {
  const float* points = nullptr;   // [N, 3], finite
  const int64_t* order = nullptr;  // [N]: a permutation of [0, N), the points in kd or Morton order
  int64_t num_points = 0;          // N, below 2^31 - 1
  int32_t k = 0;                   // neighbours per point, >= 1
  int32_t leaf_size = 0;           // points per tree leaf, >= 1
  int64_t num_nodes = 0;           // rows of `nodes`: num_tree_nodes(N, leaf_size)
  float* sorted_points = nullptr;  // [N, 4] scratch: points in `order`, padded for aligned loads
  int32_t* sorted_index = nullptr; // [N] scratch: order as int32
  int32_t* nodes = nullptr;        // [num_nodes, 8] scratch: the tree (knn::Node, 32 bytes each)
  int64_t* indices = nullptr;      // [N, k] out: neighbour indices, -1 where fewer than k exist
  float* sq_dists = nullptr;       // [N, k] out: squared distances, +inf where fewer than k exist
};

// Copies the point at sorted position s into the padded, ordered scratch arrays.
GSL_HD void gather_sorted_point(const SearchParams& p, int64_t s) {
  const int64_t source = p.order[s];
  const float* q = p.points + 3 * source;
  float* out = p.sorted_points + 4 * s;
  out[0] = q[0];
  out[1] = q[1];
  out[2] = q[2];
  out[3] = 0.0f;
  p.sorted_index[s] = static_cast<int32_t>(source);
}

// Rows of the [num_nodes, 8] int32 tree buffer for num_points >= 1 points in leaves of leaf_size.
int64_t num_tree_nodes(int64_t num_points, int32_t leaf_size);

// Throws std::invalid_argument when the sizes disagree (a bug in the caller, never user input).
void check_search_params(const SearchParams& params);

void morton_codes_cpu(const MortonParams& params, int num_threads);
void kd_order_cpu(const KdOrderParams& params, int num_threads);
void search_cpu(const SearchParams& params, int num_threads);

#if GSPLAT_LIB_WITH_CUDA
void morton_codes_cuda(const MortonParams& params, int device, std::uintptr_t stream);
void search_cuda(const SearchParams& params, int device, std::uintptr_t stream);
#endif

}  // namespace gsl::knn
