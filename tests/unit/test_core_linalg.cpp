// core/linalg.h against Eigen's own (independent, slower) decompositions and exact identities.
#include <gtest/gtest.h>

#include <random>

#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>
#include <Eigen/SVD>

#include "core/error.h"
#include "core/linalg.h"

using namespace moekit::core;

namespace {

template <class T>
MatrixC<T> random_matrix(int rows, int cols, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    MatrixC<T> m(rows, cols);
    for (int j = 0; j < cols; ++j)
        for (int i = 0; i < rows; ++i) m(i, j) = T(normal(rng));
    return m;
}

template <class T>
MatrixC<T> random_spd(int n, uint32_t seed) {
    const MatrixC<T> a = random_matrix<T>(n, n + 3, seed);
    return a * a.transpose() + MatrixC<T>::Identity(n, n) * T(0.1);
}

}  // namespace

TEST(Linalg, SvdMatchesEigenAndReconstructs) {
    for (auto [m, n] : {std::pair{7, 5}, std::pair{5, 7}, std::pair{64, 64}, std::pair{1, 9}}) {
        const MatrixC<double> a = random_matrix<double>(m, n, 1234 + m * 31 + n);
        const Svd<double> f = svd(a);
        const int k = std::min(m, n);
        ASSERT_EQ(f.u.rows(), m);
        ASSERT_EQ(f.u.cols(), k);
        ASSERT_EQ(f.vt.rows(), k);
        ASSERT_EQ(f.vt.cols(), n);
        const MatrixC<double> back = f.u * f.s.asDiagonal() * f.vt;
        EXPECT_LT((back - a).norm() / a.norm(), 1e-12);
        const Eigen::JacobiSVD<MatrixC<double>> oracle(a);
        EXPECT_LT((f.s - oracle.singularValues()).norm() / oracle.singularValues().norm(), 1e-12);
        for (int i = 1; i < k; ++i) EXPECT_GE(f.s(i - 1), f.s(i));
        EXPECT_LT((f.u.transpose() * f.u - MatrixC<double>::Identity(k, k)).norm(), 1e-12);
    }
    const MatrixC<float> af = random_matrix<float>(40, 24, 7);
    const Svd<float> ff = svd(af);
    EXPECT_LT((ff.u * ff.s.asDiagonal() * ff.vt - af).norm() / af.norm(), 1e-5);
}

TEST(Linalg, SvdOfRankDeficientAndEmpty) {
    MatrixC<double> a = random_matrix<double>(10, 2, 3) * random_matrix<double>(2, 8, 4);
    const Svd<double> f = svd(a);
    EXPECT_GT(f.s(1), 1e-6);
    for (int i = 2; i < 8; ++i) EXPECT_LT(f.s(i), 1e-12 * f.s(0));
    EXPECT_EQ(svd(MatrixC<double>(0, 3)).s.size(), 0);
    MatrixC<double> bad = a;
    bad(0, 0) = std::numeric_limits<double>::quiet_NaN();
    EXPECT_THROW(svd(bad), moekit::Error);
}

TEST(Linalg, CholeskyLowerAndUpper) {
    const MatrixC<double> a = random_spd<double>(12, 9);
    MatrixC<double> l = a;
    ASSERT_TRUE(cholesky_lower(l));
    EXPECT_LT((l * l.transpose() - a).norm() / a.norm(), 1e-13);
    const Eigen::LLT<MatrixC<double>> oracle(a);
    EXPECT_LT((l - MatrixC<double>(oracle.matrixL())).norm(), 1e-10);
    MatrixC<double> u = a;
    ASSERT_TRUE(cholesky_upper(u));
    EXPECT_LT((u.transpose() * u - a).norm() / a.norm(), 1e-13);
    EXPECT_LT((u - l.transpose()).norm(), 1e-10);
    MatrixC<double> not_pd = a;
    not_pd(5, 5) = -1.0;
    EXPECT_FALSE(cholesky_lower(not_pd));
    MatrixC<float> lf = random_spd<float>(16, 2);
    const MatrixC<float> af = lf;
    ASSERT_TRUE(cholesky_lower(lf));
    EXPECT_LT((lf * lf.transpose() - af).norm() / af.norm(), 1e-5);
}

TEST(Linalg, TriangularInverseAndSolve) {
    MatrixC<double> l = random_spd<double>(10, 5);
    ASSERT_TRUE(cholesky_lower(l));
    MatrixC<double> inv = l;
    invert_triangular(inv, true);
    EXPECT_LT((inv * l - MatrixC<double>::Identity(10, 10)).norm(), 1e-10);
    EXPECT_EQ(MatrixC<double>(inv.triangularView<Eigen::StrictlyUpper>()).norm(), 0.0);
    const MatrixC<double> b = random_matrix<double>(10, 4, 6);
    // L X = B, Lᵀ X = B, X L = C (right), X Lᵀ = C.
    MatrixC<double> x = b;
    solve_triangular(l, x, {.lower = true, .transpose = false, .left = true});
    EXPECT_LT((l * x - b).norm(), 1e-10);
    x = b;
    solve_triangular(l, x, {.lower = true, .transpose = true, .left = true});
    EXPECT_LT((l.transpose() * x - b).norm(), 1e-10);
    const MatrixC<double> c = random_matrix<double>(3, 10, 8);
    x = c;
    solve_triangular(l, x, {.lower = true, .transpose = false, .left = false});
    EXPECT_LT((x * l - c).norm(), 1e-10);
    x = c;
    solve_triangular(l, x, {.lower = true, .transpose = true, .left = false});
    EXPECT_LT((x * l.transpose() - c).norm(), 1e-10);
    MatrixC<double> singular = MatrixC<double>::Identity(3, 3);
    singular(1, 1) = 0.0;
    EXPECT_THROW(invert_triangular(singular, true), moekit::Error);
}

TEST(Linalg, SymmetricEigenMatchesEigen) {
    const MatrixC<double> a = random_spd<double>(20, 11) - MatrixC<double>::Identity(20, 20) * 5.0;
    const SymmetricEigen<double> e = eigh(a);
    const Eigen::SelfAdjointEigenSolver<MatrixC<double>> oracle(a);
    EXPECT_LT((e.values - oracle.eigenvalues()).norm() / oracle.eigenvalues().norm(), 1e-12);
    EXPECT_LT((e.vectors * e.values.asDiagonal() * e.vectors.transpose() - a).norm() / a.norm(), 1e-12);
    for (int i = 1; i < 20; ++i) EXPECT_LE(e.values(i - 1), e.values(i));
    const SymmetricEigen<float> ef = eigh(MatrixC<float>(a.cast<float>()));
    EXPECT_LT((ef.values.cast<double>() - oracle.eigenvalues()).norm() / oracle.eigenvalues().norm(), 1e-5);
}
