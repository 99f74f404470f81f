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
  int64_t I;  // (camera, surfel) items: C N, or the packed items of a call with scene ids
  int64_t S;  // scenes (0 without scene ids)
  int64_t P;  // (tile, item) pairs
  int64_t T;  // tiles of all cameras
  int64_t R;  // pair gradient records: one per pair, or per item with item_records
  int64_t G;  // floats per record
};
#define GSL_SIZE_NAMES(s)                                                                  \
  const auto [C, N, D, H, W, I, S, P, T, R, G] = s;                                        \
  (void)C, (void)N, (void)D, (void)H, (void)W, (void)I, (void)S, (void)P, (void)T, (void)R, (void)G

template <class Args>
Sizes sizes_of(const Args& a) {
  const Dims& d = a.dims;
  return {d.num_cameras, d.num_surfels, d.num_channels, d.height, d.width, d.num_items, d.num_scenes, d.num_pairs,
          d.num_cameras * int64_t(d.tiles_x) * d.tiles_y, d.item_records ? d.num_items : d.num_pairs,
          pair_grad_width(d.num_channels, Semantics(d.semantics))};
}

// A dense call's items are c * N + n; packed items come with their lists (rasterize.h). An empty
// list arrives as null, so a list is required only where it has elements.
void check_items(const Dims& d, bool packed, const char* op) {
  if (!packed && d.num_items != d.num_cameras * d.num_surfels && d.num_items != 0)
    throw std::invalid_argument(std::string(op) + ": num_items " + std::to_string(d.num_items) +
                                " is not num_cameras * num_surfels, so the packed items' lists are required");
  if (packed && d.num_scenes < 1)
    throw std::invalid_argument(std::string(op) + ": packed items need num_scenes >= 1");
}
void require_list(const void* list, int64_t size, const char* op, const char* name) {
  if (list == nullptr && size > 0)
    throw std::invalid_argument(std::string(op) + ": packed items need " + name);
}
void check_project(const ProjectArgs& a) {
  if (a.camera_items == nullptr && a.item_surfels != nullptr)
    throw std::invalid_argument("rasterize project: item_surfels needs camera_items");
  if (a.camera_items != nullptr) require_list(a.item_surfels, a.dims.num_items, "rasterize project", "item_surfels");
  check_items(a.dims, a.camera_items != nullptr, "rasterize project");
}
void check_emit(const EmitArgs& a) { check_items(a.dims, a.camera_items != nullptr, "rasterize emit_pairs"); }
void check_bin(const BinPairsArgs& a) { check_items(a.dims, a.camera_items != nullptr, "rasterize bin_pairs"); }
void check_pixels(const PixelPassInputs& a) {
  check_items(a.dims, a.item_surfels != nullptr, "rasterize forward/backward");
}
void check_forward(const ForwardArgs& a) { check_pixels(a); }
#if GSPLAT_LIB_WITH_CUDA
void check_backward(const BackwardArgs& a) { check_pixels(a); }
#endif
// The scene lists of a project backward: all null (dense) or all given (packed).
template <class Args>
void check_project_backward_lists(const Args& a, const char* op) {
  const Dims& d = a.dims;
  if (a.camera_items == nullptr) {
    if (a.scene_surfels || a.scene_surfel_starts || a.scene_cameras || a.scene_camera_starts)
      throw std::invalid_argument(std::string(op) + ": the scene lists need camera_items");
  } else {
    require_list(a.scene_surfels, d.num_surfels, op, "scene_surfels");
    require_list(a.scene_surfel_starts, d.num_scenes + 1, op, "scene_surfel_starts");
    require_list(a.scene_cameras, d.num_cameras, op, "scene_cameras");
    require_list(a.scene_camera_starts, d.num_scenes + 1, op, "scene_camera_starts");
  }
  check_items(d, a.camera_items != nullptr, op);
}
#if GSPLAT_LIB_WITH_CUDA
void check_project_backward(const ProjectBackwardArgs& a) {
  check_project_backward_lists(a, "rasterize project_backward");
}
#endif

void check_backward_by_camera_groups(const CpuBackwardArgs& a) {
  const char* op = "rasterize backward_by_camera_groups";
  check_pixels(a);
  ProjectBackwardArgs project = a.project;
  project.dims = a.dims;
  if (project.camera_items == nullptr && a.item_surfels != nullptr)
    throw std::invalid_argument(std::string(op) + ": item_surfels needs camera_items");
  if (project.camera_items != nullptr) require_list(a.item_surfels, a.dims.num_items, op, "item_surfels");
  check_project_backward_lists(project, op);
}

