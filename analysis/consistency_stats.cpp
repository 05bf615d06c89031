// SRP / SCH / LRU / LFU sections of the profile report (analysis/consistency_stats.h).
#include "analysis/consistency_stats.h"

#include <omp.h>

#include <algorithm>
#include <numeric>
#include <string>

#include "analysis/consistency.h"
#include "core/error.h"

namespace moekit::analysis {

using nlohmann::ordered_json;

std::vector<int32_t> token_requests(const RoutingTrace& trace, int64_t j, int64_t t) {
    const int64_t k = trace.n_expert_used;
    const TraceLayer& l = trace.layers[static_cast<size_t>(j)];
    std::vector<int64_t> order(static_cast<size_t>(k));
    std::iota(order.begin(), order.end(), 0);
    const float* g = l.gates.data() + t * k;
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return g[a] > g[b]; });
    std::vector<int32_t> out(static_cast<size_t>(k));
    for (int64_t a = 0; a < k; ++a) out[static_cast<size_t>(a)] = l.selected[static_cast<size_t>(t * k + order[static_cast<size_t>(a)])];
    return out;
}

namespace {

// Per-sequence rates for one (level, policy, ratio): mean over sequences, bootstrapped by batch.
Interval rate_interval(const std::vector<double>& rate_of_seq, const BootstrapPlan& plan) {
    const auto& batch = plan.batch_of_seq();
    std::vector<double> sum(static_cast<size_t>(plan.n_batch()), 0.0);
    std::vector<double> count(static_cast<size_t>(plan.n_batch()), 0.0);
    for (size_t s = 0; s < rate_of_seq.size(); ++s) {
        sum[static_cast<size_t>(batch[s])] += rate_of_seq[s];
        count[static_cast<size_t>(batch[s])] += 1.0;
    }
    return plan.interval([&](const std::vector<int32_t>& w) {
        double a = 0.0, n = 0.0;
        for (size_t b = 0; b < w.size(); ++b) a += w[b] * sum[b], n += w[b] * count[b];
        return n > 0 ? 100.0 * a / n : 0.0;
    });
}

ordered_json srp_json(const std::vector<int64_t>& full, const std::vector<std::vector<int64_t>>& per_batch, int64_t m,
                      const BootstrapPlan& plan) {
    const SrpResult r = srp_from_histogram(full, m);
    const Interval iv = plan.interval([&](const std::vector<int32_t>& w) {
        std::vector<int64_t> h(static_cast<size_t>(m + 1), 0);
        for (size_t b = 0; b < w.size(); ++b)
            if (w[b])
                for (size_t c = 0; c < h.size(); ++c) h[c] += w[b] * per_batch[b][c];
        return 100.0 * srp_from_histogram(h, m).f1;
    });
    ordered_json out = to_json(iv);
    out["alpha_star"] = r.alpha_star;
    out["rho_hat"] = r.rho_hat;
    return out;
}

struct CacheRates {
    // [ratio][seq] hit rate (fraction), for SCH / LRU / LFU.
    std::vector<std::vector<double>> sch, lru, lfu;
};

ordered_json cache_json(const CacheRates& rates, const std::vector<int64_t>& capacities, const std::vector<int64_t>& ratios,
                        const BootstrapPlan& plan) {
    ordered_json out = ordered_json::object();
    const std::pair<const char*, const std::vector<std::vector<double>>*> policies[] = {
        {"sch", &rates.sch}, {"lru", &rates.lru}, {"lfu", &rates.lfu}};
    for (const auto& [name, per_ratio] : policies) {
        ordered_json section = ordered_json::object();
        for (size_t r = 0; r < ratios.size(); ++r) {
            ordered_json v = to_json(rate_interval((*per_ratio)[r], plan));
            v["capacity"] = capacities[r];
            section[std::to_string(ratios[r])] = std::move(v);
        }
        out[name] = std::move(section);
    }
    return out;
}

}  // namespace

