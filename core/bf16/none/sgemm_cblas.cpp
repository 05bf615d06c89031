// core/sgemm.h through CBLAS (OpenBLAS, single-threaded by core::use_single_threaded_blas) when
// moekit is built without oneDNN.
#include <cblas.h>

#include "core/sgemm.h"

namespace moekit::core {

void sgemm(bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
           float* c, int64_t ldc) {
    if (m == 0 || n == 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, int(m), int(n), int(k), 1.0f, a, int(lda), b,
                int(ldb), 0.0f, c, int(ldc));
}

const char* sgemm_backend() { return "OpenBLAS sgemm"; }

}  // namespace moekit::core