// Every pass takes the call's Dims.
template <class Args>
std::vector<Field<Args, Sizes>> with_dims(const std::vector<Field<Args, Sizes>>& buffers) {
  return joined<Args, Sizes>(
      {GSL_SCALAR(dims.num_cameras, num_cameras), GSL_SCALAR(dims.num_surfels, num_surfels),
       GSL_SCALAR(dims.num_items, num_items), GSL_SCALAR(dims.num_scenes, num_scenes),
       GSL_SCALAR(dims.num_channels, num_channels), GSL_SCALAR(dims.width, width),
       GSL_SCALAR(dims.height, height), GSL_SCALAR(dims.tile_width, tile_width),
       GSL_SCALAR(dims.tiles_x, tiles_x), GSL_SCALAR(dims.tiles_y, tiles_y),
       GSL_SCALAR(dims.near_plane, near_plane), GSL_SCALAR(dims.far_plane, far_plane),
       GSL_SCALAR(dims.scale_modifier, scale_modifier), GSL_SCALAR(dims.cpu_lanes, cpu_lanes),
       GSL_SCALAR(dims.cpu_group_bytes, cpu_group_bytes),
       GSL_SCALAR(dims.semantics, semantics),
       GSL_SCALAR(dims.num_pairs, num_pairs), GSL_SCALAR(dims.item_records, item_records)},
      buffers);
}

// The inputs of both pixel passes.
template <class Args>
std::vector<Field<Args, Sizes>> with_pixel_inputs(const std::vector<Field<Args, Sizes>>& buffers) {
  return with_dims(joined<Args, Sizes>(
      {GSL_BUFFER(tile_starts, false, T + 1), GSL_BUFFER(pair_items, false, P), GSL_BUFFER(M, false, I, 9),
       GSL_BUFFER(means2d, false, I, 2), GSL_BUFFER(normals, false, I, 3), GSL_BUFFER(opacities, false, N),
       GSL_BUFFER(colors, false, I, D), GSL_BUFFER(backgrounds, true, C, D), GSL_BUFFER(pixel_rects, false, I, 4),
       GSL_BUFFER(item_surfels, true, I)},
      buffers));
}

// The inputs of both backwards (the three passes', and the CPU's by camera groups).
template <class Args>
std::vector<Field<Args, Sizes>> with_backward_inputs(const std::vector<Field<Args, Sizes>>& buffers) {
  return with_pixel_inputs(joined<Args, Sizes>(
      {GSL_BUFFER(saved_T, false, C, H, W), GSL_BUFFER(saved_last, false, C, H, W),
       GSL_BUFFER(saved_median, false, C, H, W), GSL_BUFFER(saved_sums, false, C, H, W, 3),
       GSL_BUFFER(v_out_colors, false, C, H, W, D), GSL_BUFFER(v_out_alphas, true, C, H, W, 1),
       GSL_BUFFER(v_out_depths, true, C, H, W, 1), GSL_BUFFER(v_out_median_depths, true, C, H, W, 1),
       GSL_BUFFER(v_out_normals, true, C, H, W, 3), GSL_BUFFER(v_out_distortions, true, C, H, W, 1),
       GSL_BUFFER(pair_emit_index, false, P), GSL_BUFFER(backward_pairs, false, C, H, W)},
      buffers));
}

GSL_FIELD_LIST(project, ProjectArgs, "rasterize project", &sizes_of<Args>,
               with_dims<Args>({GSL_BUFFER(means, false, N, 3), GSL_BUFFER(quats, false, N, 4),
                                GSL_BUFFER(scales, false, N, 2), GSL_BUFFER(opacities, false, N),
                                GSL_BUFFER(colors, false, I, D), GSL_BUFFER(viewmats, false, C, 4, 4),
                                GSL_BUFFER(Ks, false, C, 3, 3), GSL_BUFFER(M, false, I, 9),
                                GSL_BUFFER(normals, false, I, 3), GSL_BUFFER(means2d, false, I, 2),
                                GSL_BUFFER(depths, false, I), GSL_BUFFER(radii, false, I, 2),
                                GSL_BUFFER(camera_items, true, C + 1), GSL_BUFFER(item_surfels, true, I),
                                GSL_BUFFER(pixel_rects, false, I, 4), GSL_BUFFER(tile_counts, true, I),
                                GSL_BUFFER(pair_ends, true, I)}),
               &check_project)

