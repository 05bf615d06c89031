// svd/lowrank.h and svd/compress.h: full-rank reconstruction, whitening beats plain SVD on the
// calibration inputs, an independent numpy oracle for the whitened factors (incl. the shifted,
// rank-deficient H), the rank rules and the intermediate activation of svd/calib.h.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>

#include "core/error.h"
#include "svd/calib.h"
#include "svd/compress.h"
#include "svd/lowrank.h"
#include "test_util.h"

namespace moekit::svd {
namespace {

MatrixD random_matrix(int64_t m, int64_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> dist(0.0, 1.0);
    MatrixD a(m, n);
    for (int64_t j = 0; j < n; ++j)
        for (int64_t i = 0; i < m; ++i) a(i, j) = dist(rng);
    return a;
}

// N calibration inputs [N, n] with very different scales per feature (as activations have).
MatrixD inputs(int64_t n_tok, int64_t n, uint64_t seed) {
    MatrixD x = random_matrix(n_tok, n, seed);
    for (int64_t j = 0; j < n; ++j) x.col(j) *= std::pow(10.0, -2.0 + 3.0 * static_cast<double>(j) / static_cast<double>(n));
    return x;
}

MatrixD second_moment(const MatrixD& x) { return x.transpose() * x / static_cast<double>(x.rows()); }

TEST(SvdLowRank, FullRankReconstructs) {
    const MatrixD w = random_matrix(24, 16, 1);
    const MatrixD h = second_moment(inputs(64, 16, 2));
    for (const MatrixD* hp : {static_cast<const MatrixD*>(nullptr), &h}) {
        const LowRank f = factorize(w, hp, 16);
        EXPECT_EQ(f.a.cols(), 16);
        EXPECT_EQ(f.b.rows(), 16);
        const double rel = (f.a * f.b - w).norm() / w.norm();
        EXPECT_LT(rel, 1e-5) << (hp ? "whitened" : "plain");
        EXPECT_NEAR(f.tail_energy, 0.0, 1e-12);
    }
}

TEST(SvdLowRank, WhitenedBeatsPlainOnCalibrationInputs) {
    const MatrixD w = random_matrix(32, 24, 3);
    const MatrixD h = second_moment(inputs(200, 24, 4));
    for (int64_t r : {2, 6, 12, 20}) {
        const LowRank plain = factorize(w, nullptr, r), white = factorize(w, &h, r);
        const double e_plain = weighted_error(w, plain, h), e_white = weighted_error(w, white, h);
        EXPECT_LT(e_white, e_plain) << "rank " << r;
        // And the whitened truncation error is exactly the tail energy of W S.
        const double total = weighted_error(w, LowRank{MatrixD::Zero(32, 1), MatrixD::Zero(1, 24)}, h);
        EXPECT_NEAR(e_white / total, white.tail_energy, 1e-9) << "rank " << r;
    }
    // Plain SVD is the best in the unweighted Frobenius norm.
    const LowRank plain = factorize(w, nullptr, 6), white = factorize(w, &h, 6);
    EXPECT_LT((w - plain.a * plain.b).norm(), (w - white.a * white.b).norm());
}

TEST(SvdLowRank, RankDeficientHIsShiftedNeverNaN) {
    const MatrixD w = random_matrix(16, 20, 5);
    const MatrixD h = second_moment(inputs(6, 20, 6));  // rank 6 < 20: not positive definite
    const LowRank f = factorize(w, &h, 8);
    EXPECT_GT(f.shift, 0.0);
    EXPECT_TRUE(f.a.allFinite());
    EXPECT_TRUE(f.b.allFinite());
    // Rank 6 covers every direction the inputs span: the error on them is ~0.
    EXPECT_LT(weighted_error(w, factorize(w, &h, 6), h) / weighted_error(w, factorize(w, nullptr, 6), h), 1e-3);
}

TEST(SvdLowRank, RankRules) {
    EXPECT_EQ(rank_for_ratio(128, 128, 0.5), 32);
    EXPECT_EQ(rank_for_ratio(256, 128, 0.5), 42);  // 256*128*0.5/384 = 42.67
    EXPECT_EQ(rank_for_ratio(8, 8, 0.01), 1);      // clamped up
    EXPECT_EQ(rank_for_ratio(8, 4, 0.999), 2);     // 8*4/12 = 2.66
    EXPECT_EQ(method_rank(Method::svd_llm, 128, 128, 16, 0.5), 32);
    // d2-moe: 16 experts at 0.5 keep 8 matrices' worth; the base takes one: (0.5*16-1)*128*128/(16*256) = 28.
    EXPECT_EQ(method_rank(Method::d2_moe, 128, 128, 16, 0.5), 28);
    EXPECT_THROW(method_rank(Method::d2_moe, 128, 128, 4, 0.2), Error);  // 0.2*4 - 1 < 0
    EXPECT_THROW(parse_method("lora"), Error);
}

TEST(SvdLowRank, IntermediateActivationBruteForce) {
    const int64_t n = 5, d = 6, f = 4;
    std::mt19937 rng(7);
    std::normal_distribution<float> dist;
    model::Matrix x(n, d);
    for (int64_t i = 0; i < n * d; ++i) x.data()[i] = dist(rng);
    std::vector<float> wg(f * d), wu(f * d);
    for (auto& v : wg) v = dist(rng);
    for (auto& v : wu) v = dist(rng);
    const model::Matrix a = intermediate(x, wg.data(), wu.data(), f);
    for (int64_t t = 0; t < n; ++t)
        for (int64_t j = 0; j < f; ++j) {
            double g = 0, u = 0;
            for (int64_t k = 0; k < d; ++k) {
                g += double(wg[j * d + k]) * x(t, k);
                u += double(wu[j * d + k]) * x(t, k);
            }
            EXPECT_NEAR(a(t, j), g / (1 + std::exp(-g)) * u, 1e-4);
        }
}

void write_matrix(const std::filesystem::path& p, const MatrixD& m) {
    std::ofstream out(p, std::ios::binary);
    const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> r = m;
    out.write(reinterpret_cast<const char*>(r.data()), static_cast<std::streamsize>(r.size() * sizeof(double)));
}

MatrixD read_matrix(const std::filesystem::path& p, int64_t m, int64_t n) {
    std::ifstream in(p, std::ios::binary);
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> r(m, n);
    in.read(reinterpret_cast<char*>(r.data()), static_cast<std::streamsize>(r.size() * sizeof(double)));
    EXPECT_TRUE(in.good()) << p;
    return r;
}

// numpy's SVD / Cholesky / eigvalsh on the same whitened problem: A B must agree.
TEST(SvdLowRank, NumpyOracle) {
    const std::string python = MOEKIT_PYTHON;
    if (!std::filesystem::exists(python)) GTEST_SKIP() << "*** SKIPPED: no Python at MOEKIT_PYTHON=" << python;
    test::TempDir dir("svd-oracle");
    struct Case { int64_t m, n, n_tok, r; };
    const Case cases[] = {{12, 10, 40, 4}, {9, 14, 50, 5}, {10, 12, 5, 3}};  // the last one: H singular
    int i = 0;
    for (const Case& c : cases) {
        const MatrixD w = random_matrix(c.m, c.n, 100 + i);
        const MatrixD h = second_moment(inputs(c.n_tok, c.n, 200 + i));
        write_matrix(dir / "w.bin", w);
        write_matrix(dir / "h.bin", h);
        const std::string script =
            "import numpy as np, sys\n"
            "d = sys.argv[1]; m, n, r = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])\n"
            "W = np.fromfile(d + '/w.bin').reshape(m, n); H = np.fromfile(d + '/h.bin').reshape(n, n)\n"
            "try:\n"
            "    S = np.linalg.cholesky(H)\n"
            "except np.linalg.LinAlgError:\n"
            "    S = np.linalg.cholesky(H + (-np.linalg.eigvalsh(H).min() + 1e-6) * np.eye(n))\n"
            "U, s, Vt = np.linalg.svd(W @ S, full_matrices=False)\n"
            "A = U[:, :r] * np.sqrt(s[:r]); B = (np.sqrt(s[:r])[:, None] * Vt[:r]) @ np.linalg.inv(S)\n"
            "(A @ B).tofile(d + '/ab.bin')\n";
        { std::ofstream(dir / "oracle.py") << script; }
        const std::string cmd = python + " " + (dir / "oracle.py").string() + " " + dir.path().string() + " " +
                                std::to_string(c.m) + " " + std::to_string(c.n) + " " + std::to_string(c.r);
        ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
        const MatrixD want = read_matrix(dir / "ab.bin", c.m, c.n);
        const LowRank f = factorize(w, &h, c.r);
        const MatrixD got = f.a * f.b;
        // The shifted case inverts an ill-conditioned S: compare relative to the product's scale.
        const double tol = c.n_tok < c.n ? 1e-4 : 1e-9;
        EXPECT_LT((got - want).norm() / want.norm(), tol) << "case " << i;
        ++i;
    }
}

}  // namespace
}  // namespace moekit::svd
