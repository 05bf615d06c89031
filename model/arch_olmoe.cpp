// OLMoE (transformers models/olmoe; OLMoE-1B-7B): every layer is MoE; router `mlp.gate`,
// experts `mlp.experts.{e}.{gate,up,down}_proj` of intermediate_size (there is no
// moe_intermediate_size). Attention applies RMSNorm over the whole projection before the head
// split: `q_norm` [hidden_size], `k_norm` [(hidden // heads) * kv_heads] (sizes exactly as
// OlmoeAttention builds them); biases on q/k/v/o only when attention_bias; optional clip_qkv.
#include "model/arch_common.h"

namespace moekit::model {

namespace {

using namespace detail;

class OlmoeArch final : public ArchSpec {
public:
    std::string_view model_type() const override { return "olmoe"; }
    std::string_view display_name() const override { return "OLMoE"; }
    std::string_view expert_count_key() const override { return "num_experts"; }

    ModelConfig parse_config(const io::HfConfig& cfg) const override {
        ModelConfig mc;
        read_common(cfg, mc, /*default_eps=*/1e-5, /*default_theta=*/10000.0);
        mc.model_type = "olmoe";
        mc.head_dim = int_or(cfg, "head_dim", mc.d_model / mc.n_head);
        check_positive(cfg, "head_dim", mc.head_dim);
        read_routed_experts(cfg, mc, {"num_experts", "num_local_experts"});
        mc.d_ff_expert = require_int(cfg, "intermediate_size");
        check_positive(cfg, "intermediate_size", mc.d_ff_expert);
        mc.is_moe_layer.assign(static_cast<size_t>(mc.n_layer), true);
        mc.attention_bias = bool_or(cfg, "attention_bias", false);
        mc.qk_norm = "full";
        mc.routing.scoring = Scoring::softmax;
        mc.routing.norm_topk_prob = bool_or(cfg, "norm_topk_prob", false);
        return mc;
    }

    std::vector<ExpectedTensor> expected_tensors(const ModelConfig& mc) const override {
        std::vector<ExpectedTensor> out;
        TensorList t(out);
        t.globals(mc);
        for (int64_t il = 0; il < mc.n_layer; ++il) {
            std::string p = layer_prefix(il);
            t.layer_norms(mc, il);
            t.gqa_attention(mc, il, mc.attention_bias, mc.attention_bias);
            t.add(p + "self_attn.q_norm.weight", {mc.d_model}, TensorCategory::norm, il);
            t.add(p + "self_attn.k_norm.weight", {(mc.d_model / mc.n_head) * mc.n_head_kv}, TensorCategory::norm, il);
            t.add(router_weight(il), {mc.n_expert_at(il), mc.d_model}, TensorCategory::router, il);
            for (int64_t ie = 0; ie < mc.n_expert_at(il); ++ie)
                t.swiglu(p + "mlp.experts." + std::to_string(ie) + ".", mc.d_model, mc.d_ff_expert,
                         TensorCategory::routed_expert, il, ie);
        }
        return out;
    }
};

}  // namespace

const ArchSpec& olmoe_arch() {
    static const OlmoeArch arch;
    return arch;
}

}  // namespace moekit::model
