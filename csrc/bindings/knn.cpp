// Python bindings of the k-nearest-neighbour search (csrc/ops/knn). Addresses are integers
// from tensor.data_ptr(); gsplat_lib/ops/knn.py checks the input and allocates every buffer.
#include "bindings/bindings.h"
#include "ops/knn/knn.h"

namespace py = pybind11;

namespace gsl::bindings {
namespace {

knn::MortonParams morton_params(std::uintptr_t points, std::uintptr_t bounds, int64_t num_points,
                                std::uintptr_t codes) {
  knn::MortonParams p;
  p.points = ptr<const float>(points);
  p.bounds = ptr<const float>(bounds);
  p.codes = ptr<int64_t>(codes);
  p.num_points = num_points;
  return p;
}

knn::SearchParams search_params(std::uintptr_t points, std::uintptr_t order, int64_t num_points, int32_t k,
                                int32_t leaf_size, int64_t num_nodes, std::uintptr_t sorted_points,
                                std::uintptr_t sorted_index, std::uintptr_t nodes, std::uintptr_t indices,
                                std::uintptr_t sq_dists) {
  knn::SearchParams p;
  p.points = ptr<const float>(points);
  p.order = ptr<const int64_t>(order);
  p.num_points = num_points;
  p.k = k;
  p.leaf_size = leaf_size;
  p.num_nodes = num_nodes;
  p.sorted_points = ptr<float>(sorted_points);
  p.sorted_index = ptr<int32_t>(sorted_index);
  p.nodes = ptr<int32_t>(nodes);
  p.indices = ptr<int64_t>(indices);
  p.sq_dists = ptr<float>(sq_dists);
  knn::check_search_params(p);
  return p;
}

}  // namespace

void bind_knn(py::module_& m) {
  m.def("knn_num_tree_nodes", &knn::num_tree_nodes,
        "Rows of the [num_nodes, 8] int32 tree buffer that knn_search needs for N points");
  m.def(
      "knn_morton_codes_cpu",
      [](std::uintptr_t points, std::uintptr_t bounds, int64_t num_points, std::uintptr_t codes, int num_threads) {
        const auto p = morton_params(points, bounds, num_points, codes);
        py::gil_scoped_release release;
        knn::morton_codes_cpu(p, num_threads);
      },
      "codes[i] = 63-bit Morton code of points[i] inside bounds [2, 3]");
  m.def(
      "knn_kd_order_cpu",
      [](std::uintptr_t points, int64_t num_points, int32_t leaf_size, std::uintptr_t scratch, std::uintptr_t order,
         int num_threads) {
        knn::KdOrderParams p;
        p.points = ptr<const float>(points);
        p.num_points = num_points;
        p.leaf_size = leaf_size;
        p.scratch = ptr<float>(scratch);
        p.order = ptr<int64_t>(order);
        py::gil_scoped_release release;
        knn::kd_order_cpu(p, num_threads);
      },
      "order [N] = the points in kd-tree order (median splits on the search tree's leaf boundaries)");
  m.def(
      "knn_search_cpu",
      [](std::uintptr_t points, std::uintptr_t order, int64_t num_points, int32_t k, int32_t leaf_size,
         int64_t num_nodes, std::uintptr_t sorted_points, std::uintptr_t sorted_index, std::uintptr_t nodes,
         std::uintptr_t indices, std::uintptr_t sq_dists, int num_threads) {
        const auto p = search_params(points, order, num_points, k, leaf_size, num_nodes, sorted_points,
                                     sorted_index, nodes, indices, sq_dists);
        py::gil_scoped_release release;
        knn::search_cpu(p, num_threads);
      },
      "Exact k nearest other points of every point, given the Morton order");
#if GSPLAT_LIB_WITH_CUDA
  m.def(
      "knn_morton_codes_cuda",
      [](std::uintptr_t points, std::uintptr_t bounds, int64_t num_points, std::uintptr_t codes, int device,
         std::uintptr_t stream) {
        const auto p = morton_params(points, bounds, num_points, codes);
        py::gil_scoped_release release;
        knn::morton_codes_cuda(p, device, stream);
      },
      "CUDA knn_morton_codes on the given stream");
  m.def(
      "knn_search_cuda",
      [](std::uintptr_t points, std::uintptr_t order, int64_t num_points, int32_t k, int32_t leaf_size,
         int64_t num_nodes, std::uintptr_t sorted_points, std::uintptr_t sorted_index, std::uintptr_t nodes,
         std::uintptr_t indices, std::uintptr_t sq_dists, int device, std::uintptr_t stream) {
        const auto p = search_params(points, order, num_points, k, leaf_size, num_nodes, sorted_points,
                                     sorted_index, nodes, indices, sq_dists);
        py::gil_scoped_release release;
        knn::search_cuda(p, device, stream);
      },
      "CUDA knn_search on the given stream");
#endif
}

}  // namespace gsl::bindings
