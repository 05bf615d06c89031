// Load and balance statistics (analysis/load_stats.h, METHODS.md §1).
#include "analysis/load_stats.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <string>

#include "core/error.h"

namespace moekit::analysis {

namespace {

using nlohmann::ordered_json;

[[noreturn]] void fail(const std::string& msg) { throw moekit::Error("analysis", msg); }

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// out = sum_b w_b * rows[b] over B rows of n values (rows row-major [B * n]).
void weighted_rows(const std::vector<double>& rows, int64_t n, const std::vector<int32_t>& w, std::vector<double>& out) {
    out.assign(static_cast<size_t>(n), 0.0);
    for (size_t b = 0; b < w.size(); ++b) {
        if (w[b] == 0) continue;
        const double wb = w[b];
        const double* row = rows.data() + b * static_cast<size_t>(n);
        for (int64_t e = 0; e < n; ++e) out[static_cast<size_t>(e)] += wb * row[e];
    }
}

void fill_totals(const LoadBatchSums& sums, const std::vector<int32_t>& w, bool with_prob, LoadTotals& out) {
    if (static_cast<int64_t>(w.size()) != sums.n_batch)
        fail("bootstrap weights have " + std::to_string(w.size()) + " batches, the sums " + std::to_string(sums.n_batch));
    out.tokens = out.sum_entropy = 0.0;
    for (size_t b = 0; b < w.size(); ++b) {
        out.tokens += w[b] * sums.tokens[b];
        out.sum_entropy += w[b] * sums.sum_entropy[b];
    }
    weighted_rows(sums.counts, sums.n_expert, w, out.counts);
    if (with_prob) weighted_rows(sums.sum_prob, sums.n_expert, w, out.sum_prob);
    else out.sum_prob.clear();
}

LayerLoadStats stats_of(const LoadTotals& t, int64_t k) {
    LayerLoadStats s;
    s.metrics = load_metrics(t.counts, t.tokens * static_cast<double>(k));
    s.router_entropy = t.tokens > 0 ? t.sum_entropy / t.tokens : 0.0;
    return s;
}

// Resampled values of several statistics at once: f(weights, row) fills row[0..n_stat).
template <typename F>
std::vector<std::vector<double>> resample_table(const BootstrapPlan& plan, size_t n_stat, F f) {
    const int64_t R = plan.n_resample();
    std::vector<std::vector<double>> table(n_stat, std::vector<double>(static_cast<size_t>(R)));
#pragma omp parallel for schedule(static) if (R > 64)
    for (int64_t r = 0; r < R; ++r) {
        std::vector<double> row(n_stat);
        f(plan.weights(r), row);
        for (size_t i = 0; i < n_stat; ++i) table[i][static_cast<size_t>(r)] = row[i];
    }
    return table;
}

}  // namespace

LoadMetrics load_metrics(std::span<const double> counts, int64_t tokens_times_k) {
    return load_metrics(counts, static_cast<double>(tokens_times_k));
}

LoadMetrics load_metrics(std::span<const double> counts, double tokens_times_k) {
    const size_t n = counts.size();
    if (n == 0) fail("load statistics need at least one expert");
    double sum = 0.0, max = 0.0;
    LoadMetrics m;
    for (double x : counts) {
        if (!std::isfinite(x) || x < 0) fail("expert load " + std::to_string(x) + " is not a non-negative count");
        sum += x;
        max = std::max(max, x);
        if (x == 0) ++m.dead;
    }
    // No load at all: every ratio is 0/0; report the values of an equal load.
    if (sum == 0) {
        m.max_vio = m.cv = m.gini = 0.0;
        m.jain = m.entropy = 1.0;
        return m;
    }
    if (!(tokens_times_k > 0)) fail("expert loads sum to " + std::to_string(sum) + " but T*k is " + std::to_string(tokens_times_k));
    const double dn = static_cast<double>(n);
    const double ideal = tokens_times_k / dn;
    m.max_vio = (max - ideal) / ideal;

    const double mean = sum / dn;
    double ss = 0.0, sq = 0.0, h = 0.0;
    for (double x : counts) {
        ss += (x - mean) * (x - mean);
        sq += x * x;
        if (x > 0) {
            const double f = x / tokens_times_k;
            h -= f * std::log(f);
        }
    }
    m.cv = std::sqrt(ss / dn) / mean;
    m.entropy = n > 1 ? h / std::log(dn) : 1.0;  // one expert: trivially balanced
    m.jain = sum * sum / (dn * sq);

    std::vector<double> sorted(counts.begin(), counts.end());
    std::sort(sorted.begin(), sorted.end());
    double g = 0.0;
    for (size_t i = 0; i < n; ++i) g += (2.0 * static_cast<double>(i + 1) - dn - 1.0) * sorted[i];
    m.gini = g / (dn * sum);
    return m;
}

LoadBatchSums load_batch_sums(const RoutingTrace& trace, int64_t j, const std::vector<int32_t>& batch_of_seq,
                              int64_t n_batch) {
    if (j < 0 || j >= trace.n_moe_layer())
        fail("MoE layer index " + std::to_string(j) + " out of range (the trace has " + std::to_string(trace.n_moe_layer()) + ")");
    const TraceLayer& layer = trace.layers[static_cast<size_t>(j)];
    const int64_t T = trace.n_tokens(), S = trace.n_seq(), E = trace.n_expert, k = trace.n_expert_used;
    const std::string where = "MoE layer " + std::to_string(j) + " (decoder layer " + std::to_string(layer.layer) + ")";
    if (E < 1 || k < 1) fail("the trace has no experts");
    if (static_cast<int64_t>(layer.selected.size()) != T * k) fail(where + ": selected has the wrong size");
    if (static_cast<int64_t>(layer.seq_sum_entropy.size()) != S || static_cast<int64_t>(layer.seq_sum_prob.size()) != S * E)
        fail(where + ": per-sequence sums have the wrong size");
    if (static_cast<int64_t>(batch_of_seq.size()) != S || n_batch < 1)
        fail("bootstrap batches do not match the trace's " + std::to_string(S) + " sequences");

    LoadBatchSums out;
    out.n_batch = n_batch;
    out.n_expert = E;
    out.n_expert_used = k;
    out.tokens.assign(static_cast<size_t>(n_batch), 0.0);
    out.sum_entropy.assign(static_cast<size_t>(n_batch), 0.0);
    out.counts.assign(static_cast<size_t>(n_batch * E), 0.0);
    out.sum_prob.assign(static_cast<size_t>(n_batch * E), 0.0);
    std::vector<int64_t> counts(static_cast<size_t>(n_batch * E), 0);
    for (int64_t s = 0; s < S; ++s) {
        const int64_t b = batch_of_seq[static_cast<size_t>(s)];
        if (b < 0 || b >= n_batch) fail("sequence " + std::to_string(s) + " has no bootstrap batch");
        const int64_t r0 = trace.seq_begin[static_cast<size_t>(s)], r1 = trace.seq_begin[static_cast<size_t>(s + 1)];
        int64_t* c = counts.data() + b * E;
        for (int64_t i = r0 * k; i < r1 * k; ++i) {
            const int32_t e = layer.selected[static_cast<size_t>(i)];
            if (e < 0 || e >= E) fail(where + ": token " + std::to_string(i / k) + " selects expert " + std::to_string(e) + " of " + std::to_string(E));
            ++c[e];
        }
        out.tokens[static_cast<size_t>(b)] += static_cast<double>(r1 - r0);
        out.sum_entropy[static_cast<size_t>(b)] += layer.seq_sum_entropy[static_cast<size_t>(s)];
        const double* p = layer.seq_sum_prob.data() + s * E;
        double* q = out.sum_prob.data() + b * E;
        for (int64_t e = 0; e < E; ++e) q[e] += p[e];
    }
    for (size_t i = 0; i < counts.size(); ++i) out.counts[i] = static_cast<double>(counts[i]);
    return out;
}

LoadTotals load_totals(const LoadBatchSums& sums, const std::vector<int32_t>& weights, bool with_prob) {
    LoadTotals t;
    fill_totals(sums, weights, with_prob, t);
    return t;
}

LayerLoadStats layer_load_stats(const LoadBatchSums& sums, const std::vector<int32_t>& weights) {
    return stats_of(load_totals(sums, weights), sums.n_expert_used);
}

ModelLoadStats model_load_stats(const std::vector<LoadBatchSums>& layers, const std::vector<int32_t>& weights) {
    ModelLoadStats m;
    if (layers.empty()) {
        m.max_vio_mean = m.cv_mean = m.entropy_mean = m.gini_mean = m.jain_mean = kNaN;
        m.router_entropy_mean = m.aux_loss = kNaN;
        return m;
    }
    const int64_t E = layers.front().n_expert;
    std::vector<double> pooled_count(static_cast<size_t>(E), 0.0), pooled_prob(static_cast<size_t>(E), 0.0);
    LoadTotals t;
    double tokens = 0.0;
    for (const LoadBatchSums& sums : layers) {
        if (sums.n_expert != E) fail("MoE layers disagree on the expert count");
        fill_totals(sums, weights, true, t);
        const LayerLoadStats s = stats_of(t, sums.n_expert_used);
        m.max_vio_mean += s.metrics.max_vio;
        m.cv_mean += s.metrics.cv;
        m.entropy_mean += s.metrics.entropy;
        m.gini_mean += s.metrics.gini;
        m.jain_mean += s.metrics.jain;
        m.router_entropy_mean += s.router_entropy;
        m.dead_experts += s.metrics.dead;
        for (int64_t e = 0; e < E; ++e) {
            pooled_count[static_cast<size_t>(e)] += t.counts[static_cast<size_t>(e)];
            pooled_prob[static_cast<size_t>(e)] += t.sum_prob[static_cast<size_t>(e)];
        }
        tokens = t.tokens;  // the same tokens pass through every layer
    }
    const double L = static_cast<double>(layers.size());
    for (double* v : {&m.max_vio_mean, &m.cv_mean, &m.entropy_mean, &m.gini_mean, &m.jain_mean, &m.router_entropy_mean}) *v /= L;
    // E * sum_e (Load_e / (T L)) * (sum p_e / (T L)), all layers' tokens pooled.
    if (tokens > 0) {
        double dot = 0.0;
        for (int64_t e = 0; e < E; ++e) dot += pooled_count[static_cast<size_t>(e)] * pooled_prob[static_cast<size_t>(e)];
        const double tl = tokens * L;
        m.aux_loss = static_cast<double>(E) * dot / (tl * tl);
    }
    return m;
}

Interval interval_from_resamples(double value, std::vector<double> resampled) {
    Interval out{value, value, value};
    std::erase_if(resampled, [](double v) { return !std::isfinite(v); });
    if (resampled.empty()) return out;
    out.lo = quantile(resampled, 0.025);
    out.hi = quantile(std::move(resampled), 0.975);
    return out;
}

ordered_json load_layer_json(const RoutingTrace& trace, int64_t j, const BootstrapPlan& plan) {
    const LoadBatchSums sums = load_batch_sums(trace, j, plan.batch_of_seq(), plan.n_batch());
    const LoadTotals full = load_totals(sums, plan.full());
    const LayerLoadStats value = stats_of(full, sums.n_expert_used);
    const auto table = resample_table(plan, 6, [&](const std::vector<int32_t>& w, std::vector<double>& row) {
        const LayerLoadStats s = layer_load_stats(sums, w);
        row = {s.metrics.max_vio, s.metrics.cv, s.metrics.entropy, s.metrics.gini, s.metrics.jain, s.router_entropy};
    });

    const double tk = full.tokens * static_cast<double>(sums.n_expert_used);
    ordered_json counts = ordered_json::array(), shares = ordered_json::array(), dead = ordered_json::array();
    for (int64_t e = 0; e < sums.n_expert; ++e) {
        const double c = full.counts[static_cast<size_t>(e)];
        counts.push_back(static_cast<int64_t>(std::llround(c)));
        shares.push_back(tk > 0 ? c / tk : 0.0);
        if (c == 0) dead.push_back(e);
    }
    const double values[] = {value.metrics.max_vio, value.metrics.cv, value.metrics.entropy,
                             value.metrics.gini, value.metrics.jain, value.router_entropy};
    const char* names[] = {"max_vio", "cv", "entropy", "gini", "jain", "router_entropy"};
    ordered_json out;
    out["counts"] = std::move(counts);
    out["shares"] = std::move(shares);
    for (size_t i = 0; i < 6; ++i) out[names[i]] = to_json(interval_from_resamples(values[i], table[i]));
    out["dead"] = std::move(dead);
    return out;
}

ordered_json load_model_json(const RoutingTrace& trace, const BootstrapPlan& plan) {
    const int64_t L = trace.n_moe_layer();
    const char* names[] = {"max_vio_mean", "cv_mean", "entropy_mean", "gini_mean", "jain_mean", "router_entropy_mean", "aux_loss"};
    ordered_json out;
    if (L == 0) {
        for (const char* name : names) out[name] = nullptr;
        out["dead_experts"] = 0;
        return out;
    }
    std::vector<LoadBatchSums> layers(static_cast<size_t>(L));
    std::exception_ptr error;  // exceptions must not escape an OpenMP region
#pragma omp parallel for schedule(dynamic) if (L > 1)
    for (int64_t j = 0; j < L; ++j) {
        try {
            layers[static_cast<size_t>(j)] = load_batch_sums(trace, j, plan.batch_of_seq(), plan.n_batch());
        } catch (...) {
#pragma omp critical(moekit_load_error)
            if (!error) error = std::current_exception();
        }
    }
    if (error) std::rethrow_exception(error);

    auto row_of = [](const ModelLoadStats& m) {
        return std::vector<double>{m.max_vio_mean, m.cv_mean, m.entropy_mean, m.gini_mean, m.jain_mean, m.router_entropy_mean, m.aux_loss};
    };
    const ModelLoadStats value = model_load_stats(layers, plan.full());
    const std::vector<double> values = row_of(value);
    const auto table = resample_table(plan, 7, [&](const std::vector<int32_t>& w, std::vector<double>& row) {
        row = row_of(model_load_stats(layers, w));
    });
    for (size_t i = 0; i < 7; ++i) out[names[i]] = to_json(interval_from_resamples(values[i], table[i]));
    out["dead_experts"] = value.dead_experts;
    return out;
}

}  // namespace moekit::analysis
