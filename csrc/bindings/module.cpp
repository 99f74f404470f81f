#include <pybind11/pybind11.h>

#include "bindings/bindings.h"
#include "ops/rasterize/rasterize.h"

#if GSPLAT_LIB_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace py = pybind11;

namespace {

py::dict build_info() {
  py::dict info;
  info["version"] = GSPLAT_LIB_VERSION;
  info["cxx_compiler"] = GSPLAT_LIB_CXX_COMPILER;
  info["cpu_lanes"] = gsl::rasterize::max_cpu_lanes();  // pixels per lane group on this machine
#if GSPLAT_LIB_WITH_CUDA
  info["cuda"] = true;
  info["cuda_archs"] = GSPLAT_LIB_CUDA_ARCHS;
  info["cuda_compiler"] = GSPLAT_LIB_CUDA_COMPILER;
  info["cuda_runtime_version"] = CUDART_VERSION;
#else
  info["cuda"] = false;
  info["cuda_archs"] = "";
  info["cuda_compiler"] = "";
  info["cuda_runtime_version"] = 0;
#endif
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "gsplat_lib compiled core: torch-free CPU and CUDA kernels";
  m.def("build_info", &build_info, "What this build of the compiled core contains");
  gsl::bindings::bind_adam(m);
  gsl::bindings::bind_densify(m);
  gsl::bindings::bind_knn(m);
  gsl::bindings::bind_rasterize(m);
  gsl::bindings::bind_tsdf(m);
}
