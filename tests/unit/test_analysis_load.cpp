// Tests for analysis/load_stats: the balance measures against brute-force formulas written from
// METHODS.md §1 (Gini via pairwise differences, CV via the textbook std), their edge cases, the
// per-layer and model-level JSON against per-token brute force on hand-built traces (counts,
// router entropy, the transformers-style aux loss over all layers' (token, slot) rows), the
// bootstrap plumbing (all-ones weights = full data, a resample's weights = the statistic of the
// physically resampled trace, intervals contain the value and collapse without resamples), and
// the cost at 48 layers x 128 experts x 1000 resamples.
#include "analysis/load_stats.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "core/error.h"

namespace {

using namespace moekit::analysis;
using json = nlohmann::ordered_json;

// ---- hand-built traces ----------------------------------------------------------------------

// A trace whose layer j routes token t by top-k of logits[j][t*E..] (ties: lower id first), or by
// the given selection. Every per-sequence sum is computed here in double from the logits.
RoutingTrace make_trace(int64_t E, int64_t k, const std::vector<int64_t>& seq_len,
                        const std::vector<std::vector<float>>& logits,
                        const std::vector<std::vector<int32_t>>& selected = {}, int64_t stride = 4) {
    RoutingTrace t;
    t.model_type = "test";
    t.model_name = "test";
    t.n_expert = E;
    t.n_expert_used = k;
    t.n_layer = static_cast<int64_t>(logits.size());
    t.scoring = "softmax";
    t.logit_sample_stride = stride;
    t.domains = {"d"};
    t.seq_begin = {0};
    for (int64_t len : seq_len) t.seq_begin.push_back(t.seq_begin.back() + len);
    const int64_t T = t.seq_begin.back(), S = static_cast<int64_t>(seq_len.size());
    t.seq_domain.assign(static_cast<size_t>(S), 0);
    for (int64_t i = 0; i < T; ++i) t.token_ids.push_back(static_cast<int32_t>(i % 97));
    for (int64_t s = 0; s < S; ++s)
        for (int64_t p = 0; p < seq_len[static_cast<size_t>(s)]; p += stride) t.sample_rows.push_back(t.seq_begin[static_cast<size_t>(s)] + p);
    for (size_t j = 0; j < logits.size(); ++j) {
        TraceLayer l;
        l.layer = static_cast<int64_t>(j);
        l.seq_sum_prob.assign(static_cast<size_t>(S * E), 0.0);
        l.seq_sum_centered_logit.assign(static_cast<size_t>(S * E), 0.0);
        l.seq_sum_entropy.assign(static_cast<size_t>(S), 0.0);
        l.seq_sum_out_norm.assign(static_cast<size_t>(S * E), 0.0);
        l.seq_max_abs_out.assign(static_cast<size_t>(S * E), 0.0f);
        for (int64_t s = 0; s < S; ++s)
            for (int64_t i = t.seq_begin[static_cast<size_t>(s)]; i < t.seq_begin[static_cast<size_t>(s + 1)]; ++i) {
                const float* z = logits[j].data() + i * E;
                double mx = z[0], mean = 0.0, sum = 0.0, h = 0.0;
                for (int64_t e = 0; e < E; ++e) mx = std::max(mx, double(z[e])), mean += z[e] / double(E);
                std::vector<double> p(static_cast<size_t>(E));
                for (int64_t e = 0; e < E; ++e) sum += p[e] = std::exp(z[e] - mx);
                for (int64_t e = 0; e < E; ++e) {
                    p[e] /= sum;
                    if (p[e] > 0) h -= p[e] * std::log(p[e]);
                    l.seq_sum_prob[s * E + e] += p[e];
                    l.seq_sum_centered_logit[s * E + e] += z[e] - mean;
                }
                l.seq_sum_entropy[s] += h;
                std::vector<int32_t> order(static_cast<size_t>(E));
                std::iota(order.begin(), order.end(), 0);
                std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return z[a] > z[b]; });
                for (int64_t slot = 0; slot < k; ++slot) {
                    const int32_t e = selected.empty() ? order[slot] : selected[j][i * k + slot];
                    l.selected.push_back(e);
                    l.gates.push_back(static_cast<float>(p[e]));
                }
            }
        for (int64_t r : t.sample_rows)
            for (int64_t e = 0; e < E; ++e) l.sample_logits.push_back(logits[j][r * E + e]);
        t.layers.push_back(std::move(l));
    }
    t.validate();
    return t;
}

