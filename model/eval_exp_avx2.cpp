// The AVX2 build of model/eval_exp.h (compiled with -mavx2 -mno-fma, CMakeLists.txt); the body is
// model/eval_exp_simd.inc. It includes nothing else that emits inline code.
#include "model/eval_exp.h"

#if defined(MOEKIT_EVAL_EXP_AVX2) && defined(__AVX2__)
#define MOEKIT_SIMD_EIGEN moekit_eigen_avx2
#define MOEKIT_SIMD_ALIGN 32
#define MOEKIT_SIMD_EXP exp_shifted_avx2
#define MOEKIT_SIMD_SILU silu_mul_avx2
#include "model/eval_exp_simd.inc"

namespace moekit::model::detail {
bool exp_shifted_avx2_available() { return __builtin_cpu_supports("avx2"); }
}  // namespace moekit::model::detail
#else
namespace moekit::model::detail {

bool exp_shifted_avx2_available() { return false; }
void exp_shifted_avx2(const float* x, int64_t n, float mx, float* e) { exp_shifted_base(x, n, mx, e); }
void silu_mul_avx2(float* g, const float* u, int64_t n) { silu_mul_base(g, u, n); }

}  // namespace moekit::model::detail
#endif
