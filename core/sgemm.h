// Single-threaded row-major fp32 GEMM for the forward engine's hot products (linear layers,
// expert MLPs, attention scores and values). The backend is chosen by CMake together with the
// bf16 one (MOEKIT_BF16): oneDNN's dnnl_sgemm, whose JIT kernels target the running CPU, or CBLAS
// (OpenBLAS) when moekit is built without oneDNN. On the engine's shapes dnnl_sgemm ran 1.2-1.6x
// OpenBLAS 0.3.21's SKYLAKEX kernels on a Xeon with AVX-512 (DESIGN notes in docs/ARCHITECTURE.md).
// Both accumulate in fp32; results differ between backends only in rounding.
#pragma once

#include <cstdint>

namespace moekit::core {

// c [m, n] (row stride ldc) = a [m, k] (lda) * op(b), op(b) = b^T with b [n, k] (ldb) when
// trans_b, else b [k, n] (ldb). Runs on the calling thread only. Empty shapes are a no-op.
void sgemm(bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
           float* c, int64_t ldc);

// "oneDNN sgemm" or "OpenBLAS sgemm".
const char* sgemm_backend();

}  // namespace moekit::core
