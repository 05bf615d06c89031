// The AVX2 build of exp_shifted (model/eval_exp.h). This translation unit is compiled with -mavx2
// (CMakeLists.txt) and includes Eigen under a private namespace name, so none of its template
// instances (compiled for AVX2) can be merged by the linker with the baseline ones used
// everywhere else; it includes nothing else that emits inline code.
#include "model/eval_exp.h"

#if defined(MOEKIT_EVAL_EXP_AVX2) && defined(__AVX2__)
#define Eigen moekit_eigen_avx2
#include <Eigen/Core>

namespace moekit::model::detail {

bool exp_shifted_avx2_available() { return __builtin_cpu_supports("avx2"); }

// Through a 32-byte aligned block buffer: Eigen peels unaligned leading destination elements
// to libm's expf, so writing straight to e would make a value depend on e's address (two buffers
// of the same row, e.g. model and --ref, then differed in their last bits). Here the split
// between polynomial lanes and expf depends only on the position in the row.
void exp_shifted_avx2(const float* x, int64_t n, float mx, float* e) {
    namespace E = moekit_eigen_avx2;
    constexpr int64_t kBlock = 512;
    alignas(32) float buf[kBlock];
    for (int64_t v0 = 0; v0 < n; v0 += kBlock) {
        const int64_t m = n - v0 < kBlock ? n - v0 : kBlock;
        E::Map<E::ArrayXf, E::Aligned32>(buf, m) = (E::Map<const E::ArrayXf>(x + v0, m) - mx).exp();
        for (int64_t i = 0; i < m; ++i) e[v0 + i] = buf[i];
    }
}

// Through aligned block buffers for the same reason as exp_shifted_avx2.
void silu_mul_avx2(float* g, const float* u, int64_t n) {
    namespace E = moekit_eigen_avx2;
    constexpr int64_t kBlock = 512;
    alignas(32) float gb[kBlock];
    alignas(32) float ub[kBlock];
    for (int64_t v0 = 0; v0 < n; v0 += kBlock) {
        const int64_t m = n - v0 < kBlock ? n - v0 : kBlock;
        for (int64_t i = 0; i < m; ++i) gb[i] = g[v0 + i], ub[i] = u[v0 + i];
        E::Map<E::ArrayXf, E::Aligned32> gm(gb, m);
        gm = gm / (1.0f + (-gm).exp()) * E::Map<const E::ArrayXf, E::Aligned32>(ub, m);
        for (int64_t i = 0; i < m; ++i) g[v0 + i] = gb[i];
    }
}

}  // namespace moekit::model::detail
#else
namespace moekit::model::detail {

bool exp_shifted_avx2_available() { return false; }
void exp_shifted_avx2(const float* x, int64_t n, float mx, float* e) { exp_shifted_base(x, n, mx, e); }
void silu_mul_avx2(float* g, const float* u, int64_t n) { silu_mul_base(g, u, n); }

}  // namespace moekit::model::detail
#endif
