// CUDA implementation of the engine's device interface (cuda/device_ops.h). One stream per
// DeviceOps; memory from the stream-ordered allocator (cudaMallocAsync / cudaFreeAsync), so a
// buffer freed on the host is reused only after the work queued before the free. GEMMs are cuBLAS
// (fp32: cublasSgemm in the default math mode, which never uses TF32; bf16: cublasGemmEx with
// bf16 inputs and fp32 accumulation/output). Attention is the eager algorithm the CPU engine
// uses: per sequence and key/value head, one strided-batched GEMM for the scores of its query
// heads, a masked softmax kernel, one strided-batched GEMM for the values. The small kernels are
// plain grid-stride loops; reductions (RMSNorm, softmax) use one block per row.
#include "cuda/device_ops.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>

#include "core/error.h"

namespace moekit::backend {
namespace {

void check(cudaError_t status, const char* what) {
    if (status != cudaSuccess) throw Error("cuda", std::string(what) + ": " + cudaGetErrorString(status));
}

void check_blas(cublasStatus_t status, const char* what) {
    if (status != CUBLAS_STATUS_SUCCESS) throw Error("cuda", std::string(what) + ": " + cublasGetStatusString(status));
}

constexpr int kThreads = 256;

int blocks_for(int64_t n) { return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535 * 8)); }

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
__device__ float block_sum(float v) {
    __shared__ float partial[32];
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();  // partial may still be read by a previous call
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    const int n_warps = blockDim.x >> 5;
    v = lane < n_warps ? partial[lane] : 0.0f;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

__device__ float block_max(float v) {
    __shared__ float partial[32];
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    const int n_warps = blockDim.x >> 5;
    v = lane < n_warps ? partial[lane] : -INFINITY;
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

// The largest value over the block and the smallest index holding it; every thread gets both.
__device__ void block_argmax(float& v, long long& idx) {
    __shared__ float part_v[32];
    __shared__ long long part_i[32];
    for (int off = 16; off > 0; off >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, off);
        const long long oi = __shfl_xor_sync(0xffffffffu, idx, off);
        if (ov > v || (ov == v && oi < idx)) v = ov, idx = oi;
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) part_v[warp] = v, part_i[warp] = idx;
    __syncthreads();
    const int n_warps = blockDim.x >> 5;
    v = lane < n_warps ? part_v[lane] : -INFINITY;
    idx = lane < n_warps ? part_i[lane] : LLONG_MAX;
    for (int off = 16; off > 0; off >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, off);
        const long long oi = __shfl_xor_sync(0xffffffffu, idx, off);
        if (ov > v || (ov == v && oi < idx)) v = ov, idx = oi;
    }
}

// max, first argmax and sum of exp(x - max) of one row of n values.
__device__ void row_softmax_stats(const float* x, int64_t n, float& mx, long long& arg, float& sum) {
    mx = -INFINITY;
    arg = LLONG_MAX;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
        if (x[j] > mx) mx = x[j], arg = j;  // ascending j: this thread's first maximum
    block_argmax(mx, arg);
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) s += expf(x[j] - mx);
    sum = block_sum(s);
}

// One block per row: out[row] = {nll, ref_nll, kl, top1_agree} (DeviceOps::score_rows).
__global__ void score_rows_kernel(const float* xm, int64_t ldm, const float* xr, int64_t ldr, const int32_t* targets,
                                  int64_t n, float* out, int64_t ldo) {
    const int64_t row = blockIdx.x;
    float* o = out + row * ldo;
    const int32_t t = targets[row];
    if (t < 0) {  // uniform over the block
        if (threadIdx.x < 4) o[threadIdx.x] = 0.0f;
        return;
    }
    const float* m = xm + row * ldm;
    float m_max, m_sum;
    long long m_arg;
    row_softmax_stats(m, n, m_max, m_arg, m_sum);
    const double lse_m = double(m_max) + log(double(m_sum));
    if (xr == nullptr) {
        if (threadIdx.x == 0) o[0] = float(lse_m - m[t]), o[1] = o[2] = o[3] = 0.0f;
        return;
    }
    const float* r = xr + row * ldr;
    float r_max, r_sum;
    long long r_arg;
    row_softmax_stats(r, n, r_max, r_arg, r_sum);
    const double lse_r = double(r_max) + log(double(r_sum));
    const float c = float(lse_r - lse_m);
    float acc = 0.0f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) acc += expf(r[j] - r_max) * ((r[j] - m[j]) - c);
    acc = block_sum(acc);
    if (threadIdx.x == 0) {
        o[0] = float(lse_m - m[t]);
        o[1] = float(lse_r - r[t]);
        o[2] = fmaxf(acc / r_sum, 0.0f);
        o[3] = m_arg == r_arg ? 1.0f : 0.0f;
    }
}

