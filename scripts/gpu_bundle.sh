#!/usr/bin/env bash
# Builds what the GPU checks run (scripts/gpu_checks.sh) for a lent GPU machine, which has CUDA,
# CMake and PyTorch but none of moekit's Debian libraries and no network: a Release build with
# the CUDA backend for Hopper (sm_90) and without the optional oneDNN/MPI backends, in build-gpu/,
# then .gpu-bundle/ with the moekit and test_backend binaries and, compressed, every shared
# library they need that is not part of the CUDA runtime or the C/C++ runtime (ldd).
# .gpu-bundle/ is git-ignored; pass it to the device tool's `carry`.
#
# Usage: scripts/gpu_bundle.sh [--arch 90]
set -euo pipefail
cd "$(dirname "$0")/.."
arch=90
[[ "${1:-}" == "--arch" ]] && arch="$2"

cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOEKIT_CUDA=ON -DMOEKIT_BF16=OFF -DMOEKIT_MPI=OFF \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" ${CMAKE_CXX_COMPILER_LAUNCHER:+-DCMAKE_CXX_COMPILER_LAUNCHER=$CMAKE_CXX_COMPILER_LAUNCHER} >/dev/null
ninja -C build-gpu moekit test_backend

rm -rf .gpu-bundle
mkdir -p .gpu-bundle/bin .gpu-bundle/lib
cp build-gpu/moekit build-gpu/tests/test_backend .gpu-bundle/bin/
strip .gpu-bundle/bin/*
# The CUDA libraries come from the GPU machine's own CUDA; glibc and libstdc++ from its system.
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|librt\.|libpthread\.|libstdc\+\+|libgcc_s|libcuda|libcudart|libcublas|libcusolver|libnvJitLink)'
for bin in .gpu-bundle/bin/*; do
  ldd "$bin" | awk '/=> \//{print $1, $3}'
done | sort -u | while read -r name path; do
  [[ "$name" =~ $skip ]] && continue
  cp -L "$path" .gpu-bundle/lib/"$name"
done
tar -C .gpu-bundle -cJf .gpu-bundle/lib.tar.xz lib
rm -rf .gpu-bundle/lib
du -sh .gpu-bundle/bin .gpu-bundle/lib.tar.xz
