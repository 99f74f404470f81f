// Python bindings of the densification kernels (csrc/ops/densify), fed by gsplat_lib/ops/densify.py
// with fields dicts (bindings/fields.h); remap_rows, whose tensors vary in number, takes lists.
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/bindings.h"
#include "bindings/fields.h"
#include "ops/densify/densify.h"

namespace py = pybind11;

namespace gsl::bindings {
namespace {

struct Sizes {
  int64_t C, N, I;  // I: the items, C N per camera
};
#define GSL_SIZE_NAMES(s)   \
  const auto [C, N, I] = s; \
  (void)C, (void)N, (void)I

// Per camera, the items are C N; packed items come with their surfels (empty lists arrive as null).
void check_screen_stats(const densify::ScreenStatsParams& a) {
  const bool packed = a.item_surfels != nullptr || a.surfel_items != nullptr || a.surfel_item_starts != nullptr;
  if (!packed && a.num_items != a.num_cameras * a.num_surfels && a.num_items != 0)
    throw std::invalid_argument("accumulate_screen_stats: num_items is not num_cameras * num_surfels, so packed "
                                "items need item_surfels (CPU) or surfel_items (CUDA)");
  if (packed && a.num_cameras != 0)
    throw std::invalid_argument("accumulate_screen_stats: packed items take num_cameras 0");
  if ((a.surfel_items == nullptr) != (a.surfel_item_starts == nullptr) && a.num_items > 0)
    throw std::invalid_argument("accumulate_screen_stats: give surfel_items with surfel_item_starts");
}

GSL_FIELD_LIST(accumulate_screen_stats, densify::ScreenStatsParams, "accumulate_screen_stats",
               [](const Args& a) { return Sizes{a.num_cameras, a.num_surfels, a.num_items}; },
               {GSL_SCALAR(num_cameras, num_cameras), GSL_SCALAR(num_surfels, num_surfels),
                GSL_SCALAR(num_items, num_items), GSL_SCALAR(half_width, half_width),
                GSL_SCALAR(half_height, half_height), GSL_BUFFER(screen_grad, false, I, 2),
                GSL_BUFFER(screen_absgrad, false, I, 2), GSL_BUFFER(radii, false, I, 2),
                GSL_BUFFER(item_surfels, true, I), GSL_BUFFER(surfel_items, true, I),
                GSL_BUFFER(surfel_item_starts, true, N + 1), GSL_BUFFER(grad_acc, false, N),
                GSL_BUFFER(absgrad_acc, false, N), GSL_BUFFER(count, false, N), GSL_BUFFER(max_radii, false, N)},
               &check_screen_stats)

// inputs[i]: [num_inputs, row_floats[i]], outputs[i] and overrides[i] (None: absent): [num_rows, ...].
densify::RemapParams remap_params(const py::list& inputs, const py::list& outputs, const py::list& overrides,
                                  const std::vector<int64_t>& row_floats, const std::vector<bool>& zero_new,
                                  py::handle source, py::handle is_new, py::handle override_rows,
                                  int64_t num_inputs, int64_t num_rows) {
  const size_t count = inputs.size();
  if (outputs.size() != count || overrides.size() != count || row_floats.size() != count || zero_new.size() != count)
    throw std::invalid_argument("remap_rows: the per-tensor lists must all have one entry per tensor");
  densify::RemapParams p;
  p.tensors.resize(count);
  for (size_t i = 0; i < count; ++i) {
    const std::string op = "remap_rows", index = "[" + std::to_string(i) + "]";
    densify::RemapTensor& t = p.tensors[i];
    const int64_t floats = row_floats[i];
    t.input = checked_ptr<const float>(to_buffer(inputs[i], op, "inputs" + index), op, "inputs" + index,
                                       "num_inputs, row_floats", num_inputs * floats, false);
    t.output = checked_ptr<float>(to_buffer(outputs[i], op, "outputs" + index), op, "outputs" + index,
                                  "num_rows, row_floats", num_rows * floats, false);
    t.overrides = checked_ptr<const float>(to_buffer(overrides[i], op, "overrides" + index), op, "overrides" + index,
                                           "num_rows, row_floats", num_rows * floats, true);
    t.row_floats = floats;
    t.zero_new = zero_new[i];
  }
  p.source = checked_ptr<const int64_t>(to_buffer(source, "remap_rows", "source"), "remap_rows", "source",
                                        "num_rows", num_rows, false);
  p.is_new = checked_ptr<const bool>(to_buffer(is_new, "remap_rows", "is_new"), "remap_rows", "is_new", "num_rows",
                                     num_rows, true);
  p.override_rows = checked_ptr<const bool>(to_buffer(override_rows, "remap_rows", "override_rows"), "remap_rows",
                                            "override_rows", "num_rows", num_rows, true);
  p.num_rows = num_rows;
  return p;
}

}  // namespace

void bind_densify(py::module_& m) {
  m.def(
      "remap_rows_cpu",
      [](const py::list& inputs, const py::list& outputs, const py::list& overrides,
         const std::vector<int64_t>& row_floats, const std::vector<bool>& zero_new, py::handle source,
         py::handle is_new, py::handle override_rows, int64_t num_inputs, int64_t num_rows, int num_threads) {
        const auto p = remap_params(inputs, outputs, overrides, row_floats, zero_new, source, is_new, override_rows,
                                    num_inputs, num_rows);
        py::gil_scoped_release release;
        gsl::densify::remap_rows_cpu(p, num_threads);
      },
      "out_i[r] = inputs_i[source[r]], zero or override on new rows, for every tensor in one pass");
  bind_cpu(m, "accumulate_screen_stats", accumulate_screen_stats_fields(), &densify::accumulate_screen_stats_cpu);
#if GSPLAT_LIB_WITH_CUDA
  m.def(
      "remap_rows_cuda",
      [](const py::list& inputs, const py::list& outputs, const py::list& overrides,
         const std::vector<int64_t>& row_floats, const std::vector<bool>& zero_new, py::handle source,
         py::handle is_new, py::handle override_rows, int64_t num_inputs, int64_t num_rows, int device,
         std::uintptr_t stream) {
        const auto p = remap_params(inputs, outputs, overrides, row_floats, zero_new, source, is_new, override_rows,
                                    num_inputs, num_rows);
        py::gil_scoped_release release;
        gsl::densify::remap_rows_cuda(p, device, stream);
      },
      "CUDA remap_rows: one launch for all tensors on the given stream");
  bind_cuda(m, "accumulate_screen_stats", accumulate_screen_stats_fields(), &densify::accumulate_screen_stats_cuda);
#endif
}

#undef GSL_SIZE_NAMES

}  // namespace gsl::bindings
