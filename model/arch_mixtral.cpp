// Mixtral (transformers models/mixtral): every layer is a sparse MoE block
// `block_sparse_moe` with experts w1 (gate), w3 (up), w2 (down); router softmax -> top-k ->
// renormalize (always). GQA attention without biases. Checkpoint keys keep the 4.x names
// (transformers 5.x renames block_sparse_moe -> mlp and fuses experts only in memory).
#include "model/arch_common.h"

namespace moekit::model {

namespace {

using namespace detail;

class MixtralArch final : public ArchSpec {
public:
    std::string_view model_type() const override { return "mixtral"; }
    std::string_view display_name() const override { return "Mixtral"; }
    std::string_view expert_count_key() const override { return "num_local_experts"; }

    ModelConfig parse_config(const io::HfConfig& cfg) const override {
        ModelConfig mc;
        read_common(cfg, mc, /*default_eps=*/1e-5, /*default_theta=*/1e6);
        mc.model_type = "mixtral";
        // MixtralAttention: head_dim = getattr(config, "head_dim", None) or hidden // heads.
        mc.head_dim = int_or(cfg, "head_dim", 0);
        if (mc.head_dim == 0) mc.head_dim = mc.d_model / mc.n_head;
        check_positive(cfg, "head_dim", mc.head_dim);
        mc.d_ff_expert = require_int(cfg, "intermediate_size");
        check_positive(cfg, "intermediate_size", mc.d_ff_expert);
        read_routed_experts(cfg, mc, {"num_local_experts", "num_experts"});
        mc.is_moe_layer.assign(static_cast<size_t>(mc.n_layer), true);
        mc.routing.scoring = Scoring::softmax;
        mc.routing.norm_topk_prob = true;  // MixtralTopKRouter always renormalizes
        return mc;
    }

    std::vector<ExpectedTensor> expected_tensors(const ModelConfig& mc) const override {
        std::vector<ExpectedTensor> out;
        TensorList t(out);
        t.globals(mc);
        for (int64_t il = 0; il < mc.n_layer; ++il) {
            t.layer_norms(mc, il);
            t.gqa_attention(mc, il, false, false);
            t.add(router_weight(il), {mc.n_expert_at(il), mc.d_model}, TensorCategory::router, il);
            for (int64_t ie = 0; ie < mc.n_expert_at(il); ++ie) {
                ExpertTensorNames n = expert_tensors(il, ie);
                t.add(n.gate, {mc.d_ff_expert, mc.d_model}, TensorCategory::routed_expert, il, ie);
                t.add(n.up, {mc.d_ff_expert, mc.d_model}, TensorCategory::routed_expert, il, ie);
                t.add(n.down, {mc.d_model, mc.d_ff_expert}, TensorCategory::routed_expert, il, ie);
            }
        }
        return out;
    }

    ExpertTensorNames expert_tensors(int64_t il, int64_t ie) const override {
        std::string p = layer_prefix(il) + "block_sparse_moe.experts." + std::to_string(ie) + ".";
        return {p + "w1.weight", p + "w3.weight", p + "w2.weight"};
    }

    std::string router_weight(int64_t il) const override { return layer_prefix(il) + "block_sparse_moe.gate.weight"; }
};

}  // namespace

const ArchSpec& mixtral_arch() {
    static const MixtralArch arch;
    return arch;
}

}  // namespace moekit::model