ConsistencyReport consistency_report(const RoutingTrace& trace, const BootstrapPlan& plan, const ConsistencyParams& params) {
    const int64_t L = trace.n_moe_layer(), S = trace.n_seq(), E = trace.n_expert, k = trace.n_expert_used;
    const int64_t B = plan.n_batch();
    if (static_cast<int64_t>(plan.batch_of_seq().size()) != S) throw InternalError("profile", "bootstrap plan does not match the trace");
    for (int64_t m : params.segment_lengths)
        if (m < 1) throw Error("profile", "segment lengths must be at least 1 (got " + std::to_string(m) + ")");
    for (int64_t rho : params.cache_ratios)
        if (rho < 1) throw Error("profile", "cache ratios must be at least 1 (got " + std::to_string(rho) + ")");
    const int threads = params.threads > 0 ? params.threads : std::max(1, omp_get_max_threads());
    const auto& batch = plan.batch_of_seq();

    ConsistencyReport report;
    report.layers.assign(static_cast<size_t>(L), ordered_json::object());
    ordered_json model_srp = ordered_json::object();

    // SRP: per layer a full accumulator (expert level) and per-batch layer histograms (intervals).
    for (int64_t m : params.segment_lengths) {
        std::vector<std::vector<int64_t>> layer_full(static_cast<size_t>(L));
        std::vector<std::vector<std::vector<int64_t>>> layer_batch(static_cast<size_t>(L));
        std::vector<std::vector<double>> expert_srp(static_cast<size_t>(L));
#pragma omp parallel for num_threads(threads) schedule(dynamic)
        for (int64_t j = 0; j < L; ++j) {
            const TraceLayer& l = trace.layers[static_cast<size_t>(j)];
            SrpAccumulator full(E, m);
            auto& per_batch = layer_batch[static_cast<size_t>(j)];
            per_batch.assign(static_cast<size_t>(B), std::vector<int64_t>(static_cast<size_t>(m + 1), 0));
            for (int64_t s = 0; s < S; ++s) {
                SrpAccumulator one(E, m);
                const int64_t t0 = trace.seq_begin[static_cast<size_t>(s)], t1 = trace.seq_begin[static_cast<size_t>(s + 1)];
                one.add_sequence(l.selected.data() + t0 * k, t1 - t0, k);
                const auto h = one.layer_histogram();
                auto& hb = per_batch[static_cast<size_t>(batch[static_cast<size_t>(s)])];
                for (size_t c = 0; c < h.size(); ++c) hb[c] += h[c];
                full.merge(one);
            }
            layer_full[static_cast<size_t>(j)] = full.layer_histogram();
            auto& es = expert_srp[static_cast<size_t>(j)];
            for (int64_t e = 0; e < E; ++e) es.push_back(100.0 * full.srp_expert(e).f1);
        }
        std::vector<int64_t> model_full(static_cast<size_t>(m + 1), 0);
        std::vector<std::vector<int64_t>> model_batch(static_cast<size_t>(B), std::vector<int64_t>(static_cast<size_t>(m + 1), 0));
        for (int64_t j = 0; j < L; ++j) {
            ordered_json& cj = report.layers[static_cast<size_t>(j)];
            cj["srp"][std::to_string(m)] = srp_json(layer_full[static_cast<size_t>(j)], layer_batch[static_cast<size_t>(j)], m, plan);
            cj["srp_expert"][std::to_string(m)] = expert_srp[static_cast<size_t>(j)];
            for (size_t c = 0; c <= static_cast<size_t>(m); ++c) {
                model_full[c] += layer_full[static_cast<size_t>(j)][c];
                for (int64_t b = 0; b < B; ++b) model_batch[static_cast<size_t>(b)][c] += layer_batch[static_cast<size_t>(j)][static_cast<size_t>(b)][c];
            }
        }
        model_srp[std::to_string(m)] = srp_json(model_full, model_batch, m, plan);
    }

    // Cache hit rates per sequence: every layer, then the model-level cache.
    const size_t R = params.cache_ratios.size();
    auto empty_rates = [&] {
        CacheRates c;
        c.sch.assign(R, std::vector<double>(static_cast<size_t>(S), 0.0));
        c.lru = c.lfu = c.sch;
        return c;
    };
    std::vector<CacheRates> layer_rates(static_cast<size_t>(L));
    for (auto& c : layer_rates) c = empty_rates();
    CacheRates model_rates = empty_rates();
    const int64_t m_sch = params.sch_segment_length;
#pragma omp parallel for num_threads(threads) schedule(dynamic)
    for (int64_t s = 0; s < S; ++s) {
        const int64_t t0 = trace.seq_begin[static_cast<size_t>(s)], t1 = trace.seq_begin[static_cast<size_t>(s + 1)];
        std::vector<std::vector<int32_t>> model_req(static_cast<size_t>(t1 - t0));
        for (int64_t j = 0; j < L; ++j) {
            std::vector<std::vector<int32_t>> req;
            req.reserve(static_cast<size_t>(t1 - t0));
            for (int64_t t = t0; t < t1; ++t) {
                req.push_back(token_requests(trace, j, t));
                auto& mr = model_req[static_cast<size_t>(t - t0)];
                for (int32_t x : req.back()) mr.push_back(static_cast<int32_t>(j * E + x));
            }
            for (size_t r = 0; r < R; ++r) {
                const int64_t capacity = params.cache_ratios[r] * k;
                auto& c = layer_rates[static_cast<size_t>(j)];
                c.sch[r][static_cast<size_t>(s)] = sch_simulate(req, capacity, m_sch).hit_rate();
                c.lru[r][static_cast<size_t>(s)] = lru_simulate(req, capacity).hit_rate();
                c.lfu[r][static_cast<size_t>(s)] = lfu_simulate(req, capacity).hit_rate();
            }
        }
        for (size_t r = 0; r < R && L > 0; ++r) {
            const int64_t capacity = params.cache_ratios[r] * L * k;
            model_rates.sch[r][static_cast<size_t>(s)] = sch_simulate(model_req, capacity, m_sch).hit_rate();
            model_rates.lru[r][static_cast<size_t>(s)] = lru_simulate(model_req, capacity).hit_rate();
            model_rates.lfu[r][static_cast<size_t>(s)] = lfu_simulate(model_req, capacity).hit_rate();
        }
    }
    std::vector<int64_t> layer_capacity, model_capacity;
    for (int64_t rho : params.cache_ratios) layer_capacity.push_back(rho * k), model_capacity.push_back(rho * L * k);
    for (int64_t j = 0; j < L; ++j) {
        const ordered_json c = cache_json(layer_rates[static_cast<size_t>(j)], layer_capacity, params.cache_ratios, plan);
        for (const auto& [key, value] : c.items()) report.layers[static_cast<size_t>(j)][key] = value;
    }
    report.model = ordered_json::object();
    report.model["srp"] = std::move(model_srp);
    const ordered_json c = cache_json(model_rates, model_capacity, params.cache_ratios, plan);
    for (const auto& [key, value] : c.items()) report.model[key] = value;
    return report;
}

}  // namespace moekit::analysis
