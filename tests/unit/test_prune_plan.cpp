// The pruning plan (prune/plan.h): --keep parsing, refusals, uniform selection against a brute
// force, group-preserving selection, the global budget's threshold property, protection.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "core/error.h"
#include "prune/plan.h"

namespace {

using namespace moekit::prune;
using moekit::model::ModelConfig;

ModelConfig config(int64_t n_layer, int64_t E, int64_t k) {
    ModelConfig mc;
    mc.model_type = "olmoe";
    mc.n_layer = n_layer;
    mc.n_expert = E;
    mc.n_expert_used = k;
    mc.is_moe_layer.assign(n_layer, true);
    return mc;
}

ModelConfig grouped(int64_t E, int64_t k, int64_t n_group, int64_t topk_group) {
    ModelConfig mc = config(2, E, k);
    mc.model_type = "deepseek_v3";
    mc.routing.scoring = moekit::model::Scoring::sigmoid;
    mc.routing.n_group = n_group;
    mc.routing.topk_group = topk_group;
    return mc;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const moekit::Error& e) {
        return e.what();
    }
    return "";
}

PlanOptions keep(const std::string& text, Budget budget = Budget::uniform, int64_t min_keep = 0) {
    return {parse_keep(text), budget, min_keep};
}

std::vector<LayerPlan> layers_with(const ModelConfig& mc, uint32_t seed, bool ties) {
    std::mt19937 rng(seed);
    std::vector<LayerPlan> out;
    for (int64_t il = 0; il < mc.n_layer; ++il) {
        LayerPlan lp;
        lp.layer = il;
        lp.n_expert = mc.n_expert;
        for (int64_t e = 0; e < mc.n_expert; ++e)
            lp.scores.push_back(ties ? double(rng() % 4) : std::uniform_real_distribution<double>(0, 10)(rng) * (il + 1));
        lp.protect.assign(mc.n_expert, false);
        out.push_back(lp);
    }
    return out;
}

TEST(PrunePlan, ParseKeep) {
    auto k = parse_keep("0.5");
    EXPECT_TRUE(k.is_ratio);
    EXPECT_EQ(k.ratio, 0.5);
    k = parse_keep("8");
    EXPECT_FALSE(k.is_ratio);
    EXPECT_EQ(k.count, 8);
    EXPECT_FALSE(parse_keep("1").is_ratio);
    EXPECT_TRUE(parse_keep("1.0").is_ratio);
    EXPECT_TRUE(parse_keep(".75").is_ratio);
    for (const char* bad : {"", "0", "-1", "abc", "1.5", "8x", "0.0", "nan", "2.5"})
        EXPECT_NE(error_of([&] { parse_keep(bad); }).find("--keep"), std::string::npos) << bad;
    EXPECT_EQ(keep_count(parse_keep("0.5"), 16), 8);
    EXPECT_EQ(keep_count(parse_keep("0.25"), 16), 4);
    EXPECT_EQ(keep_count(parse_keep("0.3"), 16), 5);   // 4.8 -> 5
    EXPECT_EQ(keep_count(parse_keep("0.5"), 7), 4);    // 3.5 -> 4 (half away from zero)
    EXPECT_EQ(keep_count(parse_keep("6"), 64), 6);
    EXPECT_EQ(parse_budget("global"), Budget::global);
    EXPECT_NE(error_of([] { parse_budget("local"); }).find("uniform or global"), std::string::npos);
}

