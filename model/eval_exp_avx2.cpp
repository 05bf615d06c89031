// The AVX2 build of model/eval_exp.h (compiled with -mavx2 -mno-fma, CMakeLists.txt); the body is
// model/eval_exp_simd.inc. It includes nothing else that emits inline code.
#include "model/eval_exp.h"

#if defined(MOEKIT_EVAL_EXP_AVX2) && defined(__AVX2__)
#define MOEKIT_SIMD_CPU_HAS __builtin_cpu_supports("avx2")
#endif
#define MOEKIT_SIMD_EIGEN moekit_eigen_avx2
#define MOEKIT_SIMD_AVAILABLE exp_shifted_avx2_available
#define MOEKIT_SIMD_EXP exp_shifted_avx2
#define MOEKIT_SIMD_SILU silu_mul_avx2
#include "model/eval_exp_simd.inc"
