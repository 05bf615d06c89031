// Pruning scores (prune/scores.h) against brute-force implementations written straight from
// METHODS.md §5: on hand-made router/expert/MoE-block events, and on the engine's own events for
// fixture models (every expert's output on every token, from which the brute force recomputes
// the routed quantities itself). Super-expert rule and the random baseline.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "io/checkpoint.h"
#include "model/engine.h"
#include "prune/scores.h"

namespace {

using moekit::model::IndexMatrix;
using moekit::model::Matrix;
using namespace moekit::prune;

const std::filesystem::path kFixtures = std::filesystem::path(MOEKIT_TEST_DATA) / "fixtures";

// Everything one MoE layer's events carry, for the brute force.
struct LayerEvents {
    Matrix logits;
    IndexMatrix selected;
    Matrix gates;
    std::vector<Matrix> outputs;  // [E] of [T, d]: every expert on every token
    Matrix h, y;                  // residual before the block, routed output
};

struct Expected {
    std::vector<double> freq, wfreq, ean, reap, tcess, easy;
    std::vector<float> max_abs;
};

Expected brute_force(const LayerEvents& ev) {
    const int64_t T = ev.logits.rows(), E = ev.logits.cols(), k = ev.selected.cols();
    Expected x;
    x.freq.assign(E, 0);
    x.wfreq = x.ean = x.reap = x.tcess = x.easy = x.freq;
    x.max_abs.assign(E, 0.0f);
    for (int64_t e = 0; e < E; ++e) {
        double n_routed = 0;
        for (int64_t t = 0; t < T; ++t) {
            for (int64_t j = 0; j < k; ++j) {
                if (ev.selected(t, j) != e) continue;
                const double g = ev.gates(t, j);
                double gsum = 0;
                for (int64_t i = 0; i < k; ++i) gsum += ev.gates(t, i);
                double norm = 0;
                float mx = 0;
                for (int64_t c = 0; c < ev.outputs[e].cols(); ++c) {
                    norm += double(ev.outputs[e](t, c)) * ev.outputs[e](t, c);
                    mx = std::max(mx, std::fabs(ev.outputs[e](t, c)));
                }
                norm = std::sqrt(norm);
                double hh = 0, hy2 = 0, dot = 0;
                for (int64_t c = 0; c < ev.h.cols(); ++c) {
                    const double a = ev.h(t, c), b = double(ev.h(t, c)) + ev.y(t, c);
                    hh += a * a;
                    hy2 += b * b;
                    dot += a * b;
                }
                const double cosine = dot / std::sqrt(hh * hy2);
                n_routed += 1;
                x.freq[e] += 1;
                x.wfreq[e] += g;
                x.ean[e] += norm;
                x.reap[e] += g / gsum * norm;
                x.tcess[e] += ev.logits(t, e);
                x.easy[e] += g * norm * std::max(1.0 - cosine, 0.0);
                x.max_abs[e] = std::max(x.max_abs[e], mx);
            }
        }
        if (n_routed > 0) {
            x.ean[e] /= n_routed;
            x.reap[e] /= n_routed;
        }
        x.tcess[e] /= double(T);
    }
    return x;
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want, double rel, const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    for (size_t e = 0; e < got.size(); ++e)
        EXPECT_NEAR(got[e], want[e], rel * std::max(1.0, std::fabs(want[e]))) << what << " expert " << e;
}

void check_stats(const LayerStats& s, const Expected& x, double rel, const std::string& what) {
    expect_close(method_scores(Method::frequency, s), x.freq, 0, what + " frequency");
    expect_close(method_scores(Method::weighted_frequency, s), x.wfreq, rel, what + " weighted-frequency");
    expect_close(method_scores(Method::ean, s), x.ean, rel, what + " ean");
    expect_close(method_scores(Method::reap, s), x.reap, rel, what + " reap");
    expect_close(method_scores(Method::tcess, s), x.tcess, rel, what + " tcess");
    expect_close(method_scores(Method::easy_ep, s), x.easy, rel, what + " easy-ep");
    for (size_t e = 0; e < x.max_abs.size(); ++e) EXPECT_EQ(s.max_abs[e], x.max_abs[e]) << what << " max_abs " << e;
}

// Feeds hand-made events to a ScoreObserver the way the engine does.
LayerStats feed(const LayerEvents& ev, int64_t layer, moekit::model::ModelConfig mc) {
    ScoreObserver obs(mc);
    moekit::model::TokenLayout layout{{0, ev.logits.rows()}};
    Matrix scores = ev.logits;
    obs.on_router({layer, layout, ev.logits, scores, ev.selected, ev.gates});
    for (int64_t e = 0; e < ev.logits.cols(); ++e) {
        std::vector<int64_t> rows;
        std::vector<float> g;
        for (int64_t t = 0; t < ev.logits.rows(); ++t)
            for (int64_t j = 0; j < ev.selected.cols(); ++j)
                if (ev.selected(t, j) == e) {
                    rows.push_back(t);
                    g.push_back(ev.gates(t, j));
                }
        if (rows.empty()) continue;
        Matrix in(rows.size(), 1), out(rows.size(), ev.outputs[e].cols());
        for (size_t i = 0; i < rows.size(); ++i) out.row(i) = ev.outputs[e].row(rows[i]);
        obs.on_expert({layer, e, rows, in, out, g});
    }
    obs.on_moe_block({layer, layout, ev.h, ev.h, ev.y, ev.y});
    return obs.layers().at(0);
}

TEST(PruneScores, HandMadeEventsMatchBruteForce) {
    // 4 tokens, 3 experts, top-2, d = 2; expert 2 is never routed.
    LayerEvents ev;
    ev.logits.resize(4, 3);
    ev.logits << 1.0, 0.5, -2.0, -0.3, 0.7, 0.1, 2.0, -1.0, 0.0, 0.2, 0.4, -0.5;
    ev.selected.resize(4, 2);
    ev.selected << 0, 1, 1, 0, 0, 1, 1, 0;
    ev.gates.resize(4, 2);
    ev.gates << 0.5, 0.3, 0.4, 0.2, 0.9, 0.05, 0.35, 0.3;
    ev.outputs = {Matrix(4, 2), Matrix(4, 2), Matrix(4, 2)};
    ev.outputs[0] << 3, 4, 1, 0, -2, 2, 0.5, 0.5;
    ev.outputs[1] << 0, 1, 6, 8, 1, 1, -3, 0;
    ev.outputs[2] << 100, 100, 100, 100, 100, 100, 100, 100;
    ev.h.resize(4, 2);
    ev.h << 1, 0, 0, 2, 1, 1, -1, 3;
    ev.y.resize(4, 2);
    ev.y << 0.5, 0.5, -1, 0, 2, -2, 0, 0;
    moekit::model::ModelConfig mc;
    mc.n_layer = 1;
    mc.n_expert = 3;
    mc.n_expert_used = 2;
    mc.is_moe_layer = {true};
    const LayerStats s = feed(ev, 0, mc);
    const Expected x = brute_force(ev);
    check_stats(s, x, 1e-12, "hand-made");
    // Values worked out by hand for two of them.
    EXPECT_DOUBLE_EQ(method_scores(Method::frequency, s)[0], 4.0);
    EXPECT_NEAR(method_scores(Method::ean, s)[0], (5.0 + 1.0 + std::sqrt(8.0) + std::sqrt(0.5)) / 4.0, 1e-12);
    EXPECT_EQ(method_scores(Method::reap, s)[2], 0.0);   // never routed
    EXPECT_EQ(method_scores(Method::tcess, s)[2], 0.0);
    EXPECT_EQ(s.max_abs[2], 0.0f);                        // only routed tokens count
    // Token 3 has y = 0: cos(h, h) = 1, so it adds nothing to EASY-EP.
    LayerEvents ev2 = ev;
    ev2.outputs[0].row(3) *= 1000;
    EXPECT_NEAR(method_scores(Method::easy_ep, feed(ev2, 0, mc))[0], method_scores(Method::easy_ep, s)[0], 1e-9);
}

TEST(PruneScores, MergeAddsSums) {
    LayerStats a(3, 2), b(3, 2);
    a.n_tokens = 5;
    a.load = {1, 2};
    a.gate_sum = {0.5, 1.0};
    a.max_abs = {3.0f, 1.0f};
    b.n_tokens = 2;
    b.load = {4, 0};
    b.gate_sum = {1.0, 0.0};
    b.max_abs = {1.0f, 7.0f};
    a.merge(b);
    EXPECT_EQ(a.n_tokens, 7);
    EXPECT_EQ(a.load, (std::vector<int64_t>{5, 2}));
    EXPECT_EQ(a.gate_sum, (std::vector<double>{1.5, 1.0}));
    EXPECT_EQ(a.max_abs, (std::vector<float>{3.0f, 7.0f}));
    EXPECT_THROW(a.merge(LayerStats(2, 2)), std::exception);
}

// Records every event the brute force needs, in the same pass as the ScoreObserver.
class Capture : public moekit::model::Observer {
public:
    explicit Capture(int64_t n_layer) : layers(n_layer) {}
    uint32_t sites() const override {
        return moekit::model::kSiteRouter | moekit::model::kSiteAllExperts | moekit::model::kSiteMoeBlock;
    }
    void on_router(const moekit::model::RouterEvent& e) override {
        auto& l = layers[e.layer];
        l.logits = e.logits;
        l.selected = e.selected;
        l.gates = e.gates;
        l.outputs.assign(e.logits.cols(), Matrix());
    }
    void on_expert(const moekit::model::ExpertEvent& e) override { layers[e.layer].outputs[e.expert] = e.output; }
    void on_moe_block(const moekit::model::MoeBlockEvent& e) override {
        layers[e.layer].h = e.residual;
        layers[e.layer].y = e.routed_output;
    }
    std::vector<LayerEvents> layers;
};

class PruneScoresFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(PruneScoresFixture, EngineEventsMatchBruteForce) {
    const auto ckpt = moekit::io::Checkpoint::open(kFixtures / GetParam());
    const moekit::model::Engine engine(ckpt, {1});
    const auto& mc = engine.config();
    std::mt19937 rng(7);
    std::vector<std::vector<int32_t>> seqs(3);
    for (size_t s = 0; s < seqs.size(); ++s)
        for (int i = 0; i < 9 + 5 * int(s); ++i) seqs[s].push_back(int32_t(rng() % uint32_t(mc.vocab_size)));
    ScoreObserver scores(mc);
    Capture cap(mc.n_layer);
    moekit::model::Observer* obs[] = {&scores, &cap};
    engine.forward_hidden(seqs, obs);
    const auto stats = scores.layers();
    ASSERT_EQ(int64_t(stats.size()), mc.n_moe_layer());
    for (const LayerStats& s : stats) {
        const LayerEvents& ev = cap.layers[s.layer];
        // The routed output the engine reports is sum_j g_tj E_{s_tj}(x_t).
        for (int64_t t = 0; t < ev.y.rows(); ++t) {
            Eigen::RowVectorXf y = Eigen::RowVectorXf::Zero(ev.y.cols());
            for (int64_t j = 0; j < ev.selected.cols(); ++j) y += ev.gates(t, j) * ev.outputs[ev.selected(t, j)].row(t);
            EXPECT_LE((y - ev.y.row(t)).norm(), 1e-5f * std::max(1.0f, y.norm()));
        }
        EXPECT_EQ(s.n_tokens, ev.logits.rows());
        check_stats(s, brute_force(ev), 1e-9, GetParam() + " layer " + std::to_string(s.layer));
        int64_t load = 0;
        for (int64_t v : s.load) load += v;
        EXPECT_EQ(load, s.n_tokens * mc.n_expert_used);
    }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, PruneScoresFixture,
                         ::testing::Values("mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3"));

TEST(PruneScores, SuperExpertRule) {
    // Two MoE layers (0 and 1) of a 4-layer model; m = 1..7 and 100.
    std::vector<LayerStats> layers = {LayerStats(0, 4), LayerStats(1, 4)};
    layers[0].max_abs = {1, 2, 3, 4};
    layers[1].max_abs = {5, 6, 7, 100};
    SuperExpertRule rule;
    auto supers = find_super_experts(layers, 4, &rule);
    // p99.5 of 8 values: position 0.995 * 7 = 6.965 -> 7 + 0.965 * 93.
    EXPECT_NEAR(rule.threshold, 7 + 0.965 * 93, 1e-9);
    EXPECT_EQ(rule.max_all, 100.0f);
    EXPECT_EQ(rule.layer_limit, 3);
    ASSERT_EQ(supers.size(), 1u);
    EXPECT_EQ(supers[0].layer, 1);
    EXPECT_EQ(supers[0].expert, 3);
    // The same expert in the last quarter of the layers is not a super expert.
    layers[1].layer = 3;
    EXPECT_TRUE(find_super_experts(layers, 4).empty());
    // Equal maxima: nothing exceeds the percentile.
    layers[1].layer = 1;
    layers[0].max_abs = layers[1].max_abs = {2, 2, 2, 2};
    EXPECT_TRUE(find_super_experts(layers, 4).empty());
    // Above the percentile but not above max / 10 is impossible for a single maximum; two
    // outliers: only values above both thresholds count.
    EXPECT_NEAR(percentile({1, 2, 3, 4}, 50), 2.5, 1e-12);
    EXPECT_NEAR(percentile({1, 2, 3, 4}, 100), 4, 1e-12);
}

TEST(PruneScores, RandomIsSeededAndPerLayer) {
    LayerStats a(0, 16), b(1, 16);
    const auto r0 = method_scores(Method::random, a, 42);
    EXPECT_EQ(r0, method_scores(Method::random, a, 42));
    EXPECT_NE(r0, method_scores(Method::random, a, 43));
    EXPECT_NE(r0, method_scores(Method::random, b, 42));
    // Seeds are not shifted copies of each other across layers (seed + layer would be).
    EXPECT_NE(method_scores(Method::random, b, 42), method_scores(Method::random, a, 43));
    for (double v : r0) {
        EXPECT_GE(v, 0.0);
        EXPECT_LT(v, 1.0);
    }
    // mt19937_64 seeded with seed_seq{42, 0, layer 0, 0}: the first draw's top 53 bits.
    std::seed_seq seq{42u, 0u, 0u, 0u};
    std::mt19937_64 rng(seq);
    EXPECT_EQ(r0[0], double(rng() >> 11) * 0x1.0p-53);
}

TEST(PruneScores, MethodNames) {
    for (Method m : all_methods()) EXPECT_EQ(parse_method(method_name(m)), m);
    EXPECT_EQ(parse_method("easy_ep"), Method::easy_ep);
    EXPECT_EQ(parse_method("REAP"), Method::reap);
    try {
        parse_method("magic");
        FAIL();
    } catch (const moekit::Error& e) {
        EXPECT_NE(std::string(e.what()).find("unknown method 'magic'"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("weighted-frequency"), std::string::npos);
    }
}

}  // namespace
