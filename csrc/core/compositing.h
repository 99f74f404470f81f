// Front-to-back compositing of one pixel and its back-to-front VJP, for a lane type F
// (core/lanes.h). The CPU and CUDA launchers only decide which splats a pixel visits, where
// they come from (a gathered array or a shared-memory batch) and where a pixel's state is kept
// between visits (registers or tile planes); everything a pixel computes is here.
#pragma once

#include "core/common.h"
#include "core/lanes.h"
#include "core/splat_hit.h"

namespace gsl {

// Layout of the per-(pixel-visited) pair gradient record, in floats; colour channels follow.
constexpr int kPairGradM = 0;          // dL/dM, 9 floats row-major
constexpr int kPairGradOpacity = 9;    // dL/dopacity
constexpr int kPairGradNormal = 10;    // dL/dnormal, 3 floats
// Sum of |per-pixel screen-translation gradient| (upstream semantics: of |dL/de| over the
// fallback pixels, GenFusion's statistic), 2 floats.
constexpr int kPairGradAbsStat = 13;
constexpr int kPairGradColor = 15;     // dL/dcolour, D floats
// Upstream semantics: dL/de (2 floats, the fallback centre's gradient) before the colours.
constexpr int kPairGradCenter = 15;
constexpr int kPairGradColorUpstream = 17;
template <Semantics S>
constexpr int kPairGradColorOf = S == Semantics::kUpstream ? kPairGradColorUpstream : kPairGradColor;
GSL_HD int pair_grad_width(int num_channels, Semantics semantics) {
  return (semantics == Semantics::kUpstream ? kPairGradColorUpstream : kPairGradColor) + num_channels;
}

// The colour terms: what a splat of composited weight w adds to a pixel's colour channel, and
// the gradient of the splat's colour channel from the pixel's colour cotangent.
template <class F>
GSL_HD F color_term(F weight, float color) {
  return weight * color;
}
template <class F>
GSL_HD F color_grad_term(F weight, F v_pixel_color) {
  return weight * v_pixel_color;
}

template <class F>
struct PixelForward {
  using Mask = typename Lanes<F>::Mask;
  using Int = typename Lanes<F>::Int;
  F px;        // pixel centres
  typename Lanes<F>::Row py;
  F T;
  F depth{};
  F median_depth{};
  F normal_x{}, normal_y{}, normal_z{};
  DistortionSums<F> sums;
  Int last{};         // visited splats up to and including the last contributor
  Int median{};       // index of the median-depth contributor, -1 when none
  Int visited{};      // splats evaluated, the stopping one included
  Mask done{};        // saturated: later splats are not evaluated
  F weight{};         // w of the splat last composited in the lanes it returns, 0 elsewhere

  GSL_HD void start(F px_, typename Lanes<F>::Row py_) {
    px = px_;
    py = py_;
    T = broadcast<F>(1.f);
    median = broadcast_int_lanes<F>(-1);
  }

  // Compositing splat number `index` (in depth order, in every lane), evaluated as `h`, into
  // the lanes of `ok` takes two steps (visit_splat), so that the CPU loads each step's fields
  // only where it runs. First the transmittance: done, T, weight, last and the median. Lanes
  // where the splat would drop T below kTransmittanceMin are done instead. Returns the lanes
  // composited.
  template <Semantics S>
  GSL_HD Mask advance(const Hit<F>& h, Mask ok, Int index) {
    constexpr float kStop = S == Semantics::kUpstream ? kUpstreamTransmittanceMin : kTransmittanceMin;
    const F T_next = T * (1.f - h.alpha);
    const Mask stop = ok & (T_next < kStop);
    done = done | stop;
    ok = ok & lanes_not(stop);
    if (!any(ok)) return ok;
    // Zero weight in the other lanes, where h may hold anything, so the sums of accumulate
    // add 0 there (an accumulator, never -0, plus +-0 is itself): one select each for w, z
    // and m instead of one per sum.
    weight = select(ok, h.alpha * T, broadcast<F>(0.f));
    const Mask median_here = ok & (T > 0.5f);
    median_depth = select(median_here, h.z, median_depth);
    median = select(median_here, index, median);
    T = select(ok, T_next, T);
    last = select(ok, index + 1, last);
    return ok;
  }
  // Then the weighted sums of the lanes `ok` that advance returned: depth, normal, distortion.
  GSL_HD void accumulate(const Hit<F>& h, Mask ok, vec3 n, const DepthRange& range) {
    const F zero = broadcast<F>(0.f);
    const F z = select(ok, h.z, zero);
    const F m = select(ok, distortion_depth(h.z, range), zero);
    depth = depth + weight * z;
    normal_x = normal_x + weight * n.x;
    normal_y = normal_y + weight * n.y;
    normal_z = normal_z + weight * n.z;
    sums.add(weight, m);
  }
};

// Visits splat `index` (of normal n and colour[num_channels]) at the pixels of `reach` that are
// not done (pixel columns and row: columns, py): counts the visit, evaluates the hit and
// composites it, colour included. `state` keeps the pixels' PixelForward between visits and
// hands it over in the parts each step needs, only where the splat contributes: in registers
// (ForwardRegisters, CUDA) or in tile planes (the CPU).
template <class F, Semantics S, class State>
GSL_HD void visit_splat(State& state, const Splat& s, vec3 n, const float* color, int num_channels,
                        typename Lanes<F>::Mask reach, const SplatColumns<F>& columns, typename Lanes<F>::Row py,
                        typename Lanes<F>::Int index, const DepthRange& range) {
  using Mask = typename Lanes<F>::Mask;
  const Mask m = reach & lanes_not(state.done());
  state.count_visits(m);
  if (!any(m)) return;
  Hit<F> h;
  Mask ok = m & eval_hit<S>(s, columns, py, range.near_plane, h);
  if (!any(ok)) return;
  PixelForward<F> f;
  state.load_advance(f, m);  // none of m is done
  ok = f.template advance<S>(h, ok, index);
  state.store_done(f, f.done & m);
  if (!any(ok)) return;
  state.store_advance(f);
  state.load_sums(f);
  f.accumulate(h, ok, n, range);  // weight is 0 outside ok, and colours are finite
  state.store_sums(f);
  for (int ch = 0; ch < num_channels; ++ch) state.add_color(ch, color_term(f.weight, color[ch]));
}

// A pixel's PixelForward kept in registers between visits (CUDA: one pixel per thread), its
// colour in Colors (add(ch, term), operator()(ch)).
template <class F, class Colors>
struct ForwardRegisters {
  using Mask = typename Lanes<F>::Mask;
  PixelForward<F> f;
  Colors colors;
  GSL_HD Mask done() const { return f.done; }
  GSL_HD void count_visits(Mask m) { count_lanes(f.visited, m); }
  GSL_HD void load_advance(PixelForward<F>& visit, Mask) { visit = f; }
  GSL_HD void store_done(const PixelForward<F>& visit, Mask) { f.done = visit.done; }
  GSL_HD void store_advance(const PixelForward<F>& visit) { f = visit; }
  GSL_HD void load_sums(PixelForward<F>&) {}
  GSL_HD void store_sums(const PixelForward<F>& visit) { f = visit; }
  GSL_HD void add_color(int ch, F term) { colors.add(ch, term); }
};

template <class F>
struct PixelBackward {
  using Mask = typename Lanes<F>::Mask;
  using Int = typename Lanes<F>::Int;
  F px;
  typename Lanes<F>::Row py;
  // What the forward left.
  Int last;    // splats to revisit
  Int median;  // the median-depth contributor, -1 when none
  DistortionSums<F> sums;  // final distortion sums (distortion itself unused)
  // dL/d(pixel outputs), colour aside: callers pass it as v_color(ch) -> F.
  F v_depth, v_median, v_distortion, v_normal_x, v_normal_y, v_normal_z;
  F T;       // transmittance after the splat being visited (walking back)
  F behind;  // sum over later contributors of w_k g_k, plus T_final dL/dT_final
  F weight;  // w of the splat last visited; its colour gradient is weight * v_color

