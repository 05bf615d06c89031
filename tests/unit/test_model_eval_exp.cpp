// model/eval_exp.h: the baseline, AVX2 and AVX-512 builds of eval's softmax exp all stay within a
// few ulp of exp over the range scoring feeds them (x - max <= 0, down to underflow) and odd lengths
// (vector tails, where Eigen falls back to libm's expf). They are not bit-identical (a lane's
// value can come from the polynomial in one build and from expf in another; the AVX-512 build uses
// FMA); the demo perplexity moves by ~6e-9 relative between the AVX2 and AVX-512 builds.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "model/eval_exp.h"

using namespace moekit::model::detail;

namespace {

struct Build {
    const char* name;
    bool available;
    void (*exp)(const float*, int64_t, float, float*);
    void (*silu)(float*, const float*, int64_t);
};

// The SIMD builds this binary and CPU have (each is skipped loudly when it is not).
std::vector<Build> simd_builds() {
    return {{"avx2", exp_shifted_avx2_available(), exp_shifted_avx2, silu_mul_avx2},
            {"avx512", exp_shifted_avx512_available(), exp_shifted_avx512, silu_mul_avx512}};
}

}  // namespace

TEST(EvalExp, SimdBuildsAndBaselineWithinUlps) {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-120.0f, 30.0f);
    for (const Build& build : simd_builds()) {
        if (!build.available) {
            std::printf("*** SKIPPED: no %s build or CPU\n", build.name);
            continue;
        }
        for (const int64_t n : {1, 3, 7, 8, 15, 17, 33, 4096, 4099}) {
            std::vector<float> x(static_cast<size_t>(n));
            for (float& v : x) v = u(rng);
            float mx = x[0];
            for (float v : x) mx = std::max(mx, v);
            std::vector<float> a(x.size()), b(x.size()), c(x.size());
            exp_shifted_base(x.data(), n, mx, a.data());
            build.exp(x.data(), n, mx, b.data());
            exp_shifted(x.data(), n, mx, c.data());  // the dispatched build: one of the checked ones
            int64_t differ = 0;
            for (size_t i = 0; i < a.size(); ++i) {
                differ += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
                // Eigen's polynomial in vector lanes, libm's expf in the scalar tail: both within a
                // few ulp of exp (the ~1e-7 relative per term changes a log-sum-exp by <= ~1e-7).
                const float ref = std::exp(x[i] - mx);
                EXPECT_NEAR(a[i], ref, 4e-7f * ref + 1e-38f) << "baseline, n = " << n << ", i = " << i;
                EXPECT_NEAR(b[i], ref, 4e-7f * ref + 1e-38f) << build.name << ", n = " << n << ", i = " << i;
                EXPECT_NEAR(c[i], ref, 4e-7f * ref + 1e-38f) << "dispatched, n = " << n << ", i = " << i;
            }
            std::printf("%s, n = %lld: %lld of %lld values differ from the baseline in their last bits\n", build.name,
                        (long long)n, (long long)differ, (long long)n);
        }
    }
}

// SwiGLU's activation, every build, against silu(g) * u in double, in place and with odd lengths;
// the SIMD builds do not depend on the buffer's alignment (they go through aligned blocks).
TEST(EvalExp, SiluMulBuildsMatchDouble) {
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> u(-30.0f, 30.0f);
    std::vector<Build> builds = simd_builds();
    builds.push_back({"baseline", true, exp_shifted_base, silu_mul_base});
    for (const int64_t n : {1, 5, 8, 17, 128, 1029}) {
        std::vector<float> g(static_cast<size_t>(n) + 1), up(static_cast<size_t>(n));
        for (float& v : g) v = u(rng);
        for (float& v : up) v = u(rng);
        for (const int offset : {0, 1}) {  // an unaligned start too
            std::vector<float> dispatched(g.begin() + offset, g.begin() + offset + n);
            silu_mul(dispatched.data(), up.data(), n);
            bool matches_a_build = false;
            for (const Build& build : builds) {
                if (!build.available) continue;
                std::vector<float> b(g.begin() + offset, g.begin() + offset + n);
                build.silu(b.data(), up.data(), n);
                for (int64_t i = 0; i < n; ++i) {
                    const double x = g[static_cast<size_t>(i + offset)];
                    const double ref = x / (1.0 + std::exp(-x)) * up[static_cast<size_t>(i)];
                    EXPECT_NEAR(b[static_cast<size_t>(i)], ref, 1e-6 * std::abs(ref) + 1e-30)
                        << build.name << ", n = " << n << ", i = " << i;
                }
                matches_a_build |= std::memcmp(b.data(), dispatched.data(), b.size() * sizeof(float)) == 0;
            }
            EXPECT_TRUE(matches_a_build) << "the dispatched silu_mul equals one of the builds, n = " << n;
        }
    }
}