__global__ void to_bf16_kernel(const float* src, int64_t ld, int64_t rows, int64_t cols, __nv_bfloat16* dst) {
    const int64_t n = rows * cols;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = i / cols, c = i % cols;
        dst[i] = __float2bfloat16_rn(src[r * ld + c]);
    }
}

__global__ void add_bias_kernel(float* out, int64_t ld, int64_t rows, int64_t cols, const float* bias) {
    const int64_t n = rows * cols;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = i / cols, c = i % cols;
        out[r * ld + c] += bias[c];
    }
}

__global__ void rms_norm_kernel(const float* x, int64_t ldx, const float* w, float eps, int64_t width, float* out,
                                int64_t ldo) {
    const float* in = x + blockIdx.x * ldx + blockIdx.y * width;
    float* o = out + blockIdx.x * ldo + blockIdx.y * width;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) ss += in[i] * in[i];
    ss = block_sum(ss);
    const float inv = 1.0f / sqrtf(ss / static_cast<float>(width) + eps);
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) o[i] = w[i] * (in[i] * inv);
}

__global__ void rope_kernel(float* x, int64_t ld, int64_t rows, int64_t n_head, int64_t head_width, int64_t offset,
                            const float* cos, const float* sin, int64_t half, bool interleaved, const int32_t* positions) {
    const int64_t n = rows * n_head * half;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t t = i / (n_head * half), h = (i / half) % n_head, j = i % half;
        float* v = x + t * ld + h * head_width + offset;
        const int64_t ia = interleaved ? 2 * j : j, ib = interleaved ? 2 * j + 1 : j + half;
        const float c = cos[positions[t] * half + j], s = sin[positions[t] * half + j];
        const float a = v[ia], b = v[ib];
        v[ia] = a * c - b * s;
        v[ib] = b * c + a * s;
    }
}

__global__ void clamp_kernel(float* x, int64_t ld, int64_t rows, int64_t cols, float limit) {
    const int64_t n = rows * cols;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        float* p = x + (i / cols) * ld + i % cols;
        *p = fminf(fmaxf(*p, -limit), limit);
    }
}

__global__ void add_kernel(float* a, int64_t lda, const float* b, int64_t ldb, int64_t rows, int64_t cols) {
    const int64_t n = rows * cols;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = i / cols, c = i % cols;
        a[r * lda + c] += b[r * ldb + c];
    }
}

__global__ void silu_mul_kernel(const float* gu, int64_t ldg, float* out, int64_t ldo, int64_t rows, int64_t f) {
    const int64_t n = rows * f;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = i / f, c = i % f;
        const float g = gu[r * ldg + c], u = gu[r * ldg + f + c];
        out[r * ldo + c] = g / (1.0f + expf(-g)) * u;
    }
}

__global__ void scale_rows_sigmoid_kernel(float* x, int64_t ld, int64_t rows, int64_t cols, const float* z, int64_t ldz) {
    const int64_t n = rows * cols;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = i / cols, c = i % cols;
        x[r * ld + c] *= 1.0f / (1.0f + expf(-z[r * ldz]));
    }
}

__global__ void gather_rows_kernel(const float* src, int64_t lds, const int32_t* rows, int64_t n_rows, int64_t cols,
                                   float* out, int64_t ldo) {
    const int64_t n = n_rows * cols;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = i / cols, c = i % cols;
        out[r * ldo + c] = src[int64_t(rows[r]) * lds + c];
    }
}

