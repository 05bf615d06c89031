// DeviceOps on the host (model/device_ops_host.h): "device memory" is ordinary memory and every
// kernel is a plain loop or an Eigen product. It exists so that the engine's device path
// (model/engine_device.cpp: weight upload, layer orchestration, expert gather/scatter, routing
// round trip, observers) runs and is tested in CI, where there is no GPU; the CUDA
// implementation (cuda/device_ops.cu) is tested against the same engine on a GPU machine.
// bf16 weights are emulated exactly as the CUDA GEMM treats them: weights and the input rows are
// rounded to bf16, products accumulate in fp32.
#include "model/device_ops_host.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <Eigen/Core>

#include "core/dtype.h"
#include "core/error.h"

namespace moekit::model {

namespace {

using backend::DeviceIndex;
using backend::DeviceMatrix;
using backend::DeviceRope;
using backend::DeviceWeight;

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Strided = Eigen::Map<RowMajor, 0, Eigen::OuterStride<>>;
using ConstStrided = Eigen::Map<const RowMajor, 0, Eigen::OuterStride<>>;

Strided map(DeviceMatrix& m) { return Strided(m.ptr, m.rows, m.cols, Eigen::OuterStride<>(m.ld)); }
ConstStrided cmap(const DeviceMatrix& m) { return ConstStrided(m.ptr, m.rows, m.cols, Eigen::OuterStride<>(m.ld)); }

float round_bf16(float v) { return core::bf16_to_f32(core::f32_to_bf16(v)); }

void check_rows(const char* op, int64_t a, int64_t b) {
    if (a != b) throw InternalError("device", std::string(op) + ": row counts differ (" + std::to_string(a) + " vs " + std::to_string(b) + ")");
}

class HostOps final : public backend::DeviceOps {
public:
    explicit HostOps(int n_threads) : n_threads_(std::max(1, n_threads)) {}

    std::string describe() const override { return "host"; }
    uint64_t free_memory() const override { return 0; }

    DeviceMatrix alloc(int64_t rows, int64_t cols) override {
        auto mem = std::shared_ptr<void>(::operator new(static_cast<size_t>(std::max<int64_t>(1, rows * cols)) * sizeof(float)),
                                         [](void* p) { ::operator delete(p); });
        return {mem, static_cast<float*>(mem.get()), rows, cols, cols};
    }
    DeviceMatrix upload(const float* src, int64_t rows, int64_t cols) override {
        DeviceMatrix m = alloc(rows, cols);
        if (rows * cols > 0) std::memcpy(m.ptr, src, static_cast<size_t>(rows * cols) * sizeof(float));
        return m;
    }
    void download(const DeviceMatrix& src, float* dst) override {
        for (int64_t r = 0; r < src.rows; ++r)
            std::memcpy(dst + r * src.cols, src.ptr + r * src.ld, static_cast<size_t>(src.cols) * sizeof(float));
    }
    DeviceIndex upload_index(const int32_t* values, int64_t n) override {
        auto mem = std::shared_ptr<void>(::operator new(static_cast<size_t>(std::max<int64_t>(1, n)) * sizeof(int32_t)),
                                         [](void* p) { ::operator delete(p); });
        if (n > 0) std::memcpy(mem.get(), values, static_cast<size_t>(n) * sizeof(int32_t));
        return {mem, static_cast<const int32_t*>(mem.get()), n};
    }
    DeviceWeight upload_weight(const float* src, int64_t rows, int64_t cols, bool bf16) override {
        DeviceMatrix m = upload(src, rows, cols);
        if (bf16)
            for (int64_t i = 0; i < rows * cols; ++i) m.ptr[i] = round_bf16(m.ptr[i]);
        return {m.mem, m.ptr, rows, cols, bf16};
    }
    DeviceRope upload_rope(const float* cos, const float* sin, int64_t n_pos, int64_t dim,
                           backend::RotaryStyle style) override {
        const int64_t half = dim / 2;
        DeviceMatrix m = alloc(2, n_pos * half);
        std::memcpy(m.ptr, cos, static_cast<size_t>(n_pos * half) * sizeof(float));
        std::memcpy(m.ptr + n_pos * half, sin, static_cast<size_t>(n_pos * half) * sizeof(float));
        return {m.mem, m.ptr, m.ptr + n_pos * half, n_pos, dim, style};
    }
    void synchronize() override {}

    void fill_zero(DeviceMatrix& x) override { map(x).setZero(); }

