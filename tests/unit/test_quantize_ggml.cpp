// moekit's ggml block quantizers against ggml's own C code (ggml-quants.c from the llama.cpp
// sources, compiled alone into the test; tests/CMakeLists.txt): the quantized bytes and the
// dequantized floats must be identical for every type, on Gaussian, heavy-tailed, one-sided,
// all-zero, constant, tiny and huge inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "quantize/ggml_quants.h"

using namespace moekit::quantize;

#ifdef MOEKIT_GGML_ORACLE
extern "C" {
void quantize_row_q4_0_ref(const float* x, void* y, int64_t k);
void quantize_row_q5_0_ref(const float* x, void* y, int64_t k);
void quantize_row_q8_0_ref(const float* x, void* y, int64_t k);
void quantize_row_q4_K_ref(const float* x, void* y, int64_t k);
void quantize_row_q6_K_ref(const float* x, void* y, int64_t k);
void dequantize_row_q4_0(const void* x, float* y, int64_t k);
void dequantize_row_q5_0(const void* x, float* y, int64_t k);
void dequantize_row_q8_0(const void* x, float* y, int64_t k);
void dequantize_row_q4_K(const void* x, float* y, int64_t k);
void dequantize_row_q6_K(const void* x, float* y, int64_t k);
}
#endif

namespace {

std::vector<std::vector<float>> cases(int64_t n) {
    std::mt19937_64 rng(42);
    std::normal_distribution<float> normal(0.f, 1.f);
    std::student_t_distribution<float> heavy(2.f);
    std::uniform_real_distribution<float> uni(0.f, 1.f);
    std::vector<std::vector<float>> out;
    auto make = [&](auto gen) {
        std::vector<float> v(static_cast<std::size_t>(n));
        for (auto& x : v) x = gen();
        out.push_back(std::move(v));
    };
    for (int rep = 0; rep < 8; ++rep) make([&] { return 0.02f * normal(rng); });
    for (int rep = 0; rep < 4; ++rep) make([&] { return heavy(rng); });
    make([&] { return uni(rng); });                        // all positive: min clamps to 0
    make([&] { return -uni(rng) * 3.f; });                 // all negative
    make([&] { return 0.f; });                             // all zero
    make([&] { return 0.25f; });                           // constant
    make([&] { return 1e-20f * normal(rng); });            // below GROUP_MAX_EPS scale
    make([&] { return 3e4f * normal(rng); });              // near the fp16 range
    // Sparse blocks: mostly zero with a few spikes (zero sub-block scales inside a super-block).
    make([&] { return uni(rng) < 0.05f ? 10.f * normal(rng) : 0.f; });
    // Exact ties for Q8_0's rounding: every block holds 127 (so d = 1) and half-integers.
    int64_t i = 0;
    make([&] { const int64_t j = i++; return j % 32 == 0 ? 127.f : static_cast<float>(j % 254 - 127) + 0.5f; });
    return out;
}

#ifdef MOEKIT_GGML_ORACLE
using QuantFn = void (*)(const float*, void*, int64_t);
using DequantFn = void (*)(const void*, float*, int64_t);

void check_type(GgmlType type, QuantFn ref_q, DequantFn ref_dq) {
    const int64_t n = 4096;
    int icase = 0;
    for (const auto& x : cases(n)) {
        const uint64_t nbytes = ggml_row_bytes(type, n);
        std::vector<std::byte> ours(nbytes), theirs(nbytes);
        quantize_row(type, x.data(), ours.data(), n);
        ref_q(x.data(), theirs.data(), n);
        ASSERT_EQ(0, std::memcmp(ours.data(), theirs.data(), nbytes))
            << ggml_type_name(type) << " case " << icase << ": quantized bytes differ from ggml";
        std::vector<float> a(static_cast<std::size_t>(n)), b(static_cast<std::size_t>(n));
        dequantize_row(type, ours.data(), a.data(), n);
        ref_dq(theirs.data(), b.data(), n);
        ASSERT_EQ(0, std::memcmp(a.data(), b.data(), static_cast<std::size_t>(n) * 4))
            << ggml_type_name(type) << " case " << icase << ": dequantized values differ from ggml";
        ++icase;
    }
}
#endif

}  // namespace

TEST(QuantizeGgml, BlocksBitExactWithGgml) {
#ifndef MOEKIT_GGML_ORACLE
    GTEST_SKIP() << "llama.cpp sources not found (.deps/llama.cpp; scripts/setup.sh fetches them)";
#else
    check_type(GgmlType::Q8_0, quantize_row_q8_0_ref, dequantize_row_q8_0);
    check_type(GgmlType::Q4_0, quantize_row_q4_0_ref, dequantize_row_q4_0);
    check_type(GgmlType::Q5_0, quantize_row_q5_0_ref, dequantize_row_q5_0);
    check_type(GgmlType::Q4_K, quantize_row_q4_K_ref, dequantize_row_q4_K);
    check_type(GgmlType::Q6_K, quantize_row_q6_K_ref, dequantize_row_q6_K);
#endif
}

TEST(QuantizeGgml, SizesAndFallbacks) {
    EXPECT_EQ(ggml_row_bytes(GgmlType::Q8_0, 64), 68u);
    EXPECT_EQ(ggml_row_bytes(GgmlType::Q4_0, 32), 18u);
    EXPECT_EQ(ggml_row_bytes(GgmlType::Q4_K, 256), 144u);
    EXPECT_EQ(ggml_row_bytes(GgmlType::Q6_K, 512), 420u);
    EXPECT_DOUBLE_EQ(ggml_bits_per_weight(GgmlType::Q4_K), 4.5);
    // llama-quantize's tensor_type_fallback.
    EXPECT_EQ(ggml_fallback_type(GgmlType::Q4_K, 128), GgmlType::Q5_0);
    EXPECT_EQ(ggml_fallback_type(GgmlType::Q6_K, 128), GgmlType::Q8_0);
    EXPECT_EQ(ggml_fallback_type(GgmlType::Q4_K, 512), GgmlType::Q4_K);
    EXPECT_EQ(ggml_fallback_type(GgmlType::Q4_0, 48), GgmlType::F16);
    EXPECT_EQ(ggml_fallback_type(GgmlType::Q4_K, 48), GgmlType::F16);
    EXPECT_EQ(parse_ggml_type("Q4_K"), GgmlType::Q4_K);
    EXPECT_FALSE(parse_ggml_type("q3_k").has_value());
}

TEST(QuantizeGgml, RoundTripErrorIsBounded) {
    // Independent of ggml: the dequantized value is within half a quantization step of the
    // input for the symmetric 32-blocks (step = |d|), except that Q4_0/Q5_0 clip the side
    // opposite the largest magnitude one level short (error up to one step there); this
    // catches layout mistakes.
    std::mt19937_64 rng(7);
    std::normal_distribution<float> normal(0.f, 1.f);
    std::vector<float> x(256);
    for (auto& v : x) v = normal(rng);
    for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q5_0}) {
        const auto y = fake_quantize_row(t, x.data(), 256);
        const float levels = t == GgmlType::Q8_0 ? 127.f : t == GgmlType::Q4_0 ? 8.f : 16.f;
        for (int b = 0; b < 8; ++b) {
            float amax = 0;
            for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
            const float step = amax / levels;
            const float bound = (t == GgmlType::Q8_0 ? 0.5f : 1.0f) * step * 1.01f + 1e-3f * amax;
            for (int j = 0; j < 32; ++j)
                EXPECT_LE(std::fabs(y[32 * b + j] - x[32 * b + j]), bound)
                    << ggml_type_name(t) << " block " << b;
        }
    }
}