__global__ void scatter_add_rows_kernel(const float* src, int64_t lds, const int32_t* rows, const float* gates,
                                        int64_t ldg, int64_t n_rows, int64_t cols, float* dst, int64_t ldd) {
    const int64_t n = n_rows * cols;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = i / cols, c = i % cols;
        dst[int64_t(rows[r]) * ldd + c] += gates[r * ldg] * src[r * lds + c];
    }
}

__global__ void copy_heads_kernel(const float* src, int64_t lds, int64_t src_stride, float* dst, int64_t ldd,
                                  int64_t dst_stride, int64_t rows, int64_t n_head, int64_t width) {
    const int64_t n = rows * n_head * width;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t t = i / (n_head * width), h = (i / width) % n_head, c = i % width;
        dst[t * ldd + h * dst_stride + c] = src[t * lds + h * src_stride + c];
    }
}

// One block per score row (head b of the batch, query i): visible keys [lo, i], scaled softmax,
// zeros elsewhere. scores [n_batch * len, len].
__global__ void causal_softmax_kernel(float* scores, int64_t len, float scale, int64_t window) {
    const int64_t row = blockIdx.x;
    const int64_t i = row % len;
    float* s = scores + row * len;
    const int64_t lo = window > 0 ? max(int64_t(0), i - window + 1) : 0;
    float mx = -INFINITY;
    for (int64_t j = lo + threadIdx.x; j <= i; j += blockDim.x) mx = fmaxf(mx, s[j] * scale);
    mx = block_max(mx);
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
        const float e = (j >= lo && j <= i) ? expf(s[j] * scale - mx) : 0.0f;
        s[j] = e;
        sum += e;
    }
    sum = block_sum(sum);
    const float inv = 1.0f / sum;
    for (int64_t j = lo + threadIdx.x; j <= i; j += blockDim.x) s[j] *= inv;
}

