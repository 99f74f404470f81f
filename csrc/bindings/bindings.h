// Each op registers its functions in its own csrc/bindings/<op>.cpp; module.cpp calls them.
// Buffers cross the boundary as fields (bindings/fields.h); the Python layer owns every
// allocation (docs/design.md, decision 1).
#pragma once

#include <pybind11/pybind11.h>

namespace gsl::bindings {

void bind_adam(pybind11::module_& m);
void bind_densify(pybind11::module_& m);
void bind_knn(pybind11::module_& m);
void bind_rasterize(pybind11::module_& m);
void bind_tsdf(pybind11::module_& m);

}  // namespace gsl::bindings
