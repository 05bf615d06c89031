// OpenBLAS behind Eigen (EIGEN_USE_BLAS, set for every target in CMake): large float products
// go to OpenBLAS's runtime-dispatched AVX2/AVX-512 kernels, 2-3x Eigen's portable SSE code on
// the same core (measured by the engine benchmark). moekit parallelizes with OpenMP around the
// products itself, so OpenBLAS must not start threads of its own.
#pragma once

namespace moekit::core {

// Makes every BLAS call single-threaded; idempotent, cheap. Call before compute.
void use_single_threaded_blas();

}  // namespace moekit::core
