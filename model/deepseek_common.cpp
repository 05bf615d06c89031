#include "model/deepseek_common.h"

#include <charconv>

namespace moekit::model {

using namespace detail;

namespace {

constexpr std::string_view kScaleInvSuffix = ".weight_scale_inv";

// Optional positive size where JSON null means "feature off" (q_lora_rank: null -> plain q_proj)
// and absence means the transformers default.
int64_t nullable_rank(const io::HfConfig& cfg, std::string_view key, int64_t absent_default) {
    const auto& json = cfg.json();
    auto it = json.find(std::string(key));
    if (it == json.end()) return absent_default;
    if (it->is_null()) return 0;
    int64_t value = require_int(cfg, key);
    check_positive(cfg, key, value);
    return value;
}

}  // namespace

ModelConfig DeepseekArchBase::parse_config(const io::HfConfig& cfg) const {
    ModelConfig mc;
    read_common(cfg, mc, /*default_eps=*/1e-6, /*default_theta=*/10000.0);
    mc.model_type = std::string(model_type());
    // MLA: every head gets its own keys and values from kv_b_proj; num_key_value_heads is not
    // used for shapes. config "head_dim" (5.x writes qk_rope_head_dim there) is ignored too.
    mc.n_head_kv = mc.n_head;
    mc.mla.q_lora_rank = nullable_rank(cfg, "q_lora_rank", 1536);
    mc.mla.kv_lora_rank = require_int(cfg, "kv_lora_rank");
    mc.mla.qk_nope_head_dim = require_int(cfg, "qk_nope_head_dim");
    mc.mla.qk_rope_head_dim = require_int(cfg, "qk_rope_head_dim");
    mc.mla.v_head_dim = require_int(cfg, "v_head_dim");
    check_positive(cfg, "kv_lora_rank", mc.mla.kv_lora_rank);
    check_non_negative(cfg, "qk_nope_head_dim", mc.mla.qk_nope_head_dim);
    check_positive(cfg, "qk_rope_head_dim", mc.mla.qk_rope_head_dim);
    check_positive(cfg, "v_head_dim", mc.mla.v_head_dim);
    if (mc.mla.qk_rope_head_dim % 2 != 0)
        config_error(cfg, "invalid qk_rope_head_dim = " + std::to_string(mc.mla.qk_rope_head_dim) + " (must be even)");
    mc.head_dim = mc.mla.qk_nope_head_dim + mc.mla.qk_rope_head_dim;

    mc.n_expert = require_int(cfg, "n_routed_experts");
    check_positive(cfg, "n_routed_experts", mc.n_expert);
    mc.n_expert_used = require_int(cfg, "num_experts_per_tok");
    check_top_k(cfg, mc, "n_routed_experts");
    mc.d_ff_expert = require_int(cfg, "moe_intermediate_size");
    check_positive(cfg, "moe_intermediate_size", mc.d_ff_expert);
    mc.n_shared_expert = int_or(cfg, "n_shared_experts", has_correction_bias() ? 1 : 2);
    check_non_negative(cfg, "n_shared_experts", mc.n_shared_expert);
    mc.d_ff_shared = mc.n_shared_expert * mc.d_ff_expert;
    mc.attention_bias = bool_or(cfg, "attention_bias", false);

    int64_t first_dense = int_or(cfg, "first_k_dense_replace", has_correction_bias() ? 3 : 0);
    check_non_negative(cfg, "first_k_dense_replace", first_dense);
    if (first_dense > mc.n_layer)
        config_error(cfg, "invalid first_k_dense_replace = " + std::to_string(first_dense) +
                              " (must be <= num_hidden_layers = " + std::to_string(mc.n_layer) + ")");
    parse_version(cfg, mc, first_dense);
    if (mc.n_moe_layer() < mc.n_layer) {
        mc.d_ff = require_int(cfg, "intermediate_size");
        check_positive(cfg, "intermediate_size", mc.d_ff);
    }
    return mc;
}

void DeepseekArchBase::layer_tensors(const ModelConfig& mc, int64_t il, bool with_experts,
                                     std::vector<ExpectedTensor>& out) const {
    TensorList t(out);
    const MlaSpec& m = mc.mla;
    const std::string p = layer_prefix(il);
    const std::string a = p + "self_attn.";
    const int64_t qk_head = m.qk_nope_head_dim + m.qk_rope_head_dim;
    t.layer_norms(mc, il);
    if (m.q_lora_rank == 0) {
        t.add(a + "q_proj.weight", {mc.n_head * qk_head, mc.d_model}, TensorCategory::attention, il);
    } else {
        t.add(a + "q_a_proj.weight", {m.q_lora_rank, mc.d_model}, TensorCategory::attention, il);
        if (mc.attention_bias) t.add(a + "q_a_proj.bias", {m.q_lora_rank}, TensorCategory::attention, il);
        t.add(a + "q_a_layernorm.weight", {m.q_lora_rank}, TensorCategory::norm, il);
        t.add(a + "q_b_proj.weight", {mc.n_head * qk_head, m.q_lora_rank}, TensorCategory::attention, il);
    }
    t.add(a + "kv_a_proj_with_mqa.weight", {m.kv_lora_rank + m.qk_rope_head_dim, mc.d_model}, TensorCategory::attention, il);
    if (mc.attention_bias)
        t.add(a + "kv_a_proj_with_mqa.bias", {m.kv_lora_rank + m.qk_rope_head_dim}, TensorCategory::attention, il);
    t.add(a + "kv_a_layernorm.weight", {m.kv_lora_rank}, TensorCategory::norm, il);
    t.add(a + "kv_b_proj.weight", {mc.n_head * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank},
          TensorCategory::attention, il);
    t.add(a + "o_proj.weight", {mc.d_model, mc.n_head * m.v_head_dim}, TensorCategory::attention, il);
    if (mc.attention_bias) t.add(a + "o_proj.bias", {mc.d_model}, TensorCategory::attention, il);

    const std::string mlp = p + "mlp.";
    if (!mc.is_moe_layer[static_cast<size_t>(il)]) {
        t.swiglu(mlp, mc.d_model, mc.d_ff, TensorCategory::dense_mlp, il, -1, mc.mlp_bias);
        return;
    }
    t.add(router_weight(il), {mc.n_expert_at(il), mc.d_model}, TensorCategory::router, il);
    if (has_correction_bias()) t.add(mlp + "gate.e_score_correction_bias", {mc.n_expert_at(il)}, TensorCategory::router, il);
    if (with_experts)
        for (int64_t ie = 0; ie < mc.n_expert_at(il); ++ie)
            t.swiglu(mlp + "experts." + std::to_string(ie) + ".", mc.d_model, mc.d_ff_expert,
                     TensorCategory::routed_expert, il, ie);
    if (mc.n_shared_expert > 0)
        t.swiglu(mlp + "shared_experts.", mc.d_model, mc.d_ff_shared, TensorCategory::shared_expert, il, -1,
                 mc.mlp_bias);
}

std::vector<ExpectedTensor> DeepseekArchBase::expected_tensors(const ModelConfig& mc) const {
    std::vector<ExpectedTensor> out;
    TensorList(out).globals(mc);
    for (int64_t il = 0; il < mc.n_layer; ++il) layer_tensors(mc, il, true, out);
    return out;
}

std::optional<TensorCategory> DeepseekArchBase::tolerated_extra(const ModelConfig& mc, std::string_view name) const {
    std::optional<LayerName> layer = parse_layer_name(name);
    if (layer && layer->il >= mc.n_layer && layer->il < mc.n_layer + mc.n_mtp_layer) return TensorCategory::other;
    if (mc.fp8_block.empty() || !name.ends_with(kScaleInvSuffix)) return std::nullopt;

    std::string weight = std::string(name.substr(0, name.size() - kScaleInvSuffix.size())) + ".weight";
    std::vector<ExpectedTensor> candidates;
    if (!layer) {
        TensorList(candidates).globals(mc);
    } else {
        if (layer->il >= mc.n_layer) return std::nullopt;
        // Routed experts are recognized by structure (a layer can hold thousands of them).
        constexpr std::string_view kExperts = "mlp.experts.";
        std::string_view rest = layer->rest;
        if (rest.starts_with(kExperts)) {
            if (!mc.is_moe_layer[static_cast<size_t>(layer->il)]) return std::nullopt;
            rest.remove_prefix(kExperts.size());
            int64_t ie = -1;
            auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), ie);
            if (ec != std::errc() || ie < 0 || ie >= mc.n_expert_at(layer->il)) return std::nullopt;
            std::string_view proj(ptr, static_cast<size_t>(rest.data() + rest.size() - ptr));
            if (proj == ".gate_proj.weight_scale_inv" || proj == ".up_proj.weight_scale_inv" ||
                proj == ".down_proj.weight_scale_inv") {
                if (std::to_string(ie) != rest.substr(0, static_cast<size_t>(ptr - rest.data()))) return std::nullopt;
                return TensorCategory::routed_expert;
            }
            return std::nullopt;
        }
        layer_tensors(mc, layer->il, false, candidates);
    }
    for (const ExpectedTensor& t : candidates)
        if (t.name == weight && t.shape.size() == 2) return t.category;
    return std::nullopt;
}