class CudaOps final : public DeviceOps {
public:
    explicit CudaOps(int device) : device_(device) {
        int count = 0;
        check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
        if (device < 0 || device >= count)
            throw Error("cuda", "GPU " + std::to_string(device) + " does not exist (" + std::to_string(count) + " found)");
        check(cudaSetDevice(device), "cudaSetDevice");
        cudaDeviceProp prop{};
        check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
        name_ = "cuda:" + std::to_string(device) + " (" + prop.name + ")";
        check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
        check_blas(cublasCreate(&blas_), "cublasCreate");
        check_blas(cublasSetStream(blas_, stream_), "cublasSetStream");
        // Keep freed pool memory for reuse instead of returning it at every synchronization.
        cudaMemPool_t pool;
        if (cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess) {
            uint64_t threshold = UINT64_MAX;
            cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold);
        }
    }
    ~CudaOps() override {
        cudaStreamSynchronize(stream_);
        cublasDestroy(blas_);
        cudaStreamDestroy(stream_);
    }

    std::string describe() const override { return name_; }
    uint64_t free_memory() const override {
        size_t free_bytes = 0, total = 0;
        check(cudaSetDevice(device_), "cudaSetDevice");
        check(cudaMemGetInfo(&free_bytes, &total), "cudaMemGetInfo");
        return free_bytes;
    }

    DeviceMemory raw(size_t bytes) {
        check(cudaSetDevice(device_), "cudaSetDevice");
        void* p = nullptr;
        check(cudaMallocAsync(&p, std::max<size_t>(bytes, 4), stream_), "cudaMallocAsync");
        cudaStream_t stream = stream_;
        return DeviceMemory(p, [stream](void* q) { cudaFreeAsync(q, stream); });
    }

    DeviceMatrix alloc(int64_t rows, int64_t cols) override {
        DeviceMemory mem = raw(static_cast<size_t>(rows * cols) * sizeof(float));
        return {mem, static_cast<float*>(mem.get()), rows, cols, cols};
    }
    // Host sources are pageable memory (moekit pins none): cudaMemcpyAsync from pageable memory
    // returns once the source is staged, so the caller may free it (the interface's promise).
    DeviceMatrix upload(const float* src, int64_t rows, int64_t cols) override {
        DeviceMatrix m = alloc(rows, cols);
        if (rows * cols > 0)
            check(cudaMemcpyAsync(m.ptr, src, static_cast<size_t>(rows * cols) * sizeof(float), cudaMemcpyHostToDevice, stream_),
                  "upload");
        return m;
    }
    void download(const DeviceMatrix& src, float* dst) override {
        if (src.rows * src.cols > 0)
            check(cudaMemcpy2DAsync(dst, static_cast<size_t>(src.cols) * sizeof(float), src.ptr,
                                    static_cast<size_t>(src.ld) * sizeof(float), static_cast<size_t>(src.cols) * sizeof(float),
                                    static_cast<size_t>(src.rows), cudaMemcpyDeviceToHost, stream_),
                  "download");
        synchronize();
    }
    DeviceIndex upload_index(const int32_t* values, int64_t n) override {
        DeviceMemory mem = raw(static_cast<size_t>(n) * sizeof(int32_t));
        if (n > 0)
            check(cudaMemcpyAsync(mem.get(), values, static_cast<size_t>(n) * sizeof(int32_t), cudaMemcpyHostToDevice, stream_),
                  "upload_index");
        return {mem, static_cast<const int32_t*>(mem.get()), n};
    }
    DeviceWeight upload_weight(const float* src, int64_t rows, int64_t cols, bool bf16) override {
        DeviceMatrix f = upload(src, rows, cols);
        if (!bf16) return {f.mem, f.ptr, rows, cols, false};
        DeviceMemory mem = raw(static_cast<size_t>(rows * cols) * 2);
        to_bf16_kernel<<<blocks_for(rows * cols), kThreads, 0, stream_>>>(f.ptr, cols, rows, cols,
                                                                          static_cast<__nv_bfloat16*>(mem.get()));
        launched("to_bf16");
        return {mem, mem.get(), rows, cols, true};
    }
    DeviceRope upload_rope(const float* cos, const float* sin, int64_t n_pos, int64_t dim, RotaryStyle style) override {
        const int64_t n = n_pos * (dim / 2);
        DeviceMatrix m = alloc(2, n);
        if (n > 0) {
            check(cudaMemcpyAsync(m.ptr, cos, static_cast<size_t>(n) * sizeof(float), cudaMemcpyHostToDevice, stream_), "upload_rope");
            check(cudaMemcpyAsync(m.ptr + n, sin, static_cast<size_t>(n) * sizeof(float), cudaMemcpyHostToDevice, stream_), "upload_rope");
        }
        return {m.mem, m.ptr, m.ptr + n, n_pos, dim, style};
    }
    void synchronize() override { check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

    void fill_zero(DeviceMatrix& x) override {
        if (x.rows * x.cols == 0) return;
        check(cudaMemset2DAsync(x.ptr, static_cast<size_t>(x.ld) * sizeof(float), 0, static_cast<size_t>(x.cols) * sizeof(float),
                                static_cast<size_t>(x.rows), stream_),
              "fill_zero");
    }
    void copy_heads(const DeviceMatrix& src, int64_t src_stride, DeviceMatrix& dst, int64_t dst_stride, int64_t n_head) override {
        const int64_t n = src.rows * n_head * src.cols;
        if (n == 0) return;
        copy_heads_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(src.ptr, src.ld, src_stride, dst.ptr, dst.ld, dst_stride,
                                                                   src.rows, n_head, src.cols);
        launched("copy_heads");
    }

    void linear(const DeviceMatrix& x, const DeviceWeight& w, const DeviceMatrix* bias, DeviceMatrix& out) override {
        if (x.cols != w.cols || out.cols != w.rows || x.rows != out.rows)
            throw InternalError("cuda", "linear: shapes do not match");
        const int64_t n = x.rows, K = w.cols, N = w.rows;
        if (n == 0) return;
        const float one = 1.0f, zero = 0.0f;
        // Row-major out [n, N] = x [n, K] W^T is column-major out^T = W x^T.
        if (!w.bf16) {
            check_blas(cublasSgemm(blas_, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(n), int(K), &one, static_cast<const float*>(w.ptr),
                                   int(K), x.ptr, int(x.ld), &zero, out.ptr, int(out.ld)),
                       "cublasSgemm");
        } else {
            DeviceMemory xb = raw(static_cast<size_t>(n * K) * 2);
            to_bf16_kernel<<<blocks_for(n * K), kThreads, 0, stream_>>>(x.ptr, x.ld, n, K, static_cast<__nv_bfloat16*>(xb.get()));
            launched("to_bf16");
            check_blas(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(n), int(K), &one, w.ptr, CUDA_R_16BF, int(K),
                                    xb.get(), CUDA_R_16BF, int(K), &zero, out.ptr, CUDA_R_32F, int(out.ld), CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT),
                       "cublasGemmEx(bf16)");
        }
        if (bias && !bias->empty()) {
            add_bias_kernel<<<blocks_for(n * N), kThreads, 0, stream_>>>(out.ptr, out.ld, n, N, bias->ptr);
            launched("add_bias");
        }
    }

    void rms_norm(const DeviceMatrix& x, const DeviceMatrix& weight, float eps, int64_t width, DeviceMatrix& out) override {
        if (x.rows == 0) return;
        const dim3 grid(static_cast<unsigned>(x.rows), static_cast<unsigned>(x.cols / width));
        const int threads = width >= 256 ? 256 : (width >= 128 ? 128 : 64);
        rms_norm_kernel<<<grid, threads, 0, stream_>>>(x.ptr, x.ld, weight.ptr, eps, width, out.ptr, out.ld);
        launched("rms_norm");
    }
    void rope(DeviceMatrix& x, int64_t n_head, int64_t head_width, int64_t offset, const DeviceRope& rope,
              const DeviceIndex& positions) override {
        const int64_t half = rope.dim / 2, n = x.rows * n_head * half;
        if (n == 0) return;
        rope_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(x.ptr, x.ld, x.rows, n_head, head_width, offset, rope.cos, rope.sin,
                                                             half, rope.style == RotaryStyle::interleaved, positions.ptr);
        launched("rope");
    }
    void clamp(DeviceMatrix& x, float limit) override {
        if (x.rows * x.cols == 0) return;
        clamp_kernel<<<blocks_for(x.rows * x.cols), kThreads, 0, stream_>>>(x.ptr, x.ld, x.rows, x.cols, limit);
        launched("clamp");
    }
    void add(DeviceMatrix& a, const DeviceMatrix& b) override {
        if (a.rows * a.cols == 0) return;
        add_kernel<<<blocks_for(a.rows * a.cols), kThreads, 0, stream_>>>(a.ptr, a.ld, b.ptr, b.ld, a.rows, a.cols);
        launched("add");
    }
    void silu_mul(const DeviceMatrix& gate_up, DeviceMatrix& out) override {
        if (out.rows * out.cols == 0) return;
        silu_mul_kernel<<<blocks_for(out.rows * out.cols), kThreads, 0, stream_>>>(gate_up.ptr, gate_up.ld, out.ptr, out.ld,
                                                                                   out.rows, out.cols);
        launched("silu_mul");
    }
    void scale_rows_sigmoid(DeviceMatrix& x, const DeviceMatrix& z) override {
        if (x.rows * x.cols == 0) return;
        scale_rows_sigmoid_kernel<<<blocks_for(x.rows * x.cols), kThreads, 0, stream_>>>(x.ptr, x.ld, x.rows, x.cols, z.ptr, z.ld);
        launched("scale_rows_sigmoid");
    }
    void gather_rows(const DeviceMatrix& src, const DeviceIndex& rows, DeviceMatrix& out) override {
        if (rows.size * src.cols == 0) return;
        gather_rows_kernel<<<blocks_for(rows.size * src.cols), kThreads, 0, stream_>>>(src.ptr, src.ld, rows.ptr, rows.size,
                                                                                       src.cols, out.ptr, out.ld);
        launched("gather_rows");
    }
    void scatter_add_rows(const DeviceMatrix& src, const DeviceIndex& rows, const DeviceMatrix& gates, DeviceMatrix& dst) override {
        if (rows.size * src.cols == 0) return;
        scatter_add_rows_kernel<<<blocks_for(rows.size * src.cols), kThreads, 0, stream_>>>(
            src.ptr, src.ld, rows.ptr, gates.ptr, gates.ld, rows.size, src.cols, dst.ptr, dst.ld);
        launched("scatter_add_rows");
    }

    void attention(const DeviceMatrix& q, const DeviceMatrix& k, const DeviceMatrix& v, int64_t n_head, int64_t n_head_kv,
                   int64_t d_qk, int64_t d_v, float scale, int64_t window, const int64_t* seq_begin, int64_t n_seq,
                   DeviceMatrix& out) override {
        const int64_t rep = n_head / n_head_kv;
        int64_t max_len = 0;
        for (int64_t s = 0; s < n_seq; ++s) max_len = std::max(max_len, seq_begin[s + 1] - seq_begin[s]);
        if (max_len == 0) return;
        // Query heads per batched GEMM: all of a key/value head's, unless their scores would pass 1 GiB.
        const int64_t per_head = max_len * max_len;
        const int64_t batch = std::max<int64_t>(1, std::min<int64_t>(rep, (int64_t(1) << 28) / per_head));
        DeviceMemory scores_mem = raw(static_cast<size_t>(batch * per_head) * sizeof(float));
        float* scores = static_cast<float*>(scores_mem.get());
        const float one = 1.0f, zero = 0.0f;
        for (int64_t s = 0; s < n_seq; ++s) {
            const int64_t b = seq_begin[s], len = seq_begin[s + 1] - b;
            const long long ll = len * len;
            for (int64_t g = 0; g < n_head_kv; ++g)
                for (int64_t h0 = g * rep; h0 < (g + 1) * rep; h0 += batch) {
                    const int64_t nb = std::min(batch, (g + 1) * rep - h0);
                    const float* K = k.ptr + b * k.ld + g * d_qk;
                    const float* V = v.ptr + b * v.ld + g * d_v;
                    const float* Q = q.ptr + b * q.ld + h0 * d_qk;
                    float* O = out.ptr + b * out.ld + h0 * d_v;
                    // scores_h [len(query), len(key)] row-major = Q_h K^T: column-major K Q_h^T.
                    check_blas(cublasSgemmStridedBatched(blas_, CUBLAS_OP_T, CUBLAS_OP_N, int(len), int(len), int(d_qk), &one, K,
                                                         int(k.ld), 0, Q, int(q.ld), d_qk, &zero, scores, int(len), ll, int(nb)),
                               "cublasSgemmStridedBatched(scores)");
                    causal_softmax_kernel<<<static_cast<unsigned>(nb * len), kThreads, 0, stream_>>>(scores, len, scale, window);
                    launched("causal_softmax");
                    // out_h [len, d_v] = P_h V: column-major V^T P_h^T.
                    check_blas(cublasSgemmStridedBatched(blas_, CUBLAS_OP_N, CUBLAS_OP_N, int(d_v), int(len), int(len), &one, V,
                                                         int(v.ld), 0, scores, int(len), ll, &zero, O, int(out.ld), d_v, int(nb)),
                               "cublasSgemmStridedBatched(values)");
                }
        }
    }

    void score_rows(const DeviceMatrix& logits, const DeviceMatrix* ref, const DeviceIndex& targets, DeviceMatrix& out) override {
        if (logits.rows == 0) return;
        score_rows_kernel<<<static_cast<unsigned>(logits.rows), kThreads, 0, stream_>>>(
            logits.ptr, logits.ld, ref ? ref->ptr : nullptr, ref ? ref->ld : 0, targets.ptr, logits.cols, out.ptr, out.ld);
        launched("score_rows");
    }

private:
    void launched(const char* what) { check(cudaGetLastError(), what); }

    int device_;
    std::string name_;
    cudaStream_t stream_ = nullptr;
    cublasHandle_t blas_ = nullptr;
};

}  // namespace

std::unique_ptr<DeviceOps> make_cuda_ops(int device) { return std::make_unique<CudaOps>(device); }

}  // namespace moekit::backend
