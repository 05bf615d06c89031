// The device-compute interface of the forward engine (model/engine_device.cpp): device memory
// and the handful of kernels a decoder layer needs (linear layers with fp32 or bf16 weights,
// RMSNorm, RoPE, causal attention, SwiGLU, row gather/scatter for the experts). Two
// implementations: the CUDA one (cuda/device_ops.cu, cuBLAS GEMMs; make_cuda_ops) and a plain
// host one (model/device_ops_host.cpp, make_host_ops) that runs the same engine code on the CPU
// so CI tests the engine's device path without a GPU. The CPU engine (model/engine.cpp) stays
// the numeric reference for both.
//
// Every matrix is row-major fp32 [rows, cols] with row stride `ld` (>= cols), so a column slice
// of a matrix is a view. Calls are ordered (one stream); results are visible to download().
// Plain pointer + count arguments rather than std::span: nvcc compiles this header as C++17.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace moekit::backend {

// Device memory; shared ownership so views can keep their buffer alive.
using DeviceMemory = std::shared_ptr<void>;

struct DeviceMatrix {
    DeviceMemory mem;
    float* ptr = nullptr;
    int64_t rows = 0, cols = 0, ld = 0;
    bool empty() const { return ptr == nullptr; }
    // Columns [c0, c0 + n) of every row (a view sharing the buffer).
    DeviceMatrix cols_view(int64_t c0, int64_t n) const { return {mem, ptr + c0, rows, n, ld}; }
    // Rows [r0, r0 + n) (a view sharing the buffer).
    DeviceMatrix rows_view(int64_t r0, int64_t n) const { return {mem, ptr + r0 * ld, n, cols, ld}; }
};

struct DeviceIndex {
    DeviceMemory mem;
    const int32_t* ptr = nullptr;
    int64_t size = 0;
};

// A linear layer's weight [rows = out features, cols = in features]: fp32, or bf16 (then the
// GEMM rounds its input rows to bf16 and accumulates in fp32).
struct DeviceWeight {
    DeviceMemory mem;
    const void* ptr = nullptr;
    int64_t rows = 0, cols = 0;
    bool bf16 = false;
    bool empty() const { return ptr == nullptr; }
};

enum class RotaryStyle { half, interleaved };

// cos/sin [n_pos, dim / 2] on the device (already multiplied by the rope type's attention factor).
struct DeviceRope {
    DeviceMemory mem;
    const float* cos = nullptr;
    const float* sin = nullptr;
    int64_t n_pos = 0, dim = 0;
    RotaryStyle style = RotaryStyle::half;
};

class DeviceOps {
public:
    virtual ~DeviceOps() = default;
    // "cuda:0 (NVIDIA H200)", "host"
    virtual std::string describe() const = 0;
    // Device memory free now (bytes); 0 when the implementation has no notion of it (host).
    virtual uint64_t free_memory() const = 0;

    // The upload_* calls have copied their host source when they return (the caller may free it);
    // the device copy is ordered before later calls.
    virtual DeviceMatrix alloc(int64_t rows, int64_t cols) = 0;                       // uninitialized
    virtual DeviceMatrix upload(const float* src, int64_t rows, int64_t cols) = 0;    // src contiguous
    virtual void download(const DeviceMatrix& src, float* dst) = 0;                   // dst contiguous
    virtual DeviceIndex upload_index(const int32_t* values, int64_t n) = 0;
    // bf16: rounded to nearest even on the way (the device keeps only the bf16 copy).
    virtual DeviceWeight upload_weight(const float* src, int64_t rows, int64_t cols, bool bf16) = 0;
    virtual DeviceRope upload_rope(const float* cos, const float* sin, int64_t n_pos, int64_t dim, RotaryStyle style) = 0;
    virtual void synchronize() = 0;