    void copy_heads(const DeviceMatrix& src, int64_t src_stride, DeviceMatrix& dst, int64_t dst_stride,
                    int64_t n_head) override {
        check_rows("copy_heads", src.rows, dst.rows);
        for (int64_t t = 0; t < src.rows; ++t)
            for (int64_t h = 0; h < n_head; ++h)
                std::memcpy(dst.ptr + t * dst.ld + h * dst_stride, src.ptr + t * src.ld + h * src_stride,
                            static_cast<size_t>(src.cols) * sizeof(float));
    }

    void linear(const DeviceMatrix& x, const DeviceWeight& w, const DeviceMatrix* bias, DeviceMatrix& out) override {
        if (x.cols != w.cols || out.cols != w.rows) throw InternalError("device", "linear: shapes do not match");
        check_rows("linear", x.rows, out.rows);
        const Eigen::Map<const RowMajor> W(static_cast<const float*>(w.ptr), w.rows, w.cols);
        auto o = map(out);
        if (w.bf16) {
            RowMajor xr = cmap(x).unaryExpr([](float v) { return round_bf16(v); });
            o.noalias() = xr * W.transpose();
        } else {
            o.noalias() = cmap(x) * W.transpose();
        }
        if (bias && !bias->empty()) o.rowwise() += cmap(*bias).row(0);
    }

    void rms_norm(const DeviceMatrix& x, const DeviceMatrix& weight, float eps, int64_t width, DeviceMatrix& out) override {
        check_rows("rms_norm", x.rows, out.rows);
        const float* w = weight.ptr;
        for (int64_t t = 0; t < x.rows; ++t)
            for (int64_t c0 = 0; c0 < x.cols; c0 += width) {
                const float* in = x.ptr + t * x.ld + c0;
                float* o = out.ptr + t * out.ld + c0;
                float ss = 0.0f;
                for (int64_t i = 0; i < width; ++i) ss += in[i] * in[i];
                const float inv = 1.0f / std::sqrt(ss / static_cast<float>(width) + eps);
                for (int64_t i = 0; i < width; ++i) o[i] = w[i] * (in[i] * inv);
            }
    }

    void rope(DeviceMatrix& x, int64_t n_head, int64_t head_width, int64_t offset, const DeviceRope& rope,
              const DeviceIndex& positions) override {
        check_rows("rope", x.rows, positions.size);
        const int64_t half = rope.dim / 2;
        for (int64_t t = 0; t < x.rows; ++t) {
            const int64_t pos = positions.ptr[t];
            const float* c = rope.cos + pos * half;
            const float* s = rope.sin + pos * half;
            for (int64_t h = 0; h < n_head; ++h) {
                float* v = x.ptr + t * x.ld + h * head_width + offset;
                for (int64_t i = 0; i < half; ++i) {
                    float* pa = rope.style == backend::RotaryStyle::half ? v + i : v + 2 * i;
                    float* pb = rope.style == backend::RotaryStyle::half ? v + i + half : v + 2 * i + 1;
                    const float a = *pa, b = *pb;
                    *pa = a * c[i] - b * s[i];
                    *pb = b * c[i] + a * s[i];
                }
            }
        }
    }

    void clamp(DeviceMatrix& x, float limit) override {
        auto m = map(x);
        m = m.cwiseMax(-limit).cwiseMin(limit);
    }
    void add(DeviceMatrix& a, const DeviceMatrix& b) override {
        check_rows("add", a.rows, b.rows);
        map(a) += cmap(b);
    }
    void silu_mul(const DeviceMatrix& gate_up, DeviceMatrix& out) override {
        check_rows("silu_mul", gate_up.rows, out.rows);
        const int64_t F = out.cols;
        for (int64_t t = 0; t < out.rows; ++t)
            for (int64_t i = 0; i < F; ++i) {
                const float g = gate_up.ptr[t * gate_up.ld + i], u = gate_up.ptr[t * gate_up.ld + F + i];
                out.ptr[t * out.ld + i] = g / (1.0f + std::exp(-g)) * u;
            }
    }
    void scale_rows_sigmoid(DeviceMatrix& x, const DeviceMatrix& z) override {
        check_rows("scale_rows_sigmoid", x.rows, z.rows);
        auto m = map(x);
        for (int64_t t = 0; t < x.rows; ++t) m.row(t) *= 1.0f / (1.0f + std::exp(-z.ptr[t * z.ld]));
    }
    void gather_rows(const DeviceMatrix& src, const DeviceIndex& rows, DeviceMatrix& out) override {
        check_rows("gather_rows", rows.size, out.rows);
        for (int64_t i = 0; i < rows.size; ++i)
            std::memcpy(out.ptr + i * out.ld, src.ptr + int64_t(rows.ptr[i]) * src.ld, static_cast<size_t>(src.cols) * sizeof(float));
    }
    void scatter_add_rows(const DeviceMatrix& src, const DeviceIndex& rows, const DeviceMatrix& gates,
                          DeviceMatrix& dst) override {
        check_rows("scatter_add_rows", rows.size, src.rows);
        auto d = map(dst);
        const auto s = cmap(src);
        for (int64_t i = 0; i < rows.size; ++i) d.row(rows.ptr[i]) += gates.ptr[i * gates.ld] * s.row(i);
    }

