// The AVX-512 build of model/eval_exp.h (compiled with -mavx512f -mavx512dq -mfma,
// CMakeLists.txt); the body is model/eval_exp_simd.inc. 16 lanes instead of 8: on the demo model
// the softmax exps were 13 % of `moekit eval`'s time in the AVX2 build.
#include "model/eval_exp.h"

#if defined(MOEKIT_EVAL_EXP_AVX512) && defined(__AVX512F__)
#define MOEKIT_SIMD_CPU_HAS \
    (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma"))
#endif
#define MOEKIT_SIMD_EIGEN moekit_eigen_avx512
#define MOEKIT_SIMD_AVAILABLE exp_shifted_avx512_available
#define MOEKIT_SIMD_EXP exp_shifted_avx512
#define MOEKIT_SIMD_SILU silu_mul_avx512
#include "model/eval_exp_simd.inc"
