// Qwen2-MoE (transformers models/qwen2_moe; Qwen1.5-MoE, Qwen2-57B-A14B): sparse layers have
// a router `mlp.gate`, routed experts `mlp.experts.{e}.{gate,up,down}_proj`
// (moe_intermediate_size) and one shared expert `mlp.shared_expert.*`
// (shared_expert_intermediate_size) scaled by sigmoid(`mlp.shared_expert_gate` . x).
// Layer idx is MoE iff idx ∉ mlp_only_layers, num_experts > 0 and (idx+1) % decoder_sparse_step
// == 0; other layers are a dense MLP of intermediate_size. q/k/v carry biases (qkv_bias, 5.x;
// always in 4.x), o_proj does not.
#include "model/arch_common.h"

namespace moekit::model {

namespace {

using namespace detail;

class Qwen2MoeArch final : public ArchSpec {
public:
    std::string_view model_type() const override { return "qwen2_moe"; }
    std::string_view display_name() const override { return "Qwen2-MoE"; }
    std::string_view expert_count_key() const override { return "num_experts"; }

    ModelConfig parse_config(const io::HfConfig& cfg) const override {
        ModelConfig mc;
        read_common(cfg, mc, /*default_eps=*/1e-6, /*default_theta=*/10000.0);
        mc.model_type = "qwen2_moe";
        // Qwen2MoeAttention: head_dim = getattr(config, "head_dim", hidden // heads).
        mc.head_dim = int_or(cfg, "head_dim", mc.d_model / mc.n_head);
        check_positive(cfg, "head_dim", mc.head_dim);
        read_routed_experts(cfg, mc, {"num_experts", "num_local_experts"});
        mc.d_ff_expert = require_int(cfg, "moe_intermediate_size");
        check_positive(cfg, "moe_intermediate_size", mc.d_ff_expert);
        mc.n_shared_expert = 1;
        mc.d_ff_shared = require_int(cfg, "shared_expert_intermediate_size");
        check_positive(cfg, "shared_expert_intermediate_size", mc.d_ff_shared);
        mc.is_moe_layer = qwen_moe_layers(cfg, mc.n_layer, mc.n_expert);
        if (mc.n_moe_layer() < mc.n_layer) {
            mc.d_ff = require_int(cfg, "intermediate_size");
            check_positive(cfg, "intermediate_size", mc.d_ff);
        }
        mc.attention_bias = bool_or(cfg, "qkv_bias", true);
        mc.routing.scoring = Scoring::softmax;
        mc.routing.norm_topk_prob = bool_or(cfg, "norm_topk_prob", false);
        mc.routing.shared_expert_gate = true;
        return mc;
    }

    std::vector<ExpectedTensor> expected_tensors(const ModelConfig& mc) const override {
        std::vector<ExpectedTensor> out;
        TensorList t(out);
        t.globals(mc);
        for (int64_t il = 0; il < mc.n_layer; ++il) {
            std::string p = layer_prefix(il) + "mlp.";
            t.layer_norms(mc, il);
            t.gqa_attention(mc, il, mc.attention_bias, false);
            if (!mc.is_moe_layer[static_cast<size_t>(il)]) {
                t.swiglu(p, mc.d_model, mc.d_ff, TensorCategory::dense_mlp, il);
                continue;
            }
            t.add(router_weight(il), {mc.n_expert_at(il), mc.d_model}, TensorCategory::router, il);
            for (int64_t ie = 0; ie < mc.n_expert_at(il); ++ie)
                t.swiglu(p + "experts." + std::to_string(ie) + ".", mc.d_model, mc.d_ff_expert,
                         TensorCategory::routed_expert, il, ie);
            t.swiglu(p + "shared_expert.", mc.d_model, mc.d_ff_shared, TensorCategory::shared_expert, il);
            t.add(p + "shared_expert_gate.weight", {1, mc.d_model}, TensorCategory::shared_expert, il);
        }
        return out;
    }
};

}  // namespace

const ArchSpec& qwen2_moe_arch() {
    static const Qwen2MoeArch arch;
    return arch;
}

}  // namespace moekit::model
