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

GSL_FIELD_LIST(morton_codes, knn::MortonParams, "knn morton_codes",
               [](const Args& a) { return Sizes{a.num_points, 0, 0}; },
               {GSL_SCALAR(num_points, num_points), GSL_BUFFER(points, false, N, 3), GSL_BUFFER(bounds, false, 2, 3),
                GSL_BUFFER(codes, false, N)})

GSL_FIELD_LIST(kd_order, knn::KdOrderParams, "knn kd_order",
               [](const Args& a) { return Sizes{a.num_points, 0, 0}; },
               {GSL_SCALAR(num_points, num_points), GSL_SCALAR(leaf_size, leaf_size), GSL_BUFFER(points, false, N, 3),
                GSL_BUFFER(scratch, false, N, 4), GSL_BUFFER(order, false, N)})

GSL_FIELD_LIST(search, knn::SearchParams, "knn search",
               [](const Args& a) { return Sizes{a.num_points, a.k, a.num_nodes}; },
               {GSL_SCALAR(num_points, num_points), GSL_SCALAR(k, k), GSL_SCALAR(leaf_size, leaf_size),
                GSL_SCALAR(num_nodes, num_nodes), GSL_BUFFER(points, false, N, 3), GSL_BUFFER(order, false, N),
                GSL_BUFFER(sorted_points, false, N, 4), GSL_BUFFER(sorted_index, false, N),
                GSL_BUFFER(nodes, false, NODES, 8), GSL_BUFFER(indices, false, N, K),
                GSL_BUFFER(sq_dists, false, N, K)},
               &knn::check_search_params)

}  // namespace

void bind_knn(py::module_& m) {
  m.attr("KNN_MAX_POINTS") = int64_t{knn::kNoIndex} - 1;  // int32 indices, one value reserved
  m.def("knn_num_tree_nodes", &knn::num_tree_nodes,
        "Rows of the [num_nodes, 8] int32 tree buffer that knn_search needs for N points");
  bind_cpu(m, "knn_morton_codes", morton_codes_fields(), &knn::morton_codes_cpu);
  bind_cpu(m, "knn_kd_order", kd_order_fields(), &knn::kd_order_cpu);  // CUDA orders by Morton codes
  bind_cpu(m, "knn_search", search_fields(), &knn::search_cpu);
#if GSPLAT_LIB_WITH_CUDA
  bind_cuda(m, "knn_morton_codes", morton_codes_fields(), &knn::morton_codes_cuda);
  bind_cuda(m, "knn_search", search_fields(), &knn::search_cuda);
#endif
}

#undef GSL_SIZE_NAMES

}  // namespace gsl::bindings
