// core/sgemm.h through oneDNN's dnnl_sgemm (row-major, JIT kernels for the running CPU).
#include <dnnl.h>

#include <string>

#include "core/bf16/dnnl/single_threaded.h"
#include "core/error.h"
#include "core/sgemm.h"

namespace moekit::core {

void sgemm(bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
           float* c, int64_t ldc) {
    if (m == 0 || n == 0) return;
    const detail::SingleThreaded one;
    const dnnl_status_t status = dnnl_sgemm('N', trans_b ? 'T' : 'N', m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
    if (status != dnnl_success)
        throw InternalError("sgemm", "dnnl_sgemm failed with status " + std::to_string(int(status)) + " for " +
                                         std::to_string(m) + " x " + std::to_string(n) + " x " + std::to_string(k));
}

const char* sgemm_backend() { return "oneDNN sgemm"; }

}  // namespace moekit::core
