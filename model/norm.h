// RMSNorm as every supported architecture computes it (transformers *RMSNorm): in fp32,
// y = weight * (x * rsqrt(mean(x^2) + eps)), eps inside the root.
#pragma once

#include <cstdint>

#include <Eigen/Core>

#include "model/engine.h"

namespace moekit::model::detail {

struct Weight;

// out = rms_norm(x) row by row over all columns; out may alias x.
void rms_norm(const Matrix& x, const Weight& weight, float eps, Matrix& out, int n_threads);

// In place over each `width`-wide segment of columns [col0, col0 + n_seg * width) of every row
// (Qwen3 per-head q/k norm: weight has `width` entries, one norm per head).
void rms_norm_segments(Matrix& x, int64_t col0, int64_t n_seg, int64_t width, const Weight& weight, float eps,
                       int n_threads);

}  // namespace moekit::model::detail
