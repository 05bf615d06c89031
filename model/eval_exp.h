// e[v] = exp(x[v] - mx) for v in [0, n), in fp32, as Eigen's vectorized exp computes it; the
// scoring loop of `moekit eval` (model/eval.cpp) spends most of its time here (4096-wide vocabulary
// rows on the demo model). Three builds of the same Eigen expression, chosen at run time (the
// widest the CPU has): the baseline one (SSE2 on x86-64), one compiled with -mavx2 -mno-fma
// (model/eval_exp_avx2.cpp) and one with -mavx512f -mavx512dq -mfma (model/eval_exp_avx512.cpp).
// Each evaluates Eigen's pexp_float polynomial per vector lane and libm's expf on the tail that
// does not fill a vector; the builds differ in the last bits of some values
// (tests/unit/test_model_eval_exp.cpp bounds every build against exp: a few ulp), which moves a
// row's log-sum-exp by ~1e-7 at most.
#pragma once

#include <cstdint>

namespace moekit::model::detail {

void exp_shifted(const float* x, int64_t n, float mx, float* e);       // dispatches
void exp_shifted_base(const float* x, int64_t n, float mx, float* e);  // baseline ISA
bool exp_shifted_avx2_available();
void exp_shifted_avx2(const float* x, int64_t n, float mx, float* e);    // only if available
bool exp_shifted_avx512_available();
void exp_shifted_avx512(const float* x, int64_t n, float mx, float* e);  // only if available

// SwiGLU's activation in place: g[i] = g[i] / (1 + exp(-g[i])) * u[i] for i < n (the expert,
// shared and dense MLPs), the same three builds with the same dispatch. e may alias x above.
void silu_mul(float* g, const float* u, int64_t n);        // dispatches
void silu_mul_base(float* g, const float* u, int64_t n);   // baseline ISA
void silu_mul_avx2(float* g, const float* u, int64_t n);   // only if exp_shifted_avx2_available()
void silu_mul_avx512(float* g, const float* u, int64_t n); // only if exp_shifted_avx512_available()

}  // namespace moekit::model::detail
