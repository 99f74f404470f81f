// Python bindings of the densification kernels (csrc/ops/densify). Addresses are integers
// from tensor.data_ptr() (0 for an absent optional input); gsplat_lib/ops/densify.py checks.
#include <pybind11/stl.h>

#include <stdexcept>
#include <vector>

#include "bindings/bindings.h"
#include "ops/densify/densify.h"

namespace py = pybind11;

namespace gsl::bindings {
namespace {

using Addresses = std::vector<std::uintptr_t>;

densify::RemapParams remap_params(const Addresses& inputs, const Addresses& outputs, const Addresses& overrides,
                                  const std::vector<int64_t>& row_floats, const std::vector<bool>& zero_new,
                                  std::uintptr_t source, std::uintptr_t is_new, std::uintptr_t override_rows,
                                  int64_t num_rows) {
  const size_t count = inputs.size();
  if (outputs.size() != count || overrides.size() != count || row_floats.size() != count ||
      zero_new.size() != count)
    throw std::invalid_argument("remap_rows: the per-tensor lists must all have one entry per tensor");
  densify::RemapParams p;
  p.tensors.resize(count);
  for (size_t i = 0; i < count; ++i) {
    densify::RemapTensor& t = p.tensors[i];
    t.input = ptr<const float>(inputs[i]);
    t.output = ptr<float>(outputs[i]);
    t.overrides = ptr<const float>(overrides[i]);
    t.row_floats = row_floats[i];
    t.zero_new = zero_new[i];
  }
  p.source = ptr<const int64_t>(source);
  p.is_new = ptr<const bool>(is_new);
  p.override_rows = ptr<const bool>(override_rows);
  p.num_rows = num_rows;
  return p;
}

densify::ScreenStatsParams screen_stats_params(std::uintptr_t grad_acc, std::uintptr_t absgrad_acc,
                                               std::uintptr_t count, std::uintptr_t max_radii,
                                               std::uintptr_t screen_grad, std::uintptr_t screen_absgrad,
                                               std::uintptr_t radii, int64_t num_cameras, int64_t num_surfels,
                                               float half_width, float half_height) {
  densify::ScreenStatsParams p;
  p.grad_acc = ptr<float>(grad_acc);
  p.absgrad_acc = ptr<float>(absgrad_acc);
  p.count = ptr<int32_t>(count);
  p.max_radii = ptr<float>(max_radii);
  p.screen_grad = ptr<const float>(screen_grad);
  p.screen_absgrad = ptr<const float>(screen_absgrad);
  p.radii = ptr<const int32_t>(radii);
  p.num_cameras = num_cameras;
  p.num_surfels = num_surfels;
  p.half_width = half_width;
  p.half_height = half_height;
  return p;
}

}  // namespace

void bind_densify(py::module_& m) {
  m.def(
      "remap_rows_cpu",
      [](const Addresses& inputs, const Addresses& outputs, const Addresses& overrides,
         const std::vector<int64_t>& row_floats, const std::vector<bool>& zero_new, std::uintptr_t source,
         std::uintptr_t is_new, std::uintptr_t override_rows, int64_t num_rows, int num_threads) {
        const auto p = remap_params(inputs, outputs, overrides, row_floats, zero_new, source, is_new,
                                    override_rows, num_rows);
        py::gil_scoped_release release;
        gsl::densify::remap_rows_cpu(p, num_threads);
      },
      "out_i[r] = inputs_i[source[r]], zero or override on new rows, for every tensor in one pass");
  m.def(
      "accumulate_screen_stats_cpu",
      [](std::uintptr_t grad_acc, std::uintptr_t absgrad_acc, std::uintptr_t count, std::uintptr_t max_radii,
         std::uintptr_t screen_grad, std::uintptr_t screen_absgrad, std::uintptr_t radii, int64_t num_cameras,
         int64_t num_surfels, float half_width, float half_height, int num_threads) {
        const auto p = screen_stats_params(grad_acc, absgrad_acc, count, max_radii, screen_grad, screen_absgrad,
                                           radii, num_cameras, num_surfels, half_width, half_height);
        py::gil_scoped_release release;
        gsl::densify::accumulate_screen_stats_cpu(p, num_threads);
      },
      "Adds each surfel's screen-gradient norms, visible count and largest radius over C cameras");
#if GSPLAT_LIB_WITH_CUDA
  m.def(
      "remap_rows_cuda",
      [](const Addresses& inputs, const Addresses& outputs, const Addresses& overrides,
         const std::vector<int64_t>& row_floats, const std::vector<bool>& zero_new, std::uintptr_t source,
         std::uintptr_t is_new, std::uintptr_t override_rows, int64_t num_rows, int device,
         std::uintptr_t stream) {
        const auto p = remap_params(inputs, outputs, overrides, row_floats, zero_new, source, is_new,
                                    override_rows, num_rows);
        py::gil_scoped_release release;
        gsl::densify::remap_rows_cuda(p, device, stream);
      },
      "CUDA remap_rows: one launch for all tensors on the given stream");
  m.def(
      "accumulate_screen_stats_cuda",
      [](std::uintptr_t grad_acc, std::uintptr_t absgrad_acc, std::uintptr_t count, std::uintptr_t max_radii,
         std::uintptr_t screen_grad, std::uintptr_t screen_absgrad, std::uintptr_t radii, int64_t num_cameras,
         int64_t num_surfels, float half_width, float half_height, int device, std::uintptr_t stream) {
        const auto p = screen_stats_params(grad_acc, absgrad_acc, count, max_radii, screen_grad, screen_absgrad,
                                           radii, num_cameras, num_surfels, half_width, half_height);
        py::gil_scoped_release release;
        gsl::densify::accumulate_screen_stats_cuda(p, device, stream);
      },
      "CUDA accumulate_screen_stats on the given stream");
#endif
}

}  // namespace gsl::bindings