std::vector<std::vector<float>> random_logits(int64_t L, int64_t T, int64_t E, double scale, std::mt19937_64& rng) {
    std::normal_distribution<double> n(0.0, 1.0);
    std::vector<std::vector<float>> out(static_cast<size_t>(L));
    for (auto& l : out) {
        std::vector<double> bias(static_cast<size_t>(E));
        for (auto& b : bias) b = n(rng);  // some experts preferred: unbalanced loads
        for (int64_t i = 0; i < T * E; ++i) l.push_back(static_cast<float>(scale * (bias[i % E] + n(rng))));
    }
    return out;
}

std::vector<int64_t> random_lengths(int64_t n, int64_t lo, int64_t hi, std::mt19937_64& rng) {
    std::uniform_int_distribution<int64_t> u(lo, hi);
    std::vector<int64_t> v(static_cast<size_t>(n));
    for (auto& x : v) x = u(rng);
    return v;
}

// The trace made of batch b's sequences repeated w[b] times (what a resample stands for).
RoutingTrace resampled(const RoutingTrace& t, const BootstrapPlan& plan, const std::vector<int32_t>& w) {
    RoutingTrace out = t;
    const int64_t E = t.n_expert, k = t.n_expert_used;
    out.token_ids.clear();
    out.seq_begin = {0};
    out.seq_domain.clear();
    out.sample_rows.clear();
    for (auto& l : out.layers) {
        l.selected.clear(), l.gates.clear(), l.seq_sum_prob.clear(), l.seq_sum_centered_logit.clear();
        l.seq_sum_entropy.clear(), l.seq_sum_out_norm.clear(), l.seq_max_abs_out.clear(), l.sample_logits.clear();
    }
    for (int64_t b = 0; b < plan.n_batch(); ++b)
        for (int32_t rep = 0; rep < w[static_cast<size_t>(b)]; ++rep)
            for (int64_t s = 0; s < t.n_seq(); ++s) {
                if (plan.batch_of_seq()[static_cast<size_t>(s)] != b) continue;
                const int64_t r0 = t.seq_begin[s], r1 = t.seq_begin[s + 1], new0 = out.seq_begin.back();
                out.token_ids.insert(out.token_ids.end(), t.token_ids.begin() + r0, t.token_ids.begin() + r1);
                out.seq_begin.push_back(new0 + r1 - r0);
                out.seq_domain.push_back(t.seq_domain[s]);
                std::vector<size_t> samples;
                for (size_t i = 0; i < t.sample_rows.size(); ++i)
                    if (t.sample_rows[i] >= r0 && t.sample_rows[i] < r1) samples.push_back(i), out.sample_rows.push_back(new0 + t.sample_rows[i] - r0);
                for (size_t j = 0; j < t.layers.size(); ++j) {
                    const TraceLayer& a = t.layers[j];
                    TraceLayer& o = out.layers[j];
                    o.selected.insert(o.selected.end(), a.selected.begin() + r0 * k, a.selected.begin() + r1 * k);
                    o.gates.insert(o.gates.end(), a.gates.begin() + r0 * k, a.gates.begin() + r1 * k);
                    o.seq_sum_prob.insert(o.seq_sum_prob.end(), a.seq_sum_prob.begin() + s * E, a.seq_sum_prob.begin() + (s + 1) * E);
                    o.seq_sum_centered_logit.insert(o.seq_sum_centered_logit.end(), a.seq_sum_centered_logit.begin() + s * E,
                                                    a.seq_sum_centered_logit.begin() + (s + 1) * E);
                    o.seq_sum_out_norm.insert(o.seq_sum_out_norm.end(), a.seq_sum_out_norm.begin() + s * E, a.seq_sum_out_norm.begin() + (s + 1) * E);
                    o.seq_max_abs_out.insert(o.seq_max_abs_out.end(), a.seq_max_abs_out.begin() + s * E, a.seq_max_abs_out.begin() + (s + 1) * E);
                    o.seq_sum_entropy.push_back(a.seq_sum_entropy[s]);
                    for (size_t i : samples) o.sample_logits.insert(o.sample_logits.end(), a.sample_logits.begin() + i * E, a.sample_logits.begin() + (i + 1) * E);
                }
            }
    out.validate();
    return out;
}

// ---- brute force from METHODS.md ------------------------------------------------------------

