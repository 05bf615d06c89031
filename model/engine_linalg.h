// Private to the forward engine: the dense kernels every layer uses — a linear layer
// (x W^T + b) split over threads, and the SwiGLU MLP (experts, shared experts, dense MLPs).
// Weights packed for bf16 compute (Weight::is_packed) go to core/gemm_bf16.h instead of Eigen.
// Eigen does the products; a product inside one of our OpenMP regions runs single-threaded, so
// the parallelism is always ours (row or column blocks), and `n_threads` is honoured.
#pragma once

#include <Eigen/Core>

#include "model/engine.h"
#include "model/engine_weights.h"

namespace moekit::model::detail {

using ConstRef = Eigen::Ref<const Matrix>;
using MutRef = Eigen::Ref<Matrix>;

// out [n, w.rows] = x [n, w.cols] * w^T on the calling thread: Eigen/OpenBLAS in fp32, or the
// bf16 GEMM backend when w is packed (bf16 compute mode). out must already be [n, w.rows].
void gemm_rows(const ConstRef& x, const Weight& w, MutRef out);

// out [n, w.rows] = x [n, w.cols] * w^T (+ bias), parallel over row blocks when n is large and
// over output-column blocks otherwise.
void linear(const ConstRef& x, const Weight& w, const Weight* bias, Matrix& out, int n_threads);

// Single-threaded SwiGLU MLP on a block of rows: y = down(silu(gate x) * up x) (+ biases).
// `scratch` is resized to [n, 2F] and reused by the caller across blocks.
void mlp_rows(const ConstRef& x, const MlpWeights& w, Matrix& scratch, MutRef y);

// The MLP on all rows of x, parallel over row blocks: y [n, d].
void mlp(const Matrix& x, const MlpWeights& w, Matrix& y, int n_threads);

// Rows per block such that n rows give about `tasks_per_thread` blocks per thread, at least
// `min_rows` rows each.
int64_t row_block(int64_t n, int n_threads, int64_t min_rows, int tasks_per_thread = 1);

}  // namespace moekit::model::detail
