// Router mean / refit and routing agreement (merge/router.h).
#include "merge/router.h"

#include <cmath>

#include "core/error.h"
#include "core/linalg.h"
#include "model/moe.h"

namespace moekit::merge {

model::Matrix mean_router(const model::Matrix& router, const Groups& groups, const std::vector<std::vector<double>>& w) {
    model::Matrix out = model::Matrix::Zero(static_cast<Eigen::Index>(groups.size()), router.cols());
    for (size_t g = 0; g < groups.size(); ++g) {
        Eigen::RowVectorXd acc = Eigen::RowVectorXd::Zero(router.cols());
        for (size_t i = 0; i < groups[g].size(); ++i) acc += w[g][i] * router.row(groups[g][i]).cast<double>();
        out.row(static_cast<Eigen::Index>(g)) = acc.cast<float>();
    }
    return out;
}

model::Matrix refit_router(const model::Matrix& x, const model::Matrix& logits, const Groups& groups, const model::Matrix& router,
                           const model::Matrix& mean) {
    const Eigen::Index T = x.rows(), d = x.cols();
    if (logits.rows() != T) throw InternalError("merge", "refit: inputs and logits differ in rows");
    model::Matrix out = mean;
    if (T == 0) return out;
    // X^T X and X^T Y (one column per group), accumulated in blocks of rows.
    Eigen::MatrixXd xtx = Eigen::MatrixXd::Zero(d, d);
    Eigen::MatrixXd xty = Eigen::MatrixXd::Zero(d, static_cast<Eigen::Index>(groups.size()));
    const Eigen::Index block = 4096;
    for (Eigen::Index r0 = 0; r0 < T; r0 += block) {
        const Eigen::Index n = std::min(block, T - r0);
        const Eigen::MatrixXd xb = x.middleRows(r0, n).cast<double>();
        Eigen::MatrixXd y(n, static_cast<Eigen::Index>(groups.size()));
        for (size_t g = 0; g < groups.size(); ++g)
            for (Eigen::Index t = 0; t < n; ++t) {
                double mx = -INFINITY;
                for (int64_t e : groups[g]) mx = std::max(mx, static_cast<double>(logits(r0 + t, e)));
                double s = 0;
                for (int64_t e : groups[g]) s += std::exp(static_cast<double>(logits(r0 + t, e)) - mx);
                y(t, static_cast<Eigen::Index>(g)) = mx + std::log(s);
            }
        xtx.noalias() += xb.transpose() * xb;
        xty.noalias() += xb.transpose() * y;
    }
    const double lambda = std::max(1e-12, 1e-6 * xtx.trace() / static_cast<double>(d));
    // (X^T X + lambda I) w = X^T y + lambda mean, all groups at once: Cholesky (LAPACK potrf) and
    // two triangular solves.
    core::MatrixC<double> chol = xtx;
    chol.diagonal().array() += lambda;
    if (!core::cholesky_lower(chol))
        throw InternalError("merge", "router refit: the regularized normal matrix is not positive definite");
    core::MatrixC<double> rhs = xty;
    for (size_t g = 0; g < groups.size(); ++g)
        rhs.col(static_cast<Eigen::Index>(g)) += lambda * mean.row(static_cast<Eigen::Index>(g)).transpose().cast<double>();
    core::solve_triangular(chol, rhs, core::TriangularSolve{true, false, true});
    core::solve_triangular(chol, rhs, core::TriangularSolve{true, true, true});
    for (size_t g = 0; g < groups.size(); ++g) {
        const auto G = static_cast<Eigen::Index>(g);
        if (groups[g].size() == 1) out.row(G) = router.row(groups[g][0]);
        else out.row(G) = rhs.col(G).transpose().cast<float>();
    }
    return out;
}

std::vector<float> mean_vector(const std::vector<float>& v, const Groups& groups, const std::vector<std::vector<double>>& w) {
    if (v.empty()) return {};
    std::vector<float> out;
    for (size_t g = 0; g < groups.size(); ++g) {
        double acc = 0;
        for (size_t i = 0; i < groups[g].size(); ++i) acc += w[g][i] * v[static_cast<size_t>(groups[g][i])];
        out.push_back(static_cast<float>(acc));
    }
    return out;
}

namespace {

model::detail::Weight as_weight(const std::vector<float>& v) {
    model::detail::Weight w;
    if (v.empty()) return w;
    w.rows = 1;
    w.cols = static_cast<int64_t>(v.size());
    for (float f : v) w.data.push_back(f);
    return w;
}

}  // namespace

Agreement routing_agreement(const model::ModelConfig& mc, const model::Matrix& x, const model::Matrix& logits,
                            const std::vector<float>& bias, const model::Matrix& new_router, const std::vector<float>& new_bias,
                            const Groups& groups) {
    Agreement a;
    const int64_t T = x.rows(), E = logits.cols(), N = static_cast<int64_t>(groups.size());
    if (T == 0) return a;
    std::vector<int64_t> group_of(static_cast<size_t>(E), -1);
    for (int64_t g = 0; g < N; ++g)
        for (int64_t e : groups[static_cast<size_t>(g)]) group_of[static_cast<size_t>(e)] = g;
    model::ModelConfig orig = mc;
    orig.n_expert = E;
    orig.n_expert_layer.clear();
    model::detail::RoutingResult ro;
    ro.logits = logits;
    model::detail::route(orig, as_weight(bias), ro, 1);
    model::ModelConfig merged = mc;
    merged.n_expert = N;
    merged.n_expert_layer.clear();
    model::detail::RoutingResult rm;
    rm.logits = x * new_router.transpose();
    model::detail::route(merged, as_weight(new_bias), rm, 1);
    const int64_t k = ro.selected.cols();
    double overlap = 0, top1 = 0;
    for (int64_t t = 0; t < T; ++t) {
        int hits = 0;
        for (int64_t j = 0; j < k; ++j) {
            const int64_t g = group_of[static_cast<size_t>(ro.selected(t, j))];
            for (int64_t q = 0; q < rm.selected.cols(); ++q) hits += rm.selected(t, q) == g ? 1 : 0;
        }
        overlap += static_cast<double>(std::min<int64_t>(hits, k)) / static_cast<double>(k);
        top1 += group_of[static_cast<size_t>(ro.selected(t, 0))] == rm.selected(t, 0) ? 1.0 : 0.0;
    }
    a.tokens = T;
    a.overlap = overlap / static_cast<double>(T);
    a.top1 = top1 / static_cast<double>(T);
    return a;
}

}  // namespace moekit::merge