GSL_FIELD_LIST(emit_pairs, EmitArgs, "rasterize emit_pairs", &sizes_of<Args>,
               with_dims<Args>({GSL_BUFFER(depths, false, I), GSL_BUFFER(pixel_rects, false, I, 4),
                                GSL_BUFFER(pair_ends, false, I), GSL_BUFFER(camera_items, true, C + 1),
                                GSL_BUFFER(emitted_keys, false, P), GSL_BUFFER(emitted_items, false, P)}),
               &check_emit)

GSL_FIELD_LIST(bin_pairs, BinPairsArgs, "rasterize bin_pairs", &sizes_of<Args>,
               with_dims<Args>({GSL_BUFFER(depths, false, I), GSL_BUFFER(pixel_rects, false, I, 4),
                                GSL_BUFFER(pair_ends, false, I), GSL_BUFFER(camera_items, true, C + 1),
                                GSL_BUFFER(tile_starts, false, T + 1), GSL_BUFFER(pair_emit_index, false, P),
                                GSL_BUFFER(pair_items, false, P)}),
               &check_bin)

GSL_FIELD_LIST(forward, ForwardArgs, "rasterize forward", &sizes_of<Args>,
               with_pixel_inputs<Args>(
                   {GSL_BUFFER(out_colors, false, C, H, W, D), GSL_BUFFER(out_alphas, false, C, H, W, 1),
                    GSL_BUFFER(out_depths, false, C, H, W, 1), GSL_BUFFER(out_median_depths, false, C, H, W, 1),
                    GSL_BUFFER(out_normals, false, C, H, W, 3), GSL_BUFFER(out_distortions, false, C, H, W, 1),
                    GSL_BUFFER(saved_T, false, C, H, W), GSL_BUFFER(saved_last, false, C, H, W),
                    GSL_BUFFER(saved_median, false, C, H, W), GSL_BUFFER(saved_sums, false, C, H, W, 3),
                    GSL_BUFFER(evaluated_pairs, false, C, H, W)}),
               &check_forward)

#if GSPLAT_LIB_WITH_CUDA  // the CPU runs backward_by_camera_groups instead of these three
GSL_FIELD_LIST(backward, BackwardArgs, "rasterize backward", &sizes_of<Args>,
               with_backward_inputs<Args>({GSL_BUFFER(pair_grads, false, R, G)}), &check_backward)

#endif

GSL_FIELD_LIST(backward_by_camera_groups, CpuBackwardArgs, "rasterize backward_by_camera_groups", &sizes_of<Args>,
               with_backward_inputs<Args>(
                   {GSL_BUFFER_AT(reduce.record_ends, record_ends, false, I),
                    GSL_BUFFER_AT(reduce.v_colors, v_colors, false, I, D),
                    GSL_BUFFER_AT(reduce.screen_grad, screen_grad, false, I, 2),
                    GSL_BUFFER_AT(reduce.screen_absgrad, screen_absgrad, false, I, 2),
                    GSL_BUFFER_AT(reduce.center_grad, center_grad, true, I, 2),
                    GSL_BUFFER_AT(project.means, means, false, N, 3), GSL_BUFFER_AT(project.quats, quats, false, N, 4),
                    GSL_BUFFER_AT(project.scales, scales, false, N, 2),
                    GSL_BUFFER_AT(project.viewmats, viewmats, false, C, 4, 4),
                    GSL_BUFFER_AT(project.Ks, Ks, false, C, 3, 3), GSL_BUFFER_AT(project.radii, radii, false, I, 2),
                    GSL_BUFFER_AT(project.camera_items, camera_items, true, C + 1),
                    GSL_BUFFER_AT(project.scene_surfels, scene_surfels, true, N),
                    GSL_BUFFER_AT(project.scene_surfel_starts, scene_surfel_starts, true, S + 1),
                    GSL_BUFFER_AT(project.scene_cameras, scene_cameras, true, C),
                    GSL_BUFFER_AT(project.scene_camera_starts, scene_camera_starts, true, S + 1),
                    GSL_BUFFER_AT(project.v_means, v_means, false, N, 3),
                    GSL_BUFFER_AT(project.v_quats, v_quats, false, N, 4),
                    GSL_BUFFER_AT(project.v_scales, v_scales, false, N, 2),
                    GSL_BUFFER_AT(project.v_opacities, v_opacities, false, N)}),
               &check_backward_by_camera_groups)

