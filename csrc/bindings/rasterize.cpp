// Python entry points of the rasterizer. Each takes a dict of {field: int address | number}
// built by gsplat_lib/ops/rasterize.py; a missing field raises KeyError naming it.
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/bindings.h"
#include "ops/rasterize/rasterize.h"

namespace py = pybind11;

namespace gsl::bindings {

namespace {

using namespace gsl::rasterize;

template <class T>
T* field_ptr(const py::dict& f, const char* name) {
  if (!f.contains(name)) throw py::key_error(std::string("rasterize: missing field ") + name);
  return ptr<T>(f[name].cast<std::uintptr_t>());
}

template <class T>
T field(const py::dict& f, const char* name) {
  if (!f.contains(name)) throw py::key_error(std::string("rasterize: missing field ") + name);
  return f[name].cast<T>();
}

Dims dims_of(const py::dict& f) {
  Dims d;
  d.num_cameras = field<int64_t>(f, "num_cameras");
  d.num_surfels = field<int64_t>(f, "num_surfels");
  d.num_channels = field<int32_t>(f, "num_channels");
  d.width = field<int32_t>(f, "width");
  d.height = field<int32_t>(f, "height");
  d.tile_width = field<int32_t>(f, "tile_width");
  d.tiles_x = field<int32_t>(f, "tiles_x");
  d.tiles_y = field<int32_t>(f, "tiles_y");
  d.near_plane = field<float>(f, "near_plane");
  d.far_plane = field<float>(f, "far_plane");
  d.scale_modifier = field<float>(f, "scale_modifier");
  d.cpu_lanes = f.contains("cpu_lanes") ? f["cpu_lanes"].cast<int32_t>() : 0;
  return d;
}

ProjectArgs project_args(const py::dict& f) {
  ProjectArgs a;
  a.dims = dims_of(f);
  a.means = field_ptr<const float>(f, "means");
  a.quats = field_ptr<const float>(f, "quats");
  a.scales = field_ptr<const float>(f, "scales");
  a.opacities = field_ptr<const float>(f, "opacities");
  a.colors = field_ptr<const float>(f, "colors");
  a.viewmats = field_ptr<const float>(f, "viewmats");
  a.Ks = field_ptr<const float>(f, "Ks");
  a.M = field_ptr<float>(f, "M");
  a.normals = field_ptr<float>(f, "normals");
  a.means2d = field_ptr<float>(f, "means2d");
  a.depths = field_ptr<float>(f, "depths");
  a.radii = field_ptr<int32_t>(f, "radii");
  a.pixel_rects = field_ptr<int32_t>(f, "pixel_rects");
  a.tile_counts = field_ptr<int64_t>(f, "tile_counts");
  a.pair_ends = field_ptr<int64_t>(f, "pair_ends");
  return a;
}

EmitArgs emit_args(const py::dict& f) {
  EmitArgs a;
  a.dims = dims_of(f);
  a.depths = field_ptr<const float>(f, "depths");
  a.pixel_rects = field_ptr<const int32_t>(f, "pixel_rects");
  a.pair_ends = field_ptr<const int64_t>(f, "pair_ends");
  a.keys = field_ptr<int64_t>(f, "keys");
  a.pair_surfels = field_ptr<int64_t>(f, "pair_surfels");
  return a;
}

BinPairsArgs bin_pairs_args(const py::dict& f) {
  BinPairsArgs a;
  a.dims = dims_of(f);
  a.num_pairs = field<int64_t>(f, "num_pairs");
  a.depths = field_ptr<const float>(f, "depths");
  a.pixel_rects = field_ptr<const int32_t>(f, "pixel_rects");
  a.pair_ends = field_ptr<const int64_t>(f, "pair_ends");
  a.tile_starts = field_ptr<int64_t>(f, "tile_starts");
  a.pair_emit_index = field_ptr<int64_t>(f, "pair_emit_index");
  a.sorted_surfels = field_ptr<int64_t>(f, "sorted_surfels");
  return a;
}

PixelPassInputs pixel_inputs(const py::dict& f) {
  PixelPassInputs in;
  in.dims = dims_of(f);
  in.tile_starts = field_ptr<const int64_t>(f, "tile_starts");
  in.pair_surfels = field_ptr<const int64_t>(f, "sorted_surfels");
  in.M = field_ptr<const float>(f, "M");
  in.means2d = field_ptr<const float>(f, "means2d");
  in.normals = field_ptr<const float>(f, "normals");
  in.opacities = field_ptr<const float>(f, "opacities");
  in.colors = field_ptr<const float>(f, "colors");
  in.backgrounds = field_ptr<const float>(f, "backgrounds");
  in.pixel_rects = field_ptr<const int32_t>(f, "pixel_rects");
  return in;
}

ForwardArgs forward_args(const py::dict& f) {
  ForwardArgs a;
  a.in = pixel_inputs(f);
  a.out_colors = field_ptr<float>(f, "out_colors");
  a.out_alphas = field_ptr<float>(f, "out_alphas");
  a.out_depths = field_ptr<float>(f, "out_depths");
  a.out_median = field_ptr<float>(f, "out_median");
  a.out_normals = field_ptr<float>(f, "out_normals");
  a.out_distortion = field_ptr<float>(f, "out_distortion");
  a.saved_T = field_ptr<float>(f, "saved_T");
  a.saved_last = field_ptr<int32_t>(f, "saved_last");
  a.saved_median = field_ptr<int32_t>(f, "saved_median");
  a.saved_sums = field_ptr<float>(f, "saved_sums");
  a.out_visited = field_ptr<int32_t>(f, "out_visited");
  return a;
}

BackwardArgs backward_args(const py::dict& f) {
  BackwardArgs a;
  a.in = pixel_inputs(f);
  a.saved_T = field_ptr<const float>(f, "saved_T");
  a.saved_last = field_ptr<const int32_t>(f, "saved_last");
  a.saved_median = field_ptr<const int32_t>(f, "saved_median");
  a.saved_sums = field_ptr<const float>(f, "saved_sums");
  a.v_colors = field_ptr<const float>(f, "v_colors");
  a.v_alphas = field_ptr<const float>(f, "v_alphas");
  a.v_depths = field_ptr<const float>(f, "v_depths");
  a.v_median = field_ptr<const float>(f, "v_median");
  a.v_normals = field_ptr<const float>(f, "v_normals");
  a.v_distortion = field_ptr<const float>(f, "v_distortion");
  a.pair_emit_index = field_ptr<const int64_t>(f, "pair_emit_index");
  a.pair_grads = field_ptr<float>(f, "pair_grads");
  a.item_records = field<bool>(f, "item_records");
  a.out_visited = field_ptr<int32_t>(f, "out_backward_visited");
  return a;
}

ReduceArgs reduce_args(const py::dict& f) {
  ReduceArgs a;
  a.dims = dims_of(f);
  a.pair_ends = field_ptr<const int64_t>(f, "pair_ends");
  a.pair_grads = field_ptr<const float>(f, "pair_grads");
  a.M = field_ptr<const float>(f, "M");
  a.v_M = field_ptr<float>(f, "v_M");
  a.v_opacities = field_ptr<float>(f, "v_opacities_cn");
  a.v_normals = field_ptr<float>(f, "v_normals_cn");
  a.v_colors = field_ptr<float>(f, "v_colors_cn");
  a.screen_grad = field_ptr<float>(f, "screen_grad");
  a.screen_absgrad = field_ptr<float>(f, "screen_absgrad");
  return a;
}

ProjectBackwardArgs project_backward_args(const py::dict& f) {
  ProjectBackwardArgs a;
  a.dims = dims_of(f);
  a.means = field_ptr<const float>(f, "means");
  a.quats = field_ptr<const float>(f, "quats");
  a.scales = field_ptr<const float>(f, "scales");
  a.viewmats = field_ptr<const float>(f, "viewmats");
  a.Ks = field_ptr<const float>(f, "Ks");
  a.radii = field_ptr<const int32_t>(f, "radii");
  a.v_M = field_ptr<const float>(f, "v_M");
  a.v_normals = field_ptr<const float>(f, "v_normals_cn");
  a.v_opacities_cn = field_ptr<const float>(f, "v_opacities_cn");
  a.v_means = field_ptr<float>(f, "v_means");
  a.v_quats = field_ptr<float>(f, "v_quats");
  a.v_scales = field_ptr<float>(f, "v_scales");
  a.v_opacities = field_ptr<float>(f, "v_opacities");
  return a;
}

// Binds `<name>_cpu(fields, num_threads)` and, with CUDA, `<name>_cuda(fields, device, stream)`.
template <class Args, class MakeArgs>
void bind_pass(py::module_& m, const std::string& name, MakeArgs make_args, void (*cpu)(const Args&, int)
#if GSPLAT_LIB_WITH_CUDA
               ,
               void (*cuda)(const Args&, int, std::uintptr_t)
#endif
) {
  m.def(
      (name + "_cpu").c_str(),
      [make_args, cpu](const py::dict& fields, int num_threads) {
        const Args args = make_args(fields);
        py::gil_scoped_release release;
        cpu(args, num_threads);
      },
      py::arg("fields"), py::arg("num_threads"));
#if GSPLAT_LIB_WITH_CUDA
  m.def(
      (name + "_cuda").c_str(),
      [make_args, cuda](const py::dict& fields, int device, std::uintptr_t stream) {
        const Args args = make_args(fields);
        py::gil_scoped_release release;
        cuda(args, device, stream);
      },
      py::arg("fields"), py::arg("device"), py::arg("stream"));
#endif
}

}  // namespace

#if GSPLAT_LIB_WITH_CUDA
#define GSL_PASS(name, make) bind_pass(m, "rasterize_" #name, make, &name##_cpu, &name##_cuda)
#else
#define GSL_PASS(name, make) bind_pass(m, "rasterize_" #name, make, &name##_cpu)
#endif

void bind_rasterize(py::module_& m) {
  GSL_PASS(project, project_args);
  GSL_PASS(emit_pairs, emit_args);
  m.def(
      "rasterize_bin_pairs_cpu",
      [](const py::dict& fields, int num_threads) {
        const BinPairsArgs args = bin_pairs_args(fields);
        py::gil_scoped_release release;
        bin_pairs_cpu(args, num_threads);
      },
      py::arg("fields"), py::arg("num_threads"));
  GSL_PASS(forward, forward_args);
  GSL_PASS(backward, backward_args);
  GSL_PASS(reduce, reduce_args);
  GSL_PASS(project_backward, project_backward_args);
}

#undef GSL_PASS

}  // namespace gsl::bindings
