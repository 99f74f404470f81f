// Python entry points of the fused Adam step (csrc/ops/adam): `adam_step_cpu(fields, num_threads)`
// and, with CUDA, `adam_step_cuda(fields, device, stream)`. The call's fields are the pass, the
// multiply-add rounding and `tensors`, a list with one fields dict per tensor (AdamTensor, its
// coefficients among them), each listed once below and checked like any pass's fields
// (bindings/fields.h). gsplat_lib/ops/adam.py checks the tensors and computes each one's
// coefficients in double, as torch.optim.Adam does; the core rounds them to float once.
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "bindings/bindings.h"
#include "bindings/fields.h"
#include "ops/adam/adam.h"

namespace py = pybind11;

namespace gsl::bindings {
namespace {

struct Sizes {
  int64_t R;  // rows of a tensor
  int64_t F;  // floats per row
};
#define GSL_SIZE_NAMES(s)  \
  const auto [R, F] = s;   \
  (void)R, (void)F

void check_tensor(const adam::AdamTensor& t) {
  if (t.num_rows < 0 || t.row_floats < 0)
    throw std::invalid_argument("adam_step tensor: num_rows and row_floats must be >= 0, got " +
                                std::to_string(t.num_rows) + " and " + std::to_string(t.row_floats));
}

GSL_FIELD_LIST(tensor, adam::AdamTensor, "adam_step tensor",
               [](const Args& a) { return Sizes{a.num_rows, a.row_floats}; },
               {GSL_SCALAR(num_rows, num_rows), GSL_SCALAR(row_floats, row_floats),
                GSL_SCALAR(coefficients.lerp_weight, lerp_weight), GSL_SCALAR(coefficients.beta2, beta2),
                GSL_SCALAR(coefficients.one_minus_beta2, one_minus_beta2),
                GSL_SCALAR(coefficients.bias_correction2_sqrt, bias_correction2_sqrt),
                GSL_SCALAR(coefficients.eps, eps), GSL_SCALAR(coefficients.neg_step_size, neg_step_size),
                GSL_BUFFER(param, false, R, F), GSL_BUFFER(grad, false, R, F), GSL_BUFFER(exp_avg, false, R, F),
                GSL_BUFFER(exp_avg_sq, false, R, F), GSL_BUFFER(exp_avg_sq_sqrt, true, R, F),
                GSL_BUFFER(visible_rows, true, R)},
               &check_tensor)

// `tensors`: a list of the dicts of tensor_fields(); an error names the entry.
void set_tensors(adam::AdamParams& a, py::handle value) {
  if (!PyList_Check(value.ptr())) throw std::invalid_argument("adam_step: tensors must be a list of fields dicts");
  const py::list tensors = py::reinterpret_borrow<py::list>(value);
  a.tensors.reserve(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (!PyDict_Check(tensors[i].ptr()))
      throw std::invalid_argument("adam_step: tensors[" + std::to_string(i) + "] must be a dict");
    try {
      a.tensors.push_back(tensor_fields().parse(tensors[i].cast<py::dict>()));
    } catch (const std::invalid_argument& error) {
      throw std::invalid_argument(std::string(error.what()) + " (tensors[" + std::to_string(i) + "])");
    }
  }
}

void set_pass(adam::AdamParams& a, py::handle value) {
  const int pass = value.cast<int>();
  if (pass < 0 || pass > 2)
    throw std::invalid_argument("adam_step: pass must be 0 (full), 1 (moments) or 2 (parameters), got " +
                                std::to_string(pass));
  a.pass = static_cast<adam::AdamPass>(pass);
}

// The parameters pass reads torch's square root of every non-empty tensor's exp_avg_sq (an
// empty tensor's buffers all have address 0).
void check_params(const adam::AdamParams& a) {
  if (a.pass != adam::AdamPass::parameters) return;
  for (size_t i = 0; i < a.tensors.size(); ++i)
    if (a.tensors[i].exp_avg_sq_sqrt == nullptr && a.tensors[i].num_rows * a.tensors[i].row_floats > 0)
      throw std::invalid_argument("adam_step: exp_avg_sq_sqrt [R, F] is required by the parameters pass (tensors[" +
                                  std::to_string(i) + "])");
}

GSL_FIELD_LIST(step, adam::AdamParams, "adam_step", [](const Args&) { return Sizes{0, 0}; },
               {Field<Args, Sizes>{"pass", &set_pass, nullptr},
                GSL_SCALAR(fused_multiply_add, fused_multiply_add),
                Field<Args, Sizes>{"tensors", &set_tensors, nullptr}},
               &check_params)

}  // namespace

void bind_adam(py::module_& m) {
  bind_cpu(m, "adam_step", step_fields(), &adam::adam_step_cpu);  // one pass over every tensor, in place
#if GSPLAT_LIB_WITH_CUDA
  bind_cuda(m, "adam_step", step_fields(), &adam::adam_step_cuda);  // the full pass, in one launch
#endif
}

#undef GSL_SIZE_NAMES

}  // namespace gsl::bindings