TEST(PrunePlan, Refusals) {
    const ModelConfig mc = config(4, 16, 2);
    EXPECT_NE(error_of([&] { check_keep(mc, keep("16")); }).find("nothing would be pruned"), std::string::npos);
    EXPECT_NE(error_of([&] { check_keep(mc, keep("20")); }).find("nothing would be pruned"), std::string::npos);
    EXPECT_NE(error_of([&] { check_keep(mc, keep("1.0")); }).find("nothing would be pruned"), std::string::npos);
    EXPECT_NE(error_of([&] { check_keep(mc, keep("0.97")); }).find("keeps 16 of 16"), std::string::npos);
    EXPECT_NE(error_of([&] { check_keep(mc, keep("1")); }).find("fewer than the 2 experts"), std::string::npos);
    EXPECT_NE(error_of([&] { check_keep(mc, keep("0.05")); }).find("fewer than the 2"), std::string::npos);
    EXPECT_EQ(error_of([&] { check_keep(mc, keep("2")); }), "");
    EXPECT_EQ(error_of([&] { check_keep(mc, keep("0.5")); }), "");
    EXPECT_NE(error_of([&] { check_keep(mc, keep("0.5", Budget::global, 1)); }).find("--min-keep 1"), std::string::npos);

    // DeepSeek-V3-like: 16 experts in 4 groups, top-2 of 2 groups.
    const ModelConfig v3 = grouped(16, 2, 4, 2);
    const std::string e6 = error_of([&] { check_keep(v3, keep("6")); });
    EXPECT_NE(e6.find("n_group = 4"), std::string::npos) << e6;
    EXPECT_NE(e6.find("try --keep 8"), std::string::npos) << e6;
    EXPECT_NE(error_of([&] { check_keep(v3, keep("4")); }).find("at least 2 per group"), std::string::npos);
    EXPECT_EQ(error_of([&] { check_keep(v3, keep("8")); }), "");
    EXPECT_EQ(error_of([&] { check_keep(v3, keep("12")); }), "");
    EXPECT_NE(error_of([&] { check_keep(v3, keep("0.5", Budget::global)); }).find("--budget global is not available"),
              std::string::npos);
}

TEST(PrunePlan, UniformMatchesBruteForce) {
    const ModelConfig mc = config(3, 10, 2);
    for (uint32_t seed = 0; seed < 20; ++seed) {
        auto layers = layers_with(mc, seed, seed % 2 == 0);
        layers[1].protect[seed % 10] = true;  // a protected expert, whatever its score
        const Plan plan = make_plan(mc, layers, keep("4"));
        ASSERT_TRUE(plan.uniform());
        EXPECT_EQ(plan.total_kept(), 12);
        for (size_t i = 0; i < layers.size(); ++i) {
            // Brute force: order by (protected, score desc, index asc), keep the first 4.
            std::vector<int64_t> order(10);
            std::iota(order.begin(), order.end(), 0);
            const auto& lp = layers[i];
            std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
                if (lp.protect[a] != lp.protect[b]) return bool(lp.protect[a]);
                if (lp.scores[a] != lp.scores[b]) return lp.scores[a] > lp.scores[b];
                return a < b;
            });
            std::vector<int64_t> want(order.begin(), order.begin() + 4);
            std::sort(want.begin(), want.end());
            EXPECT_EQ(plan.layers[i].kept, want) << "seed " << seed << " layer " << i;
            EXPECT_EQ(plan.layers[i].kept.size() + plan.layers[i].removed.size(), 10u);
        }
        EXPECT_NE(std::find(plan.layers[1].kept.begin(), plan.layers[1].kept.end(), int64_t(seed % 10)), plan.layers[1].kept.end());
    }
}

TEST(PrunePlan, GroupPreservingSelection) {
    // 8 experts in 2 groups of 4, topk_group 1 < n_group 2: each group keeps 2 of its own.
    const ModelConfig v3 = grouped(8, 2, 2, 1);
    std::vector<LayerPlan> layers(1);
    layers[0].layer = 0;
    layers[0].n_expert = 8;
    layers[0].scores = {9, 8, 7, 6, 1, 2, 3, 0};  // the best four are all in group 0
    layers[0].protect.assign(8, false);
    ModelConfig one = v3;
    one.n_layer = 1;
    one.is_moe_layer = {true};
    Plan plan = make_plan(one, layers, keep("4"));
    EXPECT_EQ(plan.layers[0].kept, (std::vector<int64_t>{0, 1, 5, 6}));
    // With topk_group == n_group the groups do not constrain the choice.
    one.routing.topk_group = 2;
    plan = make_plan(one, layers, keep("4"));
    EXPECT_EQ(plan.layers[0].kept, (std::vector<int64_t>{0, 1, 2, 3}));
    // A protected expert that does not fit in its group's quota is refused with a hint.
    one.routing.topk_group = 1;
    layers[0].protect = {true, true, true, false, false, false, false, false};
    EXPECT_NE(error_of([&] { make_plan(one, layers, keep("4")); }).find("--no-protect-super-experts"), std::string::npos);
}

