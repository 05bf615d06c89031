// Qwen3-MoE (transformers models/qwen3_moe; Qwen3-30B-A3B, Qwen3-235B-A22B): like Qwen2-MoE
// without the shared expert; attention has per-head RMSNorm `q_norm`/`k_norm` of size
// head_dim applied before RoPE, and biases on q/k/v/o only when attention_bias. head_dim comes
// from the config (default hidden // heads). The expert count is `num_experts` in hub configs;
// transformers 5.x writes it as `num_local_experts` (attribute_map): both are accepted.
#include "model/arch_common.h"

namespace moekit::model {

namespace {

using namespace detail;

class Qwen3MoeArch final : public ArchSpec {
public:
    std::string_view model_type() const override { return "qwen3_moe"; }
    std::string_view display_name() const override { return "Qwen3-MoE"; }
    std::string_view expert_count_key() const override { return "num_experts"; }

    ModelConfig parse_config(const io::HfConfig& cfg) const override {
        ModelConfig mc;
        read_common(cfg, mc, /*default_eps=*/1e-6, /*default_theta=*/10000.0);
        mc.model_type = "qwen3_moe";
        mc.head_dim = int_or(cfg, "head_dim", mc.d_model / mc.n_head);
        check_positive(cfg, "head_dim", mc.head_dim);
        read_routed_experts(cfg, mc, {"num_experts", "num_local_experts"});
        mc.d_ff_expert = require_int(cfg, "moe_intermediate_size");
        check_positive(cfg, "moe_intermediate_size", mc.d_ff_expert);
        mc.is_moe_layer = qwen_moe_layers(cfg, mc.n_layer, mc.n_expert);
        if (mc.n_moe_layer() < mc.n_layer) {
            mc.d_ff = require_int(cfg, "intermediate_size");
            check_positive(cfg, "intermediate_size", mc.d_ff);
        }
        mc.attention_bias = bool_or(cfg, "attention_bias", false);
        mc.qk_norm = "per_head";
        mc.routing.scoring = Scoring::softmax;
        mc.routing.norm_topk_prob = bool_or(cfg, "norm_topk_prob", false);
        return mc;
    }

    std::vector<ExpectedTensor> expected_tensors(const ModelConfig& mc) const override {
        std::vector<ExpectedTensor> out;
        TensorList t(out);
        t.globals(mc);
        for (int64_t il = 0; il < mc.n_layer; ++il) {
            std::string p = layer_prefix(il) + "mlp.";
            t.layer_norms(mc, il);
            t.gqa_attention(mc, il, mc.attention_bias, mc.attention_bias);
            t.add(layer_prefix(il) + "self_attn.q_norm.weight", {mc.head_dim}, TensorCategory::norm, il);
            t.add(layer_prefix(il) + "self_attn.k_norm.weight", {mc.head_dim}, TensorCategory::norm, il);
            if (!mc.is_moe_layer[static_cast<size_t>(il)]) {
                t.swiglu(p, mc.d_model, mc.d_ff, TensorCategory::dense_mlp, il);
                continue;
            }
            t.add(router_weight(il), {mc.n_expert_at(il), mc.d_model}, TensorCategory::router, il);
            for (int64_t ie = 0; ie < mc.n_expert_at(il); ++ie)
                t.swiglu(p + "experts." + std::to_string(ie) + ".", mc.d_model, mc.d_ff_expert,
                         TensorCategory::routed_expert, il, ie);
        }
        return out;
    }
};

}  // namespace

const ArchSpec& qwen3_moe_arch() {
    static const Qwen3MoeArch arch;
    return arch;
}

}  // namespace moekit::model
