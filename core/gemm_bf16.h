// bf16 x bf16 -> fp32-accumulate GEMMs: the kernel behind the forward engine's opt-in bf16
// compute mode (model::EngineOptions::compute). On CPUs with AVX512_BF16 (vdpbf16ps) or AMX a
// bf16 GEMM has about twice the fp32 peak (bench/bench_gemm_bf16.cpp measures it).
//
// The backend is chosen by CMake (MOEKIT_BF16): oneDNN's matmul (core/bf16/dnnl) or a stub
// (core/bf16/none) whose available() is false and whose other calls throw. Weights are packed once
// into the backend's own blocked bf16 layout, into a buffer the caller allocates (so the engine's
// weight accounting sees it); activations are rounded to bf16 (nearest even) on every call.
//
// Every call runs single-threaded on the calling thread: the engine parallelizes around GEMMs
// with its own OpenMP regions, as on the fp32 path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace moekit::core::bf16 {

// True when moekit was built with a bf16 GEMM backend.
bool available();

// e.g. "oneDNN 2.6.3, ISA avx512_core_bf16"; "none" for the stub.
std::string describe();

// Bytes of the packed form of a weight W [rows, cols] (used as x W^T).
std::size_t packed_bytes(int64_t rows, int64_t cols);

// Packs row-major fp32 W [rows, cols] into `dst` (packed_bytes(rows, cols) bytes, 64-byte aligned).
void pack(const float* w, int64_t rows, int64_t cols, void* dst);

// out [n, rows] = bf16(x) [n, cols] * W^T, accumulated in fp32. x and out are row-major with
// leading dimensions ldx >= cols and ldo >= rows; `packed` comes from pack(). Single-threaded.
void gemm(const float* x, int64_t n, int64_t ldx, const void* packed, int64_t rows, int64_t cols, float* out,
          int64_t ldo);

}  // namespace moekit::core::bf16
