// Densification math shared by the CPU and CUDA backends (docs/design.md, decision 2):
// where each value of a remapped row comes from, and the per-surfel screen statistics.
#pragma once

#include "core/common.h"
#include "core/lanes.h"

namespace gsl {

// Where row r of one remapped tensor takes its value from.
enum class RowOrigin : int { copy_source = 0, zero = 1, override_value = 2 };

// The rule of remap_rows, for one (tensor, row): an override wins on the rows it is asked
// for, then new rows of a tensor marked zero_new (Adam moments) start at zero, and every
// other row is a copy of its source row.
GSL_HD RowOrigin remap_row_origin(bool is_new, bool override_row, bool zero_new, bool has_override) {
  if (has_override && override_row) return RowOrigin::override_value;
  if (zero_new && is_new) return RowOrigin::zero;
  return RowOrigin::copy_source;
}

// Adds surfel n's screen statistics over cameras 0..C-1, in that order, to its accumulators.
// A camera counts when the surfel is visible there (either radius > 0). The screen gradients
// are in pixels; scaled by (width/2, height/2) they are gradients with respect to NDC
// coordinates, the unit of 2DGS's densify_grad_threshold (0.0002).
GSL_HD void accumulate_surfel_screen_stats(
    int64_t n, int64_t num_surfels, int64_t num_cameras,
    const float* screen_grad,     // [C, N, 2], pixels
    const float* screen_absgrad,  // [C, N, 2], pixels
    const int32_t* radii,         // [C, N, 2]
    float half_width, float half_height,
    float* grad_acc,     // [N]
    float* absgrad_acc,  // [N]
    int32_t* count,      // [N]
    float* max_radii) {  // [N], pixels
  float grad_sum = grad_acc[n];
  float absgrad_sum = absgrad_acc[n];
  int32_t visible_count = count[n];
  float largest_radius = max_radii[n];
  for (int64_t c = 0; c < num_cameras; ++c) {
    const int64_t i = 2 * (c * num_surfels + n);
    const int32_t rx = radii[i];
    const int32_t ry = radii[i + 1];
    if (rx <= 0 && ry <= 0) continue;
    const float gx = mul_rn(screen_grad[i], half_width);
    const float gy = mul_rn(screen_grad[i + 1], half_height);
    grad_sum = add_rn(grad_sum, sqrtf(add_rn(mul_rn(gx, gx), mul_rn(gy, gy))));
    const float ax = mul_rn(screen_absgrad[i], half_width);
    const float ay = mul_rn(screen_absgrad[i + 1], half_height);
    absgrad_sum = add_rn(absgrad_sum, sqrtf(add_rn(mul_rn(ax, ax), mul_rn(ay, ay))));
    visible_count += 1;
    largest_radius = fmax_lanes(largest_radius, static_cast<float>(rx > ry ? rx : ry));
  }
  grad_acc[n] = grad_sum;
  absgrad_acc[n] = absgrad_sum;
  count[n] = visible_count;
  max_radii[n] = largest_radius;
}

}  // namespace gsl
