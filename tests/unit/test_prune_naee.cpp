// NAEE (prune/naee.h): the subset error against a brute-force router written from METHODS.md §0
// (softmax -> top-k -> optional renormalization) on synthetic captures, the exhaustive search
// against enumerating every subset, the greedy search against a brute-force greedy, protection;
// and, on real fixtures, that the error NAEE predicts for a kept set is exactly what the engine
// computes on the checkpoint pruned to that set (non-uniform: only the first MoE layer pruned,
// which also exercises the per-layer expert-count config extension).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/checkpoint_edit.h"
#include "model/engine.h"
#include "prune/edit.h"
#include "prune/naee.h"
#include "test_util.h"

namespace {

using moekit::model::Matrix;
using namespace moekit::prune;

const std::filesystem::path kFixtures = std::filesystem::path(MOEKIT_TEST_DATA) / "fixtures";

moekit::model::ModelConfig softmax_config(int64_t E, int64_t k, bool renormalize) {
    moekit::model::ModelConfig mc;
    mc.model_type = renormalize ? "mixtral" : "olmoe";
    mc.n_layer = 1;
    mc.n_expert = E;
    mc.n_expert_used = k;
    mc.is_moe_layer = {true};
    mc.routing.norm_topk_prob = renormalize;
    return mc;
}

NaeeCapture random_capture(int64_t E, int64_t T, int64_t d, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> n(0, 1);
    NaeeCapture c;
    c.layer = 0;
    c.logits.resize(T, E);
    for (int64_t t = 0; t < T; ++t)
        for (int64_t e = 0; e < E; ++e) c.logits(t, e) = 1.5f * n(rng);
    for (int64_t e = 0; e < E; ++e) {
        Matrix o(T, d);
        for (int64_t t = 0; t < T; ++t)
            for (int64_t i = 0; i < d; ++i) o(t, i) = n(rng) * float(1 + e % 3);
        c.outputs.push_back(o);
    }
    return c;
}

// Brute force: the pruned layer's routed output, straight from the definition, in double.
std::vector<std::vector<double>> pruned_output(const NaeeCapture& c, const std::vector<int64_t>& kept, int64_t k, bool renorm) {
    std::vector<std::vector<double>> y(c.n_tokens(), std::vector<double>(c.outputs[0].cols(), 0.0));
    for (int64_t t = 0; t < c.n_tokens(); ++t) {
        std::vector<double> p;
        double mx = -1e300, sum = 0;
        for (int64_t e : kept) mx = std::max(mx, double(c.logits(t, e)));
        for (int64_t e : kept) sum += std::exp(c.logits(t, e) - mx);
        for (int64_t e : kept) p.push_back(std::exp(c.logits(t, e) - mx) / sum);
        std::vector<size_t> idx(kept.size());
        std::iota(idx.begin(), idx.end(), 0);
        std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
        double gsum = 0;
        for (int64_t j = 0; j < k; ++j) gsum += p[idx[j]];
        for (int64_t j = 0; j < k; ++j) {
            const double g = renorm ? p[idx[j]] / gsum : p[idx[j]];
            for (int64_t i = 0; i < c.outputs[0].cols(); ++i) y[t][i] += g * c.outputs[kept[idx[j]]](t, i);
        }
    }
    return y;
}

double brute_error(const NaeeCapture& c, const std::vector<int64_t>& kept, int64_t k, bool renorm) {
    std::vector<int64_t> all(c.outputs.size());
    std::iota(all.begin(), all.end(), 0);
    const auto y = pruned_output(c, all, k, renorm), yp = pruned_output(c, kept, k, renorm);
    double s = 0;
    for (size_t t = 0; t < y.size(); ++t)
        for (size_t i = 0; i < y[t].size(); ++i) s += (y[t][i] - yp[t][i]) * (y[t][i] - yp[t][i]);
    return std::sqrt(s);
}

std::vector<std::vector<int64_t>> all_subsets(int64_t E, int64_t n) {
    std::vector<std::vector<int64_t>> out;
    for (uint32_t mask = 0; mask < (1u << E); ++mask) {
        if (__builtin_popcount(mask) != n) continue;
        std::vector<int64_t> s;
        for (int64_t e = 0; e < E; ++e)
            if (mask & (1u << e)) s.push_back(e);
        out.push_back(s);
    }
    return out;
}

class NaeeSynthetic : public ::testing::TestWithParam<bool> {};

TEST_P(NaeeSynthetic, ExhaustiveAndGreedyMatchBruteForce) {
    const bool renorm = GetParam();
    const int64_t E = 7, k = 2, keep = 4;
    const auto mc = softmax_config(E, k, renorm);
    for (uint32_t seed = 0; seed < 4; ++seed) {
        const NaeeCapture c = random_capture(E, 40, 5, seed);
        // Subset errors.
        for (const auto& kept : {std::vector<int64_t>{0, 1, 2, 3}, std::vector<int64_t>{1, 4, 6}, std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}}) {
            const double want = brute_error(c, kept, k, renorm);
            EXPECT_NEAR(subset_error(mc, c, kept), want, 1e-4 * std::max(1.0, want));
        }
        // Exhaustive: the best of all C(7, 4) = 35 kept sets.
        NaeeLayerResult ex = naee_search(mc, c, keep, {}, {5000, 2});
        EXPECT_EQ(ex.search, "exhaustive");
        EXPECT_EQ(ex.subsets_evaluated, 35);
        double best = 1e300;
        std::vector<int64_t> best_set;
        for (const auto& s : all_subsets(E, keep)) {
            const double err = brute_error(c, s, k, renorm);
            if (err < best - 1e-9) {
                best = err;
                best_set = s;
            }
        }
        EXPECT_EQ(ex.kept, best_set) << "seed " << seed;
        EXPECT_NEAR(ex.error, best, 1e-4 * std::max(1.0, best));
        std::vector<int64_t> all(E);
        std::iota(all.begin(), all.end(), 0);
        double ref = 0;
        for (const auto& row : pruned_output(c, all, k, renorm))
            for (double v : row) ref += v * v;
        EXPECT_NEAR(ex.reference_norm, std::sqrt(ref), 1e-4 * std::sqrt(ref));
        // Single-drop errors are the per-expert scores.
        for (int64_t e = 0; e < E; ++e) {
            std::vector<int64_t> kept;
            for (int64_t j = 0; j < E; ++j)
                if (j != e) kept.push_back(j);
            EXPECT_NEAR(ex.single_drop_error[e], brute_error(c, kept, k, renorm), 1e-4);
        }
        // Greedy (forced by max_subsets = 1): drop the least harmful expert, one at a time.
        NaeeLayerResult gr = naee_search(mc, c, keep, {}, {1, 1});
        EXPECT_EQ(gr.search, "greedy");
        std::vector<int64_t> cur(E);
        std::iota(cur.begin(), cur.end(), 0);
        while (int64_t(cur.size()) > keep) {
            double b = 1e300;
            size_t bi = 0;
            for (size_t i = 0; i < cur.size(); ++i) {
                std::vector<int64_t> trial = cur;
                trial.erase(trial.begin() + i);
                const double err = brute_error(c, trial, k, renorm);
                if (err < b - 1e-9) {
                    b = err;
                    bi = i;
                }
            }
            cur.erase(cur.begin() + bi);
        }
        EXPECT_EQ(gr.kept, cur) << "seed " << seed;
        EXPECT_GE(gr.error, ex.error - 1e-6);  // greedy is never better than exhaustive
        // Protection: the expert exhaustive search would drop first is kept.
        std::vector<bool> protect(E, false);
        int64_t victim = -1;
        for (int64_t e = 0; e < E; ++e)
            if (!std::binary_search(ex.kept.begin(), ex.kept.end(), e)) { victim = e; break; }
        protect[victim] = true;
        const NaeeLayerResult pr = naee_search(mc, c, keep, protect, {5000, 1});
        EXPECT_TRUE(std::binary_search(pr.kept.begin(), pr.kept.end(), victim));
        EXPECT_EQ(pr.subsets_evaluated, 20);  // C(6, 3)
    }
}

