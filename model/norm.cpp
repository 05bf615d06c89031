#include "model/norm.h"

#include <cmath>

#include "core/error.h"
#include "model/engine_weights.h"

namespace moekit::model::detail {

namespace {

inline void norm_span(const float* x, float* y, int64_t n, const float* w, float eps) {
    const Eigen::Map<const Eigen::ArrayXf> xs(x, n);
    const float var = xs.square().sum() / static_cast<float>(n);
    const float r = 1.0f / std::sqrt(var + eps);
    Eigen::Map<Eigen::ArrayXf>(y, n) = Eigen::Map<const Eigen::ArrayXf>(w, n) * (xs * r);
}

}  // namespace

void rms_norm(const Matrix& x, const Weight& weight, float eps, Matrix& out, int n_threads) {
    const int64_t n = x.rows(), d = x.cols();
    if (weight.rows * weight.cols != d)
        throw Error("engine", "RMSNorm weight has " + std::to_string(weight.rows * weight.cols) +
                                          " entries for rows of width " + std::to_string(d));
    if (&out != &x) out.resize(n, d);
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n * d > 65536)
    for (int64_t t = 0; t < n; ++t) norm_span(x.row(t).data(), out.row(t).data(), d, weight.data.data(), eps);
}

void rms_norm_segments(Matrix& x, int64_t col0, int64_t n_seg, int64_t width, const Weight& weight, float eps,
                       int n_threads) {
    if (weight.rows * weight.cols != width)
        throw Error("engine", "per-head RMSNorm weight has " + std::to_string(weight.rows * weight.cols) +
                                          " entries for heads of width " + std::to_string(width));
    const int64_t n = x.rows();
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n * n_seg * width > 65536)
    for (int64_t t = 0; t < n; ++t)
        for (int64_t s = 0; s < n_seg; ++s) {
            float* p = x.row(t).data() + col0 + s * width;
            norm_span(p, p, width, weight.data.data(), eps);
        }
}

}  // namespace moekit::model::detail
