#!/usr/bin/env bash
# On a machine with a GPU, nvcc and a CUDA build of torch: builds gsplat_lib with CUDA for
# this GPU, runs the CUDA tests and every benchmark, and collects their output and JSON in
# one folder, so a lent GPU is used in minutes.
#
#   benchmarks/gpu_suite.sh [OUT_DIR] [STEP ...]     (default: gpu_results/, all steps)
#
# Steps, in order: build, test, then bench (every benchmark) or bench_<name> (one). A machine
# that limits each command's time runs them one call each, e.g. `gpu_suite.sh out build`,
# then `gpu_suite.sh out test`, then `gpu_suite.sh out bench_rasterize`: the build step
# installs into the Python environment, which the later steps use.
# The real-size benchmark fits with the build in one 10-minute call: `gpu_suite.sh out build
# bench_scale`.
#
# It needs no network: the build uses the environment's scikit-build-core, pybind11, cmake
# and ninja (no build isolation) and installs no dependencies. Without plyfile there, the PLY
# tests fail to import and are reported, and the rest run. PYTHON picks the interpreter
# (default: python3).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-gpu_results}" && cd "${1:-gpu_results}" && pwd)
shift $(($# > 0 ? 1 : 0))
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(build test bench)
py=${PYTHON:-python3}
cd "$top"
"$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')" || exit 1

build() {
  command -v nvcc >/dev/null || { echo "nvcc not found: install the CUDA toolkit" >&2; return 1; }
  nvidia-smi > "$out/nvidia-smi.txt" 2>&1
  local arch
  arch=$("$py" -c "import torch; major, minor = torch.cuda.get_device_capability(); print(f'{major}{minor}-real')")
  echo "building for sm_${arch%-real}"
  GSPLAT_LIB_CUDA=ON GSPLAT_LIB_CUDA_ARCHS="$arch" "$py" -m pip install --no-build-isolation --no-deps \
    --force-reinstall . > "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; return 1; }
  # From $out: in the checkout, the source tree (no compiled core) would shadow the install.
  (cd "$out" && "$py" -c "import gsplat_lib, json; print(json.dumps(gsplat_lib.build_info()))") \
    | tee "$out/build_info.json"
}

check_cuda_build() {
  (cd "$out" && "$py" -c "import gsplat_lib, sys; sys.exit(0 if gsplat_lib.build_info()['cuda'] else \
'the installed gsplat_lib has no CUDA: run the build step first')")
}

run_tests() {
  check_cuda_build || return 1
  (cd "$out" && "$py" -m pytest "$top/tests" -m cuda -v -p no:cacheprovider --continue-on-collection-errors \
    2>&1 | tee "$out/cuda_tests.txt")
}

run_bench() {  # $1: benchmark name, e.g. bench_rasterize
  check_cuda_build || return 1
  echo "== $1"
  (cd "$out" && "$py" "$top/benchmarks/$1.py" --out "$out/$1.json" 2>&1 | tee "$out/$1.txt")
}

status=0
for step in "${steps[@]}"; do
  case "$step" in
    build) build || exit 1 ;;
    test) run_tests || status=1 ;;
    bench)
      for bench in "$top"/benchmarks/bench_*.py; do run_bench "$(basename "$bench" .py)" || status=1; done ;;
    bench_*)
      [ -f "$top/benchmarks/$step.py" ] || { echo "no benchmark benchmarks/$step.py" >&2; exit 2; }
      run_bench "$step" || status=1 ;;
    *) echo "unknown step '$step' (build, test, bench, bench_<name>)" >&2; exit 2 ;;
  esac
done
echo "results in $out"
exit $status
