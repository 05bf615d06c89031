// core/gemm_bf16.h against a CPU reference: the same product with both operands rounded to bf16
// (core::f32_to_bf16) and accumulated in double. The backend accumulates in fp32, so the error
// bound is fp32 accumulation error over K terms, far below bf16 rounding of the inputs; and the
// fp32 product (no rounding) differs by about bf16's 2^-8 relative step. Skipped without a backend.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/gemm_bf16.h"

namespace bf16 = moekit::core::bf16;

namespace {

float round_bf16(float v) { return moekit::core::bf16_to_f32(moekit::core::f32_to_bf16(v)); }

}  // namespace

TEST(GemmBf16, MatchesRoundedReference) {
    if (!bf16::available()) GTEST_SKIP() << "built without a bf16 GEMM backend";
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.f, 1.f);
    // Rows that are not multiples of any block size, strided x and out (ldx > cols, ldo > rows).
    for (const auto [n, rows, cols] : {std::tuple{1, 8, 16}, {37, 96, 130}, {300, 1024, 64}, {5, 2048, 128}}) {
        const int64_t ldx = cols + 3, ldo = rows + 5;
        std::vector<float> w(static_cast<size_t>(rows * cols)), x(static_cast<size_t>(n * ldx)),
            out(static_cast<size_t>(n * ldo), -7.f);
        for (auto& v : w) v = nd(rng);
        for (auto& v : x) v = nd(rng);
        std::vector<std::byte> packed(bf16::packed_bytes(rows, cols) + 64);
        void* p = packed.data() + (64 - reinterpret_cast<uintptr_t>(packed.data()) % 64) % 64;
        bf16::pack(w.data(), rows, cols, p);
        bf16::gemm(x.data(), n, ldx, p, rows, cols, out.data(), ldo);
        double worst = 0, worst_f32 = 0, scale = 0;
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < rows; ++j) {
                double ref = 0, ref32 = 0;
                for (int64_t c = 0; c < cols; ++c) {
                    ref += double(round_bf16(x[i * ldx + c])) * double(round_bf16(w[j * cols + c]));
                    ref32 += double(x[i * ldx + c]) * double(w[j * cols + c]);
                }
                const double got = out[static_cast<size_t>(i * ldo + j)];
                worst = std::max(worst, std::abs(got - ref));
                worst_f32 = std::max(worst_f32, std::abs(got - ref32));
                scale = std::max(scale, std::abs(ref32));
            }
        // Padding columns of out are untouched.
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = rows; j < ldo; ++j) ASSERT_EQ(out[static_cast<size_t>(i * ldo + j)], -7.f);
        EXPECT_LE(worst / scale, 1e-5) << n << "x" << cols << "x" << rows;
        EXPECT_LE(worst_f32 / scale, 2e-2) << n << "x" << cols << "x" << rows;
        std::printf("[gemm bf16] %4d x %4d x %4d  vs bf16-rounded ref %.1e, vs fp32 %.1e (relative to max |ref|)\n",
                    n, cols, rows, worst / scale, worst_f32 / scale);
    }
    EXPECT_NE(bf16::describe().find("oneDNN"), std::string::npos);
}
