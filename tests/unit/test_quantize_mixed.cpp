// The mixed-precision allocator (MC-MoE objective, exact DP) against brute-force enumeration of
// every assignment on random instances, and its refusals.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "core/error.h"
#include "quantize/mixed_precision.h"

using namespace moekit;
using namespace moekit::quantize;

TEST(QuantizeMixed, DpEqualsBruteForce) {
    std::mt19937_64 rng(11);
    std::uniform_real_distribution<double> u(0, 1);
    const std::vector<int> bits = {2, 3, 4, 8};
    for (int inst = 0; inst < 40; ++inst) {
        const int n = 1 + inst % 7;
        std::vector<std::vector<double>> cost(n);
        for (auto& row : cost) {
            // Error falls with width (as measured errors do), scaled by a random importance.
            const double imp = std::pow(u(rng), 3);
            for (int b : bits) row.push_back(imp * std::exp(-0.7 * b) * (0.5 + u(rng)));
        }
        const int64_t budget = static_cast<int64_t>(std::floor((2.0 + 3.0 * u(rng)) * n));
        const auto pick = allocate_exact(cost, bits, budget);
        double dp_cost = 0;
        int64_t dp_bits = 0;
        for (int e = 0; e < n; ++e) {
            dp_cost += cost[e][pick[e]];
            dp_bits += bits[pick[e]];
        }
        EXPECT_LE(dp_bits, budget);
        // Brute force over all 4^n assignments.
        double best = std::numeric_limits<double>::infinity();
        std::vector<int> idx(n, 0);
        while (true) {
            int64_t b = 0;
            double c = 0;
            for (int e = 0; e < n; ++e) {
                b += bits[idx[e]];
                c += cost[e][idx[e]];
            }
            if (b <= budget) best = std::min(best, c);
            int e = 0;
            while (e < n && ++idx[e] == static_cast<int>(bits.size())) idx[e++] = 0;
            if (e == n) break;
        }
        EXPECT_NEAR(dp_cost, best, 1e-12 * std::max(1.0, best)) << "instance " << inst;
    }
}

TEST(QuantizeMixed, BudgetBelowSmallestWidthIsRefused) {
    EXPECT_THROW(allocate_exact({{1, 0.5}, {1, 0.5}}, {2, 4}, 3), Error);
    // Exactly the smallest widths fit.
    const auto pick = allocate_exact({{1, 0.5}, {1, 0.5}}, {2, 4}, 4);
    EXPECT_EQ(pick, (std::vector<int>{0, 0}));
}