INSTANTIATE_TEST_SUITE_P(Routers, NaeeSynthetic, ::testing::Values(false, true));

// Captures the routed output of every MoE layer.
class RoutedOutput : public moekit::model::Observer {
public:
    uint32_t sites() const override { return moekit::model::kSiteMoeBlock; }
    void on_moe_block(const moekit::model::MoeBlockEvent& e) override { y[e.layer] = e.routed_output; }
    std::map<int64_t, Matrix> y;
};

struct FixtureCase {
    std::string arch;
    std::vector<int64_t> kept;  // for the first MoE layer
};

class NaeeFixture : public ::testing::TestWithParam<FixtureCase> {};

TEST_P(NaeeFixture, PredictedErrorEqualsPrunedEngine) {
    const FixtureCase& fc = GetParam();
    const auto ckpt = moekit::io::Checkpoint::open(kFixtures / fc.arch);
    const moekit::model::Engine engine(ckpt, {1});
    const auto& mc = engine.config();
    std::mt19937 rng(11);
    std::vector<std::vector<int32_t>> seqs(2);
    for (auto& s : seqs)
        for (int i = 0; i < 12; ++i) s.push_back(int32_t(rng() % uint32_t(mc.vocab_size)));
    NaeeObserver naee(mc);
    moekit::model::Observer* obs[] = {&naee};
    engine.forward_hidden(seqs, obs);
    NaeeCapture& cap = naee.captures().front();
    if (mc.routing.correction_bias) {
        const std::string r = engine.arch().router_weight(cap.layer);
        cap.correction_bias = ckpt.read_f32(r.substr(0, r.size() - 6) + "e_score_correction_bias");
    }

    // The checkpoint with only the first MoE layer pruned to fc.kept (the others keep all).
    Plan plan;
    for (int64_t il = 0; il < mc.n_layer; ++il) {
        if (!mc.is_moe_layer[il]) continue;
        LayerPlan lp;
        lp.layer = il;
        lp.n_expert = mc.n_expert;
        lp.kept.resize(mc.n_expert);
        std::iota(lp.kept.begin(), lp.kept.end(), 0);
        if (il == cap.layer) {
            lp.kept = fc.kept;
            for (int64_t e = 0; e < mc.n_expert; ++e)
                if (!std::binary_search(fc.kept.begin(), fc.kept.end(), e)) lp.removed.push_back(e);
        }
        plan.layers.push_back(lp);
    }
    ASSERT_FALSE(plan.uniform());
    moekit::test::TempDir tmp("naee");
    moekit::io::write_checkpoint(ckpt, make_edit(ckpt, engine.arch(), mc, plan), tmp / "out");
    const auto pruned = moekit::io::Checkpoint::open(tmp / "out");
    const moekit::model::Engine pruned_engine(pruned, {1});
    EXPECT_EQ(pruned_engine.config().n_expert_at(cap.layer), int64_t(fc.kept.size()));
    RoutedOutput full, cut;
    moekit::model::Observer* o1[] = {&full};
    moekit::model::Observer* o2[] = {&cut};
    engine.forward_hidden(seqs, o1);
    pruned_engine.forward_hidden(seqs, o2);
    const Matrix diff = full.y.at(cap.layer) - cut.y.at(cap.layer);
    const double engine_error = std::sqrt(diff.cast<double>().squaredNorm());
    const double predicted = subset_error(mc, cap, fc.kept);
    EXPECT_GT(engine_error, 1e-3);
    EXPECT_NEAR(predicted, engine_error, 1e-4 * engine_error) << fc.arch;
    EXPECT_NEAR(output_norm(mc, cap), std::sqrt(full.y.at(cap.layer).cast<double>().squaredNorm()), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, NaeeFixture,
                         ::testing::Values(FixtureCase{"olmoe", {0, 2, 3, 6}}, FixtureCase{"mixtral", {1, 2, 5, 7}},
                                           FixtureCase{"qwen2_moe", {0, 1, 4, 5, 6}}, FixtureCase{"deepseek_v2", {0, 3, 5, 6}},
                                           FixtureCase{"deepseek_v3", {1, 2, 5, 7}}),
                         [](const auto& info) { return info.param.arch; });

TEST(Naee, GroupedRoutingNeedsExhaustiveSearch) {
    auto mc = softmax_config(8, 2, false);
    mc.model_type = "deepseek_v2";
    mc.routing.n_group = 4;
    mc.routing.topk_group = 2;
    const NaeeCapture c = random_capture(8, 20, 3, 5);
    const NaeeLayerResult r = naee_search(mc, c, 4, {}, {5000, 1});
    // Only sets that keep one expert per group: 2^4 = 16 of the C(8, 4) = 70.
    EXPECT_EQ(r.subsets_evaluated, 16);
    for (int64_t g = 0; g < 4; ++g)
        EXPECT_EQ(std::count_if(r.kept.begin(), r.kept.end(), [&](int64_t e) { return e / 2 == g; }), 1);
    EXPECT_TRUE(std::isnan(r.single_drop_error[0]));
    try {
        naee_search(mc, c, 4, {}, {10, 1});
        FAIL();
    } catch (const moekit::Error& e) {
        EXPECT_NE(std::string(e.what()).find("--naee-max-subsets"), std::string::npos);
    }
}

}  // namespace
