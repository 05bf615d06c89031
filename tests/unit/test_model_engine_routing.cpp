// The routing functions (model/moe_router.cpp) on hand-made logits: cases the fixtures cannot
// reach (DeepSeek-V2 group-limited greedy with top-k > topk_group, DeepSeek-V3 groups where the
// sum of the top two differs from the max, bias affecting selection but not gates, ties).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "model/engine.h"
#include "model/moe.h"  // private engine header

using namespace moekit::model;

namespace {

using moekit::model::detail::route;
using moekit::model::detail::RoutingResult;
using moekit::model::detail::Weight;

RoutingResult route_one(const ModelConfig& mc, const std::vector<float>& z, const std::vector<float>& bias = {}) {
    RoutingResult r;
    r.logits = Eigen::Map<const Matrix>(z.data(), 1, static_cast<Eigen::Index>(z.size()));
    Weight b;
    if (!bias.empty()) {
        b.rows = 1;
        b.cols = static_cast<int64_t>(bias.size());
        b.data.assign(bias.begin(), bias.end());
    }
    route(mc, b, r, 1);
    return r;
}

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

TEST(EngineRouting, DeepseekV2GroupLimitedGreedyKeepsTheBestGroupsOnly) {
    ModelConfig mc;
    mc.model_type = "deepseek_v2";
    mc.n_expert = 8;
    mc.n_expert_used = 2;
    mc.routing.scoring = Scoring::softmax;
    mc.routing.topk_method = "group_limited_greedy";
    mc.routing.n_group = 4;
    mc.routing.topk_group = 1;
    mc.routing.routed_scaling_factor = 1.5;
    mc.routing.norm_topk_prob = true;  // transformers 5.x ignores it for V2
    const std::vector<float> z = {3.0f, -5.0f, 2.9f, 2.8f, 0.0f, 0.0f, 0.0f, 0.0f};
    const RoutingResult r = route_one(mc, z);
    float sum = 0;
    for (float v : z) sum += std::exp(v - 3.0f);
    // Group {0, 1} has the best max (3.0): experts 0 and 1 are selected, not 0 and 2 (greedy).
    EXPECT_EQ(r.selected(0, 0), 0);
    EXPECT_EQ(r.selected(0, 1), 1);
    EXPECT_NEAR(r.gates(0, 0), 1.5f * 1.0f / sum, 1e-6);
    EXPECT_NEAR(r.gates(0, 1), 1.5f * std::exp(-8.0f) / sum, 1e-9);
    mc.routing.n_group = 1;  // greedy
    mc.routing.topk_group = 1;
    const RoutingResult g = route_one(mc, z);
    EXPECT_EQ(g.selected(0, 1), 2);
}

TEST(EngineRouting, DeepseekV3GroupsBySumOfTopTwoAndGatesFromUnbiasedScores) {
    ModelConfig mc;
    mc.model_type = "deepseek_v3";
    mc.n_expert = 8;
    mc.n_expert_used = 2;
    mc.routing.scoring = Scoring::sigmoid;
    mc.routing.correction_bias = true;
    mc.routing.n_group = 2;
    mc.routing.topk_group = 1;
    mc.routing.norm_topk_prob = true;
    mc.routing.routed_scaling_factor = 2.5;
    // Group 0's max (sigmoid(4) = .982) beats group 1's, but group 1's top-2 sum (with bias) wins.
    const std::vector<float> z = {4.0f, -4.0f, -4.0f, -4.0f, 1.0f, 1.0f, 0.5f, -4.0f};
    const std::vector<float> bias = {0, 0, 0, 0, 0, -0.5f, 0.3f, 0};
    const RoutingResult r = route_one(mc, z, bias);
    EXPECT_EQ(r.selected(0, 0), 6);  // biased 0.922
    EXPECT_EQ(r.selected(0, 1), 4);  // biased 0.731
    const float s6 = sigmoid(0.5f), s4 = sigmoid(1.0f);
    EXPECT_NEAR(r.gates(0, 0), 2.5f * s6 / (s6 + s4), 1e-6);
    EXPECT_NEAR(r.gates(0, 1), 2.5f * s4 / (s6 + s4), 1e-6);
    EXPECT_NEAR(r.scores(0, 0), sigmoid(4.0f), 1e-7);  // scores are unbiased
}

TEST(EngineRouting, SoftmaxRoutersRenormalizeOnlyWhenAsked) {
    ModelConfig mc;
    mc.model_type = "qwen3_moe";
    mc.n_expert = 4;
    mc.n_expert_used = 2;
    const std::vector<float> z = {0.5f, 2.0f, -1.0f, 1.0f};
    float sum = 0;
    for (float v : z) sum += std::exp(v - 2.0f);
    const float p1 = 1.0f / sum, p3 = std::exp(-1.0f) / sum;
    const RoutingResult plain = route_one(mc, z);
    EXPECT_EQ(plain.selected(0, 0), 1);
    EXPECT_EQ(plain.selected(0, 1), 3);
    EXPECT_NEAR(plain.gates(0, 0), p1, 1e-7);
    EXPECT_NEAR(plain.gates(0, 1), p3, 1e-7);
    mc.routing.norm_topk_prob = true;
    const RoutingResult norm = route_one(mc, z);
    EXPECT_NEAR(norm.gates(0, 0), p1 / (p1 + p3), 1e-7);
    EXPECT_NEAR(norm.gates(0, 0) + norm.gates(0, 1), 1.0f, 1e-7);
    // Ties go to the lower index, like torch.topk.
    const RoutingResult tie = route_one(mc, {1.0f, 0.0f, 1.0f, 1.0f});
    EXPECT_EQ(tie.selected(0, 0), 0);
    EXPECT_EQ(tie.selected(0, 1), 2);
}

}  // namespace
