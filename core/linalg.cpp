// See core/linalg.h. One template per operation; the float/double LAPACKE/CBLAS entry points
// are picked by overloads of the small lapack_* shims below.
#include "core/linalg.h"

#include <algorithm>
#include <string>

#include <cblas.h>
#include <lapacke.h>

#include "core/error.h"

namespace moekit::core {
namespace {

using lapack_int_t = lapack_int;

lapack_int_t lapack_gesdd(int m, int n, float* a, int lda, float* s, float* u, int ldu, float* vt, int ldvt) {
    return LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'S', m, n, a, lda, s, u, ldu, vt, ldvt);
}
lapack_int_t lapack_gesdd(int m, int n, double* a, int lda, double* s, double* u, int ldu, double* vt, int ldvt) {
    return LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'S', m, n, a, lda, s, u, ldu, vt, ldvt);
}
lapack_int_t lapack_gesvd(int m, int n, float* a, int lda, float* s, float* u, int ldu, float* vt, int ldvt,
                          float* superb) {
    return LAPACKE_sgesvd(LAPACK_COL_MAJOR, 'S', 'S', m, n, a, lda, s, u, ldu, vt, ldvt, superb);
}
lapack_int_t lapack_gesvd(int m, int n, double* a, int lda, double* s, double* u, int ldu, double* vt, int ldvt,
                          double* superb) {
    return LAPACKE_dgesvd(LAPACK_COL_MAJOR, 'S', 'S', m, n, a, lda, s, u, ldu, vt, ldvt, superb);
}
lapack_int_t lapack_potrf(char uplo, int n, float* a, int lda) {
    return LAPACKE_spotrf(LAPACK_COL_MAJOR, uplo, n, a, lda);
}
lapack_int_t lapack_potrf(char uplo, int n, double* a, int lda) {
    return LAPACKE_dpotrf(LAPACK_COL_MAJOR, uplo, n, a, lda);
}
lapack_int_t lapack_trtri(char uplo, int n, float* a, int lda) {
    return LAPACKE_strtri(LAPACK_COL_MAJOR, uplo, 'N', n, a, lda);
}
lapack_int_t lapack_trtri(char uplo, int n, double* a, int lda) {
    return LAPACKE_dtrtri(LAPACK_COL_MAJOR, uplo, 'N', n, a, lda);
}
lapack_int_t lapack_syevd(int n, float* a, int lda, float* w) {
    return LAPACKE_ssyevd(LAPACK_COL_MAJOR, 'V', 'L', n, a, lda, w);
}
lapack_int_t lapack_syevd(int n, double* a, int lda, double* w) {
    return LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'L', n, a, lda, w);
}
void blas_trsm(CBLAS_SIDE side, CBLAS_UPLO uplo, CBLAS_TRANSPOSE trans, int m, int n, const float* t, int ldt,
               float* b, int ldb) {
    cblas_strsm(CblasColMajor, side, uplo, trans, CblasNonUnit, m, n, 1.0f, t, ldt, b, ldb);
}
void blas_trsm(CBLAS_SIDE side, CBLAS_UPLO uplo, CBLAS_TRANSPOSE trans, int m, int n, const double* t, int ldt,
               double* b, int ldb) {
    cblas_dtrsm(CblasColMajor, side, uplo, trans, CblasNonUnit, m, n, 1.0, t, ldt, b, ldb);
}

int checked_dim(Eigen::Index n, const char* what) {
    if (n > Eigen::Index(0x7fffffff)) throw Error("linalg", std::string(what) + ": matrix too large for LAPACK");
    return static_cast<int>(n);
}

template <class T>
Svd<T> svd_impl(const MatrixC<T>& a) {
    if (!a.allFinite()) throw Error("linalg", "SVD of a matrix with NaN or Inf entries");
    const int m = checked_dim(a.rows(), "svd"), n = checked_dim(a.cols(), "svd");
    const int k = std::min(m, n);
    Svd<T> out;
    out.u.resize(m, k);
    out.s.resize(k);
    out.vt.resize(k, n);
    if (k == 0) return out;
    MatrixC<T> work = a;  // gesdd destroys its input
    lapack_int_t info = lapack_gesdd(m, n, work.data(), m, out.s.data(), out.u.data(), m, out.vt.data(), k);
    if (info > 0) {  // divide-and-conquer did not converge: QR iteration is slower but sturdier
        work = a;
        VectorC<T> superb(std::max(1, k - 1));
        info = lapack_gesvd(m, n, work.data(), m, out.s.data(), out.u.data(), m, out.vt.data(), k, superb.data());
    }
    if (info != 0) throw Error("linalg", "SVD failed (LAPACK info " + std::to_string(info) + ")");
    return out;
}

