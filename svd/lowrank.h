// The low-rank factorization of one weight matrix (METHODS.md §7): plain truncated SVD, or
// SVD-LLM's whitened SVD that minimizes the error on the calibration inputs rather than on W.
//
// W [m, n] maps inputs x [n] to outputs W x [m] (a PyTorch Linear's weight). With the inputs'
// second-moment matrix H = (1/N) Σ x xᵀ [n, n]:
//   S = chol(H) (lower, H = S Sᵀ; if H is not positive definite, H + (−λ_min + 1e-6) I),
//   U Σ Vᵀ = svd(W S),  A = U_r Σ_r^{1/2} [m, r],  B = Σ_r^{1/2} V_rᵀ S⁻¹ [r, n],  W ≈ A B.
// ‖(W − A B) X‖_F over the calibration inputs X is then the smallest any rank-r matrix reaches
// (the truncation error is the tail of Σ). Without H (plain SVD): U Σ Vᵀ = svd(W),
// A = U_r Σ_r^{1/2}, B = Σ_r^{1/2} V_rᵀ, the best rank-r approximation in the Frobenius norm.
// All of it in double (LAPACK through core/linalg.h); the factors are returned in double.
#pragma once

#include <cstdint>
#include <functional>

#include <Eigen/Core>

#include "core/linalg.h"

namespace moekit::svd {

using MatrixD = Eigen::MatrixXd;  // column-major, LAPACK's layout
// The thin SVD the factorizations use: empty = core::svd (LAPACK gesdd on the CPU); `moekit svd
// --device cuda` passes backend::cuda_svd (cuSOLVER).
using SvdFn = std::function<core::Svd<double>(const MatrixD&)>;

struct LowRank {
    MatrixD a;                 // [m, r]
    MatrixD b;                 // [r, n]
    bool whitened = false;     // false: plain SVD (no H given)
    double shift = 0.0;        // added to H's diagonal because it was not positive definite (0 if it was)
    double tail_energy = 0.0;  // Σ_{i>r} σ_i² / Σ σ_i² of W S (or W): the relative squared error of the cut
};

// Kept rank for a kept-parameter ratio ρ of an [m, n] matrix: ⌊m·n·ρ / (m + n)⌋, clamped to
// [1, min(m, n)].
int64_t rank_for_ratio(int64_t m, int64_t n, double ratio);

// The whitening of inputs with second moment H: S = chol(H) (lower), or chol(H + shift I) with
// shift = −λ_min + 1e-6 when H is not positive definite. Computed once per input statistics and
// shared by the projections that see the same inputs (gate and up).
struct Whitening {
    MatrixD s;                 // [n, n] lower triangular, strict upper triangle zero
    double shift = 0.0;
};
Whitening whitening(const MatrixD& h);

// Factorizes W at `rank` (clamped to min(m, n)); `h` = nullptr gives plain SVD. `h` must be
// symmetric [n, n]; it is normalized by nothing here (callers pass the mean, see above).
LowRank factorize(const MatrixD& w, const MatrixD* h, int64_t rank, const SvdFn& svd_fn = {});
// The same with a precomputed whitening (nullptr: plain SVD).
LowRank factorize_with(const MatrixD& w, const Whitening* wh, int64_t rank, const SvdFn& svd_fn = {});

// ‖(W − A B) X‖_F² / N for the inputs whose second moment is H = XᵀX / N: tr((W−AB) H (W−AB)ᵀ).
double weighted_error(const MatrixD& w, const LowRank& f, const MatrixD& h);

}  // namespace moekit::svd
