// CPU schedule of the k-nearest-neighbour search: the kd order built level by level
// (parallel over the nodes of a level), parallel_for over points for the gather and
// the leaves, level by level for the inner nodes, then over queries in tree order so
// that consecutive queries touch the same nodes and leaves.
#include "ops/knn/knn.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "core/knn.h"
#include "cpu/parallel.h"

namespace gsl::knn {

int64_t num_tree_nodes(int64_t num_points, int32_t leaf_size) {
  if (num_points < 1 || num_points >= kNoIndex) throw std::invalid_argument("knn: num_points out of range");
  if (leaf_size < 1) throw std::invalid_argument("knn: leaf_size must be >= 1");
  return tree_num_nodes(tree_shape(num_points, leaf_size));
}

void check_search_params(const SearchParams& p) {
  if (p.k < 1) throw std::invalid_argument("knn: k must be >= 1");
  const int64_t expected = num_tree_nodes(p.num_points, p.leaf_size);
  if (p.num_nodes != expected)
    throw std::invalid_argument("knn: nodes buffer has " + std::to_string(p.num_nodes) + " rows, expected " +
                                std::to_string(expected));
}

void morton_codes_cpu(const MortonParams& p, int num_threads) {
  const vec3 lo{p.bounds[0], p.bounds[1], p.bounds[2]};
  const vec3 hi{p.bounds[3], p.bounds[4], p.bounds[5]};
  cpu::parallel_for(p.num_points, num_threads, 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* q = p.points + 3 * i;
      p.codes[i] = morton_code({q[0], q[1], q[2]}, lo, hi);
    }
  });
}

namespace {

// One point during the kd build: 16 bytes in the caller's [N, 4] scratch buffer.
struct IndexedPoint {
  float x[3];
  int32_t index;
};
static_assert(sizeof(IndexedPoint) == 4 * sizeof(float), "IndexedPoint must fill one [N, 4] row");

// Splits node `node` (leaves [first, first + 2^height)) at its middle leaf boundary:
// the points of the left half are the ones smallest along the node's widest axis,
// ties by index, so the split is unique and the build deterministic.
void split_kd_node(IndexedPoint* points, const TreeShape& shape, int64_t node, int height) {
  const int64_t first_leaf = (node << height) - shape.num_leaf_slots;
  const int64_t begin = first_leaf * shape.leaf_size;
  const int64_t end = std::min(shape.num_points, (first_leaf + (int64_t{1} << height)) * shape.leaf_size);
  const int64_t middle = std::min(shape.num_points, (first_leaf + (int64_t{1} << (height - 1))) * shape.leaf_size);
  if (middle >= end) return;  // the right child is empty padding
  float lo[3] = {points[begin].x[0], points[begin].x[1], points[begin].x[2]};
  float hi[3] = {lo[0], lo[1], lo[2]};
  for (int64_t s = begin + 1; s < end; ++s) {
    for (int axis = 0; axis < 3; ++axis) {
      lo[axis] = std::min(lo[axis], points[s].x[axis]);
      hi[axis] = std::max(hi[axis], points[s].x[axis]);
    }
  }
  // Halved extents cannot overflow, whatever the coordinates.
  int widest = 0;
  for (int axis = 1; axis < 3; ++axis)
    if (0.5f * hi[axis] - 0.5f * lo[axis] > 0.5f * hi[widest] - 0.5f * lo[widest]) widest = axis;
  std::nth_element(points + begin, points + middle, points + end, [widest](const IndexedPoint& a, const IndexedPoint& b) {
    return a.x[widest] < b.x[widest] || (a.x[widest] == b.x[widest] && a.index < b.index);
  });
}

}  // namespace

void kd_order_cpu(const KdOrderParams& p, int num_threads) {
  num_tree_nodes(p.num_points, p.leaf_size);  // validates the sizes
  const TreeShape shape = tree_shape(p.num_points, p.leaf_size);
  IndexedPoint* points = reinterpret_cast<IndexedPoint*>(p.scratch);
  cpu::parallel_for(p.num_points, num_threads, 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      points[i] = {{p.points[3 * i], p.points[3 * i + 1], p.points[3 * i + 2]}, static_cast<int32_t>(i)};
  });
  // Level by level from the root: the nodes of one level own disjoint ranges.
  int height = 0;
  while ((int64_t{1} << height) < shape.num_leaf_slots) ++height;
  for (int64_t first = 1; first < shape.num_leaf_slots; first *= 2, --height) {
    cpu::parallel_for(first, num_threads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t node = first + begin; node < first + end; ++node) split_kd_node(points, shape, node, height);
    });
  }
  cpu::parallel_for(p.num_points, num_threads, 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) p.order[s] = points[s].index;
  });
}

void search_cpu(const SearchParams& p, int num_threads) {
  check_search_params(p);
  const TreeShape shape = tree_shape(p.num_points, p.leaf_size);
  Node* nodes = reinterpret_cast<Node*>(p.nodes);

  cpu::parallel_for(p.num_points, num_threads, 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) gather_sorted_point(p, s);
  });
  cpu::parallel_for(shape.num_leaf_slots, num_threads, 1 << 12, [&](int64_t begin, int64_t end) {
    for (int64_t leaf = begin; leaf < end; ++leaf)
      nodes[shape.num_leaf_slots + leaf] =
          leaf_node(shape, p.sorted_points, p.sorted_index, static_cast<int32_t>(leaf));
  });
  for (int64_t first = shape.num_leaf_slots / 2; first >= 1; first /= 2) {
    cpu::parallel_for(first, num_threads, 1 << 12, [&](int64_t begin, int64_t end) {
      for (int64_t node = first + begin; node < first + end; ++node)
        nodes[node] = merge_nodes(nodes[2 * node], nodes[2 * node + 1]);
    });
  }

  const int k = p.k;
  cpu::parallel_for(p.num_points, num_threads, 1 << 12, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      const int64_t row = p.sorted_index[s];
      float* best_d = p.sq_dists + row * k;
      int64_t* best_i = p.indices + row * k;
      query(shape, p.sorted_points, p.sorted_index, nodes, s, k, best_d, best_i);
      for (int slot = 0; slot < k; ++slot)
        if (best_i[slot] == kNoIndex) best_i[slot] = -1;
    }
  });
}

}  // namespace gsl::knn
