// GPU backend checks against the CPU reference. Without the CUDA backend or a GPU each test
// reports itself SKIPPED loudly; CI machines have nvcc but no GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/linalg.h"
#include "cuda/backend.h"
#include "cuda/linalg.h"
#include "gpu_test_util.h"

namespace {

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

// cuSOLVER's SVD (backend::cuda_svd, used by `moekit svd --device cuda`) against LAPACK's
// (core::svd) on tall, wide and square matrices: singular values to 1e-10 relative, the product
// U diag(s) Vt to 1e-10 of A, orthonormal factors.
TEST(BackendCuda, SvdMatchesLapack) {
    REQUIRE_GPU();
    std::mt19937 rng(3);
    std::normal_distribution<double> nd;
    for (const auto& [m, n] : std::vector<std::pair<int, int>>{{300, 120}, {120, 300}, {256, 256}, {1, 7}}) {
        moekit::core::MatrixC<double> a(m, n);
        for (Eigen::Index i = 0; i < a.size(); ++i) a.data()[i] = nd(rng);
        const auto cpu = moekit::core::svd(a);
        const auto gpu = moekit::backend::cuda_svd(0, a);
        ASSERT_EQ(gpu.s.size(), cpu.s.size());
        EXPECT_LE((gpu.s - cpu.s).cwiseAbs().maxCoeff(), 1e-10 * cpu.s(0)) << m << " x " << n;
        const moekit::core::MatrixC<double> back = gpu.u * gpu.s.asDiagonal() * gpu.vt;
        EXPECT_LE((back - a).norm(), 1e-10 * a.norm()) << m << " x " << n;
        const auto k = gpu.s.size();
        EXPECT_LE((gpu.u.transpose() * gpu.u - Eigen::MatrixXd::Identity(k, k)).norm(), 1e-10);
        EXPECT_LE((gpu.vt * gpu.vt.transpose() - Eigen::MatrixXd::Identity(k, k)).norm(), 1e-10);
    }
}
