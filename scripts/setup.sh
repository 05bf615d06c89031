#!/usr/bin/env bash
# Sets up a fresh Debian machine for moekit and builds it:
#   1. Debian packages (compiler, CMake, Eigen, CLI11, nlohmann-json, GoogleTest, OpenMP,
#      OpenBLAS/LAPACKE, PCRE2, ICU, clang + libFuzzer, Open MPI for data-parallel profiles,
#      Chromium for the report-rendering test, oneDNN for --compute bf16) -- installed with apt-get when missing;
#   2. a Python venv in .venv for oracles, fixtures and benchmarks (scripts/requirements.txt;
#      --torch adds torch + transformers from scripts/requirements-torch.txt);
#   3. a Release build in build/ (CUDA backend when nvcc is found).
# Idempotent: each step is skipped when already done. Nothing here downloads at run time of
# moekit itself.
#
# Usage: scripts/setup.sh [--torch] [--no-build] [--build-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

want_torch=0
build=1
build_dir=build
while [[ $# -gt 0 ]]; do
  case "$1" in
    --torch) want_torch=1 ;;
    --no-build) build=0 ;;
    --build-dir) build_dir="$2"; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$1'" >&2; exit 1 ;;
  esac
  shift
done

say() { echo "== setup: $*" >&2; }

# 1. Debian packages -----------------------------------------------------------------------
packages=(build-essential cmake pkg-config libeigen3-dev libcli11-dev nlohmann-json3-dev
          libgtest-dev libomp-dev libopenblas-dev liblapacke-dev libpcre2-dev libicu-dev
          clang-14 libclang-rt-14-dev libopenmpi-dev openmpi-bin chromium
          libyaml-cpp-dev libxxhash-dev libdnnl-dev ocl-icd-opencl-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  say "installing Debian packages: ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "Debian packages present"
fi

# 2. Python venv ---------------------------------------------------------------------------
python=${PYTHON:-python3}
req_files=(scripts/requirements.txt)
[[ $want_torch -eq 1 ]] && req_files+=(scripts/requirements-torch.txt)
stamp=.venv/.moekit-requirements
wanted=$(cat "${req_files[@]}" | sha256sum | cut -d' ' -f1)
if [[ ! -x .venv/bin/python ]]; then
  say "creating .venv"
  "$python" -m venv .venv
fi
# A stamp written by a --torch setup also satisfies a plain one.
if [[ -f $stamp ]] && grep -qx "$wanted" "$stamp"; then
  say "Python venv up to date"
else
  say "installing Python packages: ${req_files[*]}"
  .venv/bin/python -m pip install -q --disable-pip-version-check "${req_files[@]/#/-r}"
  echo "$wanted" >> "$stamp"
fi

# 2b. llama.cpp sources (oracle only) -----------------------------------------------------
# The quantize tests compare moekit's GGUF blocks with ggml's own C quantizers (ggml-quants.c,
# compiled alone into a tiny test library) and bench/bench_quantize.py builds llama-quantize and
# llama-perplexity from the same sources. The llama-cpp-python source distribution vendors
# llama.cpp; it is fetched once into .deps/llama.cpp. moekit itself never needs it.
llama_sdist=llama-cpp-python==0.3.36
if [[ ! -f .deps/llama.cpp/ggml/src/ggml-quants.c ]]; then
  say "fetching llama.cpp sources ($llama_sdist sdist) into .deps/llama.cpp"
  tmp=$(mktemp -d)
  if .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
       "$llama_sdist" -d "$tmp" && tar xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp"; then
    mkdir -p .deps && rm -rf .deps/llama.cpp && mv "$tmp"/llama_cpp_python-*/vendor/llama.cpp .deps/llama.cpp
  else
    say "WARNING: could not fetch $llama_sdist; the ggml oracle tests will skip"
  fi
  rm -rf "$tmp"
else
  say "llama.cpp sources present"
fi

# 3. Build ---------------------------------------------------------------------------------
if [[ $build -eq 1 ]]; then
  say "building in $build_dir"
  cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DMOEKIT_PYTHON="$PWD/.venv/bin/python" >/dev/null
  cmake --build "$build_dir" -j"$(nproc)"
fi
