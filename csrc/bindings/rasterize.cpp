// Python entry points of the rasterizer: `rasterize_<pass>_cpu(fields, num_threads)` and, with
// CUDA, `rasterize_<pass>_cuda(fields, device, stream)`. The fields of each pass are listed
// once below, with their shapes (bindings/fields.h checks them).
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/bindings.h"
#include "bindings/fields.h"
#include "core/compositing.h"
#include "ops/rasterize/rasterize.h"

namespace py = pybind11;

namespace gsl::bindings {

namespace {

using namespace gsl::rasterize;

// The sizes the shapes below are written in.
struct Sizes {
  int64_t C, N, D, H, W;
  int64_t P;  // (tile, surfel) pairs
  int64_t T;  // tiles of all cameras
  int64_t R;  // pair gradient records: one per pair, or per (camera, surfel) with item_records
  int64_t G;  // floats per record
};
#define GSL_SIZE_NAMES(s)                                                          \
  const auto [C, N, D, H, W, P, T, R, G] = s;                                      \
  (void)C, (void)N, (void)D, (void)H, (void)W, (void)P, (void)T, (void)R, (void)G

template <class Args>
Sizes sizes_of(const Args& a) {
  const Dims& d = a.dims;
  const int64_t items = d.num_cameras * d.num_surfels;
  return {d.num_cameras, d.num_surfels, d.num_channels, d.height, d.width, d.num_pairs,
          d.num_cameras * int64_t(d.tiles_x) * d.tiles_y, d.item_records ? items : d.num_pairs,
          pair_grad_width(d.num_channels, Semantics(d.semantics))};
}

// Every pass takes the call's Dims.
template <class Args>
std::vector<Field<Args, Sizes>> with_dims(const std::vector<Field<Args, Sizes>>& buffers) {
  return joined<Args, Sizes>(
      {GSL_SCALAR(dims.num_cameras, num_cameras), GSL_SCALAR(dims.num_surfels, num_surfels),
       GSL_SCALAR(dims.num_channels, num_channels), GSL_SCALAR(dims.width, width),
       GSL_SCALAR(dims.height, height), GSL_SCALAR(dims.tile_width, tile_width),
       GSL_SCALAR(dims.tiles_x, tiles_x), GSL_SCALAR(dims.tiles_y, tiles_y),
       GSL_SCALAR(dims.near_plane, near_plane), GSL_SCALAR(dims.far_plane, far_plane),
       GSL_SCALAR(dims.scale_modifier, scale_modifier), GSL_SCALAR(dims.cpu_lanes, cpu_lanes),
       GSL_SCALAR(dims.semantics, semantics),
       GSL_SCALAR(dims.num_pairs, num_pairs), GSL_SCALAR(dims.item_records, item_records)},
      buffers);
}

// The inputs of both pixel passes.
template <class Args>
std::vector<Field<Args, Sizes>> with_pixel_inputs(const std::vector<Field<Args, Sizes>>& buffers) {
  return with_dims(joined<Args, Sizes>(
      {GSL_BUFFER(tile_starts, false, T + 1), GSL_BUFFER(pair_items, false, P), GSL_BUFFER(M, false, C, N, 9),
       GSL_BUFFER(means2d, false, C, N, 2), GSL_BUFFER(normals, false, C, N, 3), GSL_BUFFER(opacities, false, N),
       GSL_BUFFER(colors, false, C, N, D), GSL_BUFFER(backgrounds, true, C, D),
       GSL_BUFFER(pixel_rects, false, C, N, 4)},
      buffers));
}

GSL_FIELD_LIST(project, ProjectArgs, "rasterize project", &sizes_of<Args>,
               with_dims<Args>({GSL_BUFFER(means, false, N, 3), GSL_BUFFER(quats, false, N, 4),
                                GSL_BUFFER(scales, false, N, 2), GSL_BUFFER(opacities, false, N),
                                GSL_BUFFER(colors, false, C, N, D), GSL_BUFFER(viewmats, false, C, 4, 4),
                                GSL_BUFFER(Ks, false, C, 3, 3), GSL_BUFFER(M, false, C, N, 9),
                                GSL_BUFFER(normals, false, C, N, 3), GSL_BUFFER(means2d, false, C, N, 2),
                                GSL_BUFFER(depths, false, C, N), GSL_BUFFER(radii, false, C, N, 2),
                                GSL_BUFFER(pixel_rects, false, C, N, 4), GSL_BUFFER(tile_counts, true, C, N),
                                GSL_BUFFER(pair_ends, true, C, N)}))

GSL_FIELD_LIST(emit_pairs, EmitArgs, "rasterize emit_pairs", &sizes_of<Args>,
               with_dims<Args>({GSL_BUFFER(depths, false, C, N), GSL_BUFFER(pixel_rects, false, C, N, 4),
                                GSL_BUFFER(pair_ends, false, C, N), GSL_BUFFER(emitted_keys, false, P),
                                GSL_BUFFER(emitted_items, false, P)}))

GSL_FIELD_LIST(bin_pairs, BinPairsArgs, "rasterize bin_pairs", &sizes_of<Args>,
               with_dims<Args>({GSL_BUFFER(depths, false, C, N), GSL_BUFFER(pixel_rects, false, C, N, 4),
                                GSL_BUFFER(pair_ends, false, C, N), GSL_BUFFER(tile_starts, false, T + 1),
                                GSL_BUFFER(pair_emit_index, false, P), GSL_BUFFER(pair_items, false, P)}))

GSL_FIELD_LIST(forward, ForwardArgs, "rasterize forward", &sizes_of<Args>,
               with_pixel_inputs<Args>(
                   {GSL_BUFFER(out_colors, false, C, H, W, D), GSL_BUFFER(out_alphas, false, C, H, W, 1),
                    GSL_BUFFER(out_depths, false, C, H, W, 1), GSL_BUFFER(out_median_depths, false, C, H, W, 1),
                    GSL_BUFFER(out_normals, false, C, H, W, 3), GSL_BUFFER(out_distortions, false, C, H, W, 1),
                    GSL_BUFFER(saved_T, false, C, H, W), GSL_BUFFER(saved_last, false, C, H, W),
                    GSL_BUFFER(saved_median, false, C, H, W), GSL_BUFFER(saved_sums, false, C, H, W, 3),
                    GSL_BUFFER(evaluated_pairs, false, C, H, W)}))

GSL_FIELD_LIST(backward, BackwardArgs, "rasterize backward", &sizes_of<Args>,
               with_pixel_inputs<Args>(
                   {GSL_BUFFER(saved_T, false, C, H, W), GSL_BUFFER(saved_last, false, C, H, W),
                    GSL_BUFFER(saved_median, false, C, H, W), GSL_BUFFER(saved_sums, false, C, H, W, 3),
                    GSL_BUFFER(v_out_colors, false, C, H, W, D), GSL_BUFFER(v_out_alphas, true, C, H, W, 1),
                    GSL_BUFFER(v_out_depths, true, C, H, W, 1), GSL_BUFFER(v_out_median_depths, true, C, H, W, 1),
                    GSL_BUFFER(v_out_normals, true, C, H, W, 3), GSL_BUFFER(v_out_distortions, true, C, H, W, 1),
                    GSL_BUFFER(pair_emit_index, false, P), GSL_BUFFER(pair_grads, false, R, G),
                    GSL_BUFFER(backward_pairs, false, C, H, W)}))

GSL_FIELD_LIST(reduce, ReduceArgs, "rasterize reduce", &sizes_of<Args>,
               with_dims<Args>({GSL_BUFFER(record_ends, false, C, N), GSL_BUFFER(pair_grads, false, R, G),
                                GSL_BUFFER(M, false, C, N, 9), GSL_BUFFER(v_M, false, C, N, 9),
                                GSL_BUFFER(v_opacities_cn, false, C, N), GSL_BUFFER(v_normals, false, C, N, 3),
                                GSL_BUFFER(v_colors, false, C, N, D), GSL_BUFFER(screen_grad, false, C, N, 2),
                                GSL_BUFFER(screen_absgrad, false, C, N, 2), GSL_BUFFER(center_grad, true, C, N, 2)}))

GSL_FIELD_LIST(project_backward, ProjectBackwardArgs, "rasterize project_backward", &sizes_of<Args>,
               with_dims<Args>({GSL_BUFFER(means, false, N, 3), GSL_BUFFER(quats, false, N, 4),
                                GSL_BUFFER(scales, false, N, 2), GSL_BUFFER(viewmats, false, C, 4, 4),
                                GSL_BUFFER(Ks, false, C, 3, 3), GSL_BUFFER(radii, false, C, N, 2),
                                GSL_BUFFER(v_M, false, C, N, 9), GSL_BUFFER(v_normals, false, C, N, 3),
                                GSL_BUFFER(v_opacities_cn, false, C, N), GSL_BUFFER(v_means, false, N, 3),
                                GSL_BUFFER(v_quats, false, N, 4), GSL_BUFFER(v_scales, false, N, 2),
                                GSL_BUFFER(v_opacities, false, N)}))

#if GSPLAT_LIB_WITH_CUDA
#define GSL_PASS(name)                                             \
  bind_cpu(m, "rasterize_" #name, name##_fields(), &name##_cpu); \
  bind_cuda(m, "rasterize_" #name, name##_fields(), &name##_cuda)
#else
#define GSL_PASS(name) bind_cpu(m, "rasterize_" #name, name##_fields(), &name##_cpu)
#endif

}  // namespace

void bind_rasterize(py::module_& m) {
  GSL_PASS(project);
  GSL_PASS(emit_pairs);
  bind_cpu(m, "rasterize_bin_pairs", bin_pairs_fields(), &bin_pairs_cpu);  // CUDA sorts with torch.sort
  GSL_PASS(forward);
  GSL_PASS(backward);
  GSL_PASS(reduce);
  GSL_PASS(project_backward);
  // Constants the Python layer sizes its buffers and tiles with.
  m.attr("TILE_SIZE") = kTileSize;
  m.attr("CPU_TILE_WIDTH") = kMaxCpuTileWidth;
  m.attr("PAIR_GRAD_COLOR") = kPairGradColor;
  m.attr("COLOR_CULL_SCALE") = kColorCullScale;
  m.attr("PAIR_GRAD_COLOR_UPSTREAM") = kPairGradColorUpstream;
  py::dict semantics;
  semantics["gsplat_lib"] = int32_t(Semantics::kGsplatLib);
  semantics["upstream"] = int32_t(Semantics::kUpstream);
  m.attr("SEMANTICS") = semantics;
}

#undef GSL_PASS
#undef GSL_SIZE_NAMES

}  // namespace gsl::bindings
