// Force-inlining for the CPU schedules: each instruction set's entry point (rasterize_cpu.cpp)
// must get its own copy of the tile passes, or they run the baseline instruction set.
#pragma once

#define GSL_CPU_INLINE inline __attribute__((always_inline))
// The same for a lambda: one left out of line is compiled for the baseline instruction set
// (SSE2), whatever its caller's target, and runs vf8 as pairs of vf4.
#define GSL_CPU_INLINE_LAMBDA __attribute__((always_inline))
