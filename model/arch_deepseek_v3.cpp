// DeepSeek-V3 / R1 / Kimi-K2-style (transformers models/deepseek_v3). Router (noaux_tc, the
// only method transformers implements): s = sigmoid(z) in fp32; selection on s +
// e_score_correction_bias: group score = sum of the top-2 biased scores in each of n_group
// groups, keep topk_group groups, top-k among their experts; gates = unbiased s of the selected
// experts, divided by (their sum + 1e-20) when norm_topk_prob, times routed_scaling_factor.
// Layers idx < first_k_dense_replace are dense, all others MoE. Checkpoints may carry
// num_nextn_predict_layers multi-token-prediction layers after the decoder
// (transformers drops them: _keys_to_ignore_on_load_unexpected) and block-FP8 weights with
// `weight_scale_inv`.
#include "model/deepseek_common.h"

namespace moekit::model {

namespace {

using namespace detail;

class DeepseekV3Arch final : public DeepseekArchBase {
public:
    std::string_view model_type() const override { return "deepseek_v3"; }
    std::string_view display_name() const override { return "DeepSeek-V3"; }

protected:
    bool has_correction_bias() const override { return true; }

    void parse_version(const io::HfConfig& cfg, ModelConfig& mc, int64_t first_dense) const override {
        mc.is_moe_layer.resize(static_cast<size_t>(mc.n_layer));
        for (int64_t il = 0; il < mc.n_layer; ++il) mc.is_moe_layer[static_cast<size_t>(il)] = il >= first_dense;
        mc.n_mtp_layer = has(cfg, "num_nextn_predict_layers") ? int_or(cfg, "num_nextn_predict_layers", 1)
                                                              : int_or(cfg, "num_mtp_layers", 1);
        check_non_negative(cfg, "num_nextn_predict_layers", mc.n_mtp_layer);

        RoutingSpec& r = mc.routing;
        r.scoring = Scoring::sigmoid;
        r.correction_bias = true;
        r.topk_method = "noaux_tc";
        r.norm_topk_prob = bool_or(cfg, "norm_topk_prob", true);
        r.routed_scaling_factor = double_or(cfg, "routed_scaling_factor", 2.5);
        if (!(r.routed_scaling_factor > 0.0))
            config_error(cfg, "invalid routed_scaling_factor = " + std::to_string(r.routed_scaling_factor) + " (must be > 0)");
        r.n_group = int_or(cfg, "n_group", 8);
        r.topk_group = int_or(cfg, "topk_group", 4);
        check_groups(cfg, mc);
        if (mc.n_expert / r.n_group < 2)
            config_error(cfg, "invalid n_group = " + std::to_string(r.n_group) +
                                  " (noaux_tc scores a group by its top-2 experts: n_routed_experts / n_group must be >= 2)");
    }
};

}  // namespace

const ArchSpec& deepseek_v3_arch() {
    static const DeepseekV3Arch arch;
    return arch;
}

}  // namespace moekit::model
