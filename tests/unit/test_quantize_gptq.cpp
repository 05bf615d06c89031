// GPTQ on a single linear layer with random correlated inputs: it must reduce the output error
// ||X W^T - X Q^T|| against round-to-nearest on the same grid (plain and act-order), keep every
// row-group on a grid of at most 2^bits levels, zero dead input columns, and never produce NaN.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>

#include "quantize/gptq.h"
#include "quantize/rtn.h"

using namespace moekit;
using namespace moekit::quantize;

namespace {

struct Problem {
    RowMatrix w;        // [out, in]
    Eigen::MatrixXd x;  // [n, in]
};

Problem make_problem(int64_t out, int64_t in, int64_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal(0, 1);
    Problem p;
    p.w.resize(out, in);
    for (int64_t i = 0; i < out; ++i)
        for (int64_t j = 0; j < in; ++j) p.w(i, j) = static_cast<float>(0.05 * normal(rng));
    // Correlated inputs with very different channel scales (what makes GPTQ matter).
    Eigen::MatrixXd mix(in, in);
    for (int64_t i = 0; i < in; ++i)
        for (int64_t j = 0; j < in; ++j) mix(i, j) = normal(rng) / std::sqrt(static_cast<double>(in));
    Eigen::MatrixXd z(n, in);
    for (int64_t t = 0; t < n; ++t)
        for (int64_t j = 0; j < in; ++j) z(t, j) = normal(rng);
    p.x = z * mix;
    for (int64_t j = 0; j < in; ++j) p.x.col(j) *= std::exp(normal(rng));
    return p;
}

double output_error(const Problem& p, const RowMatrix& q) {
    const Eigen::MatrixXd diff = p.x * (p.w.cast<double>() - q.cast<double>()).transpose();
    return diff.squaredNorm();
}

core::MatrixC<double> hessian(const Eigen::MatrixXd& x) { return 2.0 / static_cast<double>(x.rows()) * x.transpose() * x; }

}  // namespace

TEST(QuantizeGptq, ReducesOutputErrorVersusRtn) {
    for (const bool sym : {true, false}) {
        const Problem p = make_problem(48, 256, 1024, sym ? 1 : 2);
        GptqOptions o;
        o.grid = IntGrid{4, 64, sym};
        RowMatrix rtn = p.w;
        for (int64_t r = 0; r < rtn.rows(); ++r) rtn_row(o.grid, rtn.row(r).data(), rtn.cols());
        RowMatrix gptq = p.w;
        const GptqStats st = gptq_quantize(gptq, hessian(p.x), o, "test");
        o.act_order = true;
        RowMatrix gptq_ao = p.w;
        gptq_quantize(gptq_ao, hessian(p.x), o, "test");
        const double e_rtn = output_error(p, rtn), e_gptq = output_error(p, gptq), e_ao = output_error(p, gptq_ao);
        std::printf("sym=%d  output error: rtn %.4g  gptq %.4g (%.1f%%)  act-order %.4g (%.1f%%)\n", sym, e_rtn, e_gptq,
                    100 * e_gptq / e_rtn, e_ao, 100 * e_ao / e_rtn);
        EXPECT_LT(e_gptq, 0.8 * e_rtn);
        EXPECT_LT(e_ao, 0.8 * e_rtn);
        EXPECT_GT(st.proxy_loss, 0);
        EXPECT_TRUE(gptq.allFinite());
        // Every row-group holds at most 2^bits distinct values (it lies on one grid).
        for (int64_t r = 0; r < gptq.rows(); ++r)
            for (int64_t g = 0; g < gptq.cols(); g += 64) {
                std::set<float> levels(gptq.row(r).data() + g, gptq.row(r).data() + g + 64);
                EXPECT_LE(levels.size(), 16u) << "row " << r << " group " << g;
            }
    }
}

TEST(QuantizeGptq, DeadColumnsAndAllZeroInputs) {
    Problem p = make_problem(8, 64, 256, 3);
    p.x.col(5).setZero();  // an input channel that never fires
    GptqOptions o;
    o.grid = IntGrid{4, 32, true};
    RowMatrix q = p.w;
    const GptqStats st = gptq_quantize(q, hessian(p.x), o, "test");
    EXPECT_EQ(st.dead_columns, 1);
    for (int64_t r = 0; r < q.rows(); ++r) EXPECT_EQ(q(r, 5), 0.0f);
    EXPECT_TRUE(q.allFinite());
    // All-zero calibration (e.g. an expert no token reached): H = 0, every column dead, weights zeroed
    // rather than NaN; callers fall back to RTN before reaching this.
    RowMatrix z = p.w;
    const core::MatrixC<double> h0 = core::MatrixC<double>::Zero(64, 64);
    gptq_quantize(z, h0, o, "test");
    EXPECT_TRUE(z.allFinite());
}

TEST(QuantizeGptq, IntGridZeroGroupHasFiniteScale) {
    std::vector<float> x(32, 0.0f);
    for (bool sym : {true, false}) {
        const GroupParams p = group_params(IntGrid{4, 32, sym}, x.data(), 32);
        EXPECT_TRUE(std::isfinite(p.scale) && p.scale > 0);
        rtn_row(IntGrid{4, 32, sym}, x.data(), 32);
        for (float v : x) EXPECT_EQ(v, 0.0f);
    }
}