template <class T>
bool cholesky_impl(MatrixC<T>& a, bool lower) {
    const int n = checked_dim(a.rows(), "cholesky");
    if (a.cols() != a.rows()) throw InternalError("linalg", "Cholesky of a non-square matrix");
    if (n == 0) return true;
    const lapack_int_t info = lapack_potrf(lower ? 'L' : 'U', n, a.data(), n);
    if (info < 0) throw InternalError("linalg", "potrf argument " + std::to_string(-info));
    if (info > 0) return false;
    if (lower) a.template triangularView<Eigen::StrictlyUpper>().setZero();
    else a.template triangularView<Eigen::StrictlyLower>().setZero();
    return true;
}

template <class T>
void invert_triangular_impl(MatrixC<T>& t, bool lower) {
    const int n = checked_dim(t.rows(), "triangular inverse");
    if (t.cols() != t.rows()) throw InternalError("linalg", "inverse of a non-square matrix");
    if (n == 0) return;
    const lapack_int_t info = lapack_trtri(lower ? 'L' : 'U', n, t.data(), n);
    if (info > 0) throw Error("linalg", "triangular matrix is singular (zero at diagonal " + std::to_string(info - 1) + ")");
    if (info < 0) throw InternalError("linalg", "trtri argument " + std::to_string(-info));
    if (lower) t.template triangularView<Eigen::StrictlyUpper>().setZero();
    else t.template triangularView<Eigen::StrictlyLower>().setZero();
}

template <class T>
void solve_triangular_impl(const MatrixC<T>& t, MatrixC<T>& b, TriangularSolve how) {
    const Eigen::Index need = how.left ? b.rows() : b.cols();
    if (t.rows() != t.cols() || t.rows() != need)
        throw InternalError("linalg", "triangular solve: shapes do not match");
    if (b.size() == 0) return;
    const int m = checked_dim(b.rows(), "trsm"), n = checked_dim(b.cols(), "trsm");
    blas_trsm(how.left ? CblasLeft : CblasRight, how.lower ? CblasLower : CblasUpper,
              how.transpose ? CblasTrans : CblasNoTrans, m, n, t.data(), checked_dim(t.rows(), "trsm"), b.data(), m);
}

template <class T>
SymmetricEigen<T> eigh_impl(const MatrixC<T>& a) {
    if (a.cols() != a.rows()) throw InternalError("linalg", "eigen-decomposition of a non-square matrix");
    if (!a.template triangularView<Eigen::Lower>().toDenseMatrix().allFinite())
        throw Error("linalg", "eigen-decomposition of a matrix with NaN or Inf entries");
    const int n = checked_dim(a.rows(), "eigh");
    SymmetricEigen<T> out;
    out.vectors = a;
    out.values.resize(n);
    if (n == 0) return out;
    const lapack_int_t info = lapack_syevd(n, out.vectors.data(), n, out.values.data());
    if (info != 0) throw Error("linalg", "symmetric eigen-decomposition failed (LAPACK info " + std::to_string(info) + ")");
    return out;
}

}  // namespace

Svd<float> svd(const MatrixC<float>& a) { return svd_impl(a); }
Svd<double> svd(const MatrixC<double>& a) { return svd_impl(a); }
bool cholesky_lower(MatrixC<float>& a) { return cholesky_impl(a, true); }
bool cholesky_lower(MatrixC<double>& a) { return cholesky_impl(a, true); }
bool cholesky_upper(MatrixC<float>& a) { return cholesky_impl(a, false); }
bool cholesky_upper(MatrixC<double>& a) { return cholesky_impl(a, false); }
void invert_triangular(MatrixC<float>& t, bool lower) { invert_triangular_impl(t, lower); }
void invert_triangular(MatrixC<double>& t, bool lower) { invert_triangular_impl(t, lower); }
void solve_triangular(const MatrixC<float>& t, MatrixC<float>& b, TriangularSolve how) { solve_triangular_impl(t, b, how); }
void solve_triangular(const MatrixC<double>& t, MatrixC<double>& b, TriangularSolve how) { solve_triangular_impl(t, b, how); }
SymmetricEigen<float> eigh(const MatrixC<float>& a) { return eigh_impl(a); }
SymmetricEigen<double> eigh(const MatrixC<double>& a) { return eigh_impl(a); }

}  // namespace moekit::core
