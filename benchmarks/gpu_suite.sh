#!/usr/bin/env bash
# On a machine with a GPU, nvcc and a CUDA build of torch: builds gsplat_lib with CUDA for
# this GPU, runs the CUDA tests and every benchmark, and collects their output and JSON in
# one folder, so a lent GPU is used in minutes.
#
#   benchmarks/gpu_suite.sh [OUT_DIR]      (default: gpu_results/)
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-gpu_results}" && cd "${1:-gpu_results}" && pwd)
cd "$top"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')" || exit 1
command -v nvcc >/dev/null || { echo "nvcc not found: install the CUDA toolkit" >&2; exit 1; }
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
arch=$(python -c "import torch; major, minor = torch.cuda.get_device_capability(); print(f'{major}{minor}-real')")
echo "building for sm_${arch%-real}"
GSPLAT_LIB_CUDA=ON GSPLAT_LIB_CUDA_ARCHS="$arch" python -m pip install --no-deps --force-reinstall . \
  > "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
python -c "import gsplat_lib, json; print(json.dumps(gsplat_lib.build_info()))" | tee "$out/build_info.json"
status=0
(cd "$out" && pytest "$top/tests" -m cuda -v -p no:cacheprovider 2>&1 | tee "$out/cuda_tests.txt") || status=1
for bench in "$top"/benchmarks/bench_*.py; do
  name=$(basename "$bench" .py)
  echo "== $name"
  python "$bench" --out "$out/$name.json" 2>&1 | tee "$out/$name.txt" || status=1
done
echo "results in $out"
exit $status
