// Expert alignment and weight merging (merge/combine.h).
#include "merge/combine.h"

#include "core/error.h"
#include "core/linalg.h"
#include "merge/assignment.h"

namespace moekit::merge {

std::vector<int64_t> align_permutation(const ExpertWeights& r, const ExpertWeights& m) {
    const Eigen::MatrixXd rg = r.gate.cast<double>(), ru = r.up.cast<double>(), rd = r.down.cast<double>();
    const Eigen::MatrixXd mg = m.gate.cast<double>(), mu = m.up.cast<double>(), md = m.down.cast<double>();
    if (rg.rows() != mg.rows() || rg.cols() != mg.cols() || rd.cols() != md.cols())
        throw InternalError("merge", "aligning experts of different shapes");
    const Eigen::MatrixXd sim = rg * mg.transpose() + ru * mu.transpose() + rd.transpose() * md;
    return solve_assignment(-sim);
}

ExpertWeights permute_neurons(const ExpertWeights& e, const std::vector<int64_t>& p) {
    ExpertWeights out{e.gate, e.up, e.down};
    for (size_t a = 0; a < p.size(); ++a) {
        const auto i = static_cast<Eigen::Index>(a);
        out.gate.row(i) = e.gate.row(p[a]);
        out.up.row(i) = e.up.row(p[a]);
        out.down.col(i) = e.down.col(p[a]);
    }
    return out;
}

model::Matrix weighted_sum(const std::vector<model::Matrix>& mats, const std::vector<double>& w) {
    if (mats.empty() || mats.size() != w.size()) throw InternalError("merge", "weighted_sum: bad arguments");
    Eigen::MatrixXd acc = Eigen::MatrixXd::Zero(mats[0].rows(), mats[0].cols());
    for (size_t i = 0; i < mats.size(); ++i) acc += w[i] * mats[i].cast<double>();
    return acc.cast<float>();
}

std::vector<double> normalized_weights(const std::vector<double>& f) {
    double s = 0;
    for (double v : f) s += v;
    std::vector<double> out(f.size(), f.empty() ? 0.0 : 1.0 / static_cast<double>(f.size()));
    if (s > 0)
        for (size_t i = 0; i < f.size(); ++i) out[i] = f[i] / s;
    return out;
}

model::Matrix joint_svd_merge(const std::vector<model::Matrix>& mats, const std::vector<double>& w, int64_t rank) {
    if (mats.empty() || mats.size() != w.size()) throw InternalError("merge", "joint_svd_merge: bad arguments");
    const Eigen::Index out = mats[0].rows(), in = mats[0].cols(), n = static_cast<Eigen::Index>(mats.size());
    Eigen::MatrixXd cat(out, n * in);
    for (Eigen::Index i = 0; i < n; ++i) cat.middleCols(i * in, in) = mats[static_cast<size_t>(i)].cast<double>();
    const core::Svd<double> svd = core::svd(cat);  // LAPACK gesdd
    const Eigen::Index full = svd.s.size();
    const Eigen::Index r = rank <= 0 ? full : std::min<Eigen::Index>(rank, full);
    // sum_i w_i V_i with V_i = (V^T)[:, i*in : (i+1)*in], first r rows.
    Eigen::MatrixXd vsum = Eigen::MatrixXd::Zero(r, in);
    for (Eigen::Index i = 0; i < n; ++i) vsum += w[static_cast<size_t>(i)] * svd.vt.block(0, i * in, r, in);
    const Eigen::MatrixXd merged = svd.u.leftCols(r) * svd.s.head(r).asDiagonal() * vsum;
    return merged.cast<float>();
}

}  // namespace moekit::merge
