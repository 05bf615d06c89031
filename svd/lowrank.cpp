// Plain and whitened (SVD-LLM) truncated SVD of one weight matrix (svd/lowrank.h).
#include "svd/lowrank.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/linalg.h"

namespace moekit::svd {

int64_t rank_for_ratio(int64_t m, int64_t n, double ratio) {
    const auto r = static_cast<int64_t>(std::floor(static_cast<double>(m) * static_cast<double>(n) * ratio /
                                                   static_cast<double>(m + n)));
    return std::clamp<int64_t>(r, 1, std::min(m, n));
}

namespace {

// A = U_r Σ_r^{1/2}, B' = Σ_r^{1/2} V_rᵀ from the thin SVD of `m`; tail energy of the cut.
void truncate(const MatrixD& m, int64_t rank, LowRank& out, MatrixD& bt) {
    const core::Svd<double> s = core::svd(m);
    const int64_t r = std::min<int64_t>(rank, s.s.size());
    const Eigen::VectorXd root = s.s.head(r).cwiseSqrt();
    out.a = s.u.leftCols(r) * root.asDiagonal();
    bt = root.asDiagonal() * s.vt.topRows(r);
    const double total = s.s.squaredNorm();
    out.tail_energy = total > 0 ? s.s.tail(s.s.size() - r).squaredNorm() / total : 0.0;
}

}  // namespace

LowRank factorize(const MatrixD& w, const MatrixD* h, int64_t rank) {
    LowRank out;
    const int64_t n = w.cols();
    rank = std::clamp<int64_t>(rank, 1, std::min<int64_t>(w.rows(), n));
    if (!h) {
        truncate(w, rank, out, out.b);
        return out;
    }
    if (h->rows() != n || h->cols() != n)
        throw InternalError("svd", "H is " + std::to_string(h->rows()) + " x " + std::to_string(h->cols()) +
                            ", expected " + std::to_string(n) + " x " + std::to_string(n));
    out.whitened = true;
    // S = chol(H); when H is singular or indefinite (fewer tokens than inputs, dead features),
    // shift its spectrum so the smallest eigenvalue becomes 1e-6.
    MatrixD s = *h;
    if (!core::cholesky_lower(s)) {
        const double lambda_min = core::eigh(*h).values.minCoeff();
        out.shift = -lambda_min + 1e-6;
        s = *h;
        s.diagonal().array() += out.shift;
        if (!core::cholesky_lower(s))
            throw InternalError("svd", "H is not positive definite even after shifting it by " + std::to_string(out.shift));
    }
    MatrixD ws = w * s.triangularView<Eigen::Lower>();
    truncate(ws, rank, out, out.b);  // out.b = Σ_r^{1/2} V_rᵀ for now
    // B = Σ_r^{1/2} V_rᵀ S⁻¹: solve X S = Σ_r^{1/2} V_rᵀ (S lower triangular, from the right).
    core::solve_triangular(s, out.b, core::TriangularSolve{true, false, false});
    return out;
}

double weighted_error(const MatrixD& w, const LowRank& f, const MatrixD& h) {
    const MatrixD e = w - f.a * f.b;
    return (e * h).cwiseProduct(e).sum();
}

}  // namespace moekit::svd
