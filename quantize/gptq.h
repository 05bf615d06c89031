// GPTQ for one linear layer (METHODS.md §8; Frantar et al. 2022, the reference implementation's
// order of operations): with H = (2/N) sum x x^T over the layer's calibration inputs, dead
// inputs (H_ii = 0) get H_ii = 1 and their weight column zeroed, damping lambda = damp *
// mean(diag H) is added to the diagonal, Hinv = chol(chol_inverse(chol(H)))^T (upper), and the
// columns (input dimensions) are quantized in order — in blocks of block_size with lazy batch
// updates of the remaining columns — each column's rounding error spread over the columns not
// yet quantized through Hinv. Group parameters (quantize/rtn.h grid) are computed from the
// current, already-updated weights when a group starts. act_order quantizes columns in order of
// decreasing H_ii (groups then follow that order) and un-permutes the result.
// Cholesky failure (H not positive definite even after damping) is retried with 10x damping up
// to 3 times, then reported as an error naming the layer.
#pragma once

#include <cstdint>
#include <string>

#include <Eigen/Core>

#include "core/linalg.h"
#include "quantize/rtn.h"

namespace moekit::quantize {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct GptqOptions {
    IntGrid grid;
    double damp = 0.01;
    int64_t block_size = 128;      // rounded up to a multiple of the group size
    bool act_order = false;
};

struct GptqStats {
    double proxy_loss = 0;         // sum over columns of (w - q)^2 / Hinv_ii^2 / 2 (GPTQ's loss)
    double damp_used = 0;
    int64_t dead_columns = 0;
};

// Quantizes w [out, in] in place (fake-quantized values); h [in, in] is the (unnormalized is
// fine) input Gram matrix. `what` names the layer in errors.
GptqStats gptq_quantize(RowMatrix& w, const core::MatrixC<double>& h, const GptqOptions& options, const std::string& what);

}  // namespace moekit::quantize
