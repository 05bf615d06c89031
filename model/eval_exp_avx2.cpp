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

void exp_shifted_avx2(const float* x, int64_t n, float mx, float* e) {
    moekit_eigen_avx2::Map<moekit_eigen_avx2::ArrayXf>(e, n) = (moekit_eigen_avx2::Map<const moekit_eigen_avx2::ArrayXf>(x, n) - mx).exp();
}

}  // namespace moekit::model::detail
#else
namespace moekit::model::detail {

bool exp_shifted_avx2_available() { return false; }
void exp_shifted_avx2(const float* x, int64_t n, float mx, float* e) { exp_shifted_base(x, n, mx, e); }

}  // namespace moekit::model::detail
#endif
