// model/eval_exp.h: the AVX2 and baseline builds of eval's softmax exp both stay within a few
// ulp of exp over the range scoring feeds them (x - max <= 0, down to underflow) and odd lengths
// (vector tails, where Eigen falls back to libm's expf). They are not bit-identical (a lane's
// value can come from the polynomial in one build and from expf in the other, at different tail
// positions); the demo perplexity is unchanged to 1e-16 (bench_eval, README).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "model/eval_exp.h"

using namespace moekit::model::detail;

TEST(EvalExp, Avx2AndBaselineWithinUlps) {
    if (!exp_shifted_avx2_available()) GTEST_SKIP() << "no AVX2 build or CPU";
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-120.0f, 30.0f);
    for (const int64_t n : {1, 3, 7, 8, 15, 33, 4096, 4099}) {
        std::vector<float> x(static_cast<size_t>(n));
        for (float& v : x) v = u(rng);
        float mx = x[0];
        for (float v : x) mx = std::max(mx, v);
        std::vector<float> a(x.size()), b(x.size());
        exp_shifted_base(x.data(), n, mx, a.data());
        exp_shifted_avx2(x.data(), n, mx, b.data());
        int64_t differ = 0;
        for (size_t i = 0; i < a.size(); ++i) {
            differ += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
            // Eigen's polynomial in vector lanes, libm's expf in the scalar tail: both within a
            // few ulp of exp (the ~1e-7 relative per term changes a log-sum-exp by <= ~1e-7).
            const float ref = std::exp(x[i] - mx);
            EXPECT_NEAR(a[i], ref, 4e-7f * ref + 1e-38f) << "baseline, n = " << n << ", i = " << i;
            EXPECT_NEAR(b[i], ref, 4e-7f * ref + 1e-38f) << "avx2, n = " << n << ", i = " << i;
        }
        std::printf("n = %lld: %lld of %lld values differ in their last bits\n", (long long)n, (long long)differ, (long long)n);
    }
}

// SwiGLU's activation, both builds, against silu(g) * u in double, in place and with odd lengths;
// the AVX2 build does not depend on the buffer's alignment (it goes through aligned blocks).
TEST(EvalExp, SiluMulBuildsMatchDouble) {
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> u(-30.0f, 30.0f);
    for (const int64_t n : {1, 5, 8, 17, 128, 1029}) {
        std::vector<float> g(static_cast<size_t>(n) + 1), up(static_cast<size_t>(n));
        for (float& v : g) v = u(rng);
        for (float& v : up) v = u(rng);
        for (const int offset : {0, 1}) {  // an unaligned start too
            std::vector<float> a(g.begin() + offset, g.begin() + offset + n), b = a;
            silu_mul_base(a.data(), up.data(), n);
            if (exp_shifted_avx2_available()) silu_mul_avx2(b.data(), up.data(), n);
            else b = a;
            std::vector<float> c(g.begin() + offset, g.begin() + offset + n);
            silu_mul(c.data(), up.data(), n);
            for (int64_t i = 0; i < n; ++i) {
                const double x = g[static_cast<size_t>(i + offset)];
                const double ref = x / (1.0 + std::exp(-x)) * up[static_cast<size_t>(i)];
                const double tol = 1e-6 * std::abs(ref) + 1e-30;
                EXPECT_NEAR(a[static_cast<size_t>(i)], ref, tol) << "baseline, n = " << n << ", i = " << i;
                EXPECT_NEAR(b[static_cast<size_t>(i)], ref, tol) << "avx2, n = " << n << ", i = " << i;
                EXPECT_EQ(c[static_cast<size_t>(i)], exp_shifted_avx2_available() ? b[static_cast<size_t>(i)] : a[static_cast<size_t>(i)]);
            }
        }
    }
}