    virtual void fill_zero(DeviceMatrix& x) = 0;
    // For every head h < n_head: dst columns [h * dst_stride, + src.cols) = src columns
    // [h * src_stride, + src.cols) (src_stride 0 broadcasts one slice); src and dst are views whose
    // `cols` is the copied width. n_head = 1 copies a matrix.
    virtual void copy_heads(const DeviceMatrix& src, int64_t src_stride, DeviceMatrix& dst, int64_t dst_stride,
                            int64_t n_head) = 0;
    // out [n, w.rows] = x [n, w.cols] w^T (+ bias [1, w.rows]); out must not alias x.
    virtual void linear(const DeviceMatrix& x, const DeviceWeight& w, const DeviceMatrix* bias, DeviceMatrix& out) = 0;
    // RMSNorm of every `width`-wide column segment of every row (width = cols: the whole row):
    // out = weight * x * rsqrt(mean(x^2) + eps), weight [1, width]; out may alias x.
    virtual void rms_norm(const DeviceMatrix& x, const DeviceMatrix& weight, float eps, int64_t width, DeviceMatrix& out) = 0;
    // Rotates columns [h * head_width + offset, + rope.dim) of every head h < n_head of row t by
    // position positions[t].
    virtual void rope(DeviceMatrix& x, int64_t n_head, int64_t head_width, int64_t offset, const DeviceRope& rope,
                      const DeviceIndex& positions) = 0;
    virtual void clamp(DeviceMatrix& x, float limit) = 0;                              // to [-limit, limit]
    virtual void add(DeviceMatrix& a, const DeviceMatrix& b) = 0;                      // a += b
    // out [n, F] = silu(gate_up[:, :F]) * gate_up[:, F:2F]
    virtual void silu_mul(const DeviceMatrix& gate_up, DeviceMatrix& out) = 0;
    // x[t, :] *= sigmoid(z[t, 0])
    virtual void scale_rows_sigmoid(DeviceMatrix& x, const DeviceMatrix& z) = 0;
    // out[i, :] = src[rows[i], :]
    virtual void gather_rows(const DeviceMatrix& src, const DeviceIndex& rows, DeviceMatrix& out) = 0;
    // dst[rows[i], :] += gates[i] * src[i, :] (rows distinct within one call), gates [n, 1].
    virtual void scatter_add_rows(const DeviceMatrix& src, const DeviceIndex& rows, const DeviceMatrix& gates,
                                  DeviceMatrix& dst) = 0;
    // Causal softmax attention per sequence s < n_seq (rows [seq_begin[s], seq_begin[s + 1])) and head h,
    // key/value head h / (n_head / n_head_kv): q [T, n_head * d_qk], k [T, n_head_kv * d_qk],
    // v [T, n_head_kv * d_v] -> out [T, n_head * d_v]. window > 0: key j visible from query i iff
    // i - window < j <= i.
    virtual void attention(const DeviceMatrix& q, const DeviceMatrix& k, const DeviceMatrix& v, int64_t n_head,
                           int64_t n_head_kv, int64_t d_qk, int64_t d_v, float scale, int64_t window,
                           const int64_t* seq_begin, int64_t n_seq, DeviceMatrix& out) = 0;
    // Next-token scores of rows i < n of logits [n, V] against targets[i] (rows with a negative
    // target are skipped and get zeros): out [n, 4] = {nll, ref_nll, kl, top1_agree} with
    // nll = logsumexp(x) - x[target]; with `ref` (the reference model's logits, same shape) also
    // ref_nll, kl = KL(softmax(ref) || softmax(x)) (clamped at 0) and whether the first argmax of
    // both rows is the same (1/0); without it those three are 0.
    virtual void score_rows(const DeviceMatrix& logits, const DeviceMatrix* ref, const DeviceIndex& targets,
                            DeviceMatrix& out) = 0;
};

// The CUDA implementation on GPU `device`; throws moekit::Error("cuda", ...) when this build has
// no CUDA backend or the GPU is unusable.
std::unique_ptr<DeviceOps> make_cuda_ops(int device);

}  // namespace moekit::backend