  // colour = ... + T bg, alpha = 1 - T.
  template <class VColor>
  GSL_HD void start(F T_final, F v_alpha, const float* background, int num_channels, VColor v_color) {
    T = T_final;
    F v_T = -v_alpha;
    if (background != nullptr)
      for (int ch = 0; ch < num_channels; ++ch) v_T = v_T + v_color(ch) * background[ch];
    behind = T * v_T;
  }

  // Back-propagates splat number `index`, evaluated as `h`, in the lanes of `hit` (walking
  // back to front; `hit` must be within `last`). Writes the first kPairGradColorOf<S> floats of
  // its gradient record into `grad` (zero in other lanes) and sets `weight`: the record's
  // colour channel ch is color_grad_term(weight, v_color(ch)).
  template <Semantics S, class VColor>
  GSL_HD void backprop(const Splat& s, const Hit<F>& h, Mask hit, vec3 n, const float* color, int num_channels,
                       VColor v_color, Int index, const DepthRange& range, F grad[kPairGradColorOf<S>]) {
    const F zero = broadcast<F>(0.f);
    const F one_minus = 1.f - h.alpha;
    const F T_before = T / one_minus;
    const F w = h.alpha * T_before;
    const F m = distortion_depth(h.z, range);
    F g = v_depth * h.z + (v_normal_x * n.x + v_normal_y * n.y + v_normal_z * n.z) +
          v_distortion * sums.grad_weight(m);
    for (int ch = 0; ch < num_channels; ++ch) g = g + v_color(ch) * color[ch];
    const F v_alpha = T_before * g - behind / one_minus;
    behind = select(hit, behind + w * g, behind);
    F v_z = w * v_depth + v_distortion * sums.grad_depth(w, m) * distortion_depth_grad(h.z, range);
    v_z = select(Mask(median == index), v_z + v_median, v_z);

    F v_M[9], v_center[2];
    const F v_opacity = eval_hit_vjp<S>(s, px, py, h, v_alpha, v_z, v_M, v_center);
    for (int k = 0; k < 9; ++k) grad[kPairGradM + k] = select(hit, v_M[k], zero);
    grad[kPairGradOpacity] = select(hit, v_opacity, zero);
    grad[kPairGradNormal + 0] = select(hit, w * v_normal_x, zero);
    grad[kPairGradNormal + 1] = select(hit, w * v_normal_y, zero);
    grad[kPairGradNormal + 2] = select(hit, w * v_normal_z, zero);
    if constexpr (S == Semantics::kUpstream) {
      for (int k = 0; k < 2; ++k) {
        grad[kPairGradAbsStat + k] = select(hit, abs_lanes(v_center[k]), zero);
        grad[kPairGradCenter + k] = select(hit, v_center[k], zero);
      }
    } else {
      F stat_x, stat_y;
      screen_translation_grad(s.M, v_M, stat_x, stat_y);
      grad[kPairGradAbsStat + 0] = select(hit, abs_lanes(stat_x), zero);
      grad[kPairGradAbsStat + 1] = select(hit, abs_lanes(stat_y), zero);
    }
    weight = select(hit, w, zero);
    T = select(hit, T_before, T);
  }
};

}  // namespace gsl