TEST(PrunePlan, GlobalBudgetThreshold) {
    const ModelConfig mc = config(4, 8, 2);
    for (uint32_t seed = 0; seed < 20; ++seed) {
        auto layers = layers_with(mc, seed, false);
        layers[2].protect[seed % 8] = true;
        const Plan plan = make_plan(mc, layers, keep("0.5", Budget::global));
        EXPECT_EQ(plan.total_kept(), 16);  // the same total as uniform
        EXPECT_EQ(plan.min_keep, 2);        // max(k = 2, ceil(4 / 2))
        for (size_t i = 0; i < plan.layers.size(); ++i) {
            const LayerPlan& lp = plan.layers[i];
            EXPECT_GE(lp.kept.size(), 2u);
            // Normalization: s / mean |s|.
            double mean = 0;
            for (double s : lp.scores) mean += std::fabs(s) / 8;
            for (size_t e = 0; e < 8; ++e) EXPECT_NEAR(lp.normalized[e], lp.scores[e] / mean, 1e-12);
            // Each layer's two best are always kept.
            std::vector<int64_t> order(8);
            std::iota(order.begin(), order.end(), 0);
            std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return lp.scores[a] > lp.scores[b]; });
            for (int j = 0; j < 2; ++j)
                EXPECT_TRUE(std::binary_search(lp.kept.begin(), lp.kept.end(), order[j]));
            // One threshold: a removed expert never scores above it.
            for (int64_t e : lp.removed) EXPECT_LE(lp.normalized[e], plan.threshold);
        }
        EXPECT_TRUE(std::binary_search(plan.layers[2].kept.begin(), plan.layers[2].kept.end(), int64_t(seed % 8)));
        // Every kept expert outside the per-layer minimum and protection scores >= the threshold.
        int64_t above = 0;
        for (const LayerPlan& lp : plan.layers)
            for (int64_t e : lp.kept) above += lp.normalized[e] >= plan.threshold;
        EXPECT_GE(above, 16 - 4 * 2 - 1);
    }
    // A hand-made case: layer 0 has one dominant expert, layer 1 is flat.
    ModelConfig two = config(2, 4, 1);
    std::vector<LayerPlan> layers(2);
    for (int i = 0; i < 2; ++i) {
        layers[i].layer = i;
        layers[i].n_expert = 4;
        layers[i].protect.assign(4, false);
    }
    layers[0].scores = {10, 1, 1, 0};    // normalized 3.33, 0.33, 0.33, 0
    layers[1].scores = {2, 2, 2, 1.9};  // normalized ~1.01 .. 1.03, 0.96
    const Plan plan = make_plan(two, layers, keep("2", Budget::global, 1));
    EXPECT_EQ(plan.layers[0].kept, (std::vector<int64_t>{0}));
    EXPECT_EQ(plan.layers[1].kept, (std::vector<int64_t>{0, 1, 2}));
    EXPECT_FALSE(plan.uniform());
    EXPECT_EQ(plan.max_kept(), 3);
    // The minimum plus protection cannot exceed the budget.
    layers[0].protect = {true, true, true, false};
    EXPECT_NE(error_of([&] { make_plan(two, layers, keep("2", Budget::global, 2)); }).find("lower --min-keep"), std::string::npos);
}

TEST(PrunePlan, ProtectionDoesNotFit) {
    const ModelConfig mc = config(1, 6, 1);
    auto layers = layers_with(mc, 1, false);
    layers[0].protect = {true, true, true, false, false, false};
    EXPECT_NE(error_of([&] { make_plan(mc, layers, keep("2")); }).find("3 protected super experts"), std::string::npos);
    EXPECT_EQ(make_plan(mc, layers, keep("3")).layers[0].kept, (std::vector<int64_t>{0, 1, 2}));
}

TEST(PrunePlan, FromSubsets) {
    const ModelConfig mc = config(1, 6, 2);
    auto layers = layers_with(mc, 3, false);
    layers[0].kept = {5, 1, 3};
    const Plan plan = plan_from_subsets(mc, layers);
    EXPECT_EQ(plan.layers[0].kept, (std::vector<int64_t>{1, 3, 5}));
    EXPECT_EQ(plan.layers[0].removed, (std::vector<int64_t>{0, 2, 4}));
    layers[0].kept = {1};
    EXPECT_THROW(plan_from_subsets(mc, layers), std::exception);
}

}  // namespace
