// Co-activation within a MoE layer and inter-layer affinity between consecutive MoE layers
// (METHODS.md §4, ExFlow). Both are E x E count matrices from one pass over the selected ids,
// normalized by the row expert's load. Conventions: specialization.h.
#include <algorithm>
#include <limits>
#include <functional>
#include <string>

#include "analysis/specialization.h"
#include "core/error.h"

namespace moekit::analysis {

std::vector<double> coactivation(const RoutingTrace& trace, int64_t j) {
    detail::check_layer(trace, j);
    const int64_t n_expert = trace.n_expert, k = trace.n_expert_used, n_tok = trace.n_tokens();
    const int32_t* selected = trace.layers[static_cast<size_t>(j)].selected.data();
    // pair[a*E + b] = #{t: a, b in S_t}; the diagonal is the load.
    std::vector<int64_t> pair(static_cast<size_t>(n_expert * n_expert), 0);
    std::vector<int64_t> stamp(static_cast<size_t>(n_expert), -1);
    for (int64_t t = 0; t < n_tok; ++t) {
        const int32_t* ids = selected + t * k;
        detail::check_token(ids, k, n_expert, stamp, j, t);
        for (int64_t a = 0; a < k; ++a) {
            int64_t* row = pair.data() + static_cast<int64_t>(ids[a]) * n_expert;
            for (int64_t b = 0; b < k; ++b) ++row[ids[b]];
        }
    }
    // A row of an expert never selected is undefined (0/0): NaN, written as null.
    std::vector<double> out(pair.size(), std::numeric_limits<double>::quiet_NaN());
    for (int64_t a = 0; a < n_expert; ++a) {
        const int64_t load = pair[static_cast<size_t>(a * n_expert + a)];
        if (load == 0) continue;
        for (int64_t b = 0; b < n_expert; ++b)
            out[static_cast<size_t>(a * n_expert + b)] =
                static_cast<double>(pair[static_cast<size_t>(a * n_expert + b)]) / static_cast<double>(load);
    }
    return out;
}

Affinity inter_layer_affinity(const RoutingTrace& trace, int64_t j, int64_t n_top) {
    detail::check_layer(trace, j);
    if (j + 1 >= trace.n_moe_layer())
        throw Error("analysis", "inter-layer affinity needs a MoE layer after layer index " + std::to_string(j));
    detail::check_layer(trace, j + 1);
    if (n_top < 0) throw Error("analysis", "affinity: number of top transitions must be >= 0");
    const int64_t n_expert = trace.n_expert, k = trace.n_expert_used, n_tok = trace.n_tokens();
    const int32_t* from_sel = trace.layers[static_cast<size_t>(j)].selected.data();
    const int32_t* to_sel = trace.layers[static_cast<size_t>(j) + 1].selected.data();
    std::vector<int64_t> pair(static_cast<size_t>(n_expert * n_expert), 0);
    std::vector<int64_t> load(static_cast<size_t>(n_expert), 0);
    std::vector<int64_t> stamp_from(static_cast<size_t>(n_expert), -1), stamp_to(stamp_from);
    for (int64_t t = 0; t < n_tok; ++t) {
        const int32_t* a_ids = from_sel + t * k;
        const int32_t* b_ids = to_sel + t * k;
        detail::check_token(a_ids, k, n_expert, stamp_from, j, t);
        detail::check_token(b_ids, k, n_expert, stamp_to, j + 1, t);
        for (int64_t a = 0; a < k; ++a) {
            ++load[static_cast<size_t>(a_ids[a])];
            int64_t* row = pair.data() + static_cast<int64_t>(a_ids[a]) * n_expert;
            for (int64_t b = 0; b < k; ++b) ++row[b_ids[b]];
        }
    }
    Affinity out;
    // Rows of experts never selected in layer j are undefined (0/0): NaN, written as null.
    out.matrix.assign(pair.size(), std::numeric_limits<double>::quiet_NaN());
    out.topk_mass.assign(static_cast<size_t>(n_expert), std::numeric_limits<double>::quiet_NaN());
    std::vector<double> sorted_row(static_cast<size_t>(n_expert));
    for (int64_t a = 0; a < n_expert; ++a) {
        const int64_t l = load[static_cast<size_t>(a)];
        if (l == 0) continue;
        double* row = out.matrix.data() + a * n_expert;
        for (int64_t b = 0; b < n_expert; ++b)
            row[b] = static_cast<double>(pair[static_cast<size_t>(a * n_expert + b)]) / static_cast<double>(l);
        std::copy(row, row + n_expert, sorted_row.begin());
        std::partial_sort(sorted_row.begin(), sorted_row.begin() + k, sorted_row.end(), std::greater<double>());
        double mass = 0.0;
        for (int64_t i = 0; i < k; ++i) mass += sorted_row[static_cast<size_t>(i)];
        out.topk_mass[static_cast<size_t>(a)] = mass / static_cast<double>(k);
    }
    // Largest positive entries; equal values (equal fractions give equal doubles) by (from, to).
    for (int64_t a = 0; a < n_expert; ++a)
        for (int64_t b = 0; b < n_expert; ++b) {
            const double v = out.matrix[static_cast<size_t>(a * n_expert + b)];
            if (v > 0.0) out.top.push_back({a, b, v});
        }
    const auto before = [](const Transition& x, const Transition& y) {
        if (x.value != y.value) return x.value > y.value;
        return x.from != y.from ? x.from < y.from : x.to < y.to;
    };
    const size_t keep = std::min(out.top.size(), static_cast<size_t>(n_top));
    std::partial_sort(out.top.begin(), out.top.begin() + static_cast<std::ptrdiff_t>(keep), out.top.end(), before);
    out.top.resize(keep);
    return out;
}

}  // namespace moekit::analysis
