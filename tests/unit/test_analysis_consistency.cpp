// Tests for analysis/consistency: SRP and SCH/LRU/LFU against the brute-force Python reference
// (scripts/reference/routing_consistency.py → tests/golden/consistency/cases.json), the
// METHODS.md α* = ⌈m·F1*/2⌉ check, mergeability and error cases.
#include "analysis/consistency.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"

namespace {

using moekit::analysis::CacheResult;
using moekit::analysis::SrpAccumulator;
using moekit::analysis::SrpResult;
using json = nlohmann::json;
using Requests = std::vector<std::vector<int32_t>>;

const std::string kCases = std::string(MOEKIT_TEST_DATA) + "/golden/consistency/cases.json";

json load_cases() {
    std::ifstream in(kCases);
    if (!in) throw std::runtime_error("cannot open " + kCases);
    json doc = json::parse(in);
    return doc.at("cases");
}

// One sequence of one layer as a flat T*k id vector.
std::vector<int32_t> flatten(const json& seq) {
    std::vector<int32_t> out;
    for (const auto& tok : seq)
        for (const auto& x : tok) out.push_back(x.get<int32_t>());
    return out;
}

Requests to_requests(const json& seq) {
    Requests r;
    for (const auto& tok : seq) r.push_back(tok.get<std::vector<int32_t>>());
    return r;
}

void expect_srp(const SrpResult& got, const json& want, const std::string& where) {
    EXPECT_NEAR(got.f1, want.at("f1").get<double>(), 1e-12) << where;
    EXPECT_EQ(got.alpha_star, want.at("alpha_star").get<int64_t>()) << where;
    EXPECT_NEAR(got.rho_hat, want.at("rho_hat").get<double>(), 1e-12) << where;
    EXPECT_EQ(got.tp, want.at("tp").get<int64_t>()) << where;
    EXPECT_EQ(got.pred, want.at("pred").get<int64_t>()) << where;
    EXPECT_EQ(got.act, want.at("act").get<int64_t>()) << where;
}

// METHODS.md check α* = ⌈m·F1*/2⌉. F1 at a = ⌈m·F1*/2⌉ always attains the maximum; our α*
// (smallest maximizer) equals a unless every bin in [α*, a) is empty or lies exactly on the
// indifference point c = m·F1*/2 (then both thresholds give the same F1).
void check_alpha_rule(const std::vector<int64_t>& h, int64_t m, const SrpResult& r,
                      const std::string& where) {
    const double x = static_cast<double>(m) * r.f1 / 2.0;
    int64_t a = static_cast<int64_t>(std::ceil(x - 1e-12));
    ASSERT_LE(r.alpha_star, a) << where;
    const SrpResult at = [&] {
        // F1 with the threshold forced to a: zero the bins below a only in the TP/Pred sums.
        int64_t tp = 0, cnt = 0, act = 0;
        for (int64_t c = 0; c <= m; ++c) {
            act += c * h[c];
            if (c >= a) {
                tp += c * h[c];
                cnt += h[c];
            }
        }
        SrpResult s;
        s.f1 = 2.0 * double(tp) / double(std::max<int64_t>(m * cnt + act, 1));
        return s;
    }();
    EXPECT_NEAR(at.f1, r.f1, 1e-12) << where << " a=" << a;
    for (int64_t c = r.alpha_star; c < a; ++c)
        EXPECT_TRUE(h[c] == 0 || std::fabs(double(c) - x) < 1e-9)
            << where << " bin " << c << " alpha*=" << r.alpha_star << " a=" << a;
}

TEST(AnalysisConsistency, GoldenSrp) {
    const json cases = load_cases();
    ASSERT_GE(cases.size(), 20u);
    int n_checked = 0, n_alpha_exact = 0;
    for (const auto& c : cases) {
        const std::string name = c.at("name");
        const int64_t E = c.at("n_expert"), k = c.at("k"), m = c.at("m");
        const json& trace = c.at("trace");
        const json& exp = c.at("expected");
        std::vector<SrpAccumulator> layers;
        for (size_t il = 0; il < trace.size(); ++il) {
            SrpAccumulator acc(E, m);
            for (const auto& seq : trace[il]) {
                const auto flat = flatten(seq);
                acc.add_sequence(flat, static_cast<int64_t>(seq.size()), k);
            }
            const json& el = exp.at("layers")[il];
            for (int64_t e = 0; e < E; ++e) {
                const auto r = acc.srp_expert(e);
                expect_srp(r, el.at("experts")[e],
                           name + " layer " + std::to_string(il) + " expert " + std::to_string(e));
                check_alpha_rule(acc.expert_histogram(e), m, r, name + " expert");
                ++n_checked;
            }
            EXPECT_EQ(acc.layer_histogram(), el.at("layer_hist").get<std::vector<int64_t>>())
                << name;
            const auto rl = acc.srp_layer();
            expect_srp(rl, el.at("layer"), name + " layer " + std::to_string(il));
            check_alpha_rule(acc.layer_histogram(), m, rl, name + " layer");
            // A group of all experts is the layer.
            std::vector<int64_t> all(E);
            for (int64_t e = 0; e < E; ++e) all[e] = e;
            EXPECT_EQ(acc.srp(all).f1, rl.f1);
            layers.push_back(acc);
        }
        EXPECT_EQ(moekit::analysis::model_histogram(layers),
                  exp.at("model_hist").get<std::vector<int64_t>>())
            << name;
        const auto rm = moekit::analysis::srp_model(layers);
        expect_srp(rm, exp.at("model"), name + " model");
        const auto hm = moekit::analysis::model_histogram(layers);
        check_alpha_rule(hm, m, rm, name + " model");
        const double x = double(m) * rm.f1 / 2.0;
        if (rm.alpha_star == static_cast<int64_t>(std::ceil(x - 1e-12))) ++n_alpha_exact;
    }
    EXPECT_GT(n_checked, 100);
    EXPECT_GT(n_alpha_exact, 0);
}

TEST(AnalysisConsistency, GoldenCaches) {
    const json cases = load_cases();
    int n_checked = 0;
    for (const auto& c : cases) {
        const std::string name = c.at("name");
        const int64_t E = c.at("n_expert"), k = c.at("k"), m = c.at("m");
        const json& trace = c.at("trace");
        const json& exp = c.at("expected");
        const int64_t L = static_cast<int64_t>(trace.size());
        auto check = [&](const Requests& req, const json& want, const std::string& where) {
            const int64_t C = want.at("capacity");
            const CacheResult s = moekit::analysis::sch_simulate(req, C, m);
            const CacheResult lru = moekit::analysis::lru_simulate(req, C);
            const CacheResult lfu = moekit::analysis::lfu_simulate(req, C);
            EXPECT_EQ(s.hits, want.at("sch").get<int64_t>()) << where << " SCH C=" << C;
            EXPECT_EQ(lru.hits, want.at("lru").get<int64_t>()) << where << " LRU C=" << C;
            EXPECT_EQ(lfu.hits, want.at("lfu").get<int64_t>()) << where << " LFU C=" << C;
            const int64_t n_req = want.at("requests");
            EXPECT_EQ(s.requests, n_req) << where;
            EXPECT_EQ(lru.requests, n_req) << where;
            if (n_req > 0)
                EXPECT_DOUBLE_EQ(moekit::analysis::sch_hit_rate(req, C, m),
                                 double(want.at("sch").get<int64_t>()) / double(n_req));
            ++n_checked;
        };
        for (int64_t il = 0; il < L; ++il)
            for (size_t s = 0; s < trace[il].size(); ++s)
                for (const auto& want : exp.at("layers")[il].at("cache")[s])
                    check(to_requests(trace[il][s]), want,
                          name + " layer " + std::to_string(il) + " seq " + std::to_string(s));
        for (size_t s = 0; s < trace[0].size(); ++s) {
            std::vector<std::vector<int32_t>> per_layer;
            for (int64_t il = 0; il < L; ++il) per_layer.push_back(flatten(trace[il][s]));
            const int64_t T = static_cast<int64_t>(trace[0][s].size());
            const Requests req = moekit::analysis::model_requests(per_layer, T, k, E);
            ASSERT_EQ(static_cast<int64_t>(req.size()), T);
            for (const auto& want : exp.at("model_cache")[s])
                check(req, want, name + " model seq " + std::to_string(s));
        }
    }
    EXPECT_GT(n_checked, 200);
}

// Random traces for the merge test.
std::vector<int32_t> random_trace(std::mt19937& rng, int64_t T, int64_t E, int64_t k) {
    std::vector<int32_t> out;
    std::vector<int32_t> ids(E);
    for (int64_t e = 0; e < E; ++e) ids[e] = static_cast<int32_t>(e);
    for (int64_t t = 0; t < T; ++t) {
        std::shuffle(ids.begin(), ids.end(), rng);
        out.insert(out.end(), ids.begin(), ids.begin() + k);
    }
    return out;
}

TEST(AnalysisConsistency, MergeEqualsSingleAccumulator) {
    std::mt19937 rng(7);
    const int64_t E = 8, k = 2, m = 4;
    const auto s1 = random_trace(rng, 37, E, k);
    const auto s2 = random_trace(rng, 3, E, k);  // T < m: no windows
    const auto s3 = random_trace(rng, 64, E, k);
    SrpAccumulator a(E, m), b(E, m), both(E, m);
    a.add_sequence(s1, 37, k);
    b.add_sequence(s2, 3, k);
    b.add_sequence(s3, 64, k);
    both.add_sequence(s1, 37, k);
    both.add_sequence(s2, 3, k);
    both.add_sequence(s3, 64, k);
    const SrpAccumulator ab = moekit::analysis::merge(a, b);
    EXPECT_EQ(ab.n_window(), both.n_window());
    EXPECT_EQ(ab.n_window(), (37 - 4 + 1) + (64 - 4 + 1));
    for (int64_t e = 0; e < E; ++e) EXPECT_EQ(ab.expert_histogram(e), both.expert_histogram(e));
    EXPECT_EQ(ab.srp_layer().f1, both.srp_layer().f1);
    SrpAccumulator a2 = a;
    a2.merge(b);
    EXPECT_EQ(a2.layer_histogram(), both.layer_histogram());
    // Merge order does not matter.
    EXPECT_EQ(moekit::analysis::merge(b, a).layer_histogram(), both.layer_histogram());
}

TEST(AnalysisConsistency, WindowCountsPerExpert) {
    // Every window has exactly k*m active (token, expert) pairs over the layer.
    std::mt19937 rng(3);
    const int64_t E = 16, k = 4, m = 16, T = 100;
    SrpAccumulator acc(E, m);
    acc.add_sequence(random_trace(rng, T, E, k), T, k);
    const auto h = acc.layer_histogram();
    int64_t windows = 0, active = 0;
    for (int64_t c = 0; c <= m; ++c) {
        windows += h[c];
        active += c * h[c];
    }
    EXPECT_EQ(windows, E * (T - m + 1));
    EXPECT_EQ(active, k * m * (T - m + 1));
}

TEST(AnalysisConsistency, Errors) {
    using moekit::Error;
    SrpAccumulator acc(4, 4);
    const std::vector<int32_t> bad_id = {0, 4};
    EXPECT_THROW(acc.add_sequence(bad_id, 1, 2), Error);
    const std::vector<int32_t> neg_id = {-1};
    EXPECT_THROW(acc.add_sequence(neg_id, 1, 1), Error);
    const std::vector<int32_t> five = {0, 1, 2, 3, 0};
    EXPECT_THROW(acc.add_sequence(five, 1, 5), Error);  // k > E
    const std::vector<int32_t> dup = {1, 1};
    EXPECT_THROW(acc.add_sequence(dup, 1, 2), Error);
    const std::vector<int32_t> short_sel = {0, 1, 2};
    EXPECT_THROW(acc.add_sequence(short_sel, 2, 2), Error);  // size != T*k
    EXPECT_EQ(acc.n_window(), 0);                            // nothing was added
    EXPECT_THROW(acc.merge(SrpAccumulator(8, 4)), Error);
    EXPECT_THROW(acc.merge(SrpAccumulator(4, 16)), Error);
    EXPECT_THROW(moekit::analysis::merge(acc, SrpAccumulator(4, 16)), Error);
    EXPECT_THROW(SrpAccumulator(0, 4), Error);
    EXPECT_THROW(SrpAccumulator(4, 0), Error);
    EXPECT_THROW(acc.srp_expert(4), Error);
    EXPECT_THROW(moekit::analysis::srp_from_histogram({1, 2}, 4), Error);
    std::vector<SrpAccumulator> mixed = {SrpAccumulator(4, 4), SrpAccumulator(4, 16)};
    EXPECT_THROW(moekit::analysis::model_histogram(mixed), Error);

    const Requests req = {{0, 1}, {1, 2}};
    EXPECT_THROW(moekit::analysis::sch_simulate(req, 0, 4), Error);
    EXPECT_THROW(moekit::analysis::sch_simulate(req, 2, 0), Error);
    EXPECT_THROW(moekit::analysis::lru_simulate(req, 0), Error);
    EXPECT_THROW(moekit::analysis::sch_simulate({{3, 3}}, 2, 4), Error);
    EXPECT_THROW(moekit::analysis::lfu_simulate({{-2}}, 2), Error);
    EXPECT_THROW(moekit::analysis::model_requests({{0, 1}, {0, 4}}, 1, 2, 4), Error);
}

TEST(AnalysisConsistency, SmallHandChecked) {
    // One expert always active with m = 4, E = 4, k = 1, T = 10: 7 windows; expert 2 has c = 4
    // in every window, the others c = 0. Layer: h = {21, 0, 0, 0, 7}; F1* = 1 at α = 1..4,
    // smallest α* = 1; ρ̂ = 1.
    SrpAccumulator acc(4, 4);
    const std::vector<int32_t> sel(10, 2);
    acc.add_sequence(sel, 10, 1);
    EXPECT_EQ(acc.layer_histogram(), (std::vector<int64_t>{21, 0, 0, 0, 7}));
    const auto r = acc.srp_layer();
    EXPECT_DOUBLE_EQ(r.f1, 1.0);
    EXPECT_EQ(r.alpha_star, 1);
    EXPECT_DOUBLE_EQ(r.rho_hat, 1.0);
    const auto r0 = acc.srp_expert(0);  // never active: Act = 0 → F1 = 0, ρ̂ = 0
    EXPECT_EQ(r0.f1, 0.0);
    EXPECT_EQ(r0.alpha_star, 0);
    EXPECT_EQ(r0.rho_hat, 0.0);
    // SCH on a repeated token: all hits (cold misses while not full count as hits).
    const Requests req(5, std::vector<int32_t>{0, 1});
    EXPECT_EQ(moekit::analysis::sch_simulate(req, 2, 4).hits, 10);
    EXPECT_EQ(moekit::analysis::lru_simulate(req, 2).hits, 8);
    EXPECT_EQ(moekit::analysis::lfu_simulate(req, 2).hits, 8);
    EXPECT_EQ(moekit::analysis::sch_hit_rate({}, 2, 4), 0.0);
}

}  // namespace
