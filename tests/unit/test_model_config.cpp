// ArchSpec config parsing on hand-written config.json documents: defaults, both transformers
// spellings, the MoE-layer rules and validation errors that name the field and value.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/hf_config.h"
#include "model/arch.h"
#include "model/deepseek_common.h"

using moekit::model::ModelConfig;
using moekit::model::TensorCategory;
using Json = nlohmann::ordered_json;

namespace {

moekit::io::HfConfig make(const Json& json) { return moekit::io::HfConfig::from_json(json, "/models/x/config.json"); }

ModelConfig parse(const Json& json) { return moekit::model::resolve_config(make(json)).config; }

// Expects resolve_config to throw moekit::Error containing every needle.
void expect_error(const Json& json, std::vector<std::string> needles) {
    try {
        parse(json);
        ADD_FAILURE() << "expected an error for " << json.dump();
    } catch (const moekit::Error& e) {
        std::string what = e.what();
        for (const std::string& n : needles) EXPECT_NE(what.find(n), std::string::npos) << "'" << n << "' not in: " << what;
    }
}

std::vector<int64_t> moe_layers(const ModelConfig& mc) {
    std::vector<int64_t> out;
    for (size_t i = 0; i < mc.is_moe_layer.size(); ++i)
        if (mc.is_moe_layer[i]) out.push_back(static_cast<int64_t>(i));
    return out;
}

bool has_tensor(const ModelConfig& mc, const std::string& name) {
    for (const auto& t : moekit::model::arch_for(mc.model_type).expected_tensors(mc))
        if (t.name == name) return true;
    return false;
}

Json mixtral() {
    return {{"model_type", "mixtral"}, {"vocab_size", 100}, {"hidden_size", 32}, {"intermediate_size", 16},
            {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
            {"num_local_experts", 8}, {"num_experts_per_tok", 2}};
}

Json qwen2(int64_t n_layer = 6) {
    return {{"model_type", "qwen2_moe"}, {"vocab_size", 100}, {"hidden_size", 32}, {"intermediate_size", 48},
            {"moe_intermediate_size", 16}, {"shared_expert_intermediate_size", 32}, {"num_hidden_layers", n_layer},
            {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"num_experts", 8}, {"num_experts_per_tok", 2}};
}

Json deepseek(const char* type, int64_t n_layer = 6) {
    return {{"model_type", type}, {"vocab_size", 100}, {"hidden_size", 32}, {"intermediate_size", 64},
            {"moe_intermediate_size", 16}, {"num_hidden_layers", n_layer}, {"num_attention_heads", 4},
            {"n_routed_experts", 8}, {"num_experts_per_tok", 2}, {"kv_lora_rank", 16}, {"q_lora_rank", nullptr},
            {"qk_nope_head_dim", 8}, {"qk_rope_head_dim", 4}, {"v_head_dim", 8}, {"n_group", 2}, {"topk_group", 1},
            {"first_k_dense_replace", 1}};
}

TEST(ModelConfig, RegistryListsTheSixArchitectures) {
    std::vector<std::string_view> types = moekit::model::supported_model_types();
    EXPECT_EQ(types, (std::vector<std::string_view>{"mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2",
                                                    "deepseek_v3"}));
    for (std::string_view t : types) EXPECT_EQ(moekit::model::arch_for(t).model_type(), t);
    EXPECT_EQ(moekit::model::arch_for("mixtral").expert_count_key(), "num_local_experts");
    EXPECT_EQ(moekit::model::arch_for("qwen2_moe").expert_count_key(), "num_experts");
    EXPECT_EQ(moekit::model::arch_for("deepseek_v3").expert_count_key(), "n_routed_experts");
    EXPECT_EQ(moekit::model::category_name(TensorCategory::routed_expert), "routed_expert");
    EXPECT_EQ(moekit::model::category_name(TensorCategory::dense_mlp), "dense_mlp");
}

TEST(ModelConfig, UnknownModelTypeListsSupportedTypes) {
    Json j = mixtral();
    j["model_type"] = "gpt2";
    expect_error(j, {"[model]", "unsupported model_type 'gpt2'", "/models/x/config.json", "mixtral", "qwen2_moe",
                     "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3"});
    try {
        moekit::model::arch_for("llama");
        ADD_FAILURE();
    } catch (const moekit::Error& e) {
        EXPECT_NE(std::string(e.what()).find("supported: mixtral, qwen2_moe"), std::string::npos) << e.what();
    }
    Json none = mixtral();
    none.erase("model_type");
    expect_error(none, {"model_type", "/models/x/config.json"});
}

TEST(ModelConfig, MissingRequiredFieldIsNamed) {
    for (const char* field : {"num_hidden_layers", "hidden_size", "vocab_size", "num_local_experts",
                              "num_experts_per_tok", "intermediate_size", "num_attention_heads"}) {
        Json j = mixtral();
        j.erase(field);
        expect_error(j, {field, "/models/x/config.json", "missing"});
    }
    for (const char* field : {"moe_intermediate_size", "shared_expert_intermediate_size", "num_experts"}) {
        Json j = qwen2();
        j.erase(field);
        expect_error(j, {field, "missing"});
    }
    for (const char* field : {"kv_lora_rank", "qk_rope_head_dim", "n_routed_experts", "moe_intermediate_size"}) {
        Json j = deepseek("deepseek_v3");
        j.erase(field);
        expect_error(j, {field, "missing"});
    }
    // A null required field counts as missing.
    Json j = mixtral();
    j["hidden_size"] = nullptr;
    expect_error(j, {"hidden_size", "missing"});
}

TEST(ModelConfig, InvalidValuesNameFieldAndValue) {
    Json j = mixtral();
    j["hidden_size"] = -32;
    expect_error(j, {"hidden_size", "-32"});
    j = mixtral();
    j["hidden_size"] = "32";
    expect_error(j, {"hidden_size", "integer"});
    j = mixtral();
    j["num_key_value_heads"] = 3;
    expect_error(j, {"num_key_value_heads", "3"});
    j = mixtral();
    j["tie_word_embeddings"] = "yes";
    expect_error(j, {"tie_word_embeddings"});
    j = mixtral();
    j["num_hidden_layers"] = 2.0;  // integral floats are accepted
    EXPECT_EQ(parse(j).n_layer, 2);
    j["num_hidden_layers"] = 2.5;
    expect_error(j, {"num_hidden_layers", "2.5"});
}

TEST(ModelConfig, TopKMustBeWithinExpertCount) {
    Json j = mixtral();
    j["num_experts_per_tok"] = 9;
    expect_error(j, {"num_experts_per_tok", "9", "num_local_experts = 8"});
    j["num_experts_per_tok"] = 0;
    expect_error(j, {"num_experts_per_tok", "0"});
    j = deepseek("deepseek_v2");
    j["num_experts_per_tok"] = 12;
    expect_error(j, {"num_experts_per_tok", "12"});
    j = mixtral();
    j["num_experts_per_tok"] = 8;
    EXPECT_EQ(parse(j).n_expert_used, 8);
}

TEST(ModelConfig, MixtralDefaultsAndSpellings) {
    ModelConfig mc = parse(mixtral());
    EXPECT_EQ(mc.head_dim, 8);
    EXPECT_DOUBLE_EQ(mc.rope_theta, 1e6);  // MixtralConfig.default_theta
    EXPECT_DOUBLE_EQ(mc.rms_norm_eps, 1e-5);
    EXPECT_TRUE(mc.routing.norm_topk_prob);
    EXPECT_EQ(mc.routing.describe(), "softmax -> top-k -> renormalize");
    EXPECT_EQ(mc.n_moe_layer(), 2);
    EXPECT_EQ(mc.d_ff_expert, 16);
    EXPECT_EQ(mc.d_ff, 0);

    Json j = mixtral();
    j["head_dim"] = nullptr;
    EXPECT_EQ(parse(j).head_dim, 8);
    j["head_dim"] = 16;  // explicit head_dim wins (q_proj [heads*16, hidden])
    mc = parse(j);
    EXPECT_EQ(mc.head_dim, 16);
    bool found = false;
    for (const auto& t : moekit::model::arch_for("mixtral").expected_tensors(mc))
        if (t.name == "model.layers.0.self_attn.q_proj.weight") {
            found = true;
            EXPECT_EQ(t.shape, (std::vector<int64_t>{64, 32}));
        }
    EXPECT_TRUE(found);

    j = mixtral();
    j["rope_theta"] = 5e5;  // 4.x
    EXPECT_DOUBLE_EQ(parse(j).rope_theta, 5e5);
    j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 2e5}};  // 5.x wins
    EXPECT_DOUBLE_EQ(parse(j).rope_theta, 2e5);
    j = mixtral();
    j["num_experts"] = 4;  // attribute_map alias
    j.erase("num_local_experts");
    EXPECT_EQ(parse(j).n_expert, 4);

