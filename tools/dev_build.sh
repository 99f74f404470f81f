#!/usr/bin/env bash
# Development build: compiles the extension in build/dev-<name> (CPU only unless
# GSPLAT_LIB_CUDA=ON) and drops _C into gsplat_lib/ so `python -m pytest` runs from the tree.
# Users install with `pip install .` instead.
set -euo pipefail
name=${1:-cpu}
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build/dev-$name"
cmake -S "$top" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DSKBUILD_PROJECT_VERSION=0.1.0 \
  -DGSPLAT_LIB_CUDA="${GSPLAT_LIB_CUDA:-OFF}" -DGSPLAT_LIB_CUDA_ARCHS="${GSPLAT_LIB_CUDA_ARCHS:-75}" \
  -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v python)" >/dev/null
cmake --build "$build" -j 2
so=$(ls "$build"/_C*.so)
tmp="$top/gsplat_lib/.$(basename "$so").$$"
cp "$so" "$tmp" && mv -f "$tmp" "$top/gsplat_lib/$(basename "$so")"
echo "built $(basename "$so") from $build"
