// ArchSpec: everything moekit knows about one MoE architecture — how to read its config, which
// tensors a checkpoint must hold (names, shapes, what each is for), which layers are MoE, and
// how its router selects and weights experts. One architecture per file (model/arch_*.cpp);
// `arch_for(model_type)` is the registry.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/hf_config.h"

namespace moekit::model {

enum class TensorCategory { embedding, attention, router, routed_expert, shared_expert, dense_mlp, norm, lm_head, other };
std::string_view category_name(TensorCategory category);

enum class Scoring { softmax, sigmoid };

// How the router turns logits z into the selected set S and gate weights g (METHODS.md §0).
struct RoutingSpec {
    Scoring scoring = Scoring::softmax;
    bool norm_topk_prob = false;           // renormalize g over the selected experts
    double routed_scaling_factor = 1.0;    // g *= this (DeepSeek)
    int64_t n_group = 1;                   // group-limited selection when topk_group < n_group
    int64_t topk_group = 1;
    bool correction_bias = false;          // DeepSeek-V3 e_score_correction_bias used in selection
    std::string topk_method = "greedy";    // as the config names it
    bool shared_expert_gate = false;       // Qwen2-MoE: shared expert scaled by sigmoid(gate . x)
    std::string describe() const;          // one line for humans, e.g. "softmax -> top-8 -> renormalize"
};

// Multi-head latent attention dimensions (DeepSeek-V2/V3); all zero for ordinary attention.
struct MlaSpec {
    int64_t q_lora_rank = 0;               // 0: plain q_proj
    int64_t kv_lora_rank = 0;
    int64_t qk_nope_head_dim = 0;
    int64_t qk_rope_head_dim = 0;
    int64_t v_head_dim = 0;
};

struct ModelConfig {
    std::string model_type;
    int64_t n_layer = 0;
    int64_t d_model = 0;
    int64_t n_head = 0;
    int64_t n_head_kv = 0;
    int64_t head_dim = 0;
    int64_t vocab_size = 0;
    int64_t d_ff = 0;                      // dense MLP intermediate size (dense layers), 0 if none
    int64_t d_ff_expert = 0;               // routed expert intermediate size
    int64_t n_expert = 0;                  // routed experts per MoE layer (the largest, when they differ)
    int64_t n_expert_used = 0;             // top-k
    int64_t n_shared_expert = 0;           // shared experts per MoE layer (0 if none)
    int64_t d_ff_shared = 0;               // intermediate size of the shared expert block (total)
    std::vector<bool> is_moe_layer;        // size n_layer
    bool tie_word_embeddings = false;
    bool attention_bias = false;           // q/k/v biases (Qwen2-MoE)
    std::string qk_norm = "none";          // "none" | "per_head" (Qwen3) | "full" (OLMoE)
    double rms_norm_eps = 1e-6;
    double rope_theta = 10000.0;
    std::string hidden_act = "silu";
    MlaSpec mla;
    RoutingSpec routing;
    bool mlp_bias = false;                 // DeepSeek-V2 mlp_bias: dense and shared MLPs carry biases
    int64_t n_mtp_layer = 0;               // DeepSeek-V3 multi-token-prediction layers stored after
                                           // the decoder layers (model.layers.{n_layer + j}); not run
    std::vector<int64_t> fp8_block;        // block-FP8 checkpoint (quantization_config fmt e4m3):
                                           // weight_block_size, e.g. {128, 128}; empty otherwise

    // Routed experts of each decoder layer when MoE layers differ (0 for dense layers), from
    // moekit's config extension "moekit_experts_per_layer" (written by non-uniform pruning; see
    // docs/ARCHITECTURE.md; transformers cannot load such checkpoints). Empty when uniform.
    std::vector<int64_t> n_expert_layer;

    // Routed experts stored as low-rank factors (`moekit svd --format factored`, config field
    // "moekit_lowrank" = kLowRankKey): each projection W is <proj>.lowrank_a [m, r] and
    // <proj>.lowrank_b [r, n] with W ≈ A B (+ the per-layer shared base
    // <experts prefix>base.<proj>.weight when lowrank_base). transformers cannot load these.
    bool lowrank_factored = false;
    bool lowrank_base = false;