namespace detail {

void check_groups(const io::HfConfig& cfg, const ModelConfig& mc) {
    const RoutingSpec& r = mc.routing;
    check_positive(cfg, "n_group", r.n_group);
    if (r.topk_group <= 0 || r.topk_group > r.n_group)
        config_error(cfg, "invalid topk_group = " + std::to_string(r.topk_group) + " (must be in 1..n_group = " +
                              std::to_string(r.n_group) + ")");
    if (mc.n_expert % r.n_group != 0)
        config_error(cfg, "invalid n_group = " + std::to_string(r.n_group) + " (n_routed_experts = " +
                              std::to_string(mc.n_expert) + " must be divisible by it)");
    if (r.topk_group * (mc.n_expert / r.n_group) < mc.n_expert_used)
        config_error(cfg, "invalid topk_group = " + std::to_string(r.topk_group) + " (the kept groups hold " +
                              std::to_string(r.topk_group * (mc.n_expert / r.n_group)) +
                              " experts, fewer than num_experts_per_tok = " + std::to_string(mc.n_expert_used) + ")");
}

}  // namespace detail

std::vector<int64_t> fp8_scale_inv_shape(const std::vector<int64_t>& weight_shape, const std::vector<int64_t>& block) {
    if (weight_shape.size() != 2 || block.size() != 2 || block[0] <= 0 || block[1] <= 0) return {};
    return {(weight_shape[0] + block[0] - 1) / block[0], (weight_shape[1] + block[1] - 1) / block[1]};
}

}  // namespace moekit::model
