// Exact k-nearest-neighbour search, shared by the CPU and CUDA backends (decision 2).
//
// The points are laid out in a spatially coherent order and cut into leaves of
// `leaf_size` consecutive points; a complete binary tree over the leaves (heap
// layout: root 1, children 2n and 2n+1, leaf l at node num_leaf_slots + l) stores
// a bounding box per node. Each query scans its own leaf, then walks the tree
// nearest child first and skips every node that cannot hold a better neighbour.
// Because the tree is balanced by point count, not by space, it adapts to
// clustered data. The order only decides how tight the boxes are, never the
// result: the CPU uses kd-tree median splits on the leaf boundaries (tightest),
// the GPU a Morton (Z-order) sort (one device sort, about 3x more boxes tested).
//
// Exactness: neighbours are ranked by (squared distance, index), a total order,
// so the result is unique whatever the traversal or thread schedule. A node is
// skipped only when no point in it can precede the current k-th neighbour in
// that order: its box distance is a lower bound of every point's distance even
// after float rounding (rounding is monotone and both are computed with the
// same operations in the same order), and its smallest index bounds the ties.
// The smallest index also makes runs of duplicate points cheap: they sort by
// index inside equal Morton codes, so nodes of later duplicates are skipped.
#pragma once

#include <limits>

#include "core/common.h"
#include "core/lanes.h"