    int64_t n_moe_layer() const;
    // Routed experts of decoder layer il (n_expert unless n_expert_layer says otherwise).
    int64_t n_expert_at(int64_t il) const;
};

// Name of the per-layer expert-count extension field in config.json.
inline constexpr std::string_view kExpertsPerLayerKey = "moekit_experts_per_layer";
// Name of the low-rank expert extension field in config.json (svd/edit.h documents it).
inline constexpr std::string_view kLowRankKey = "moekit_lowrank";

// Low-rank experts (kLowRankKey): "<...>.gate_proj.weight" -> "<...>.gate_proj.lowrank_a" (which
// 'a', [m, r]) or ".lowrank_b" ('b', [r, n]).
std::string lowrank_tensor(const std::string& weight_name, char which);

// One tensor the checkpoint must contain for this config.
struct ExpectedTensor {
    std::string name;
    std::vector<int64_t> shape;
    TensorCategory category;
    int64_t layer = -1;                    // -1 outside decoder layers
    int64_t expert = -1;                   // routed expert index, -1 otherwise
};

// The three projections of one routed expert (SwiGLU: down(silu(gate x) * up x)).
struct ExpertTensorNames {
    std::string gate;
    std::string up;
    std::string down;
};

class ArchSpec {
public:
    virtual ~ArchSpec() = default;
    virtual std::string_view model_type() const = 0;    // config.json "model_type"
    virtual std::string_view display_name() const = 0;  // "Mixtral"
    // Reads the fields moekit needs; throws moekit::Error naming a missing/invalid field.
    // Accepts both the transformers 4.x and 5.x spellings (e.g. rope_theta vs rope_parameters).
    virtual ModelConfig parse_config(const io::HfConfig& config) const = 0;
    virtual std::vector<ExpectedTensor> expected_tensors(const ModelConfig& config) const = 0;
    // Defaults: the naming most architectures share, "model.layers.{il}.mlp.experts.{ie}.
    // {gate,up,down}_proj.weight" and "model.layers.{il}.mlp.gate.weight"; Mixtral overrides.
    virtual ExpertTensorNames expert_tensors(int64_t il, int64_t ie) const;
    virtual std::string router_weight(int64_t il) const;
    // config.json key that holds the routed-expert count (edited by prune/merge).
    virtual std::string_view expert_count_key() const = 0;
    // Tensors a real checkpoint may carry that transformers ignores or that are optional
    // (DeepSeek-V3 multi-token-prediction layers, FP8 weight_scale_inv). Returns the category
    // to count them under, or nullopt if the name is simply unexpected.
    virtual std::optional<TensorCategory> tolerated_extra(const ModelConfig& config, std::string_view name) const;
};

// The prefix every tensor of routed expert ie of layer il starts with:
// "model.layers.{il}.mlp.experts.{ie}." (Mixtral: "...block_sparse_moe.experts.{ie}."), so FP8
// scales and biases go with the expert when prune or merge drop or rename it.
std::string expert_prefix(const ArchSpec& arch, int64_t il, int64_t ie);

// The registry. Throws moekit::Error listing the supported model types when unknown.
const ArchSpec& arch_for(std::string_view model_type);
std::vector<std::string_view> supported_model_types();

// Convenience: reads config.json's model_type, finds the ArchSpec and parses (including the
// per-layer expert-count extension, kExpertsPerLayerKey).
struct ResolvedConfig {
    const ArchSpec* arch;
    ModelConfig config;
};
ResolvedConfig resolve_config(const io::HfConfig& config);

// Low-rank d2-moe checkpoints: the shared base of layer il's experts, named like expert 0's
// tensors with ".experts.0." replaced by ".experts.base." (e.g.
// model.layers.1.mlp.experts.base.gate_proj.weight).
ExpertTensorNames lowrank_base_tensors(const ArchSpec& arch, int64_t il);

}  // namespace moekit::model
