// Integer round-to-nearest with per-group scales (see rtn.h).
#include "quantize/rtn.h"

#include <algorithm>
#include <cmath>

namespace moekit::quantize {

GroupParams group_params(const IntGrid& grid, const float* x, int64_t n) {
    float mn = 0.0f, mx = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
        mn = std::min(mn, x[i]);
        mx = std::max(mx, x[i]);
    }
    const float maxq = static_cast<float>(grid.maxq());
    GroupParams p;
    if (grid.symmetric) {
        const float amax = std::max(std::fabs(mn), mx);
        mn = -amax;
        mx = amax;
    }
    if (mx - mn <= 0.0f || !std::isfinite(mx - mn)) {
        // All-zero group: any scale reproduces it; never a 0 or NaN scale.
        p.scale = 1.0f;
        p.zero = grid.symmetric ? (maxq + 1) / 2 : 0.0f;
        return p;
    }
    p.scale = (mx - mn) / maxq;
    p.zero = grid.symmetric ? (maxq + 1) / 2 : std::nearbyint(-mn / p.scale);
    return p;
}

void rtn_row(const IntGrid& grid, float* x, int64_t n) {
    const int64_t g = grid.group_size > 0 ? grid.group_size : n;
    for (int64_t b = 0; b < n; b += g) {
        const int64_t len = std::min(g, n - b);
        const GroupParams p = group_params(grid, x + b, len);
        for (int64_t i = 0; i < len; ++i) x[b + i] = quantize_value(p, grid.maxq(), x[b + i]);
    }
}

}  // namespace moekit::quantize
