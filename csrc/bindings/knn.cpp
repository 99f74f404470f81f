// Python bindings of the k-nearest-neighbour search (csrc/ops/knn). Each function takes a
// fields dict (bindings/fields.h) built by gsplat_lib/ops/knn.py, which checks the input and
// allocates every buffer.
#include "bindings/bindings.h"
#include "bindings/fields.h"
#include "core/knn.h"
#include "ops/knn/knn.h"

namespace py = pybind11;

namespace gsl::bindings {
namespace {

struct Sizes {
  int64_t N;      // points
  int64_t K;      // neighbours per point
  int64_t NODES;  // rows of the tree buffer
};
#define GSL_SIZE_NAMES(s)          \
  const auto [N, K, NODES] = s;    \
  (void)N, (void)K, (void)NODES

const FieldList<knn::MortonParams, Sizes>& morton_codes_fields() {
  using Args = knn::MortonParams;
  static const FieldList<Args, Sizes> list(
      "knn morton_codes", [](const Args& a) { return Sizes{a.num_points, 0, 0}; },
      {GSL_SCALAR(num_points, num_points), GSL_BUFFER(points, false, N, 3), GSL_BUFFER(bounds, false, 2, 3),
       GSL_BUFFER(codes, false, N)});
  return list;
}

const FieldList<knn::KdOrderParams, Sizes>& kd_order_fields() {
  using Args = knn::KdOrderParams;
  static const FieldList<Args, Sizes> list(
      "knn kd_order", [](const Args& a) { return Sizes{a.num_points, 0, 0}; },
      {GSL_SCALAR(num_points, num_points), GSL_SCALAR(leaf_size, leaf_size), GSL_BUFFER(points, false, N, 3),
       GSL_BUFFER(scratch, false, N, 4), GSL_BUFFER(order, false, N)});
  return list;
}

const FieldList<knn::SearchParams, Sizes>& search_fields() {
  using Args = knn::SearchParams;
  static const FieldList<Args, Sizes> list(
      "knn search", [](const Args& a) { return Sizes{a.num_points, a.k, a.num_nodes}; },
      {GSL_SCALAR(num_points, num_points), GSL_SCALAR(k, k), GSL_SCALAR(leaf_size, leaf_size),
       GSL_SCALAR(num_nodes, num_nodes), GSL_BUFFER(points, false, N, 3), GSL_BUFFER(order, false, N),
       GSL_BUFFER(sorted_points, false, N, 4), GSL_BUFFER(sorted_index, false, N),
       GSL_BUFFER(nodes, false, NODES, 8), GSL_BUFFER(indices, false, N, K), GSL_BUFFER(sq_dists, false, N, K)});
  return list;
}

knn::SearchParams search_params(const py::dict& fields) {
  const knn::SearchParams p = search_fields().parse(fields);
  knn::check_search_params(p);
  return p;
}

}  // namespace

void bind_knn(py::module_& m) {
  m.attr("KNN_MAX_POINTS") = int64_t{knn::kNoIndex} - 1;  // int32 indices, one value reserved
  m.def("knn_num_tree_nodes", &knn::num_tree_nodes,
        "Rows of the [num_nodes, 8] int32 tree buffer that knn_search needs for N points");
  m.def(
      "knn_morton_codes_cpu",
      [](const py::dict& fields, int num_threads) {
        const auto p = morton_codes_fields().parse(fields);
        py::gil_scoped_release release;
        knn::morton_codes_cpu(p, num_threads);
      },
      "codes[i] = 63-bit Morton code of points[i] inside bounds [2, 3]");
  m.def(
      "knn_kd_order_cpu",
      [](const py::dict& fields, int num_threads) {
        const auto p = kd_order_fields().parse(fields);
        py::gil_scoped_release release;
        knn::kd_order_cpu(p, num_threads);
      },
      "order [N] = the points in kd-tree order (median splits on the search tree's leaf boundaries)");
  m.def(
      "knn_search_cpu",
      [](const py::dict& fields, int num_threads) {
        const auto p = search_params(fields);
        py::gil_scoped_release release;
        knn::search_cpu(p, num_threads);
      },
      "Exact k nearest other points of every point, given the tree order");
#if GSPLAT_LIB_WITH_CUDA
  m.def(
      "knn_morton_codes_cuda",
      [](const py::dict& fields, int device, std::uintptr_t stream) {
        const auto p = morton_codes_fields().parse(fields);
        py::gil_scoped_release release;
        knn::morton_codes_cuda(p, device, stream);
      },
      "CUDA knn_morton_codes on the given stream");
  m.def(
      "knn_search_cuda",
      [](const py::dict& fields, int device, std::uintptr_t stream) {
        const auto p = search_params(fields);
        py::gil_scoped_release release;
        knn::search_cuda(p, device, stream);
      },
      "CUDA knn_search on the given stream");
#endif
}

#undef GSL_SIZE_NAMES

}  // namespace gsl::bindings
