// Linear assignment (merge/assignment.h) against brute force over all permutations, on random
// real and small-integer (many ties) cost matrices of sizes 0..7, plus refusals.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "core/error.h"
#include "merge/assignment.h"

namespace {

using moekit::merge::assignment_cost;
using moekit::merge::solve_assignment;

double brute_force(const Eigen::MatrixXd& c) {
    std::vector<int64_t> p(static_cast<size_t>(c.rows()));
    std::iota(p.begin(), p.end(), 0);
    double best = INFINITY;
    do best = std::min(best, assignment_cost(c, p));
    while (std::next_permutation(p.begin(), p.end()));
    return c.rows() == 0 ? 0.0 : best;
}

bool is_permutation(std::vector<int64_t> p) {
    std::sort(p.begin(), p.end());
    for (size_t i = 0; i < p.size(); ++i)
        if (p[i] != static_cast<int64_t>(i)) return false;
    return true;
}

TEST(MergeAssignment, MatchesBruteForce) {
    std::mt19937_64 rng(7);
    std::normal_distribution<double> normal;
    std::uniform_int_distribution<int> small(0, 3);
    for (int n = 0; n <= 7; ++n)
        for (int trial = 0; trial < 25; ++trial) {
            Eigen::MatrixXd c(n, n);
            for (int i = 0; i < n; ++i)
                for (int j = 0; j < n; ++j) c(i, j) = trial % 2 ? small(rng) : 100 * normal(rng);
            const auto p = solve_assignment(c);
            ASSERT_EQ(static_cast<int>(p.size()), n);
            ASSERT_TRUE(is_permutation(p));
            EXPECT_NEAR(assignment_cost(c, p), brute_force(c), 1e-9 * (1 + std::abs(brute_force(c)))) << "n " << n << " trial " << trial;
        }
}

TEST(MergeAssignment, FindsAPlantedPermutation) {
    // Cost 0 on the planted permutation, 1 elsewhere: the unique optimum.
    std::mt19937_64 rng(3);
    const int n = 64;
    std::vector<int64_t> planted(n);
    std::iota(planted.begin(), planted.end(), 0);
    std::shuffle(planted.begin(), planted.end(), rng);
    Eigen::MatrixXd c = Eigen::MatrixXd::Ones(n, n);
    for (int i = 0; i < n; ++i) c(i, planted[static_cast<size_t>(i)]) = 0;
    EXPECT_EQ(solve_assignment(c), planted);
}

TEST(MergeAssignment, Refusals) {
    EXPECT_THROW(solve_assignment(Eigen::MatrixXd::Zero(2, 3)), moekit::Error);
    Eigen::MatrixXd c = Eigen::MatrixXd::Zero(2, 2);
    c(0, 1) = NAN;
    EXPECT_THROW(solve_assignment(c), moekit::Error);
}

}  // namespace