struct Brute {
    double max_vio, cv, entropy, gini, jain;
    int64_t dead;
};

Brute brute_metrics(const std::vector<double>& x, double tk) {
    const double n = static_cast<double>(x.size());
    double sum = 0, mx = 0, pairs = 0, sq = 0, h = 0;
    int64_t dead = 0;
    for (double v : x) sum += v, mx = std::max(mx, v), sq += v * v, dead += v == 0;
    const double mean = sum / n;
    double var = 0;
    for (double v : x) var += (v - mean) * (v - mean) / n;
    for (double a : x)
        for (double b : x) pairs += std::abs(a - b);
    for (double v : x)
        if (v > 0) h -= v / tk * std::log(v / tk);
    return {(mx - tk / n) / (tk / n), std::sqrt(var) / mean, h / std::log(n), pairs / (2 * n * sum), sum * sum / (n * sq), dead};
}

void expect_close(double got, double want, double rel, const std::string& what) {
    EXPECT_NEAR(got, want, rel * std::max(1.0, std::abs(want))) << what;
}

void expect_metrics(const LoadMetrics& m, const Brute& b, double rel, const std::string& where) {
    expect_close(m.max_vio, b.max_vio, rel, where + " max_vio");
    expect_close(m.cv, b.cv, rel, where + " cv");
    expect_close(m.entropy, b.entropy, rel, where + " entropy");
    expect_close(m.gini, b.gini, rel, where + " gini");
    expect_close(m.jain, b.jain, rel, where + " jain");
    EXPECT_EQ(m.dead, b.dead) << where;
}

// Per-layer counts and mean router entropy straight from the tokens.
std::vector<double> brute_counts(const RoutingTrace& t, size_t j) {
    std::vector<double> c(static_cast<size_t>(t.n_expert), 0.0);
    for (int32_t e : t.layers[j].selected) c[static_cast<size_t>(e)] += 1;
    return c;
}

double brute_router_entropy(const std::vector<float>& logits, int64_t T, int64_t E) {
    double total = 0;
    for (int64_t i = 0; i < T; ++i) {
        double mx = -1e300, sum = 0, h = 0;
        for (int64_t e = 0; e < E; ++e) mx = std::max(mx, double(logits[i * E + e]));
        for (int64_t e = 0; e < E; ++e) sum += std::exp(logits[i * E + e] - mx);
        for (int64_t e = 0; e < E; ++e) {
            const double p = std::exp(logits[i * E + e] - mx) / sum;
            if (p > 0) h -= p * std::log(p);
        }
        total += h;
    }
    return total / double(T);
}

// transformers' load_balancing_loss_func on all layers' rows concatenated: tokens_per_expert[s][e]
// = mean over rows of 1[slot s chose e], router_prob[e] = mean over rows of p_e, loss = E * sum.
double brute_aux_loss(const RoutingTrace& t, const std::vector<std::vector<float>>& logits) {
    const int64_t E = t.n_expert, k = t.n_expert_used, T = t.n_tokens();
    const double rows = double(T) * double(t.layers.size());
    std::vector<double> tpe(static_cast<size_t>(k * E), 0.0), prob(static_cast<size_t>(E), 0.0);
    for (size_t j = 0; j < t.layers.size(); ++j)
        for (int64_t i = 0; i < T; ++i) {
            for (int64_t s = 0; s < k; ++s) tpe[s * E + t.layers[j].selected[i * k + s]] += 1.0 / rows;
            double mx = -1e300, sum = 0;
            for (int64_t e = 0; e < E; ++e) mx = std::max(mx, double(logits[j][i * E + e]));
            for (int64_t e = 0; e < E; ++e) sum += std::exp(logits[j][i * E + e] - mx);
            for (int64_t e = 0; e < E; ++e) prob[e] += std::exp(logits[j][i * E + e] - mx) / sum / rows;
        }
    double loss = 0;
    for (int64_t s = 0; s < k; ++s)
        for (int64_t e = 0; e < E; ++e) loss += tpe[s * E + e] * prob[e];
    return loss * double(E);
}

void expect_interval_contains(const json& j, const std::string& what) {
    const double v = j.at("value").get<double>(), lo = j.at("ci95")[0].get<double>(), hi = j.at("ci95")[1].get<double>();
    EXPECT_LE(lo, v + 1e-12) << what;
    EXPECT_GE(hi, v - 1e-12) << what;
    EXPECT_LE(lo, hi) << what;
}

