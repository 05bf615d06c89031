// DeepSeek-V2 / V2-Lite (transformers models/deepseek_v2). Router: softmax over the routed
// experts (fp32), then topk_method "greedy" (plain top-k) or "group_limited_greedy" (group
// score = max expert score in the group, keep topk_group groups, top-k among their experts);
// gates are the selected probabilities times routed_scaling_factor (transformers 5.x never
// renormalizes here; DeepSeek's own code renormalizes when norm_topk_prob, which every
// released V2 config sets false — we record the config value). Layers idx <
// first_k_dense_replace are dense; as in DeepSeek's reference code, MoE layers also need
// idx % moe_layer_freq == 0 (transformers ignores moe_layer_freq; released configs use 1).
#include "model/deepseek_common.h"

namespace moekit::model {

namespace {

using namespace detail;

class DeepseekV2Arch final : public DeepseekArchBase {
public:
    std::string_view model_type() const override { return "deepseek_v2"; }
    std::string_view display_name() const override { return "DeepSeek-V2"; }

protected:
    bool has_correction_bias() const override { return false; }

    void parse_version(const io::HfConfig& cfg, ModelConfig& mc, int64_t first_dense) const override {
        int64_t freq = int_or(cfg, "moe_layer_freq", 1);
        check_positive(cfg, "moe_layer_freq", freq);
        mc.is_moe_layer.resize(static_cast<size_t>(mc.n_layer));
        for (int64_t il = 0; il < mc.n_layer; ++il)
            mc.is_moe_layer[static_cast<size_t>(il)] = il >= first_dense && il % freq == 0;
        mc.mlp_bias = bool_or(cfg, "mlp_bias", false);

        RoutingSpec& r = mc.routing;
        r.scoring = Scoring::softmax;
        r.norm_topk_prob = bool_or(cfg, "norm_topk_prob", false);
        r.routed_scaling_factor = double_or(cfg, "routed_scaling_factor", 1.0);
        if (!(r.routed_scaling_factor > 0.0))
            config_error(cfg, "invalid routed_scaling_factor = " + std::to_string(r.routed_scaling_factor) + " (must be > 0)");
        r.topk_method = string_or(cfg, "topk_method", "greedy");
        if (r.topk_method == "greedy") {
            r.n_group = 1;
            r.topk_group = 1;
        } else if (r.topk_method == "group_limited_greedy") {
            r.n_group = require_int(cfg, "n_group");
            r.topk_group = require_int(cfg, "topk_group");
            check_groups(cfg, mc);
        } else {
            config_error(cfg, "unsupported topk_method '" + r.topk_method +
                                  "' for deepseek_v2 (supported: greedy, group_limited_greedy)");
        }
    }
};

}  // namespace

const ArchSpec& deepseek_v2_arch() {
    static const DeepseekV2Arch arch;
    return arch;
}

}  // namespace moekit::model
