#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this):
#   1. scripts/setup.sh --torch (packages, venv with transformers as the numerics oracle,
#      Release build with the CUDA backend when nvcc exists);
#   2. ctest on that build: unit (gtest), CLI end-to-end and Python interop tests;
#   3. the I/O and core unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer;
#   4. the safetensors header fuzzer (libFuzzer, clang) for MOEKIT_FUZZ_SECONDS (default 60).
# Ends with one line "N passed, N failed" over all ctest runs; exit status non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
fuzz_seconds=${MOEKIT_FUZZ_SECONDS:-60}
passed=0; failed=0; status=0

step() { echo; echo "=== $* ==="; }
# Runs ctest, echoes its output and adds its counts to the totals.
run_ctest() {
  local log; log=$(mktemp)
  ctest "$@" --output-on-failure -j"$jobs" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local line; line=$(grep -E "tests passed, [0-9]+ tests? failed out of [0-9]+" "$log" | tail -1)
  if [[ -n $line ]]; then
    local total failures
    total=$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$line")
    failures=$(sed -E 's/.*passed, ([0-9]+) tests? failed.*/\1/' <<<"$line")
    passed=$((passed + total - failures)); failed=$((failed + failures))
  fi
  rm -f "$log"
  [[ $rc -eq 0 ]] || status=1
}

step "setup and build"
scripts/setup.sh --torch || { echo "setup/build failed"; echo "0 passed, 1 failed"; exit 1; }

step "unit, CLI and interop tests (build/)"
run_ctest --test-dir build

step "I/O and core tests under ASan + UBSan (build-asan/)"
if cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMOEKIT_SANITIZE=ON -DMOEKIT_CUDA=OFF \
      -DMOEKIT_PYTHON="$PWD/.venv/bin/python" >/dev/null &&
   cmake --build build-asan -j"$jobs" --target test_io test_core; then
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 run_ctest --test-dir build-asan -L "^(io|core)$"
else
  echo "ASan build failed"; failed=$((failed + 1)); status=1
fi

step "fuzzing the safetensors header parser for ${fuzz_seconds}s (build-fuzz/)"
if CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOEKIT_FUZZ=ON \
      -DMOEKIT_TESTS=OFF -DMOEKIT_CUDA=OFF >/dev/null &&
   cmake --build build-fuzz -j"$jobs" --target fuzz_safetensors_header; then
  corpus=$(mktemp -d); cp tests/fuzz/corpus_safetensors/* "$corpus"/
  if build-fuzz/tests/fuzz/fuzz_safetensors_header "$corpus" -max_total_time="$fuzz_seconds" \
       -max_len=4096 -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -15; then
    echo "fuzz: no crash in ${fuzz_seconds}s"; passed=$((passed + 1))
  else
    echo "fuzz: CRASH (reproducer in crash-* files above)"; failed=$((failed + 1)); status=1
  fi
  rm -rf "$corpus"
else
  echo "fuzz build failed"; failed=$((failed + 1)); status=1
fi

echo
echo "${passed} passed, ${failed} failed"
exit $status