void expect_collapsed(const json& j, const std::string& what) {
    const double v = j.at("value").get<double>();
    EXPECT_EQ(j.at("ci95")[0].get<double>(), v) << what;
    EXPECT_EQ(j.at("ci95")[1].get<double>(), v) << what;
}

const char* kLayerIntervals[] = {"max_vio", "cv", "entropy", "gini", "jain", "router_entropy"};
const char* kModelIntervals[] = {"max_vio_mean", "cv_mean", "entropy_mean", "gini_mean", "jain_mean", "router_entropy_mean", "aux_loss"};

// ---- tests ----------------------------------------------------------------------------------

TEST(LoadMetrics, MatchesBruteForceOnRandomLoads) {
    std::mt19937_64 rng(11);
    for (int64_t E : {2, 3, 8, 64, 128}) {
        for (int rep = 0; rep < 20; ++rep) {
            std::vector<double> x(static_cast<size_t>(E));
            std::geometric_distribution<int> g(rep % 2 ? 0.01 : 0.3);
            for (auto& v : x) v = g(rng) * (rng() % 5 == 0 ? 0 : 1);  // some dead experts
            if (std::accumulate(x.begin(), x.end(), 0.0) == 0) x[0] = 1;
            const double sum = std::accumulate(x.begin(), x.end(), 0.0);
            const std::string where = "E=" + std::to_string(E) + " rep=" + std::to_string(rep);
            expect_metrics(load_metrics(x, static_cast<int64_t>(sum)), brute_metrics(x, sum), 1e-12, where);
            // T*k larger than the summed loads (the mean and the shares use T*k).
            expect_metrics(load_metrics(x, 1.5 * sum), brute_metrics(x, 1.5 * sum), 1e-12, where + " tk");
        }
    }
}

TEST(LoadMetrics, EdgeCases) {
    for (int64_t E : {2, 8, 128}) {
        const double dE = static_cast<double>(E);
        const LoadMetrics u = load_metrics(std::vector<double>(static_cast<size_t>(E), 7.0), 7 * E);
        EXPECT_NEAR(u.max_vio, 0, 1e-14);
        EXPECT_NEAR(u.cv, 0, 1e-14);
        EXPECT_NEAR(u.entropy, 1, 1e-14);
        EXPECT_NEAR(u.gini, 0, 1e-14);
        EXPECT_NEAR(u.jain, 1, 1e-14);
        EXPECT_EQ(u.dead, 0);

        std::vector<double> one(static_cast<size_t>(E), 0.0);
        one[1] = 40;
        const LoadMetrics o = load_metrics(one, int64_t{40});
        EXPECT_NEAR(o.max_vio, dE - 1, 1e-12);
        EXPECT_NEAR(o.cv, std::sqrt(dE - 1), 1e-12);
        EXPECT_NEAR(o.entropy, 0, 1e-14);
        EXPECT_NEAR(o.gini, (dE - 1) / dE, 1e-14);
        EXPECT_NEAR(o.jain, 1 / dE, 1e-14);
        EXPECT_EQ(o.dead, E - 1);

        // No load: the documented equal-load values, every expert dead.
        for (int64_t tk : {int64_t(0), int64_t(10)}) {
            const LoadMetrics z = load_metrics(std::vector<double>(static_cast<size_t>(E), 0.0), tk);
            EXPECT_EQ(z.max_vio, 0);
            EXPECT_EQ(z.cv, 0);
            EXPECT_EQ(z.gini, 0);
            EXPECT_EQ(z.jain, 1);
            EXPECT_EQ(z.entropy, 1);
            EXPECT_EQ(z.dead, E);
        }
    }
    const LoadMetrics single = load_metrics(std::vector<double>{5.0}, int64_t{5});
    EXPECT_EQ(single.max_vio, 0);
    EXPECT_EQ(single.entropy, 1);
    EXPECT_EQ(single.gini, 0);
    EXPECT_EQ(single.jain, 1);

    EXPECT_THROW(load_metrics(std::vector<double>{}, int64_t{1}), moekit::Error);
    EXPECT_THROW(load_metrics(std::vector<double>{1, -1}, int64_t{1}), moekit::Error);
    EXPECT_THROW(load_metrics(std::vector<double>{1, std::nan("")}, int64_t{1}), moekit::Error);
    EXPECT_THROW(load_metrics(std::vector<double>{1, 2}, int64_t{0}), moekit::Error);
}

