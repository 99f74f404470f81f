// Python bindings of the fused Adam step (csrc/ops/adam). Addresses are integers from
// tensor.data_ptr() (0 for an absent optional input); gsplat_lib/ops/adam.py checks the
// tensors and computes each tensor's scalars in double, as torch.optim.Adam does.
#include <pybind11/stl.h>

#include <array>
#include <stdexcept>
#include <vector>

#include "bindings/bindings.h"
#include "ops/adam/adam.h"

namespace py = pybind11;

namespace gsl::bindings {
namespace {

using Addresses = std::vector<std::uintptr_t>;
// lerp weight (1 - beta1), beta2, 1 - beta2, sqrt(1 - beta2^step), eps, -lr / (1 - beta1^step)
using Scalars = std::array<double, 6>;

adam::AdamParams adam_params(const Addresses& params, const Addresses& grads, const Addresses& exp_avgs,
                             const Addresses& exp_avg_sqs, const Addresses& exp_avg_sq_sqrts,
                             const Addresses& visible_rows, const std::vector<int64_t>& num_rows,
                             const std::vector<int64_t>& row_floats, const std::vector<Scalars>& scalars, int pass,
                             bool fused_multiply_add) {
  const size_t count = params.size();
  if (grads.size() != count || exp_avgs.size() != count || exp_avg_sqs.size() != count ||
      exp_avg_sq_sqrts.size() != count || visible_rows.size() != count || num_rows.size() != count ||
      row_floats.size() != count || scalars.size() != count)
    throw std::invalid_argument("adam_step: the per-tensor lists must all have one entry per tensor");
  if (pass < 0 || pass > 2) throw std::invalid_argument("adam_step: pass must be 0 (full), 1 or 2");
  adam::AdamParams p;
  p.pass = static_cast<adam::AdamPass>(pass);
  p.fused_multiply_add = fused_multiply_add;
  p.tensors.resize(count);
  for (size_t i = 0; i < count; ++i) {
    adam::AdamTensor& t = p.tensors[i];
    t.param = ptr<float>(params[i]);
    t.grad = ptr<const float>(grads[i]);
    t.exp_avg = ptr<float>(exp_avgs[i]);
    t.exp_avg_sq = ptr<float>(exp_avg_sqs[i]);
    t.exp_avg_sq_sqrt = ptr<const float>(exp_avg_sq_sqrts[i]);
    t.visible_rows = ptr<const bool>(visible_rows[i]);
    t.num_rows = num_rows[i];
    t.row_floats = row_floats[i];
    // Rounded to float once, as torch's kernels round a Python scalar.
    const Scalars& s = scalars[i];
    t.coefficients = {static_cast<float>(s[0]), static_cast<float>(s[1]), static_cast<float>(s[2]),
                      static_cast<float>(s[3]), static_cast<float>(s[4]), static_cast<float>(s[5])};
  }
  return p;
}

}  // namespace

void bind_adam(py::module_& m) {
  m.def(
      "adam_step_cpu",
      [](const Addresses& params, const Addresses& grads, const Addresses& exp_avgs, const Addresses& exp_avg_sqs,
         const Addresses& exp_avg_sq_sqrts, const Addresses& visible_rows, const std::vector<int64_t>& num_rows,
         const std::vector<int64_t>& row_floats, const std::vector<Scalars>& scalars, int pass,
         bool fused_multiply_add, int num_threads) {
        const auto p = adam_params(params, grads, exp_avgs, exp_avg_sqs, exp_avg_sq_sqrts, visible_rows, num_rows,
                                   row_floats, scalars, pass, fused_multiply_add);
        py::gil_scoped_release release;
        adam::adam_step_cpu(p, num_threads);
      },
      "One Adam pass (0 full, 1 moments, 2 parameters from a given sqrt) over every tensor, in place");
#if GSPLAT_LIB_WITH_CUDA
  m.def(
      "adam_step_cuda",
      [](const Addresses& params, const Addresses& grads, const Addresses& exp_avgs, const Addresses& exp_avg_sqs,
         const Addresses& exp_avg_sq_sqrts, const Addresses& visible_rows, const std::vector<int64_t>& num_rows,
         const std::vector<int64_t>& row_floats, const std::vector<Scalars>& scalars, int pass,
         bool fused_multiply_add, int device, std::uintptr_t stream) {
        if (pass != 0) throw std::invalid_argument("adam_step_cuda: only the full pass (0) runs on CUDA");
        const auto p = adam_params(params, grads, exp_avgs, exp_avg_sqs, exp_avg_sq_sqrts, visible_rows, num_rows,
                                   row_floats, scalars, pass, fused_multiply_add);
        py::gil_scoped_release release;
        adam::adam_step_cuda(p, device, stream);
      },
      "CUDA Adam step (full pass) over every tensor in one launch on the given stream");
#endif
}

}  // namespace gsl::bindings
