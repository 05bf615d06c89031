// Round-to-nearest integer quantization with per-group scales (the GPTQ reference quantizer's
// grid, METHODS.md §8), used by `--format hf-fake` when no ggml --type is given and by GPTQ:
//   symmetric:  xmax = max(|min|, |max|) over the group, scale = 2 xmax / maxq,
//               zero = (maxq + 1) / 2, q = clamp(round(x / scale) + zero, 0, maxq)
//   asymmetric: xmin = min(0, min), xmax = max(0, max), scale = (xmax - xmin) / maxq,
//               zero = round(-xmin / scale)
//   dequantized: scale * (q - zero); maxq = 2^bits - 1. An all-zero group gets scale 1 (never
//   0 or NaN). Groups run along a row (the input dimension), group_size 0 = the whole row.
#pragma once

#include <cstdint>
#include <cmath>
#include <vector>

namespace moekit::quantize {

struct IntGrid {
    int bits = 4;
    int64_t group_size = 128;
    bool symmetric = true;
    int maxq() const { return (1 << bits) - 1; }
};

struct GroupParams {
    float scale = 1.0f;
    float zero = 0.0f;
};

GroupParams group_params(const IntGrid& grid, const float* x, int64_t n);
inline float quantize_value(const GroupParams& p, int maxq, float x, int* level = nullptr);

// Fake-quantizes one row of n values in place.
void rtn_row(const IntGrid& grid, float* x, int64_t n);

inline float quantize_value(const GroupParams& p, int maxq, float x, int* level) {
    float q = std::nearbyint(x / p.scale) + p.zero;
    q = q < 0 ? 0 : (q > static_cast<float>(maxq) ? static_cast<float>(maxq) : q);
    if (level) *level = static_cast<int>(q);
    return p.scale * (q - p.zero);
}

}  // namespace moekit::quantize
