// ArchSpecs against the transformers-generated fixtures (tests/fixtures/<arch>): the tensor set
// we expect from config.json must equal the checkpoint's exactly (names and shapes), and the
// parsed config must agree with expected.json (written from the transformers model object).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/hf_config.h"
#include "model/arch.h"

namespace fs = std::filesystem;
using moekit::model::ExpectedTensor;
using moekit::model::ModelConfig;
using moekit::model::TensorCategory;

namespace {

const fs::path kFixtures = fs::path(MOEKIT_TEST_DATA) / "fixtures";

using ShapeMap = std::map<std::string, std::vector<int64_t>>;

std::string shape_str(const std::vector<int64_t>& shape) {
    std::string out = "[";
    for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
    return out + "]";
}

// Empty when equal; otherwise the first differences, at most `limit` of each kind.
std::string diff_tensor_sets(const ShapeMap& expected, const ShapeMap& actual, size_t limit = 10) {
    std::vector<std::string> missing, unexpected, mismatched;
    for (const auto& [name, shape] : expected) {
        auto it = actual.find(name);
        if (it == actual.end()) missing.push_back(name + " " + shape_str(shape));
        else if (it->second != shape)
            mismatched.push_back(name + ": expected " + shape_str(shape) + ", checkpoint has " + shape_str(it->second));
    }
    for (const auto& [name, shape] : actual)
        if (!expected.count(name)) unexpected.push_back(name + " " + shape_str(shape));
    std::ostringstream out;
    auto dump = [&](const char* title, const std::vector<std::string>& items) {
        if (items.empty()) return;
        out << title << " (" << items.size() << "):\n";
        for (size_t i = 0; i < std::min(limit, items.size()); ++i) out << "  " << items[i] << "\n";
        if (items.size() > limit) out << "  ...\n";
    };
    dump("expected but absent from the checkpoint", missing);
    dump("in the checkpoint but not expected", unexpected);
    dump("shape differs", mismatched);
    return out.str();
}

nlohmann::json read_json(const fs::path& file) {
    std::ifstream in(file);
    if (!in) throw std::runtime_error("cannot read " + file.string());
    return nlohmann::json::parse(in);
}

int64_t numel(const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

class FixtureTest : public ::testing::TestWithParam<std::string> {
protected:
    fs::path dir() const { return kFixtures / GetParam(); }
};

TEST_P(FixtureTest, ExpectedTensorsEqualCheckpointTensors) {
    ASSERT_TRUE(fs::exists(dir() / "config.json")) << "fixture missing: " << dir();
    auto ckpt = moekit::io::Checkpoint::open(dir());
    auto resolved = moekit::model::resolve_config(ckpt.config());
    std::vector<ExpectedTensor> tensors = resolved.arch->expected_tensors(resolved.config);

    ShapeMap expected;
    for (const ExpectedTensor& t : tensors)
        EXPECT_TRUE(expected.emplace(t.name, t.shape).second) << "expected_tensors lists " << t.name << " twice";
    ShapeMap actual;
    for (const auto& [name, entry] : ckpt.tensors()) actual[name] = entry.info->shape;

    std::string diff = diff_tensor_sets(expected, actual);
    EXPECT_TRUE(diff.empty()) << GetParam() << ": tensor sets differ\n" << diff;
    for (const auto& [name, shape] : actual)
        if (!expected.count(name))
            EXPECT_FALSE(resolved.arch->tolerated_extra(resolved.config, name).has_value())
                << "a transformers-saved tensor should be expected, not merely tolerated: " << name;
}

TEST_P(FixtureTest, ExpectedTensorsEqualTransformersTensorList) {
    // Independent of io/: the tensor list transformers itself reported in expected.json.
    auto oracle = read_json(dir() / "expected.json");
    auto cfg = moekit::io::HfConfig::load(dir() / "config.json");
    auto resolved = moekit::model::resolve_config(cfg);
    ShapeMap expected, actual;
    for (const ExpectedTensor& t : resolved.arch->expected_tensors(resolved.config)) expected[t.name] = t.shape;
    for (const auto& [name, info] : oracle.at("tensors").items())
        actual[name] = info.at("shape").get<std::vector<int64_t>>();
    EXPECT_EQ(oracle.at("n_tensors").get<size_t>(), expected.size());
    std::string diff = diff_tensor_sets(expected, actual);
    EXPECT_TRUE(diff.empty()) << GetParam() << ": tensor sets differ from expected.json\n" << diff;
}

TEST_P(FixtureTest, ParsedConfigAgreesWithTransformers) {
    auto oracle = read_json(dir() / "expected.json");
    auto cfg = moekit::io::HfConfig::load(dir() / "config.json");
    auto resolved = moekit::model::resolve_config(cfg);
    const ModelConfig& mc = resolved.config;

    EXPECT_EQ(mc.model_type, oracle.at("model_type").get<std::string>());
    EXPECT_EQ(resolved.arch->model_type(), mc.model_type);
    EXPECT_EQ(mc.n_layer, oracle.at("num_hidden_layers").get<int64_t>());
    EXPECT_EQ(mc.d_model, oracle.at("hidden_size").get<int64_t>());
    EXPECT_EQ(mc.vocab_size, oracle.at("vocab_size").get<int64_t>());
    EXPECT_EQ(mc.n_expert, oracle.at("n_routed_experts").get<int64_t>());
    EXPECT_EQ(mc.n_expert_used, oracle.at("experts_per_token").get<int64_t>());
    EXPECT_EQ(mc.n_shared_expert, oracle.at("n_shared_experts").get<int64_t>());
    EXPECT_EQ(mc.d_ff_expert, oracle.at("expert_intermediate_size").get<int64_t>());
    EXPECT_EQ(mc.d_ff_shared, oracle.at("shared_expert_intermediate_size").get<int64_t>());
    EXPECT_EQ(mc.tie_word_embeddings, oracle.at("tie_word_embeddings").get<bool>());

    std::vector<int64_t> moe_layers;
    for (int64_t il = 0; il < mc.n_layer; ++il)
        if (mc.is_moe_layer.at(static_cast<size_t>(il))) moe_layers.push_back(il);
    EXPECT_EQ(moe_layers, oracle.at("moe_layers").get<std::vector<int64_t>>());
    EXPECT_EQ(mc.n_moe_layer(), static_cast<int64_t>(moe_layers.size()));
    if (!oracle.at("dense_layers").empty())
        EXPECT_EQ(mc.d_ff, oracle.at("dense_intermediate_size").get<int64_t>());

    // Per-category parameter counts and the total, from our shapes and categories.
    std::map<std::string, int64_t> by_category;
    int64_t total = 0;
    for (const ExpectedTensor& t : resolved.arch->expected_tensors(mc)) {
        by_category[std::string(moekit::model::category_name(t.category))] += numel(t.shape);
        total += numel(t.shape);
    }
    std::map<std::string, int64_t> oracle_categories;
    for (const auto& [name, count] : oracle.at("params_by_category").items())
        if (count.get<int64_t>() != 0) oracle_categories[name] = count.get<int64_t>();
    EXPECT_EQ(by_category, oracle_categories);
    EXPECT_EQ(total, oracle.at("total_params").get<int64_t>());
}

TEST_P(FixtureTest, NamingHelpersAgreeWithExpectedTensors) {
    auto cfg = moekit::io::HfConfig::load(dir() / "config.json");
    auto resolved = moekit::model::resolve_config(cfg);
    const ModelConfig& mc = resolved.config;
    std::map<std::string, const ExpectedTensor*> by_name;
    auto tensors = resolved.arch->expected_tensors(mc);
    for (const ExpectedTensor& t : tensors) by_name[t.name] = &t;
    int64_t expert_tensors = 0;
    for (const ExpectedTensor& t : tensors) {
        if (t.category == TensorCategory::routed_expert) {
            ++expert_tensors;
            EXPECT_GE(t.expert, 0) << t.name;
            EXPECT_LT(t.expert, mc.n_expert) << t.name;
        } else {
            EXPECT_EQ(t.expert, -1) << t.name;
        }
        if (t.name.starts_with("model.layers.")) EXPECT_GE(t.layer, 0) << t.name;
        else EXPECT_EQ(t.layer, -1) << t.name;
    }
    EXPECT_EQ(expert_tensors, 3 * mc.n_expert * mc.n_moe_layer());
    for (int64_t il = 0; il < mc.n_layer; ++il) {
        if (!mc.is_moe_layer[static_cast<size_t>(il)]) continue;
        auto router = by_name.find(resolved.arch->router_weight(il));
        ASSERT_NE(router, by_name.end()) << resolved.arch->router_weight(il);
        EXPECT_EQ(router->second->category, TensorCategory::router);
        EXPECT_EQ(router->second->shape, (std::vector<int64_t>{mc.n_expert, mc.d_model}));
        for (int64_t ie = 0; ie < mc.n_expert; ++ie) {
            auto names = resolved.arch->expert_tensors(il, ie);
            for (const std::string* n : {&names.gate, &names.up, &names.down}) {
                auto it = by_name.find(*n);
                ASSERT_NE(it, by_name.end()) << *n;
                EXPECT_EQ(it->second->layer, il);
                EXPECT_EQ(it->second->expert, ie);
            }
            EXPECT_EQ(by_name[names.gate]->shape, (std::vector<int64_t>{mc.d_ff_expert, mc.d_model}));
            EXPECT_EQ(by_name[names.up]->shape, (std::vector<int64_t>{mc.d_ff_expert, mc.d_model}));
            EXPECT_EQ(by_name[names.down]->shape, (std::vector<int64_t>{mc.d_model, mc.d_ff_expert}));
        }
    }
    // The expert-count key names a field that the config actually holds (except Qwen3-MoE,
    // whose 5.x configs spell it num_local_experts while hub configs use num_experts).
    if (mc.model_type != "qwen3_moe")
        EXPECT_TRUE(cfg.json().contains(std::string(resolved.arch->expert_count_key())))
            << resolved.arch->expert_count_key();
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureTest,
                         ::testing::Values("mixtral", "mixtral_hf4", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2",
                                           "deepseek_v3", "tiny"),
                         [](const auto& info) { return info.param; });

void expect_same_config(const ModelConfig& a, const ModelConfig& b) {
    EXPECT_EQ(a.model_type, b.model_type);
    EXPECT_EQ(a.n_layer, b.n_layer);
    EXPECT_EQ(a.d_model, b.d_model);
    EXPECT_EQ(a.n_head, b.n_head);
    EXPECT_EQ(a.n_head_kv, b.n_head_kv);
    EXPECT_EQ(a.head_dim, b.head_dim);
    EXPECT_EQ(a.vocab_size, b.vocab_size);
    EXPECT_EQ(a.d_ff, b.d_ff);
    EXPECT_EQ(a.d_ff_expert, b.d_ff_expert);
    EXPECT_EQ(a.n_expert, b.n_expert);
    EXPECT_EQ(a.n_expert_used, b.n_expert_used);
    EXPECT_EQ(a.n_shared_expert, b.n_shared_expert);
    EXPECT_EQ(a.d_ff_shared, b.d_ff_shared);
    EXPECT_EQ(a.is_moe_layer, b.is_moe_layer);
    EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
    EXPECT_EQ(a.attention_bias, b.attention_bias);
    EXPECT_EQ(a.qk_norm, b.qk_norm);
    EXPECT_DOUBLE_EQ(a.rms_norm_eps, b.rms_norm_eps);
    EXPECT_DOUBLE_EQ(a.rope_theta, b.rope_theta);
    EXPECT_EQ(a.hidden_act, b.hidden_act);
    EXPECT_EQ(a.routing.describe(), b.routing.describe());
    EXPECT_EQ(a.routing.norm_topk_prob, b.routing.norm_topk_prob);
    EXPECT_EQ(a.mlp_bias, b.mlp_bias);
    EXPECT_EQ(a.n_mtp_layer, b.n_mtp_layer);
    EXPECT_EQ(a.fp8_block, b.fp8_block);
}

TEST(ModelArch, MixtralHf4ConfigParsesLikeHf5Config) {
    auto hf5 = moekit::model::resolve_config(moekit::io::HfConfig::load(kFixtures / "mixtral" / "config.json"));
    auto hf4 = moekit::model::resolve_config(moekit::io::HfConfig::load(kFixtures / "mixtral_hf4" / "config.json"));
    EXPECT_EQ(hf5.arch, hf4.arch);
    expect_same_config(hf5.config, hf4.config);
    EXPECT_DOUBLE_EQ(hf4.config.rope_theta, 1e6);  // 4.x top-level rope_theta
    EXPECT_EQ(hf5.config.head_dim, 8);             // "head_dim": null -> hidden / heads
}

TEST(ModelArch, FixtureSpecificFacts) {
    auto load = [](const char* arch) {
        return moekit::model::resolve_config(moekit::io::HfConfig::load(kFixtures / arch / "config.json")).config;
    };
    ModelConfig qwen2 = load("qwen2_moe");
    EXPECT_TRUE(qwen2.attention_bias);
    EXPECT_TRUE(qwen2.routing.shared_expert_gate);
    EXPECT_FALSE(qwen2.routing.norm_topk_prob);
    ModelConfig qwen3 = load("qwen3_moe");
    EXPECT_EQ(qwen3.head_dim, 16);  // from config, not hidden / heads = 8
    EXPECT_EQ(qwen3.qk_norm, "per_head");
    EXPECT_TRUE(qwen3.routing.norm_topk_prob);
    EXPECT_EQ(qwen3.n_expert, 8);  // 5.x spelling num_local_experts
    ModelConfig olmoe = load("olmoe");
    EXPECT_EQ(olmoe.qk_norm, "full");
    ModelConfig v2 = load("deepseek_v2");
    EXPECT_EQ(v2.mla.q_lora_rank, 0);  // "q_lora_rank": null -> plain q_proj
    EXPECT_EQ(v2.head_dim, 12);        // qk_nope + qk_rope (config "head_dim": 4 is the rope dim)
    EXPECT_EQ(v2.routing.topk_method, "group_limited_greedy");
    EXPECT_EQ(v2.routing.n_group, 4);
    EXPECT_EQ(v2.routing.topk_group, 2);
    EXPECT_DOUBLE_EQ(v2.routing.routed_scaling_factor, 1.5);
    EXPECT_EQ(v2.routing.scoring, moekit::model::Scoring::softmax);
    ModelConfig v3 = load("deepseek_v3");
    EXPECT_EQ(v3.mla.q_lora_rank, 24);
    EXPECT_EQ(v3.routing.scoring, moekit::model::Scoring::sigmoid);
    EXPECT_TRUE(v3.routing.correction_bias);
    EXPECT_TRUE(v3.routing.norm_topk_prob);
    EXPECT_EQ(v3.routing.n_group, 2);
    EXPECT_EQ(v3.routing.topk_group, 1);
    EXPECT_EQ(v3.n_mtp_layer, 1);
    EXPECT_TRUE(v3.fp8_block.empty());
}

TEST(ModelArch, BrokenUnknownModelTypeNamesItAndTheFile) {
    fs::path file = kFixtures / "broken" / "unknown_model_type" / "config.json";
    ASSERT_TRUE(fs::exists(file));
    try {
        moekit::model::resolve_config(moekit::io::HfConfig::load(file));
        FAIL() << "expected an error";
    } catch (const moekit::Error& e) {
        std::string what = e.what();
        EXPECT_NE(what.find("gpt2"), std::string::npos) << what;
        EXPECT_NE(what.find(file.string()), std::string::npos) << what;
        EXPECT_NE(what.find("deepseek_v3"), std::string::npos) << what;
    }
}

TEST(ModelArch, BrokenMissingFieldNamesIt) {
    fs::path file = kFixtures / "broken" / "config_missing_field" / "config.json";
    ASSERT_TRUE(fs::exists(file));
    try {
        moekit::model::resolve_config(moekit::io::HfConfig::load(file));
        FAIL() << "expected an error";
    } catch (const moekit::Error& e) {
        std::string what = e.what();
        EXPECT_NE(what.find("num_hidden_layers"), std::string::npos) << what;
        EXPECT_NE(what.find("config.json"), std::string::npos) << what;
    }
}

TEST(ModelArch, BrokenShapeMismatchIsDetectedBySetComparison) {
    fs::path dir = kFixtures / "broken" / "shape_mismatch_config";
    auto ckpt = moekit::io::Checkpoint::open(dir);
    auto resolved = moekit::model::resolve_config(ckpt.config());
    ShapeMap expected, actual;
    for (const ExpectedTensor& t : resolved.arch->expected_tensors(resolved.config)) expected[t.name] = t.shape;
    for (const auto& [name, entry] : ckpt.tensors()) actual[name] = entry.info->shape;
    std::string diff = diff_tensor_sets(expected, actual);
    EXPECT_NE(diff.find("model.layers.1.block_sparse_moe.experts.1.w2.weight"), std::string::npos) << diff;
}

}  // namespace
