// Front-to-back compositing of one pixel and its back-to-front VJP. The CPU and CUDA
// launchers only decide which splats a pixel visits and where they come from (a gathered
// array or a shared-memory batch); everything a pixel computes is here.
#pragma once

#include "core/common.h"
#include "core/splat_hit.h"

namespace gsl {

// Layout of the per-(pixel-visited) pair gradient record, in floats; colour channels follow.
constexpr int kPairGradM = 0;          // dL/dM, 9 floats row-major
constexpr int kPairGradOpacity = 9;    // dL/dopacity
constexpr int kPairGradNormal = 10;    // dL/dnormal, 3 floats
constexpr int kPairGradAbsStat = 13;   // sum of |per-pixel screen-translation gradient|, 2 floats
constexpr int kPairGradColor = 15;     // dL/dcolour, D floats
GSL_HD int pair_grad_width(int num_channels) { return kPairGradColor + num_channels; }

// What a pixel keeps between the forward and the backward.
struct PixelRecord {
  float transmittance;   // T after the last contributor
  int32_t last;          // visited splats up to and including the last contributor
  int32_t median;        // index of the median-depth contributor, -1 when none
  DistortionSums sums;   // final distortion sums
};

struct PixelForward {
  float px, py;          // pixel centre
  float T = 1.f;
  float depth = 0.f;
  float median_depth = 0.f;
  vec3 normal = {0.f, 0.f, 0.f};
  DistortionSums sums;
  int32_t last = 0;
  int32_t median = -1;
  int32_t visited = 0;  // splats evaluated, the stopping one included
  bool done = false;

  // Visits splat number `index` (in depth order) with normal n and colour [D]; colour
  // contributions are added into color_acc [D].
  GSL_HD void visit(const Splat& s, vec3 n, const float* color, int num_channels, int32_t index, float near_plane,
                    float far_plane, float* color_acc) {
    ++visited;
    Hit h;
    if (!eval_hit(s, px, py, near_plane, h)) return;
    const float T_next = T * (1.f - h.alpha);
    if (T_next < kTransmittanceMin) {
      done = true;
      return;
    }
    const float w = h.alpha * T;
    for (int ch = 0; ch < num_channels; ++ch) color_acc[ch] += w * color[ch];
    depth += w * h.z;
    normal += w * n;
    sums.add(w, distortion_depth(h.z, near_plane, far_plane));
    if (T > 0.5f) {
      median_depth = h.z;
      median = index;
    }
    T = T_next;
    last = index + 1;
  }

  GSL_HD PixelRecord record() const { return {T, last, median, sums}; }
};

// dL/d(pixel outputs) of one pixel.
struct PixelCotangent {
  const float* color;  // [D]
  float alpha, depth, median_depth, distortion;
  vec3 normal;
};

struct PixelBackward {
  float px, py;
  PixelRecord rec;
  PixelCotangent v;
  float T;       // transmittance after the splat being visited (walking back)
  float behind;  // sum over later contributors of w_k g_k, plus T_final dL/dT_final
  float weight;  // w of the splat last visited; its colour gradient is weight * v.color
  int32_t visited;  // splats evaluated

  GSL_HD void start(const float* background, int num_channels) {
    T = rec.transmittance;
    visited = 0;
    // colour = ... + T bg, alpha = 1 - T.
    float v_T = -v.alpha;
    if (background != nullptr)
      for (int ch = 0; ch < num_channels; ++ch) v_T += v.color[ch] * background[ch];
    behind = T * v_T;
  }

  // Visits splat number `index` walking back to front. When it contributed, writes the
  // first kPairGradColor floats of its gradient record (dL/dM, opacity, normal, |screen
  // stat|) into `grad`, sets `weight` and returns true.
  GSL_HD bool visit(const Splat& s, vec3 n, const float* color, int num_channels, int32_t index, float near_plane,
                    float far_plane, float* grad) {
    ++visited;
    Hit h;
    if (!eval_hit(s, px, py, near_plane, h)) return false;
    const float one_minus = 1.f - h.alpha;
    const float T_before = T / one_minus;
    const float w = h.alpha * T_before;
    const float m = distortion_depth(h.z, near_plane, far_plane);
    float g = v.depth * h.z + dot(v.normal, n) + v.distortion * rec.sums.grad_weight(m);
    for (int ch = 0; ch < num_channels; ++ch) g += v.color[ch] * color[ch];
    const float v_alpha = T_before * g - behind / one_minus;
    behind += w * g;
    float v_z = w * v.depth + v.distortion * rec.sums.grad_depth(w, m) * distortion_depth_grad(h.z, near_plane, far_plane);
    if (index == rec.median) v_z += v.median_depth;

    mat3 v_M;
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) v_M.m[i][j] = 0.f;
    const float v_opacity = eval_hit_vjp(s, px, py, h, v_alpha, v_z, v_M);
    const vec2 stat = screen_translation_grad(s.M, v_M);
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) grad[kPairGradM + 3 * i + j] = v_M.m[i][j];
    grad[kPairGradOpacity] = v_opacity;
    grad[kPairGradNormal + 0] = w * v.normal.x;
    grad[kPairGradNormal + 1] = w * v.normal.y;
    grad[kPairGradNormal + 2] = w * v.normal.z;
    grad[kPairGradAbsStat + 0] = fabsf(stat.x);
    grad[kPairGradAbsStat + 1] = fabsf(stat.y);
    weight = w;
    T = T_before;
    return true;
  }
};

}  // namespace gsl
