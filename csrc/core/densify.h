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

// One surfel's screen statistics while they are summed.
struct SurfelScreenStats {
  float grad_sum, absgrad_sum;
  int32_t visible_count;
  float largest_radius;
};

GSL_HD SurfelScreenStats load_screen_stats(int64_t n, const float* grad_acc, const float* absgrad_acc,
                                           const int32_t* count, const float* max_radii) {
  return {grad_acc[n], absgrad_acc[n], count[n], max_radii[n]};
}

GSL_HD void store_screen_stats(int64_t n, const SurfelScreenStats& s, float* grad_acc, float* absgrad_acc,
                               int32_t* count, float* max_radii) {
  grad_acc[n] = s.grad_sum;
  absgrad_acc[n] = s.absgrad_sum;
  count[n] = s.visible_count;
  max_radii[n] = s.largest_radius;
}

// Adds the statistics of (camera, surfel) item i, row i of screen_grad, screen_absgrad and radii,
// to its surfel's. An item counts when the surfel is visible there (either radius > 0). The
// screen gradients are in pixels; scaled by (width/2, height/2) they are gradients with respect
// to NDC coordinates, the unit of 2DGS's densify_grad_threshold (0.0002).
GSL_HD void add_item_screen_stats(int64_t i,
                                  const float* screen_grad,     // [items, 2], pixels
                                  const float* screen_absgrad,  // [items, 2], pixels
                                  const int32_t* radii,         // [items, 2]
                                  float half_width, float half_height, SurfelScreenStats& s) {
  const int32_t rx = radii[2 * i];
  const int32_t ry = radii[2 * i + 1];
  if (rx <= 0 && ry <= 0) return;
  const float gx = mul_rn(screen_grad[2 * i], half_width);
  const float gy = mul_rn(screen_grad[2 * i + 1], half_height);
  s.grad_sum = add_rn(s.grad_sum, sqrtf(add_rn(mul_rn(gx, gx), mul_rn(gy, gy))));
  const float ax = mul_rn(screen_absgrad[2 * i], half_width);
  const float ay = mul_rn(screen_absgrad[2 * i + 1], half_height);
  s.absgrad_sum = add_rn(s.absgrad_sum, sqrtf(add_rn(mul_rn(ax, ax), mul_rn(ay, ay))));
  s.visible_count += 1;
  s.largest_radius = fmax_lanes(s.largest_radius, static_cast<float>(rx > ry ? rx : ry));
}

// Adds surfel n's screen statistics over cameras 0..C-1, in that order, to its accumulators
// (per-camera tensors [C, N, 2]: item c * N + n).
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
  SurfelScreenStats s = load_screen_stats(n, grad_acc, absgrad_acc, count, max_radii);
  for (int64_t c = 0; c < num_cameras; ++c)
    add_item_screen_stats(c * num_surfels + n, screen_grad, screen_absgrad, radii, half_width, half_height, s);
  store_screen_stats(n, s, grad_acc, absgrad_acc, count, max_radii);
}

}  // namespace gsl