    void attention(const DeviceMatrix& q, const DeviceMatrix& k, const DeviceMatrix& v, int64_t n_head,
                   int64_t n_head_kv, int64_t d_qk, int64_t d_v, float scale, int64_t window,
                   const int64_t* seq_begin, int64_t n_seq, DeviceMatrix& out) override {
        const int64_t group = n_head / n_head_kv;
        const auto Q = cmap(q), K = cmap(k), V = cmap(v);
        auto O = map(out);
        for (int64_t s = 0; s < n_seq; ++s) {
            const int64_t b = seq_begin[s], len = seq_begin[s + 1] - b;
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads_)
            for (int64_t h = 0; h < n_head; ++h) {
                const int64_t g = h / group;
                RowMajor scores = Q.block(b, h * d_qk, len, d_qk) * K.block(b, g * d_qk, len, d_qk).transpose();
                for (int64_t i = 0; i < len; ++i) {
                    const int64_t lo = window > 0 ? std::max<int64_t>(0, i - window + 1) : 0;
                    float mx = -INFINITY;
                    for (int64_t j = lo; j <= i; ++j) mx = std::max(mx, scores(i, j) * scale);
                    float sum = 0.0f;
                    for (int64_t j = 0; j < len; ++j) {
                        const float e = (j >= lo && j <= i) ? std::exp(scores(i, j) * scale - mx) : 0.0f;
                        scores(i, j) = e;
                        sum += e;
                    }
                    scores.row(i) /= sum;
                }
                O.block(b, h * d_v, len, d_v).noalias() = scores * V.block(b, g * d_v, len, d_v);
            }
        }
    }

    void score_rows(const DeviceMatrix& logits, const DeviceMatrix* ref, const DeviceIndex& targets,
                    DeviceMatrix& out) override {
        check_rows("score_rows", logits.rows, targets.size);
        const int64_t V = logits.cols;
        struct Row {
            double lse = 0, sum = 0;
            int64_t argmax = 0;
        };
        auto stats = [V](const float* x) {
            Row r;
            float mx = x[0];
            for (int64_t v = 1; v < V; ++v)
                if (x[v] > mx) mx = x[v], r.argmax = v;
            for (int64_t v = 0; v < V; ++v) r.sum += std::exp(double(x[v]) - mx);
            r.lse = mx + std::log(r.sum);
            return r;
        };
#pragma omp parallel for schedule(static) num_threads(n_threads_)
        for (int64_t i = 0; i < logits.rows; ++i) {
            float* o = out.ptr + i * out.ld;
            std::fill(o, o + 4, 0.0f);
            const int32_t t = targets.ptr[i];
            if (t < 0) continue;
            const float* xm = logits.ptr + i * logits.ld;
            const Row m = stats(xm);
            o[0] = static_cast<float>(m.lse - xm[t]);
            if (!ref) continue;
            const float* xr = ref->ptr + i * ref->ld;
            const Row r = stats(xr);
            o[1] = static_cast<float>(r.lse - xr[t]);
            const double c = r.lse - m.lse;
            double kl = 0;
            for (int64_t v = 0; v < V; ++v) kl += std::exp(double(xr[v]) - r.lse) * ((double(xr[v]) - xm[v]) - c);
            o[2] = static_cast<float>(std::max(kl, 0.0));
            o[3] = m.argmax == r.argmax ? 1.0f : 0.0f;
        }
    }

private:
    int n_threads_;
};

}  // namespace

std::unique_ptr<backend::DeviceOps> make_host_ops(int n_threads) { return std::make_unique<HostOps>(n_threads); }

}  // namespace moekit::model
