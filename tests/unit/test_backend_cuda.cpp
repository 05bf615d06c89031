// GPU backend checks against the CPU reference. Without the CUDA backend or a GPU each test
// reports itself SKIPPED loudly; CI machines have nvcc but no GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "cuda/backend.h"

namespace {

bool gpu_or_skip_reason(std::string& reason) {
    if (!moekit::backend::cuda_compiled()) {
        reason = "CUDA backend not built";
        return false;
    }
    if (moekit::backend::cuda_devices().empty()) {
        reason = moekit::backend::cuda_unavailable_reason();
        return false;
    }
    return true;
}

#define REQUIRE_GPU()                                                                      \
    do {                                                                                   \
        std::string reason;                                                                \
        if (!gpu_or_skip_reason(reason)) {                                                 \
            std::fprintf(stderr, "*** SKIPPED (no GPU): %s\n", reason.c_str());            \
            GTEST_SKIP() << "SKIPPED: GPU test not run: " << reason;                       \
        }                                                                                  \
    } while (0)

TEST(BackendCuda, ReportsConsistently) {
    const auto gpus = moekit::backend::cuda_devices();
    if (gpus.empty())
        EXPECT_FALSE(moekit::backend::cuda_unavailable_reason().empty());
    else
        EXPECT_TRUE(moekit::backend::cuda_unavailable_reason().empty());
}

TEST(BackendCuda, ConvertMatchesCpuReference) {
    REQUIRE_GPU();
    std::mt19937 rng(7);
    for (auto dtype : {moekit::core::DType::BF16, moekit::core::DType::F16}) {
        std::vector<uint16_t> bits(100'003);
        for (auto& b : bits) b = uint16_t(rng());
        const auto* src = reinterpret_cast<const std::byte*>(bits.data());
        std::vector<float> cpu(bits.size()), gpu(bits.size());
        moekit::core::convert_to_f32(dtype, src, bits.size(), cpu.data());
        moekit::backend::cuda_convert_to_f32(0, dtype, src, bits.size(), gpu.data());
        for (std::size_t i = 0; i < bits.size(); ++i) {
            if (std::isnan(cpu[i])) {
                ASSERT_TRUE(std::isnan(gpu[i])) << i;
            } else {
                ASSERT_EQ(cpu[i], gpu[i]) << "dtype " << moekit::core::dtype_name(dtype) << " bits " << bits[i];
            }
        }
    }
}

TEST(BackendCuda, StubOrDeviceRefusesUnsupportedWork) {
    REQUIRE_GPU();
    float out = 0;
    const std::byte in{0};
    EXPECT_THROW(moekit::backend::cuda_convert_to_f32(0, moekit::core::DType::I8, &in, 1, &out), std::runtime_error);
}

}  // namespace
