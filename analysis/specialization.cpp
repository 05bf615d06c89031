// Domain and vocabulary specialization, routing divergence between domains, super experts and
// the profile JSON pieces (METHODS.md §4). Co-activation and inter-layer affinity live in
// affinity.cpp. Conventions: specialization.h.
#include "analysis/specialization.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "core/error.h"

namespace moekit::analysis {

namespace {

using json = nlohmann::ordered_json;

json optional_json(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }

json optional_array(const std::vector<std::optional<double>>& v, size_t begin, size_t n) {
    json out = json::array();
    for (size_t i = begin; i < begin + n; ++i) out.push_back(optional_json(v[i]));
    return out;
}

// NaN (undefined: 0/0) is written as null.
json nullable_array(const double* v, int64_t n) {
    json out = json::array();
    for (int64_t i = 0; i < n; ++i) out.push_back(std::isnan(v[i]) ? json(nullptr) : json(v[i]));
    return out;
}

json matrix_json(const std::vector<double>& m, int64_t rows, int64_t cols) {
    json out = json::array();
    for (int64_t r = 0; r < rows; ++r) out.push_back(nullable_array(m.data() + r * cols, cols));
    return out;
}

// -sum q ln q with 0 ln 0 = 0.
double entropy(const double* q, int64_t n) {
    double h = 0.0;
    for (int64_t e = 0; e < n; ++e)
        if (q[e] > 0.0) h -= q[e] * std::log(q[e]);
    return h;
}

// (KL(a||m) + KL(b||m)) / 2 with m = (a+b)/2: no cancellation for nearby distributions.
double jensen_shannon(const double* a, const double* b, int64_t n) {
    double s = 0.0;
    for (int64_t e = 0; e < n; ++e) {
        const double m = 0.5 * (a[e] + b[e]);
        if (a[e] > 0.0) s += a[e] * std::log(a[e] / m);
        if (b[e] > 0.0) s += b[e] * std::log(b[e] / m);
    }
    return 0.5 * s;
}

}  // namespace

namespace detail {

void check_sequences(const RoutingTrace& trace) {
    const int64_t n_seq = trace.n_seq(), n_domain = static_cast<int64_t>(trace.domains.size());
    if (trace.seq_begin.empty() ? trace.n_tokens() != 0
                                : (trace.seq_begin.front() != 0 || trace.seq_begin.back() != trace.n_tokens()))
        throw Error("analysis", "trace seq_begin does not cover the " + std::to_string(trace.n_tokens()) + " tokens");
    for (int64_t s = 0; s < n_seq; ++s)
        if (trace.seq_begin[static_cast<size_t>(s) + 1] < trace.seq_begin[static_cast<size_t>(s)])
            throw Error("analysis", "trace seq_begin decreases at sequence " + std::to_string(s));
    if (static_cast<int64_t>(trace.seq_domain.size()) != n_seq)
        throw Error("analysis", "trace seq_domain has " + std::to_string(trace.seq_domain.size()) +
                                    " entries for " + std::to_string(n_seq) + " sequences");
    for (int64_t s = 0; s < n_seq; ++s) {
        const int32_t d = trace.seq_domain[static_cast<size_t>(s)];
        if (d < 0 || d >= n_domain)
            throw Error("analysis", "sequence " + std::to_string(s) + " has domain " + std::to_string(d) +
                                        " but the trace lists " + std::to_string(n_domain) + " domains");
    }
}

void check_layer(const RoutingTrace& trace, int64_t j) {
    check_sequences(trace);
    if (trace.n_expert < 1 || trace.n_expert_used < 1 || trace.n_expert_used > trace.n_expert)
        throw Error("analysis", "need 1 <= n_expert_used <= n_expert, got k = " +
                                    std::to_string(trace.n_expert_used) + ", E = " + std::to_string(trace.n_expert));
    if (j < 0 || j >= trace.n_moe_layer())
        throw Error("analysis", "MoE layer index " + std::to_string(j) + " out of range [0, " +
                                    std::to_string(trace.n_moe_layer()) + ")");
    const auto& sel = trace.layers[static_cast<size_t>(j)].selected;
    if (static_cast<int64_t>(sel.size()) != trace.n_tokens() * trace.n_expert_used)
        throw Error("analysis", "layers." + std::to_string(j) + ".selected has " + std::to_string(sel.size()) +
                                    " ids, expected T*k = " + std::to_string(trace.n_tokens() * trace.n_expert_used));
}

void bad_token(int64_t j, int64_t t, int32_t id, int64_t n_expert) {
    throw Error("analysis", "layers." + std::to_string(j) + ".selected row " + std::to_string(t) + ": expert " +
                                std::to_string(id) + (id < 0 || id >= n_expert
                                                          ? " is out of range [0, " + std::to_string(n_expert) + ")"
                                                          : " is selected twice"));
}

}  // namespace detail

DomainSpecialization domain_specialization(const RoutingTrace& trace, int64_t j) {
    detail::check_layer(trace, j);
    const int64_t n_expert = trace.n_expert, k = trace.n_expert_used;
    const int64_t n_domain = static_cast<int64_t>(trace.domains.size());
    DomainSpecialization out;
    out.n_domain = n_domain;
    out.n_expert = n_expert;
    out.domain_tokens.assign(static_cast<size_t>(n_domain), 0);
    out.counts.assign(static_cast<size_t>(n_domain * n_expert), 0);
    const int32_t* selected = trace.layers[static_cast<size_t>(j)].selected.data();
    std::vector<int64_t> stamp(static_cast<size_t>(n_expert), -1);
    for (int64_t s = 0; s < trace.n_seq(); ++s) {
        const int64_t d = trace.seq_domain[static_cast<size_t>(s)];
        int64_t* row = out.counts.data() + d * n_expert;
        const int64_t b = trace.seq_begin[static_cast<size_t>(s)], e = trace.seq_begin[static_cast<size_t>(s) + 1];
        out.domain_tokens[static_cast<size_t>(d)] += e - b;
        for (int64_t t = b; t < e; ++t) {
            const int32_t* ids = selected + t * k;
            detail::check_token(ids, k, n_expert, stamp, j, t);
            for (int64_t i = 0; i < k; ++i) ++row[ids[i]];
        }
    }
    out.rate.assign(static_cast<size_t>(n_domain * n_expert), std::nullopt);
    for (int64_t d = 0; d < n_domain; ++d) {
        const int64_t n_d = out.domain_tokens[static_cast<size_t>(d)];
        if (n_d == 0) continue;
        for (int64_t ie = 0; ie < n_expert; ++ie) {
            const size_t at = static_cast<size_t>(d * n_expert + ie);
            out.rate[at] = static_cast<double>(out.counts[at]) / static_cast<double>(n_d);
        }
    }
    // CV across domains: sample std (ddof 1) / mean over the domains where e is active at all.
    out.cv.assign(static_cast<size_t>(n_expert), std::nullopt);
    std::vector<double> r;
    for (int64_t ie = 0; ie < n_expert; ++ie) {
        r.clear();
        for (int64_t d = 0; d < n_domain; ++d) {
            const auto& v = out.rate[static_cast<size_t>(d * n_expert + ie)];
            if (v && *v > 1e-5) r.push_back(*v);
        }
        if (r.size() < 2) continue;
        double mean = 0.0;
        for (double x : r) mean += x;
        mean /= static_cast<double>(r.size());
        double ss = 0.0;
        for (double x : r) ss += (x - mean) * (x - mean);
        out.cv[static_cast<size_t>(ie)] = std::sqrt(ss / static_cast<double>(r.size() - 1)) / mean;
    }
    return out;
}

VocabIndex build_vocab_index(const RoutingTrace& trace, bool next_token, int64_t min_count) {
    if (min_count < 1)
        throw Error("analysis", "vocab_min_count must be >= 1, got " + std::to_string(min_count));
    detail::check_sequences(trace);
    std::vector<std::pair<int32_t, int64_t>> keyed;  // (token id keyed on, row t)
    keyed.reserve(static_cast<size_t>(trace.n_tokens()));
    for (int64_t s = 0; s < trace.n_seq(); ++s) {
        const int64_t b = trace.seq_begin[static_cast<size_t>(s)];
        const int64_t e = trace.seq_begin[static_cast<size_t>(s) + 1] - (next_token ? 1 : 0);
        for (int64_t t = b; t < e; ++t)
            keyed.emplace_back(trace.token_ids[static_cast<size_t>(next_token ? t + 1 : t)], t);
    }
    std::sort(keyed.begin(), keyed.end());
    VocabIndex index;
    index.next_token = next_token;
    index.min_count = min_count;
    index.offsets.push_back(0);
    for (size_t g = 0; g < keyed.size();) {
        size_t h = g;
        while (h < keyed.size() && keyed[h].first == keyed[g].first) ++h;
        if (static_cast<int64_t>(h - g) >= min_count) {
            index.ids.push_back(keyed[g].first);
            for (size_t i = g; i < h; ++i) index.rows.push_back(keyed[i].second);
            index.offsets.push_back(static_cast<int64_t>(index.rows.size()));
        }
        g = h;
    }
    return index;
}

VocabSpecialization vocab_specialization(const RoutingTrace& trace, int64_t j, const VocabIndex& index) {
    detail::check_layer(trace, j);
    const int64_t n_expert = trace.n_expert, k = trace.n_expert_used;
    const auto [row_min, row_max] = std::minmax_element(index.rows.begin(), index.rows.end());
    if (index.offsets.size() != index.ids.size() + 1 || index.offsets.back() != static_cast<int64_t>(index.rows.size()) ||
        (!index.rows.empty() && (*row_min < 0 || *row_max >= trace.n_tokens())))
        throw Error("analysis", "vocabulary index does not belong to this trace");
    const auto& selected = trace.layers[static_cast<size_t>(j)].selected;
    std::vector<double> sum(static_cast<size_t>(n_expert), 0.0);
    VocabSpecialization out;
    out.n_ids.assign(static_cast<size_t>(n_expert), 0);
    std::vector<int64_t> count(static_cast<size_t>(n_expert), 0);
    std::vector<int32_t> touched;
    for (size_t g = 0; g + 1 < index.offsets.size(); ++g) {
        touched.clear();
        for (int64_t i = index.offsets[g]; i < index.offsets[g + 1]; ++i) {
            const int64_t t = index.rows[static_cast<size_t>(i)];
            const int32_t top1 = selected[static_cast<size_t>(t * k)];
            if (top1 < 0 || top1 >= n_expert) detail::bad_token(j, t, top1, n_expert);
            if (count[static_cast<size_t>(top1)]++ == 0) touched.push_back(top1);
        }
        int32_t best = -1;  // argmax, ties to the lowest expert id
        for (int32_t e : touched) {
            const int64_t c = count[static_cast<size_t>(e)];
            if (best < 0 || c > count[static_cast<size_t>(best)] ||
                (c == count[static_cast<size_t>(best)] && e < best))
                best = e;
        }
        const double n_v = static_cast<double>(index.offsets[g + 1] - index.offsets[g]);
        sum[static_cast<size_t>(best)] += static_cast<double>(count[static_cast<size_t>(best)]) / n_v;
        ++out.n_ids[static_cast<size_t>(best)];
        for (int32_t e : touched) count[static_cast<size_t>(e)] = 0;
    }
    out.score.assign(static_cast<size_t>(n_expert), std::nullopt);
    for (int64_t ie = 0; ie < n_expert; ++ie)
        if (out.n_ids[static_cast<size_t>(ie)] > 0)
            out.score[static_cast<size_t>(ie)] =
                sum[static_cast<size_t>(ie)] / static_cast<double>(out.n_ids[static_cast<size_t>(ie)]);
    return out;
}

std::vector<std::optional<double>> domain_jsd(const RoutingTrace& trace, int64_t j) {
    detail::check_layer(trace, j);
    const int64_t n_expert = trace.n_expert, n_seq = trace.n_seq();
    const int64_t n_domain = static_cast<int64_t>(trace.domains.size());
    const auto& sum_prob = trace.layers[static_cast<size_t>(j)].seq_sum_prob;
    if (static_cast<int64_t>(sum_prob.size()) != n_seq * n_expert)
        throw Error("analysis", "layers." + std::to_string(j) + ".seq_sum_prob has " +
                                    std::to_string(sum_prob.size()) + " values, expected n_seq*E = " +
                                    std::to_string(n_seq * n_expert));
    std::vector<double> q(static_cast<size_t>(n_domain * n_expert), 0.0);
    std::vector<int64_t> n_tok(static_cast<size_t>(n_domain), 0);
    for (int64_t s = 0; s < n_seq; ++s) {
        const int64_t d = trace.seq_domain[static_cast<size_t>(s)];
        n_tok[static_cast<size_t>(d)] += trace.seq_begin[static_cast<size_t>(s) + 1] - trace.seq_begin[static_cast<size_t>(s)];
        for (int64_t e = 0; e < n_expert; ++e)
            q[static_cast<size_t>(d * n_expert + e)] += sum_prob[static_cast<size_t>(s * n_expert + e)];
    }
    std::vector<double> h(static_cast<size_t>(n_domain), 0.0);
    for (int64_t d = 0; d < n_domain; ++d) {
        if (n_tok[static_cast<size_t>(d)] == 0) continue;
        for (int64_t e = 0; e < n_expert; ++e)
            q[static_cast<size_t>(d * n_expert + e)] /= static_cast<double>(n_tok[static_cast<size_t>(d)]);
        h[static_cast<size_t>(d)] = entropy(q.data() + d * n_expert, n_expert);
    }
    const double log_e = std::log(static_cast<double>(n_expert));
    std::vector<std::optional<double>> out(static_cast<size_t>(n_domain * n_domain), std::nullopt);
    for (int64_t a = 0; a < n_domain; ++a) {
        for (int64_t b = 0; b < n_domain; ++b) {
            if (n_tok[static_cast<size_t>(a)] == 0 || n_tok[static_cast<size_t>(b)] == 0) continue;
            const double denom = log_e - 0.5 * (h[static_cast<size_t>(a)] + h[static_cast<size_t>(b)]);
            double v = 0.0;
            if (denom > 1e-12)
                v = std::clamp(jensen_shannon(q.data() + a * n_expert, q.data() + b * n_expert, n_expert) / denom,
                               0.0, 1.0);
            out[static_cast<size_t>(a * n_domain + b)] = v;
        }
    }
    return out;
}

std::vector<double> max_abs_out(const RoutingTrace& trace, int64_t j) {
    detail::check_layer(trace, j);
    const int64_t n_expert = trace.n_expert, n_seq = trace.n_seq();
    const auto& mx = trace.layers[static_cast<size_t>(j)].seq_max_abs_out;
    if (static_cast<int64_t>(mx.size()) != n_seq * n_expert)
        throw Error("analysis", "layers." + std::to_string(j) + ".seq_max_abs_out has " +
                                    std::to_string(mx.size()) + " values, expected n_seq*E = " +
                                    std::to_string(n_seq * n_expert));
    std::vector<double> out(static_cast<size_t>(n_expert), 0.0);
    for (int64_t s = 0; s < n_seq; ++s)
        for (int64_t e = 0; e < n_expert; ++e) {
            const double v = mx[static_cast<size_t>(s * n_expert + e)];
            if (!std::isfinite(v))
                throw Error("analysis", "layers." + std::to_string(j) + ".seq_max_abs_out is not finite "
                                        "(sequence " + std::to_string(s) + ", expert " + std::to_string(e) + ")");
            out[static_cast<size_t>(e)] = std::max(out[static_cast<size_t>(e)], v);
        }
    return out;
}

double percentile_linear(std::vector<double> values, double q) {
    if (values.empty()) throw InternalError("analysis", "percentile of an empty set");
    if (!(q >= 0.0 && q <= 100.0)) throw Error("analysis", "percentile must be in [0, 100], got " + std::to_string(q));
    std::sort(values.begin(), values.end());
    const int64_t n = static_cast<int64_t>(values.size());
    // numpy: virtual index (n-1)*q/100, gamma = its fractional part, _lerp evaluated from the
    // nearer end (b - (b-a)(1-gamma) when gamma >= 0.5), the top value at or past the end.
    const double vi = static_cast<double>(n - 1) * (q / 100.0);
    if (vi >= static_cast<double>(n - 1)) return values.back();
    const double lo = std::floor(vi);
    const double gamma = vi - lo;
    const double a = values[static_cast<size_t>(lo)], b = values[static_cast<size_t>(lo) + 1];
    const double diff = b - a;
    return gamma >= 0.5 ? b - diff * (1.0 - gamma) : a + diff * gamma;
}

std::vector<SuperExpert> super_experts(const RoutingTrace& trace, const SpecializationParams& params) {
    const int64_t n_moe = trace.n_moe_layer(), n_expert = trace.n_expert;
    std::vector<std::vector<double>> m;
    std::vector<double> all;
    for (int64_t j = 0; j < n_moe; ++j) {
        m.push_back(max_abs_out(trace, j));
        all.insert(all.end(), m.back().begin(), m.back().end());
    }
    std::vector<SuperExpert> out;
    if (all.empty()) return out;
    const double threshold = percentile_linear(all, params.super_percentile);
    const double floor_value = params.super_max_fraction * *std::max_element(all.begin(), all.end());
    const double layer_limit = params.super_layer_fraction * static_cast<double>(trace.n_layer);
    for (int64_t j = 0; j < n_moe; ++j) {
        const int64_t il = trace.layers[static_cast<size_t>(j)].layer;
        if (!(static_cast<double>(il) < layer_limit)) continue;
        for (int64_t e = 0; e < n_expert; ++e) {
            const double v = m[static_cast<size_t>(j)][static_cast<size_t>(e)];
            if (v > threshold && v > floor_value) out.push_back({il, j, e, v});
        }
    }
    std::stable_sort(out.begin(), out.end(),
                     [](const SuperExpert& a, const SuperExpert& b) { return a.max_abs_out > b.max_abs_out; });
    return out;
}

std::vector<SpecializedPick> top_specialized(const RoutingTrace& trace, int64_t n) {
    if (n < 0) throw Error("analysis", "top_specialized: n must be >= 0, got " + std::to_string(n));
    std::vector<SpecializedPick> picks;
    const double uniform = static_cast<double>(trace.n_expert_used) / static_cast<double>(trace.n_expert);
    for (int64_t j = 0; j < trace.n_moe_layer(); ++j) {
        const DomainSpecialization ds = domain_specialization(trace, j);
        if (std::count_if(ds.domain_tokens.begin(), ds.domain_tokens.end(), [](int64_t c) { return c > 0; }) < 2)
            return {};  // the same in every layer: one domain has nothing to be compared with
        for (int64_t e = 0; e < ds.n_expert; ++e)
            for (int64_t d = 0; d < ds.n_domain; ++d) {
                const auto& r = ds.rate[static_cast<size_t>(d * ds.n_expert + e)];
                if (r) picks.push_back({trace.layers[static_cast<size_t>(j)].layer, j, e, d, *r, *r / uniform});
            }
    }
    // Generated in (moe_index, expert, domain) order, so a stable sort settles ties that way.
    const size_t keep = std::min(picks.size(), static_cast<size_t>(n));
    std::stable_sort(picks.begin(), picks.end(), [](const SpecializedPick& a, const SpecializedPick& b) {
        return a.ratio_to_uniform > b.ratio_to_uniform;
    });
    picks.resize(keep);
    return picks;
}

nlohmann::ordered_json specialization_layer_json(const RoutingTrace& trace, int64_t j,
                                                 const SpecializationParams& params) {
    return specialization_layer_json(trace, j, params, build_vocab_index(trace, false, params.vocab_min_count),
                                     build_vocab_index(trace, true, params.vocab_min_count));
}

nlohmann::ordered_json specialization_layer_json(const RoutingTrace& trace, int64_t j,
                                                 const SpecializationParams& params,
                                                 const VocabIndex& vocab_input, const VocabIndex& vocab_next) {
    const int64_t n_expert = trace.n_expert;
    const DomainSpecialization ds = domain_specialization(trace, j);
    json out;
    json rate = json::array();
    for (int64_t d = 0; d < ds.n_domain; ++d)
        rate.push_back(optional_array(ds.rate, static_cast<size_t>(d * n_expert), static_cast<size_t>(n_expert)));
    out["domain_rate"] = std::move(rate);
    out["domain_cv"] = optional_array(ds.cv, 0, ds.cv.size());
    const VocabSpecialization vi = vocab_specialization(trace, j, vocab_input);
    const VocabSpecialization vn = vocab_specialization(trace, j, vocab_next);
    out["vocab_input"] = optional_array(vi.score, 0, vi.score.size());
    out["vocab_next"] = optional_array(vn.score, 0, vn.score.size());
    const auto jsd = domain_jsd(trace, j);
    json jm = json::array();
    for (int64_t d = 0; d < ds.n_domain; ++d)
        jm.push_back(optional_array(jsd, static_cast<size_t>(d * ds.n_domain), static_cast<size_t>(ds.n_domain)));
    out["jsd"] = std::move(jm);
    out["coactivation"] = matrix_json(coactivation(trace, j), n_expert, n_expert);
    if (j + 1 < trace.n_moe_layer()) {
        const Affinity a = inter_layer_affinity(trace, j, params.n_top_transitions);
        json top = json::array();
        for (const auto& t : a.top) top.push_back(json{{"from", t.from}, {"to", t.to}, {"value", t.value}});
        out["affinity_next"] = json{{"matrix", matrix_json(a.matrix, n_expert, n_expert)},
                                    {"top", std::move(top)},
                                    {"topk_mass", nullable_array(a.topk_mass.data(), static_cast<int64_t>(a.topk_mass.size()))}};
    } else {
        out["affinity_next"] = nullptr;
    }
    out["max_abs_out"] = max_abs_out(trace, j);
    return out;
}

nlohmann::ordered_json super_experts_json(const RoutingTrace& trace, const SpecializationParams& params) {
    json out = json::array();
    for (const auto& s : super_experts(trace, params))
        out.push_back(json{{"layer", s.layer}, {"expert", s.expert}, {"max_abs_out", s.max_abs_out}});
    return out;
}

nlohmann::ordered_json top_specialized_json(const RoutingTrace& trace, int64_t n) {
    json out = json::array();
    for (const auto& p : top_specialized(trace, n))
        out.push_back(json{{"layer", p.layer},
                           {"expert", p.expert},
                           {"domain", trace.domains[static_cast<size_t>(p.domain)]},
                           {"rate", p.rate},
                           {"ratio_to_uniform", p.ratio_to_uniform}});
    return out;
}

}  // namespace moekit::analysis
