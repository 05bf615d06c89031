#!/usr/bin/env bash
# The GPU checks of issue 8, as one script for a lent GPU machine (the device tool), run from the
# repository root with .gpu-bundle/ carried (scripts/gpu_bundle.sh builds it here):
#   1. the GPU tests of test_backend (engine on CUDA vs the CPU engine on every fixture, fp32 and
#      bf16; the conversion kernel), then the fp32 parity tests again under compute-sanitizer;
#   2. bench/bench_eval_gpu.py: moekit eval --device cuda vs transformers on the same GPU.
# Writes its logs and bench JSON to $OUT (or ./gpu-out). Each step's exit status is printed; the
# script goes on after a failure so one run reports everything.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
[[ -f .gpu-bundle/lib.tar.xz ]] || { echo "no .gpu-bundle/ (run scripts/gpu_bundle.sh and carry it)"; exit 2; }
tar -C .gpu-bundle -xJf .gpu-bundle/lib.tar.xz
cublas_dir=$(python3 -c 'import nvidia.cublas, os; print(os.path.join(os.path.dirname(nvidia.cublas.__file__), "lib"))' 2>/dev/null || true)
export LD_LIBRARY_PATH="$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${cublas_dir}:${LD_LIBRARY_PATH:-}"
export MOEKIT_TEST_DATA="$PWD/tests"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
ldd .gpu-bundle/bin/test_backend | grep -E "not found|cublas|cudart" | tee -a "$out/gpu.txt"

step() { echo "== $1"; shift; "$@"; echo "== exit $?"; }
step "GPU tests" bash -c ".gpu-bundle/bin/test_backend --gtest_filter='*Cuda*' 2>&1 | tee '$out/gpu_tests.log' | grep -E '^\[ *(OK|FAILED|PASSED|SKIPPED) |engine device|Failure' | head -80"
step "compute-sanitizer" bash -c "timeout 180 compute-sanitizer --tool memcheck --error-exitcode 1 .gpu-bundle/bin/test_backend --gtest_filter='Models/EngineDevice.CudaFp32MatchesCpuEngine/*' > '$out/sanitizer.log' 2>&1; rc=\$?; tail -5 '$out/sanitizer.log'; exit \$rc"
step "bench eval" bash -c "PYTHONUNBUFFERED=1 timeout 300 python3 bench/bench_eval_gpu.py --moekit .gpu-bundle/bin/moekit --layers 2 --tokens 32768 --runs 1 --out '$out/eval_gpu.json' 2>&1 | tail -15"
