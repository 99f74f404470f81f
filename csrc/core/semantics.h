// The rasterizer's two semantics (docs/design.md, "Rasterizer semantics" and "Faithful mode"):
// gsplat_lib's own, and upstream 2DGS's (hbb1/diff-surfel-rasterization e0ed020), which the compat
// layer renders with. One math for both: the passes take it as a template parameter, so the
// default's hot loops hold no test of it.
#pragma once

#include <cstdint>

namespace gsl {

enum class Semantics : int32_t { kGsplatLib = 0, kUpstream = 1 };

}  // namespace gsl
