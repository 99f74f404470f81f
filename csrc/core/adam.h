// The Adam update of one value, shared by the CPU and CUDA backends (docs/design.md,
// decision 2), in the operation order and rounding of torch.optim.Adam's float32 CPU path
// (torch/optim/adam.py, _single_tensor_adam, without weight decay or amsgrad):
//
//   exp_avg.lerp_(grad, 1 - beta1)
//   exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
//   denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
//   param.addcdiv_(exp_avg, denom, value=-step_size)
//
// The per-tensor scalars (bias corrections, step size) are computed in double on the host,
// exactly as torch computes them in Python, and rounded to float once, as torch's kernels do.
// torch's vectorised lerp and addcmul round a multiply-add once (an FMA) on x86 with AVX2 or
// AVX-512 and twice on its baseline ("DEFAULT") kernels: `fused_multiply_add` picks which.
#pragma once

#include "core/common.h"

namespace gsl {

// The scalars of one tensor's step, each already rounded to float.
struct AdamCoefficients {
  float lerp_weight = 0.0f;            // 1 - beta1
  float beta2 = 0.0f;                  // beta2
  float one_minus_beta2 = 0.0f;        // 1 - beta2
  float bias_correction2_sqrt = 1.0f;  // sqrt(1 - beta2^step)
  float eps = 0.0f;                    // eps
  float neg_step_size = 0.0f;          // -lr / (1 - beta1^step)
};

// a * b + c, rounded once (an FMA) or twice, whatever the compiler's contraction setting.
template <bool kFusedMultiplyAdd>
GSL_HD float multiply_add(float a, float b, float c) {
  if constexpr (kFusedMultiplyAdd) {
#if defined(__CUDA_ARCH__)
    return __fmaf_rn(a, b, c);
#else
    return __builtin_fmaf(a, b, c);
#endif
  } else {
    return add_rn(mul_rn(a, b), c);
  }
}

// IEEE division and square root, correctly rounded on the device whatever nvcc's
// -prec-div / -prec-sqrt / fast-math settings (the host's are IEEE already).
GSL_HD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

GSL_HD float sqrt_rn(float x) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(x);
#else
  return sqrtf(x);
#endif
}

// `chosen` where mask is all ones, `kept` where it is zero, by bits: no branch, so a loop of
// it vectorises (GCC neither hoists nor if-converts a select between values whose math may
// trap), and the values are passed through exactly.
GSL_HD float blend_bits(uint32_t mask, float chosen, float kept) {
  const uint32_t bits = (float_bits(chosen) & mask) | (float_bits(kept) & ~mask);
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float out;
  __builtin_memcpy(&out, &bits, sizeof(out));
  return out;
#endif
}

GSL_HD uint32_t mask_of(bool condition) { return uint32_t{0} - static_cast<uint32_t>(condition); }

// torch's lerp(start, end, weight): start + w (end - start) for |w| < 0.5, else
// end - (1 - w) (end - start); both as one multiply-add, (w - 1) (end - start) + end for the
// second (w - 1 is exactly -(1 - w)).
template <bool kFusedMultiplyAdd>
GSL_HD float torch_lerp(float start, float end, float weight) {
  const uint32_t small = mask_of(fabsf(weight) < 0.5f);
  const float coefficient = blend_bits(small, weight, add_rn(weight, -1.0f));
  const float base = blend_bits(small, start, end);
  return multiply_add<kFusedMultiplyAdd>(coefficient, add_rn(end, -start), base);
}

// The moments of one value: exp_avg.lerp_(grad, 1 - beta1);
// exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2), i.e.
// exp_avg_sq * beta2 + ((1 - beta2) * grad) * grad.
template <bool kFusedMultiplyAdd>
GSL_HD void adam_moments(float grad, float& exp_avg, float& exp_avg_sq, const AdamCoefficients& c) {
  exp_avg = torch_lerp<kFusedMultiplyAdd>(exp_avg, grad, c.lerp_weight);
  exp_avg_sq = multiply_add<kFusedMultiplyAdd>(mul_rn(c.one_minus_beta2, grad), grad, mul_rn(exp_avg_sq, c.beta2));
}

// The parameter from the new moments, given sqrt(exp_avg_sq): a separate input because
// torch's CPU sqrt (MKL's on x86 builds) is not always correctly rounded, and the CPU path
// that must equal torch bit for bit takes it from torch.
GSL_HD float adam_parameter(float param, float exp_avg, float exp_avg_sq_sqrt, const AdamCoefficients& c) {
  const float denom = add_rn(div_rn(exp_avg_sq_sqrt, c.bias_correction2_sqrt), c.eps);
  return add_rn(param, div_rn(mul_rn(c.neg_step_size, exp_avg), denom));
}

// The whole step of one value with the IEEE square root (CUDA, and the CPU's one-pass mode).
template <bool kFusedMultiplyAdd>
GSL_HD void adam_step(float& param, float grad, float& exp_avg, float& exp_avg_sq, const AdamCoefficients& c) {
  adam_moments<kFusedMultiplyAdd>(grad, exp_avg, exp_avg_sq, c);
  param = adam_parameter(param, exp_avg, sqrt_rn(exp_avg_sq), c);
}

}  // namespace gsl