TEST(LoadStats, LayerJsonMatchesPerTokenBruteForce) {
    std::mt19937_64 rng(5);
    const int64_t E = 8, k = 2, L = 3;
    const auto lens = random_lengths(60, 0, 30, rng);  // includes empty sequences
    const int64_t T = std::accumulate(lens.begin(), lens.end(), int64_t(0));
    const auto logits = random_logits(L, T, E, 1.0, rng);
    const RoutingTrace t = make_trace(E, k, lens, logits);
    const BootstrapPlan plan(t.n_seq(), {20, 300, 7});
    for (int64_t j = 0; j < L; ++j) {
        const json lj = load_layer_json(t, j, plan);
        const auto counts = brute_counts(t, static_cast<size_t>(j));
        const Brute b = brute_metrics(counts, double(T * k));
        const std::string where = "layer " + std::to_string(j);
        for (int64_t e = 0; e < E; ++e) {
            EXPECT_EQ(lj["counts"][e].get<int64_t>(), static_cast<int64_t>(counts[e])) << where;
            EXPECT_NEAR(lj["shares"][e].get<double>(), counts[e] / double(T * k), 1e-15) << where;
        }
        expect_close(lj["max_vio"]["value"].get<double>(), b.max_vio, 1e-12, where);
        expect_close(lj["cv"]["value"].get<double>(), b.cv, 1e-12, where);
        expect_close(lj["entropy"]["value"].get<double>(), b.entropy, 1e-12, where);
        expect_close(lj["gini"]["value"].get<double>(), b.gini, 1e-12, where);
        expect_close(lj["jain"]["value"].get<double>(), b.jain, 1e-12, where);
        expect_close(lj["router_entropy"]["value"].get<double>(), brute_router_entropy(logits[j], T, E), 1e-10, where);
        std::vector<int64_t> dead;
        for (int64_t e = 0; e < E; ++e)
            if (counts[e] == 0) dead.push_back(e);
        EXPECT_EQ(lj["dead"].get<std::vector<int64_t>>(), dead) << where;
        for (const char* name : kLayerIntervals) expect_interval_contains(lj[name], where + " " + name);
        EXPECT_GT(lj["max_vio"]["ci95"][1].get<double>(), lj["max_vio"]["ci95"][0].get<double>()) << where;
    }
}

TEST(LoadStats, ModelJsonMatchesBruteForceAndLayerMeans) {
    std::mt19937_64 rng(9);
    const int64_t E = 6, k = 2, L = 4;
    const auto lens = random_lengths(40, 5, 25, rng);
    const int64_t T = std::accumulate(lens.begin(), lens.end(), int64_t(0));
    const auto logits = random_logits(L, T, E, 1.5, rng);
    const RoutingTrace t = make_trace(E, k, lens, logits);
    const BootstrapPlan plan(t.n_seq(), {10, 200, 3});
    const json m = load_model_json(t, plan);
    expect_close(m["aux_loss"]["value"].get<double>(), brute_aux_loss(t, logits), 1e-12, "aux_loss");
    double sums[6] = {0, 0, 0, 0, 0, 0};
    int64_t dead = 0;
    for (int64_t j = 0; j < L; ++j) {
        const json lj = load_layer_json(t, j, plan);
        for (int i = 0; i < 6; ++i) sums[i] += lj[kLayerIntervals[i]]["value"].get<double>() / double(L);
        dead += static_cast<int64_t>(lj["dead"].size());
    }
    for (int i = 0; i < 6; ++i) expect_close(m[kModelIntervals[i]]["value"].get<double>(), sums[i], 1e-12, kModelIntervals[i]);
    EXPECT_EQ(m["dead_experts"].get<int64_t>(), dead);
    for (const char* name : kModelIntervals) expect_interval_contains(m[name], name);
}

