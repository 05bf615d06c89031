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
void truncate(const MatrixD& m, int64_t rank, LowRank& out, MatrixD& bt, const SvdFn& svd_fn) {
    const core::Svd<double> s = svd_fn ? svd_fn(m) : core::svd(m);
    const int64_t r = std::min<int64_t>(rank, s.s.size());
    const Eigen::VectorXd root = s.s.head(r).cwiseSqrt();
    out.a = s.u.leftCols(r) * root.asDiagonal();
    bt = root.asDiagonal() * s.vt.topRows(r);
    const double total = s.s.squaredNorm();
    out.tail_energy = total > 0 ? s.s.tail(s.s.size() - r).squaredNorm() / total : 0.0;
}

}  // namespace

Whitening whitening(const MatrixD& h) {
    if (h.rows() != h.cols()) throw InternalError("svd", "H is not square");
    Whitening wh;
    wh.s = h;
    if (core::cholesky_lower(wh.s)) return wh;
    // Singular or indefinite (fewer routed tokens than inputs, dead features): shift the spectrum
    // so the smallest eigenvalue becomes 1e-6.
    wh.shift = -core::eigvalsh(h).minCoeff() + 1e-6;
    wh.s = h;
    wh.s.diagonal().array() += wh.shift;
    if (!core::cholesky_lower(wh.s))
        throw InternalError("svd", "H is not positive definite even after shifting it by " + std::to_string(wh.shift));
    return wh;
}

LowRank factorize(const MatrixD& w, const MatrixD* h, int64_t rank, const SvdFn& svd_fn) {
    if (!h) return factorize_with(w, nullptr, rank, svd_fn);
    const Whitening wh = whitening(*h);
    return factorize_with(w, &wh, rank, svd_fn);
}

LowRank factorize_with(const MatrixD& w, const Whitening* wh, int64_t rank, const SvdFn& svd_fn) {
    LowRank out;
    const int64_t n = w.cols();
    rank = std::clamp<int64_t>(rank, 1, std::min<int64_t>(w.rows(), n));
    if (!wh) {
        truncate(w, rank, out, out.b, svd_fn);
        return out;
    }
    if (wh->s.rows() != n || wh->s.cols() != n)
        throw InternalError("svd", "whitening is " + std::to_string(wh->s.rows()) + " x " + std::to_string(wh->s.cols()) +
                                       ", expected " + std::to_string(n) + " x " + std::to_string(n));
    out.whitened = true;
    out.shift = wh->shift;
    const MatrixD ws = w * wh->s;  // S's strict upper triangle is zero: a plain (BLAS) product
    truncate(ws, rank, out, out.b, svd_fn);  // out.b = Σ_r^{1/2} V_rᵀ for now
    // B = Σ_r^{1/2} V_rᵀ S⁻¹: solve X S = Σ_r^{1/2} V_rᵀ (S lower triangular, from the right).
    core::solve_triangular(wh->s, out.b, core::TriangularSolve{true, false, false});
    return out;
}

double weighted_error(const MatrixD& w, const LowRank& f, const MatrixD& h) {
    const MatrixD e = w - f.a * f.b;
    return (e * h).cwiseProduct(e).sum();
}

}  // namespace moekit::svd
