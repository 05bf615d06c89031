// Helpers shared by the ArchSpec implementations (model/arch_*.cpp): typed config reads whose
// errors name the field and the config file, validation, and builders for the tensor groups
// every architecture has (embeddings, GQA attention, SwiGLU MLPs, routed experts).
// Internal to model/: not part of the public interface in model/arch.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/hf_config.h"
#include "model/arch.h"

namespace moekit::model {

// The registry's members (one per arch_*.cpp).
const ArchSpec& mixtral_arch();
const ArchSpec& qwen2_moe_arch();
const ArchSpec& qwen3_moe_arch();
const ArchSpec& olmoe_arch();
const ArchSpec& deepseek_v2_arch();
const ArchSpec& deepseek_v3_arch();

namespace detail {

// --- config reads -------------------------------------------------------------------------
// "[model] <source>: <what>" — every config error goes through this.
[[noreturn]] void config_error(const io::HfConfig& cfg, const std::string& what);

// Present and not null.
bool has(const io::HfConfig& cfg, std::string_view key);
// Integer fields (an integral JSON float such as 8.0 is accepted; bool and strings are not).
int64_t require_int(const io::HfConfig& cfg, std::string_view key);
int64_t int_or(const io::HfConfig& cfg, std::string_view key, int64_t fallback);
// The first of `keys` that is present (aliases such as num_experts / num_local_experts).
int64_t require_int_any(const io::HfConfig& cfg, std::initializer_list<std::string_view> keys);
double double_or(const io::HfConfig& cfg, std::string_view key, double fallback);
bool bool_or(const io::HfConfig& cfg, std::string_view key, bool fallback);
std::string string_or(const io::HfConfig& cfg, std::string_view key, std::string fallback);
// A list of integers; empty when absent or null.
std::vector<int64_t> int_list_or_empty(const io::HfConfig& cfg, std::string_view key);

// rope_parameters.rope_theta (5.x), else top-level rope_theta (4.x), else `fallback`
// (the config class's default_theta).
double rope_theta(const io::HfConfig& cfg, double fallback);

// --- validation ----------------------------------------------------------------------------
void check_positive(const io::HfConfig& cfg, std::string_view key, int64_t value);
void check_non_negative(const io::HfConfig& cfg, std::string_view key, int64_t value);
// The fields every architecture shares: layers, width, heads (GQA divisibility), vocab.
void read_common(const io::HfConfig& cfg, ModelConfig& mc, double default_eps, double default_theta);
// top-k in [1, n_expert].
void check_top_k(const io::HfConfig& cfg, const ModelConfig& mc, std::string_view count_key);
// n_expert from the first of `count_keys` present (errors name the first key) and
// n_expert_used from num_experts_per_tok, both validated.
void read_routed_experts(const io::HfConfig& cfg, ModelConfig& mc, std::initializer_list<std::string_view> count_keys);
// moekit_experts_per_layer (kExpertsPerLayerKey), when present: one count per decoder layer,
// 0 for dense layers, each MoE layer's in [num_experts_per_tok, n_expert] with the largest equal
// to the config's expert count, and group-limited routing's divisibility per layer. Fills
// mc.n_expert_layer unless every MoE layer has n_expert.
void read_experts_per_layer(const io::HfConfig& cfg, ModelConfig& mc);
// moekit_lowrank (kLowRankKey), when present: {"format": "factored", "base": bool, ...} sets
// mc.lowrank_factored / lowrank_base; any other format is refused.
void read_lowrank(const io::HfConfig& cfg, ModelConfig& mc);
// block-FP8 quantization_config (fmt e4m3 / weight_block_size) → mc.fp8_block.
void read_fp8(const io::HfConfig& cfg, ModelConfig& mc);

// --- tensor builders -----------------------------------------------------------------------
std::string layer_prefix(int64_t il);  // "model.layers.{il}."

class TensorList {
public:
    explicit TensorList(std::vector<ExpectedTensor>& out) : out_(out) {}
    void add(std::string name, std::vector<int64_t> shape, TensorCategory category, int64_t layer = -1,
             int64_t expert = -1) {
        out_.push_back({std::move(name), std::move(shape), category, layer, expert});
    }
    // embed_tokens, final norm, lm_head (unless tied).
    void globals(const ModelConfig& mc);
    // input_layernorm + post_attention_layernorm.
    void layer_norms(const ModelConfig& mc, int64_t il);
    // q/k/v/o with mc.head_dim (GQA); biases as asked.
    void gqa_attention(const ModelConfig& mc, int64_t il, bool qkv_bias, bool o_bias);
    // {prefix}{gate,up,down}_proj.weight of a SwiGLU MLP of intermediate size d_ff.
    void swiglu(const std::string& prefix, int64_t d_model, int64_t d_ff, TensorCategory category, int64_t il,
                int64_t ie = -1, bool bias = false);

private:
    std::vector<ExpectedTensor>& out_;
};

// Qwen2-MoE / Qwen3-MoE rule: MoE iff idx ∉ mlp_only_layers, n_expert > 0 and
// (idx + 1) % decoder_sparse_step == 0. Validates step > 0 and the indices' range.
std::vector<bool> qwen_moe_layers(const io::HfConfig& cfg, int64_t n_layer, int64_t n_expert);

// Parses "model.layers.{il}.<rest>"; nullopt when `name` is not of that form.
struct LayerName {
    int64_t il;
    std::string_view rest;
};
std::optional<LayerName> parse_layer_name(std::string_view name);

}  // namespace detail
}  // namespace moekit::model