TEST(LoadStats, AuxLossIsKForUniformRouting) {
    std::mt19937_64 rng(3);
    const int64_t E = 8, k = 3, L = 2;
    const auto lens = random_lengths(16, 1, 20, rng);
    const int64_t T = std::accumulate(lens.begin(), lens.end(), int64_t(0));
    // (a) uniform router probabilities, arbitrary (top-k by id) selection.
    const std::vector<std::vector<float>> flat(static_cast<size_t>(L), std::vector<float>(static_cast<size_t>(T * E), 0.25f));
    const BootstrapPlan plan(static_cast<int64_t>(lens.size()), {8, 50, 1});
    const json a = load_model_json(make_trace(E, k, lens, flat), plan);
    EXPECT_NEAR(a["aux_loss"]["value"].get<double>(), double(k), 1e-12);
    expect_collapsed(a["aux_loss"], "uniform p: every resample gives k");
    // (b) perfectly balanced loads (experts taken in rotation over exactly E*k... tokens), random p.
    const std::vector<int64_t> even(8, E);  // 8 sequences of E tokens: each expert chosen k times per sequence
    const auto logits = random_logits(L, 8 * E, E, 1.0, rng);
    std::vector<std::vector<int32_t>> sel(static_cast<size_t>(L));
    for (auto& s : sel)
        for (int64_t i = 0; i < 8 * E; ++i)
            for (int64_t slot = 0; slot < k; ++slot) s.push_back(static_cast<int32_t>((i + slot) % E));
    const RoutingTrace bal = make_trace(E, k, even, logits, sel);
    const json b = load_model_json(bal, BootstrapPlan(8, {8, 0, 1}));
    EXPECT_NEAR(b["aux_loss"]["value"].get<double>(), double(k), 1e-12);
    EXPECT_NEAR(b["aux_loss"]["value"].get<double>(), brute_aux_loss(bal, logits), 1e-12);
    EXPECT_NEAR(b["max_vio_mean"]["value"].get<double>(), 0.0, 1e-14);
}

TEST(LoadStats, NoResamplesCollapseIntervals) {
    std::mt19937_64 rng(21);
    const auto lens = random_lengths(12, 3, 15, rng);
    const int64_t T = std::accumulate(lens.begin(), lens.end(), int64_t(0));
    const RoutingTrace t = make_trace(5, 2, lens, random_logits(2, T, 5, 1.0, rng));
    const BootstrapPlan with(t.n_seq(), {6, 100, 2}), without(t.n_seq(), {6, 0, 2});
    for (int64_t j = 0; j < 2; ++j) {
        const json a = load_layer_json(t, j, with), b = load_layer_json(t, j, without);
        for (const char* name : kLayerIntervals) {
            expect_collapsed(b[name], name);
            EXPECT_EQ(a[name]["value"].get<double>(), b[name]["value"].get<double>()) << name;
        }
    }
    const json m = load_model_json(t, without);
    for (const char* name : kModelIntervals) expect_collapsed(m[name], name);
}

TEST(LoadStats, BootstrapWeightsEqualResampledTrace) {
    std::mt19937_64 rng(13);
    const int64_t E = 7, k = 2, L = 2;
    const auto lens = random_lengths(25, 1, 18, rng);
    const int64_t T = std::accumulate(lens.begin(), lens.end(), int64_t(0));
    const auto logits = random_logits(L, T, E, 1.2, rng);
    const RoutingTrace t = make_trace(E, k, lens, logits);
    const BootstrapPlan plan(t.n_seq(), {9, 5, 4});
    std::vector<LoadBatchSums> sums;
    for (int64_t j = 0; j < L; ++j) sums.push_back(load_batch_sums(t, j, plan.batch_of_seq(), plan.n_batch()));
    // All-ones weights: the full data.
    for (int64_t j = 0; j < L; ++j) {
        const LayerLoadStats s = layer_load_stats(sums[j], plan.full());
        expect_metrics(s.metrics, brute_metrics(brute_counts(t, j), double(T * k)), 1e-12, "full");
        expect_close(s.router_entropy, brute_router_entropy(logits[j], T, E), 1e-10, "full router entropy");
    }
    // A resample's weights: the statistic of the trace with batch b's sequences repeated w_b times.
    for (int64_t r = 0; r < plan.n_resample(); ++r) {
        const RoutingTrace rt = resampled(t, plan, plan.weights(r));
        const BootstrapPlan one(rt.n_seq(), {1, 0, 0});
        const ModelLoadStats want = model_load_stats(
            [&] {
                std::vector<LoadBatchSums> v;
                for (int64_t j = 0; j < L; ++j) v.push_back(load_batch_sums(rt, j, one.batch_of_seq(), 1));
                return v;
            }(),
            one.full());
        const ModelLoadStats got = model_load_stats(sums, plan.weights(r));
        for (int64_t j = 0; j < L; ++j) {
            const LayerLoadStats s = layer_load_stats(sums[j], plan.weights(r));
            expect_metrics(s.metrics, brute_metrics(brute_counts(rt, j), double(rt.n_tokens() * k)), 1e-12, "resample");
        }
        expect_close(got.aux_loss, want.aux_loss, 1e-12, "aux");
        expect_close(got.max_vio_mean, want.max_vio_mean, 1e-12, "max_vio_mean");
        expect_close(got.router_entropy_mean, want.router_entropy_mean, 1e-12, "router_entropy_mean");
        EXPECT_EQ(got.dead_experts, want.dead_experts);
    }
}