    j = mixtral();
    j["tie_word_embeddings"] = true;
    mc = parse(j);
    EXPECT_FALSE(has_tensor(mc, "lm_head.weight"));
    EXPECT_TRUE(has_tensor(mc, "model.embed_tokens.weight"));
}

TEST(ModelConfig, Qwen2MoeSparseStepAndMlpOnlyLayers) {
    EXPECT_EQ(moe_layers(parse(qwen2())), (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
    Json j = qwen2();
    j["decoder_sparse_step"] = 2;
    EXPECT_EQ(moe_layers(parse(j)), (std::vector<int64_t>{1, 3, 5}));
    j = qwen2();
    j["mlp_only_layers"] = {0, 4};
    EXPECT_EQ(moe_layers(parse(j)), (std::vector<int64_t>{1, 2, 3, 5}));
    j["mlp_only_layers"] = nullptr;  // null -> []
    EXPECT_EQ(moe_layers(parse(j)).size(), 6u);
    j = qwen2();
    j["decoder_sparse_step"] = 3;
    j["mlp_only_layers"] = {2};
    EXPECT_EQ(moe_layers(parse(j)), (std::vector<int64_t>{5}));

    j = qwen2();
    j["mlp_only_layers"] = {6};
    expect_error(j, {"mlp_only_layers", "6"});
    j["mlp_only_layers"] = {-1};
    expect_error(j, {"mlp_only_layers", "-1"});
    j = qwen2();
    j["decoder_sparse_step"] = 0;
    expect_error(j, {"decoder_sparse_step", "0"});

    // Dense layers need intermediate_size; all-MoE models do not.
    j = qwen2();
    j.erase("intermediate_size");
    EXPECT_EQ(parse(j).d_ff, 0);
    j["mlp_only_layers"] = {1};
    expect_error(j, {"intermediate_size", "missing"});

    // Tensors follow the rule: dense MLP in dense layers, router + experts + shared expert in MoE.
    j = qwen2(2);
    j["decoder_sparse_step"] = 2;
    ModelConfig mc = parse(j);
    EXPECT_TRUE(has_tensor(mc, "model.layers.0.mlp.gate_proj.weight"));
    EXPECT_FALSE(has_tensor(mc, "model.layers.0.mlp.gate.weight"));
    EXPECT_TRUE(has_tensor(mc, "model.layers.1.mlp.gate.weight"));
    EXPECT_TRUE(has_tensor(mc, "model.layers.1.mlp.shared_expert_gate.weight"));
    EXPECT_TRUE(has_tensor(mc, "model.layers.1.mlp.shared_expert.down_proj.weight"));
    EXPECT_TRUE(has_tensor(mc, "model.layers.1.mlp.experts.7.up_proj.weight"));
    EXPECT_EQ(mc.d_ff, 48);
    // qkv biases: on by default (4.x always), off when qkv_bias is false.
    EXPECT_TRUE(has_tensor(mc, "model.layers.0.self_attn.k_proj.bias"));
    EXPECT_FALSE(has_tensor(mc, "model.layers.0.self_attn.o_proj.bias"));
    j["qkv_bias"] = false;
    EXPECT_FALSE(has_tensor(parse(j), "model.layers.0.self_attn.k_proj.bias"));
}

TEST(ModelConfig, Qwen3MoeRulesAndSpellings) {
    Json j = qwen2(4);
    j["model_type"] = "qwen3_moe";
    j.erase("shared_expert_intermediate_size");
    j["mlp_only_layers"] = {0, 3};
    ModelConfig mc = parse(j);
    EXPECT_EQ(moe_layers(mc), (std::vector<int64_t>{1, 2}));
    EXPECT_EQ(mc.head_dim, 8);  // no head_dim -> hidden / heads
    EXPECT_EQ(mc.n_shared_expert, 0);
    EXPECT_FALSE(has_tensor(mc, "model.layers.1.mlp.shared_expert_gate.weight"));
    EXPECT_FALSE(has_tensor(mc, "model.layers.0.self_attn.q_proj.bias"));
    EXPECT_TRUE(has_tensor(mc, "model.layers.0.self_attn.q_norm.weight"));
    j["num_local_experts"] = 8;  // 5.x spelling
    j.erase("num_experts");
    j["head_dim"] = 16;
    j["attention_bias"] = true;
    mc = parse(j);
    EXPECT_EQ(mc.n_expert, 8);
    EXPECT_EQ(mc.head_dim, 16);
    EXPECT_TRUE(has_tensor(mc, "model.layers.0.self_attn.o_proj.bias"));
}

TEST(ModelConfig, DeepseekDenseLayersAndLayerFreq) {
    Json j = deepseek("deepseek_v2");
    j["first_k_dense_replace"] = 2;
    j["moe_layer_freq"] = 2;
    EXPECT_EQ(moe_layers(parse(j)), (std::vector<int64_t>{2, 4}));
    j.erase("moe_layer_freq");
    EXPECT_EQ(moe_layers(parse(j)), (std::vector<int64_t>{2, 3, 4, 5}));
    j.erase("first_k_dense_replace");  // V2 default 0
    ModelConfig mc = parse(j);
    EXPECT_EQ(mc.n_moe_layer(), 6);
    EXPECT_EQ(mc.n_shared_expert, 2);  // V2 default
    EXPECT_EQ(mc.d_ff_shared, 32);
    j = deepseek("deepseek_v3");
    j.erase("first_k_dense_replace");  // V3 default 3
    EXPECT_EQ(moe_layers(parse(j)), (std::vector<int64_t>{3, 4, 5}));
    j["first_k_dense_replace"] = 7;
    expect_error(j, {"first_k_dense_replace", "7"});
    j["first_k_dense_replace"] = 6;  // all dense is allowed
    EXPECT_EQ(parse(j).n_moe_layer(), 0);

    // MLA tensors: q_lora_rank null -> q_proj; an integer -> q_a_proj/q_a_layernorm/q_b_proj;
    // absent -> transformers' default 1536.
    j = deepseek("deepseek_v3");
    mc = parse(j);
    EXPECT_TRUE(has_tensor(mc, "model.layers.0.self_attn.q_proj.weight"));
    EXPECT_TRUE(has_tensor(mc, "model.layers.1.mlp.gate.e_score_correction_bias"));
    EXPECT_TRUE(has_tensor(mc, "model.layers.1.mlp.shared_experts.gate_proj.weight"));
    EXPECT_FALSE(has_tensor(mc, "model.layers.0.mlp.gate.weight"));
    j["q_lora_rank"] = 24;
    mc = parse(j);
    EXPECT_TRUE(has_tensor(mc, "model.layers.0.self_attn.q_a_layernorm.weight"));
    EXPECT_FALSE(has_tensor(mc, "model.layers.0.self_attn.q_proj.weight"));
    j.erase("q_lora_rank");
    EXPECT_EQ(parse(j).mla.q_lora_rank, 1536);
    EXPECT_FALSE(has_tensor(parse(deepseek("deepseek_v2")), "model.layers.1.mlp.gate.e_score_correction_bias"));
}

TEST(ModelConfig, DeepseekRouting) {
    Json j = deepseek("deepseek_v2");
    ModelConfig mc = parse(j);  // topk_method absent -> greedy; groups ignored
    EXPECT_EQ(mc.routing.topk_method, "greedy");
    EXPECT_EQ(mc.routing.n_group, 1);
    EXPECT_EQ(mc.routing.describe(), "softmax -> top-k");
    j["topk_method"] = "group_limited_greedy";
    j["routed_scaling_factor"] = 16.0;
    mc = parse(j);
    EXPECT_EQ(mc.routing.n_group, 2);
    EXPECT_EQ(mc.routing.topk_group, 1);
    EXPECT_EQ(mc.routing.describe(), "softmax -> top-1 of 2 groups (group score = max) -> top-k -> x16 [group_limited_greedy]");
    j.erase("n_group");
    expect_error(j, {"n_group", "missing"});
    j = deepseek("deepseek_v2");
    j["topk_method"] = "noaux_tc";
    expect_error(j, {"topk_method", "noaux_tc"});

    j = deepseek("deepseek_v3");
    mc = parse(j);
    EXPECT_EQ(mc.routing.scoring, moekit::model::Scoring::sigmoid);
    EXPECT_TRUE(mc.routing.norm_topk_prob);                    // V3 default
    EXPECT_DOUBLE_EQ(mc.routing.routed_scaling_factor, 2.5);   // V3 default
    EXPECT_EQ(mc.routing.describe(),
              "sigmoid (+ e_score_correction_bias for selection) -> top-1 of 2 groups (group score = sum of top-2) -> "
              "top-k -> renormalize -> x2.5 [noaux_tc]");
    j["n_group"] = 3;  // 8 experts not divisible by 3
    expect_error(j, {"n_group", "3", "divisible"});
    j["n_group"] = 2;
    j["topk_group"] = 3;
    expect_error(j, {"topk_group", "3"});
    j["topk_group"] = 0;
    expect_error(j, {"topk_group", "0"});
    j["n_group"] = 8;  // one expert per group: no top-2
    j["topk_group"] = 4;
    expect_error(j, {"n_group", "8"});
    j["n_group"] = 4;  // kept groups (1 x 2 experts) must hold top-k = 4
    j["topk_group"] = 1;
    j["num_experts_per_tok"] = 4;
    expect_error(j, {"topk_group", "num_experts_per_tok"});
}

TEST(ModelConfig, DeepseekToleratedExtras) {
    Json j = deepseek("deepseek_v3", 3);
    j["num_nextn_predict_layers"] = 1;
    ModelConfig mc = parse(j);
    const auto& v3 = moekit::model::arch_for("deepseek_v3");
    EXPECT_EQ(mc.n_mtp_layer, 1);
    EXPECT_EQ(v3.tolerated_extra(mc, "model.layers.3.self_attn.kv_a_proj_with_mqa.weight"), TensorCategory::other);
    EXPECT_EQ(v3.tolerated_extra(mc, "model.layers.3.enorm.weight"), TensorCategory::other);
    EXPECT_EQ(v3.tolerated_extra(mc, "model.layers.3.shared_head.head.weight"), TensorCategory::other);
    EXPECT_FALSE(v3.tolerated_extra(mc, "model.layers.4.enorm.weight"));
    EXPECT_FALSE(v3.tolerated_extra(mc, "model.layers.1.mlp.experts.0.w4.weight"));
    // Not an FP8 checkpoint: scale_inv is unexpected.
    EXPECT_FALSE(v3.tolerated_extra(mc, "model.layers.1.mlp.experts.3.down_proj.weight_scale_inv"));

    j["quantization_config"] = {{"activation_scheme", "dynamic"}, {"fmt", "e4m3"}, {"quant_method", "fp8"},
                                {"weight_block_size", {128, 128}}};
    mc = parse(j);
    EXPECT_EQ(mc.fp8_block, (std::vector<int64_t>{128, 128}));
    EXPECT_EQ(v3.tolerated_extra(mc, "model.layers.1.mlp.experts.3.down_proj.weight_scale_inv"),
              TensorCategory::routed_expert);
    EXPECT_EQ(v3.tolerated_extra(mc, "model.layers.1.self_attn.kv_a_proj_with_mqa.weight_scale_inv"),
              TensorCategory::attention);
    EXPECT_EQ(v3.tolerated_extra(mc, "model.layers.2.mlp.shared_experts.up_proj.weight_scale_inv"),
              TensorCategory::shared_expert);
    EXPECT_EQ(v3.tolerated_extra(mc, "model.layers.0.mlp.down_proj.weight_scale_inv"), TensorCategory::dense_mlp);
    EXPECT_EQ(v3.tolerated_extra(mc, "lm_head.weight_scale_inv"), TensorCategory::lm_head);
    EXPECT_EQ(v3.tolerated_extra(mc, "model.layers.3.mlp.experts.3.down_proj.weight_scale_inv"), TensorCategory::other);
    EXPECT_FALSE(v3.tolerated_extra(mc, "model.layers.0.mlp.experts.3.down_proj.weight_scale_inv"));  // dense layer
    EXPECT_FALSE(v3.tolerated_extra(mc, "model.layers.1.mlp.experts.8.down_proj.weight_scale_inv"));  // E = 8
    EXPECT_FALSE(v3.tolerated_extra(mc, "model.layers.1.mlp.experts.03.down_proj.weight_scale_inv"));
    EXPECT_FALSE(v3.tolerated_extra(mc, "model.layers.1.input_layernorm.weight_scale_inv"));  // 1-D
    EXPECT_FALSE(v3.tolerated_extra(mc, "model.layers.1.mlp.gate.e_score_correction_bias_scale_inv"));
    EXPECT_FALSE(v3.tolerated_extra(mc, "model.layers.1.self_attn.q_a_proj.weight_scale_inv"));  // q_lora_rank null

    EXPECT_EQ(moekit::model::fp8_scale_inv_shape({7168, 2048}, {128, 128}), (std::vector<int64_t>{56, 16}));
    EXPECT_EQ(moekit::model::fp8_scale_inv_shape({576, 7168}, {128, 128}), (std::vector<int64_t>{5, 56}));
    EXPECT_EQ(moekit::model::fp8_scale_inv_shape({1, 129}, {128, 128}), (std::vector<int64_t>{1, 2}));

    // Other architectures tolerate nothing.
    ModelConfig mx = parse(mixtral());
    EXPECT_FALSE(moekit::model::arch_for("mixtral").tolerated_extra(mx, "model.layers.2.input_layernorm.weight"));
}

TEST(ModelConfig, OlmoeNormShapesFollowTransformers) {
    Json j = {{"model_type", "olmoe"}, {"vocab_size", 100}, {"hidden_size", 32}, {"intermediate_size", 16},
              {"num_hidden_layers", 1}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
              {"num_experts", 4}, {"num_experts_per_tok", 2}};
    ModelConfig mc = parse(j);
    for (const auto& t : moekit::model::arch_for("olmoe").expected_tensors(mc)) {
        if (t.name == "model.layers.0.self_attn.q_norm.weight") EXPECT_EQ(t.shape, (std::vector<int64_t>{32}));
        if (t.name == "model.layers.0.self_attn.k_norm.weight") EXPECT_EQ(t.shape, (std::vector<int64_t>{16}));
        if (t.name == "model.layers.0.self_attn.k_proj.weight") EXPECT_EQ(t.shape, (std::vector<int64_t>{16, 32}));
    }
    EXPECT_DOUBLE_EQ(mc.rms_norm_eps, 1e-5);
    EXPECT_DOUBLE_EQ(mc.rope_theta, 10000.0);
    EXPECT_FALSE(mc.routing.norm_topk_prob);
}

// deepseek-ai/DeepSeek-V3's config.json (4.x spelling: rope_theta + rope_scaling yarn, FP8) and
// the tensor inventory of its checkpoint: 91991 tensors, including block-FP8 weight_scale_inv
// for every linear except embed/lm_head/router and the MTP layer model.layers.61.*.
TEST(ModelConfig, DeepseekV3RealCheckpointInventory) {
    Json j = {{"model_type", "deepseek_v3"}, {"vocab_size", 129280}, {"hidden_size", 7168},
              {"intermediate_size", 18432}, {"moe_intermediate_size", 2048}, {"num_hidden_layers", 61},
              {"num_attention_heads", 128}, {"num_key_value_heads", 128}, {"n_shared_experts", 1},
              {"n_routed_experts", 256}, {"routed_scaling_factor", 2.5}, {"kv_lora_rank", 512},
              {"q_lora_rank", 1536}, {"qk_rope_head_dim", 64}, {"v_head_dim", 128}, {"qk_nope_head_dim", 128},
              {"topk_method", "noaux_tc"}, {"n_group", 8}, {"topk_group", 4}, {"num_experts_per_tok", 8},
              {"moe_layer_freq", 1}, {"first_k_dense_replace", 3}, {"norm_topk_prob", true},
              {"scoring_func", "sigmoid"}, {"rope_theta", 10000}, {"rms_norm_eps", 1e-06},
              {"rope_scaling", {{"beta_fast", 32}, {"beta_slow", 1}, {"factor", 40}, {"mscale", 1.0},
                                {"mscale_all_dim", 1.0}, {"original_max_position_embeddings", 4096}, {"type", "yarn"}}},
              {"num_nextn_predict_layers", 1}, {"tie_word_embeddings", false},
              {"quantization_config", {{"activation_scheme", "dynamic"}, {"fmt", "e4m3"}, {"quant_method", "fp8"},
                                       {"weight_block_size", {128, 128}}}}};
    ModelConfig mc = parse(j);
    const auto& arch = moekit::model::arch_for("deepseek_v3");
    EXPECT_EQ(mc.n_moe_layer(), 58);
    EXPECT_EQ(mc.head_dim, 192);
    EXPECT_DOUBLE_EQ(mc.rope_theta, 10000.0);
    auto expected = arch.expected_tensors(mc);
    std::map<std::string, std::vector<int64_t>> shapes;
    for (const auto& t : expected) shapes[t.name] = t.shape;
    // Shapes as the checkpoint stores them.
    EXPECT_EQ(shapes["model.layers.0.self_attn.q_a_proj.weight"], (std::vector<int64_t>{1536, 7168}));
    EXPECT_EQ(shapes["model.layers.0.self_attn.q_b_proj.weight"], (std::vector<int64_t>{24576, 1536}));
    EXPECT_EQ(shapes["model.layers.0.self_attn.kv_a_proj_with_mqa.weight"], (std::vector<int64_t>{576, 7168}));
    EXPECT_EQ(shapes["model.layers.0.self_attn.kv_b_proj.weight"], (std::vector<int64_t>{32768, 512}));
    EXPECT_EQ(shapes["model.layers.0.self_attn.o_proj.weight"], (std::vector<int64_t>{7168, 16384}));
    EXPECT_EQ(shapes["model.layers.0.mlp.down_proj.weight"], (std::vector<int64_t>{7168, 18432}));
    EXPECT_EQ(moekit::model::fp8_scale_inv_shape(shapes["model.layers.0.self_attn.q_b_proj.weight"], mc.fp8_block),
              (std::vector<int64_t>{192, 12}));
    EXPECT_EQ(moekit::model::fp8_scale_inv_shape(shapes["model.layers.0.self_attn.kv_a_proj_with_mqa.weight"], mc.fp8_block),
              (std::vector<int64_t>{5, 56}));

    size_t total = expected.size();
    size_t tolerated = 0;
    std::vector<std::string> extras;
    for (const auto& t : expected) {
        bool quantized = t.shape.size() == 2 && t.category != TensorCategory::embedding &&
                         t.category != TensorCategory::lm_head && t.category != TensorCategory::router;
        if (quantized) {
            std::string scale = t.name.substr(0, t.name.size() - std::string(".weight").size()) + ".weight_scale_inv";
            EXPECT_EQ(arch.tolerated_extra(mc, scale), t.category) << scale;
            extras.push_back(scale);
        }
    }
    // The MTP layer: a full MoE decoder layer (with its scales) plus its own embedding and head.
    const std::string last = "model.layers.60.";
    std::vector<std::string> mtp;
    for (const auto& t : expected)
        if (t.name.starts_with(last)) mtp.push_back("model.layers.61." + t.name.substr(last.size()));
    for (const auto& s : extras)
        if (s.starts_with(last)) mtp.push_back("model.layers.61." + s.substr(last.size()));
    for (const char* n : {"embed_tokens.weight", "enorm.weight", "hnorm.weight", "eh_proj.weight",
                          "shared_head.norm.weight", "shared_head.head.weight"})
        mtp.push_back(std::string("model.layers.61.") + n);
    for (const auto& n : mtp) EXPECT_EQ(arch.tolerated_extra(mc, n), TensorCategory::other) << n;
    tolerated = extras.size() + mtp.size();
    EXPECT_EQ(total + tolerated, 91991u);
    EXPECT_FALSE(arch.tolerated_extra(mc, "model.layers.62.enorm.weight"));
}

}  // namespace
