// Baseline builds and run-time dispatch of the vector math in model/eval_exp.h (the AVX2 builds
// are in model/eval_exp_avx2.cpp).
#include "model/eval_exp.h"

#include <Eigen/Core>

namespace moekit::model {

namespace detail {

void exp_shifted_base(const float* x, int64_t n, float mx, float* e) {
    Eigen::Map<Eigen::ArrayXf>(e, n) = (Eigen::Map<const Eigen::ArrayXf>(x, n) - mx).exp();
}

void exp_shifted(const float* x, int64_t n, float mx, float* e) {
    static const bool avx2 = exp_shifted_avx2_available();
    if (avx2)
        exp_shifted_avx2(x, n, mx, e);
    else
        exp_shifted_base(x, n, mx, e);
}

void silu_mul_base(float* g, const float* u, int64_t n) {
    Eigen::Map<Eigen::ArrayXf> gm(g, n);
    gm = gm / (1.0f + (-gm).exp()) * Eigen::Map<const Eigen::ArrayXf>(u, n);
}

void silu_mul(float* g, const float* u, int64_t n) {
    static const bool avx2 = exp_shifted_avx2_available();
    if (avx2)
        silu_mul_avx2(g, u, n);
    else
        silu_mul_base(g, u, n);
}

}  // namespace detail

}  // namespace moekit::model
