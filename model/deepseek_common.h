// What DeepSeek-V2 and DeepSeek-V3 share (transformers models/deepseek_v2, deepseek_v3):
// multi-head latent attention (MLA), dense layers before first_k_dense_replace, MoE layers
// with routed experts `mlp.experts.{e}.*` (moe_intermediate_size) plus shared experts
// `mlp.shared_experts.*` (n_shared_experts x moe_intermediate_size) and router `mlp.gate`.
// The per-version files (arch_deepseek_v2.cpp, arch_deepseek_v3.cpp) supply the routing and
// the MoE-layer rule.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "model/arch_common.h"

namespace moekit::model {

class DeepseekArchBase : public ArchSpec {
public:
    ModelConfig parse_config(const io::HfConfig& cfg) const override;
    std::vector<ExpectedTensor> expected_tensors(const ModelConfig& mc) const override;
    std::string_view expert_count_key() const override { return "n_routed_experts"; }
    // MTP layers model.layers.{n_layer + j}.* (j < n_mtp_layer) -> other; for block-FP8
    // checkpoints, X.weight_scale_inv -> the category of X.weight when X.weight is an expected
    // 2-D weight.
    std::optional<TensorCategory> tolerated_extra(const ModelConfig& mc, std::string_view name) const override;

protected:
    // Fills mc.routing, mc.is_moe_layer (given first_k_dense_replace), mc.n_mtp_layer and the
    // version's extras. Called after the shared fields are read.
    virtual void parse_version(const io::HfConfig& cfg, ModelConfig& mc, int64_t first_k_dense_replace) const = 0;
    virtual bool has_correction_bias() const = 0;

private:
    // Tensors of decoder layer il; routed experts only when with_experts.
    void layer_tensors(const ModelConfig& mc, int64_t il, bool with_experts, std::vector<ExpectedTensor>& out) const;
};

namespace detail {
// Validates group-limited routing: n_group > 0, topk_group in 1..n_group, n_expert divisible by
// n_group, and enough experts in the kept groups for top-k.
void check_groups(const io::HfConfig& cfg, const ModelConfig& mc);
}  // namespace detail

// Shape of the block-FP8 inverse scale of a 2-D weight [out, in] with block {bo, bi}:
// [ceil(out / bo), ceil(in / bi)].
std::vector<int64_t> fp8_scale_inv_shape(const std::vector<int64_t>& weight_shape, const std::vector<int64_t>& block);

}  // namespace moekit::model