TEST(LoadStats, EmptyTraceAndErrors) {
    // Sequences without tokens: no load at all, the documented equal-load values.
    const RoutingTrace t = make_trace(4, 2, {0, 0}, {std::vector<float>{}});
    const BootstrapPlan plan(t.n_seq(), {2, 10, 0});
    const json lj = load_layer_json(t, 0, plan);
    EXPECT_EQ(lj["max_vio"]["value"].get<double>(), 0);
    EXPECT_EQ(lj["jain"]["value"].get<double>(), 1);
    EXPECT_EQ(lj["router_entropy"]["value"].get<double>(), 0);
    EXPECT_EQ(lj["dead"].size(), 4u);
    EXPECT_EQ(load_model_json(t, plan)["aux_loss"]["value"].get<double>(), 0);
    EXPECT_THROW(load_layer_json(t, 1, plan), moekit::Error);
    RoutingTrace bad = make_trace(4, 1, {3}, {std::vector<float>(12, 0.f)});
    bad.layers[0].selected[1] = 9;
    EXPECT_THROW(load_layer_json(bad, 0, BootstrapPlan(1, {1, 0, 0})), moekit::Error);
    RoutingTrace none = t;
    none.layers.clear();
    EXPECT_TRUE(load_model_json(none, plan)["aux_loss"].is_null());
}

TEST(LoadStats, FortyEightLayersOf128ExpertsIsFast) {
    const int64_t E = 128, k = 8, L = 48, S = 200, len = 100, T = S * len;
    RoutingTrace t;
    t.n_expert = E, t.n_expert_used = k, t.n_layer = L, t.scoring = "softmax";
    t.domains = {"d"};
    t.token_ids.assign(static_cast<size_t>(T), 1);
    for (int64_t s = 0; s <= S; ++s) t.seq_begin.push_back(s * len);
    t.seq_domain.assign(static_cast<size_t>(S), 0);
    std::mt19937_64 rng(1);
    for (int64_t j = 0; j < L; ++j) {
        TraceLayer l;
        l.layer = j;
        l.selected.resize(static_cast<size_t>(T * k));
        for (int64_t i = 0; i < T; ++i)
            for (int64_t s = 0; s < k; ++s) l.selected[i * k + s] = static_cast<int32_t>((rng() % 16) * 8 + s);
        l.gates.assign(static_cast<size_t>(T * k), 0.1f);
        l.seq_sum_prob.assign(static_cast<size_t>(S * E), double(len) / E);
        l.seq_sum_centered_logit.assign(static_cast<size_t>(S * E), 0.0);
        l.seq_sum_entropy.assign(static_cast<size_t>(S), 2.0 * len);
        l.seq_sum_out_norm.assign(static_cast<size_t>(S * E), 0.0);
        l.seq_max_abs_out.assign(static_cast<size_t>(S * E), 0.0f);
        t.layers.push_back(std::move(l));
    }
    t.validate();
    const BootstrapPlan plan(S, {50, 1000, 0});
    const auto t0 = std::chrono::steady_clock::now();
    const json m = load_model_json(t, plan);
    const double model_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto t1 = std::chrono::steady_clock::now();
    for (int64_t j = 0; j < L; ++j) load_layer_json(t, j, plan);
    const double layers_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    std::printf("[ timing ] load_model_json %.3f s, 48 x load_layer_json %.3f s (T=%lld, B=50, R=1000)\n", model_s, layers_s,
                static_cast<long long>(T));
    EXPECT_NEAR(m["aux_loss"]["value"].get<double>(), double(k), 1e-12);  // p uniform
    EXPECT_LT(model_s + layers_s, 6.0);  // ~0.5 s on one idle core; generous for a shared machine
}

}  // namespace
