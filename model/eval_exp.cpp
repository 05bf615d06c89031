// Baseline builds and run-time dispatch of the vector math in model/eval_exp.h (the AVX2 and
// AVX-512 builds are model/eval_exp_avx2.cpp and model/eval_exp_avx512.cpp).
#include "model/eval_exp.h"

#include <Eigen/Core>

namespace moekit::model {

namespace detail {

namespace {

enum class Isa { kBase, kAvx2, kAvx512 };

Isa best_isa() {
    static const Isa isa = exp_shifted_avx512_available() ? Isa::kAvx512
                           : exp_shifted_avx2_available() ? Isa::kAvx2
                                                          : Isa::kBase;
    return isa;
}

}  // namespace

void exp_shifted_base(const float* x, int64_t n, float mx, float* e) {
    Eigen::Map<Eigen::ArrayXf>(e, n) = (Eigen::Map<const Eigen::ArrayXf>(x, n) - mx).exp();
}

void exp_shifted(const float* x, int64_t n, float mx, float* e) {
    switch (best_isa()) {
        case Isa::kAvx512: return exp_shifted_avx512(x, n, mx, e);
        case Isa::kAvx2: return exp_shifted_avx2(x, n, mx, e);
        case Isa::kBase: return exp_shifted_base(x, n, mx, e);
    }
}

void silu_mul_base(float* g, const float* u, int64_t n) {
    Eigen::Map<Eigen::ArrayXf> gm(g, n);
    gm = gm / (1.0f + (-gm).exp()) * Eigen::Map<const Eigen::ArrayXf>(u, n);
}

void silu_mul(float* g, const float* u, int64_t n) {
    switch (best_isa()) {
        case Isa::kAvx512: return silu_mul_avx512(g, u, n);
        case Isa::kAvx2: return silu_mul_avx2(g, u, n);
        case Isa::kBase: return silu_mul_base(g, u, n);
    }
}

}  // namespace detail

}  // namespace moekit::model