#if GSPLAT_LIB_WITH_CUDA
GSL_FIELD_LIST(reduce, ReduceArgs, "rasterize reduce", &sizes_of<Args>,
               with_dims<Args>({GSL_BUFFER(record_ends, false, I), GSL_BUFFER(pair_grads, false, R, G),
                                GSL_BUFFER(M, false, I, 9), GSL_BUFFER(v_M, false, I, 9),
                                GSL_BUFFER(v_opacities_cn, false, I), GSL_BUFFER(v_normals, false, I, 3),
                                GSL_BUFFER(v_colors, false, I, D), GSL_BUFFER(screen_grad, false, I, 2),
                                GSL_BUFFER(screen_absgrad, false, I, 2), GSL_BUFFER(center_grad, true, I, 2)}))

GSL_FIELD_LIST(project_backward, ProjectBackwardArgs, "rasterize project_backward", &sizes_of<Args>,
               with_dims<Args>({GSL_BUFFER(means, false, N, 3), GSL_BUFFER(quats, false, N, 4),
                                GSL_BUFFER(scales, false, N, 2), GSL_BUFFER(viewmats, false, C, 4, 4),
                                GSL_BUFFER(Ks, false, C, 3, 3), GSL_BUFFER(radii, false, I, 2),
                                GSL_BUFFER(v_M, false, I, 9), GSL_BUFFER(v_normals, false, I, 3),
                                GSL_BUFFER(v_opacities_cn, false, I), GSL_BUFFER(camera_items, true, C + 1),
                                GSL_BUFFER(scene_surfels, true, N), GSL_BUFFER(scene_surfel_starts, true, S + 1),
                                GSL_BUFFER(scene_cameras, true, C), GSL_BUFFER(scene_camera_starts, true, S + 1),
                                GSL_BUFFER(v_means, false, N, 3), GSL_BUFFER(v_quats, false, N, 4),
                                GSL_BUFFER(v_scales, false, N, 2), GSL_BUFFER(v_opacities, false, N)}),
               &check_project_backward)
#endif

Sizes plan_sizes(const ScenePlanArgs& a) {
  return {a.num_cameras, a.num_surfels, 0, 0, 0, a.num_items, a.num_scenes, 0, 0, 0, 0};
}

GSL_FIELD_LIST(plan_scenes, ScenePlanArgs, "rasterize plan_scenes", &plan_sizes,
               {GSL_SCALAR(num_surfels, num_surfels), GSL_SCALAR(num_cameras, num_cameras),
                GSL_SCALAR(num_items, num_items), GSL_SCALAR(num_scenes, num_scenes),
                GSL_BUFFER(scene_ids, false, N), GSL_BUFFER(camera_scene_ids, false, C),
                GSL_BUFFER(scene_surfel_starts, false, S + 1), GSL_BUFFER(camera_items, false, C + 1),
                GSL_BUFFER(scene_surfels, false, N), GSL_BUFFER(item_cameras, false, I),
                GSL_BUFFER(item_surfels, false, I)})

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
  bind_cpu(m, "rasterize_plan_scenes", plan_scenes_fields(), &plan_scenes_cpu);  // CUDA: torch.sort too
  GSL_PASS(forward);
#if GSPLAT_LIB_WITH_CUDA
  bind_cuda(m, "rasterize_backward", backward_fields(), &backward_cuda);
  bind_cuda(m, "rasterize_reduce", reduce_fields(), &reduce_cuda);
  bind_cuda(m, "rasterize_project_backward", project_backward_fields(), &project_backward_cuda);
#endif
  // The CPU runs the three passes above as one, camera group by camera group.
  bind_cpu(m, "rasterize_backward_by_camera_groups", backward_by_camera_groups_fields(), &backward_by_camera_groups_cpu);
  m.def("rasterize_fill_backward_scratch_cpu", &fill_backward_scratch_cpu, py::arg("value"),
        "Fills this thread's CPU backward scratch with value (tests: a pass must write all it reads).");
  // Constants the Python layer sizes its buffers and tiles with.
  m.attr("TILE_SIZE") = kTileSize;
  m.attr("CPU_TILE_WIDTH") = kMaxCpuTileWidth;
  m.attr("PAIR_GRAD_COLOR") = kPairGradColor;
  m.attr("COLOR_CULL_SCALE") = kColorCullScale;
  m.attr("COLOR_LIMIT") = kColorLimit;
  m.attr("PAIR_GRAD_COLOR_UPSTREAM") = kPairGradColorUpstream;
  py::dict semantics;
  semantics["gsplat_lib"] = int32_t(Semantics::kGsplatLib);
  semantics["upstream"] = int32_t(Semantics::kUpstream);
  m.attr("SEMANTICS") = semantics;
}

#undef GSL_PASS
#undef GSL_SIZE_NAMES

}  // namespace gsl::bindings
