// Dense linear algebra at LAPACK speed: thin SVD, Cholesky, triangular inverse/solve and the
// symmetric eigen-decomposition, as thin wrappers over LAPACKE/CBLAS (OpenBLAS from Debian).
// Eigen's own SVD is several times slower than LAPACK's divide-and-conquer gesdd on the matrix
// sizes experts have (DESIGN.md "CPU math"), so everything that factorizes weights or Gram
// matrices (svd, merge --method sub-moe, GPTQ) goes through here. Matrices are Eigen
// column-major; float and double. Run single-threaded BLAS (core/blas.h) and parallelize
// around these calls.
#pragma once

#include <Eigen/Core>

namespace moekit::core {

template <class T>
using MatrixC = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
template <class T>
using VectorC = Eigen::Matrix<T, Eigen::Dynamic, 1>;

// A = U diag(s) Vt with U [m, k], s [k] descending, Vt [k, n], k = min(m, n).
template <class T>
struct Svd {
    MatrixC<T> u;
    VectorC<T> s;
    MatrixC<T> vt;
};

// Thin SVD by gesdd (falls back to gesvd if divide-and-conquer does not converge).
// Throws Error("linalg") on non-finite input or when neither converges.
Svd<float> svd(const MatrixC<float>& a);
Svd<double> svd(const MatrixC<double>& a);

// Lower Cholesky factor of a symmetric positive-definite matrix, in place: on success `a` holds
// L (A = L Lᵀ) with the strict upper triangle zeroed and the function returns true; returns
// false (a left unspecified) when A is not positive definite. Only the lower triangle is read.
bool cholesky_lower(MatrixC<float>& a);
bool cholesky_lower(MatrixC<double>& a);

// Upper Cholesky factor (A = Uᵀ U), in place, strict lower triangle zeroed; false if not PD.
bool cholesky_upper(MatrixC<float>& a);
bool cholesky_upper(MatrixC<double>& a);

// In-place inverse of a triangular matrix (lower if `lower`, else upper); the other strict
// triangle is zeroed. Throws Error("linalg") if the matrix is singular.
void invert_triangular(MatrixC<float>& t, bool lower);
void invert_triangular(MatrixC<double>& t, bool lower);

// Solves op(T) X = B (left) or X op(T) = B (right) in place in `b`, T triangular
// (lower/upper), op = transpose or not. No singularity check (CBLAS trsm).
struct TriangularSolve {
    bool lower = true;
    bool transpose = false;
    bool left = true;
};
void solve_triangular(const MatrixC<float>& t, MatrixC<float>& b, TriangularSolve how);
void solve_triangular(const MatrixC<double>& t, MatrixC<double>& b, TriangularSolve how);

// Symmetric eigen-decomposition A = V diag(w) Vᵀ by syevd: w ascending, V's columns
// orthonormal. Only the lower triangle is read.
template <class T>
struct SymmetricEigen {
    VectorC<T> values;
    MatrixC<T> vectors;
};
SymmetricEigen<float> eigh(const MatrixC<float>& a);
SymmetricEigen<double> eigh(const MatrixC<double>& a);

}  // namespace moekit::core