namespace gsl::knn {

// Every real index is below this (inputs are limited to fewer points), so it
// marks an empty top-k slot and an empty tree node, and loses every tie.
constexpr int32_t kNoIndex = 0x7fffffff;

// Bits per axis of the Morton code: 3 x 21 = 63 bits, a non-negative int64.
constexpr int kMortonBits = 21;

// The tree never gets deeper than 2^31 leaves, so its stack never holds more.
constexpr int kStackCapacity = 64;

GSL_HD float infinity() {
#if defined(__CUDA_ARCH__)
  return __int_as_float(0x7f800000);
#else
  return std::numeric_limits<float>::infinity();
#endif
}

// Distances use mul_rn / add_rn (core/common.h) so they round exactly like the
// brute-force reference, on the host and on the device.
// ((a.x - b.x)^2 + (a.y - b.y)^2) + (a.z - b.z)^2, each step rounded to float32.
GSL_HD float squared_distance(vec3 a, vec3 b) {
  const float dx = a.x - b.x;
  const float dy = a.y - b.y;
  const float dz = a.z - b.z;
  return add_rn(add_rn(mul_rn(dx, dx), mul_rn(dy, dy)), mul_rn(dz, dz));
}

// Gap from q to the interval [lo, hi] along one axis, never above |q - p| for a
// p inside it: lo <= p implies fl(lo - q) <= fl(p - q) because rounding is monotone.
GSL_HD float axis_gap(float q, float lo, float hi) {
  if (q < lo) return lo - q;
  if (q > hi) return q - hi;
  return 0.0f;
}

// Lower bound of squared_distance(q, p) over every p in the box [lo, hi].
GSL_HD float box_squared_distance(vec3 q, vec3 lo, vec3 hi) {
  const float gx = axis_gap(q.x, lo.x, hi.x);
  const float gy = axis_gap(q.y, lo.y, hi.y);
  const float gz = axis_gap(q.z, lo.z, hi.z);
  return add_rn(add_rn(mul_rn(gx, gx), mul_rn(gy, gy)), mul_rn(gz, gz));
}

// Spreads the low 21 bits of v so that bit i lands on bit 3i.
GSL_HD uint64_t spread_bits_3(uint64_t v) {
  v &= 0x1fffffull;
  v = (v | (v << 32)) & 0x1f00000000ffffull;
  v = (v | (v << 16)) & 0x1f0000ff0000ffull;
  v = (v | (v << 8)) & 0x100f00f00f00f00full;
  v = (v | (v << 4)) & 0x10c30c30c30c30c3ull;
  v = (v | (v << 2)) & 0x1249249249249249ull;
  return v;
}

// Cell of x among 2^21 along [lo, hi]. Halved first so that hi - lo cannot
// overflow for coordinates near the float limit; a flat axis maps to cell 0.
GSL_HD uint64_t morton_cell(float x, float lo, float hi) {
  const float extent = 0.5f * hi - 0.5f * lo;
  if (!(extent > 0.0f)) return 0;
  const float t = (0.5f * x - 0.5f * lo) / extent * static_cast<float>(1 << kMortonBits);
  const float last = static_cast<float>((1 << kMortonBits) - 1);
  return static_cast<uint64_t>(fmin_lanes(fmax_lanes(t, 0.0f), last));
}

// 63-bit Morton code of p inside the bounding box [lo, hi] of all points.
GSL_HD int64_t morton_code(vec3 p, vec3 lo, vec3 hi) {
  const uint64_t code = (spread_bits_3(morton_cell(p.x, lo.x, hi.x)) << 2) |
                        (spread_bits_3(morton_cell(p.y, lo.y, hi.y)) << 1) |
                        spread_bits_3(morton_cell(p.z, lo.z, hi.z));
  return static_cast<int64_t>(code);
}

// True when neighbour (d_a, i_a) ranks before (d_b, i_b): nearer, or as near with a lower index.
GSL_HD bool ranks_before(float d_a, int64_t i_a, float d_b, int64_t i_b) {
  return d_a < d_b || (d_a == d_b && i_a < i_b);
}

// Bounding box of a run of sorted points plus the smallest original index in it.
// 32 bytes; an empty node has lo = +inf, hi = -inf and min_index = kNoIndex.
struct Node {
  float lo[3];
  float hi[3];
  int32_t min_index;
  int32_t unused;
};

GSL_HD Node empty_node() {
  const float inf = infinity();
  return {{inf, inf, inf}, {-inf, -inf, -inf}, kNoIndex, 0};
}

GSL_HD void grow_node(Node& node, vec3 p, int32_t index) {
  node.lo[0] = fmin_lanes(node.lo[0], p.x);
  node.lo[1] = fmin_lanes(node.lo[1], p.y);
  node.lo[2] = fmin_lanes(node.lo[2], p.z);
  node.hi[0] = fmax_lanes(node.hi[0], p.x);
  node.hi[1] = fmax_lanes(node.hi[1], p.y);
  node.hi[2] = fmax_lanes(node.hi[2], p.z);
  node.min_index = node.min_index < index ? node.min_index : index;
}

GSL_HD Node merge_nodes(const Node& a, const Node& b) {
  Node m;
  for (int axis = 0; axis < 3; ++axis) {
    m.lo[axis] = fmin_lanes(a.lo[axis], b.lo[axis]);
    m.hi[axis] = fmax_lanes(a.hi[axis], b.hi[axis]);
  }
  m.min_index = a.min_index < b.min_index ? a.min_index : b.min_index;
  m.unused = 0;
  return m;
}

GSL_HD float node_squared_distance(const Node& node, vec3 q) {
  return box_squared_distance(q, {node.lo[0], node.lo[1], node.lo[2]}, {node.hi[0], node.hi[1], node.hi[2]});
}

// Layout of the tree for n points: leaves of leaf_size points, padded to a power of two.
struct TreeShape {
  int64_t num_points;
  int32_t leaf_size;
  int32_t num_leaves;       // ceil(num_points / leaf_size)
  int32_t num_leaf_slots;   // smallest power of two >= num_leaves; leaf l is node num_leaf_slots + l
};

GSL_HD TreeShape tree_shape(int64_t num_points, int32_t leaf_size) {
  TreeShape shape{num_points, leaf_size, static_cast<int32_t>((num_points + leaf_size - 1) / leaf_size), 1};
  while (shape.num_leaf_slots < shape.num_leaves) shape.num_leaf_slots *= 2;
  return shape;
}

// Nodes to allocate (index 0 is unused so that children of n are 2n and 2n+1).
GSL_HD int64_t tree_num_nodes(const TreeShape& shape) { return 2 * static_cast<int64_t>(shape.num_leaf_slots); }

GSL_HD vec3 sorted_point(const float* sorted_points, int64_t position) {
  const float* p = sorted_points + 4 * position;
  return {p[0], p[1], p[2]};
}

// Box of leaf `leaf` (empty past the last leaf): the sorted points
// [leaf * leaf_size, min(n, (leaf + 1) * leaf_size)).
GSL_HD Node leaf_node(const TreeShape& shape, const float* sorted_points, const int32_t* sorted_index, int32_t leaf) {
  Node node = empty_node();
  if (leaf >= shape.num_leaves) return node;
  const int64_t begin = static_cast<int64_t>(leaf) * shape.leaf_size;
  const int64_t end = begin + shape.leaf_size < shape.num_points ? begin + shape.leaf_size : shape.num_points;
  for (int64_t s = begin; s < end; ++s) grow_node(node, sorted_point(sorted_points, s), sorted_index[s]);
  return node;
}

// Inserts neighbour (d, j) into the ascending list best_d/best_i of length k if it
// ranks before the last entry. Index is int32_t or int64_t (the caller's storage).
template <class Index>
GSL_HD void insert_neighbour(float* best_d, Index* best_i, int k, float d, int32_t j) {
  if (!ranks_before(d, j, best_d[k - 1], best_i[k - 1])) return;
  int slot = k - 1;
  while (slot > 0 && ranks_before(d, j, best_d[slot - 1], best_i[slot - 1])) {
    best_d[slot] = best_d[slot - 1];
    best_i[slot] = best_i[slot - 1];
    --slot;
  }
  best_d[slot] = d;
  best_i[slot] = j;
}

template <class Index>
GSL_HD void scan_leaf(const TreeShape& shape, const float* sorted_points, const int32_t* sorted_index, int32_t leaf,
                      vec3 q, int32_t self, int k, float* best_d, Index* best_i) {
  const int64_t begin = static_cast<int64_t>(leaf) * shape.leaf_size;
  const int64_t end = begin + shape.leaf_size < shape.num_points ? begin + shape.leaf_size : shape.num_points;
  for (int64_t s = begin; s < end; ++s) {
    const int32_t j = sorted_index[s];
    if (j == self) continue;
    insert_neighbour(best_d, best_i, k, squared_distance(q, sorted_point(sorted_points, s)), j);
  }
}

// A node may hold a neighbour ranking before the current k-th one only if its
// (box distance, smallest index) does: every point in it is at least that far
// and, at equal distance, has at least that index.
template <class Index>
GSL_HD bool node_may_improve(float box_d, int32_t min_index, const float* best_d, const Index* best_i, int k) {
  return min_index != kNoIndex && ranks_before(box_d, min_index, best_d[k - 1], best_i[k - 1]);
}

// The k nearest other points of the point at sorted position `position`, into
// best_d/best_i (length k, ascending by (distance, index)); slots with no
// neighbour keep d = +inf and index kNoIndex. Exact (see the top of this file).
template <class Index>
GSL_HD void query(const TreeShape& shape, const float* sorted_points, const int32_t* sorted_index, const Node* nodes,
                  int64_t position, int k, float* best_d, Index* best_i) {
  for (int slot = 0; slot < k; ++slot) {
    best_d[slot] = infinity();
    best_i[slot] = kNoIndex;
  }
  const vec3 q = sorted_point(sorted_points, position);
  const int32_t self = sorted_index[position];
  // Seeding with the points next to q on the curve makes the first bound tight.
  const int32_t own_leaf = static_cast<int32_t>(position / shape.leaf_size);
  scan_leaf(shape, sorted_points, sorted_index, own_leaf, q, self, k, best_d, best_i);

  int32_t stack_node[kStackCapacity];
  float stack_d[kStackCapacity];
  int top = 0;
  stack_node[top] = 1;
  stack_d[top] = node_squared_distance(nodes[1], q);
  ++top;
  while (top > 0) {
    --top;
    const int32_t node = stack_node[top];
    // Re-checked on pop: the k-th distance may have shrunk since the push.
    if (!node_may_improve(stack_d[top], nodes[node].min_index, best_d, best_i, k)) continue;
    if (node >= shape.num_leaf_slots) {
      const int32_t leaf = node - shape.num_leaf_slots;
      if (leaf != own_leaf) scan_leaf(shape, sorted_points, sorted_index, leaf, q, self, k, best_d, best_i);
      continue;
    }
    const int32_t left = 2 * node;
    const int32_t right = left + 1;
    const float left_d = node_squared_distance(nodes[left], q);
    const float right_d = node_squared_distance(nodes[right], q);
    const bool left_first = left_d <= right_d;
    const int32_t near_child = left_first ? left : right;
    const int32_t far_child = left_first ? right : left;
    const float near_d = left_first ? left_d : right_d;
    const float far_d = left_first ? right_d : left_d;
    // Far child pushed first so the near one is explored first.
    if (node_may_improve(far_d, nodes[far_child].min_index, best_d, best_i, k)) {
      stack_node[top] = far_child;
      stack_d[top] = far_d;
      ++top;
    }
    if (node_may_improve(near_d, nodes[near_child].min_index, best_d, best_i, k)) {
      stack_node[top] = near_child;
      stack_d[top] = near_d;
      ++top;
    }
  }
}

}  // namespace gsl::knn
