// The ArchSpec registry and the architecture-independent pieces of model/arch.h.
#include "model/arch.h"

#include <algorithm>
#include <array>
#include <cstdio>

#include "core/error.h"
#include "model/arch_common.h"

namespace moekit::model {

namespace {

const std::array<const ArchSpec*, 6>& registry() {
    static const std::array<const ArchSpec*, 6> archs = {
        &mixtral_arch(), &qwen2_moe_arch(), &qwen3_moe_arch(), &olmoe_arch(), &deepseek_v2_arch(), &deepseek_v3_arch(),
    };
    return archs;
}

const ArchSpec* find_arch(std::string_view model_type) {
    for (const ArchSpec* arch : registry())
        if (arch->model_type() == model_type) return arch;
    return nullptr;
}

std::string supported_list() {
    std::string out;
    for (std::string_view type : supported_model_types()) {
        if (!out.empty()) out += ", ";
        out += type;
    }
    return out;
}

std::string format_number(double value) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", value);
    return buf;
}

}  // namespace

std::string_view category_name(TensorCategory category) {
    switch (category) {
        case TensorCategory::embedding: return "embedding";
        case TensorCategory::attention: return "attention";
        case TensorCategory::router: return "router";
        case TensorCategory::routed_expert: return "routed_expert";
        case TensorCategory::shared_expert: return "shared_expert";
        case TensorCategory::dense_mlp: return "dense_mlp";
        case TensorCategory::norm: return "norm";
        case TensorCategory::lm_head: return "lm_head";
        case TensorCategory::other: return "other";
    }
    return "other";
}

std::string RoutingSpec::describe() const {
    std::string out = scoring == Scoring::softmax ? "softmax" : "sigmoid";
    if (correction_bias) out += " (+ e_score_correction_bias for selection)";
    bool grouped = n_group > 1 && topk_group < n_group;
    if (grouped) {
        out += " -> top-" + std::to_string(topk_group) + " of " + std::to_string(n_group) + " groups (group score = ";
        out += scoring == Scoring::sigmoid ? "sum of top-2)" : "max)";
    }
    out += " -> top-k";
    if (norm_topk_prob) out += " -> renormalize";
    if (routed_scaling_factor != 1.0) out += " -> x" + format_number(routed_scaling_factor);
    if (shared_expert_gate) out += "; shared expert x sigmoid(shared_expert_gate)";
    if (topk_method != "greedy") out += " [" + topk_method + "]";
    return out;
}

int64_t ModelConfig::n_moe_layer() const {
    return static_cast<int64_t>(std::count(is_moe_layer.begin(), is_moe_layer.end(), true));
}

int64_t ModelConfig::n_expert_at(int64_t il) const {
    return n_expert_layer.empty() ? n_expert : n_expert_layer[static_cast<size_t>(il)];
}

std::optional<TensorCategory> ArchSpec::tolerated_extra(const ModelConfig&, std::string_view) const {
    return std::nullopt;
}

ExpertTensorNames ArchSpec::expert_tensors(int64_t il, int64_t ie) const {
    const std::string p = detail::layer_prefix(il) + "mlp.experts." + std::to_string(ie) + ".";
    return {p + "gate_proj.weight", p + "up_proj.weight", p + "down_proj.weight"};
}

std::string ArchSpec::router_weight(int64_t il) const { return detail::layer_prefix(il) + "mlp.gate.weight"; }

const ArchSpec& arch_for(std::string_view model_type) {
    if (const ArchSpec* arch = find_arch(model_type)) return *arch;
    throw Error("model", "unsupported model_type '" + std::string(model_type) + "'; supported: " + supported_list());
}

std::vector<std::string_view> supported_model_types() {
    std::vector<std::string_view> out;
    for (const ArchSpec* arch : registry()) out.push_back(arch->model_type());
    return out;
}

ResolvedConfig resolve_config(const io::HfConfig& config) {
    const auto& json = config.json();
    auto it = json.is_object() ? json.find("model_type") : json.end();
    if (it == json.end() || it->is_null())
        throw Error("model", config.source().string() + ": required field 'model_type' is missing; supported: " +
                                 supported_list());
    if (!it->is_string())
        throw Error("model", config.source().string() + ": field 'model_type' must be a string, got " + it->dump());
    std::string model_type = it->get<std::string>();
    const ArchSpec* arch = find_arch(model_type);
    if (!arch)
        throw Error("model", "unsupported model_type '" + model_type + "' in " + config.source().string() +
                                 "; supported: " + supported_list());
    ResolvedConfig resolved{arch, arch->parse_config(config)};
    detail::read_experts_per_layer(config, resolved.config);
    detail::read_lowrank(config, resolved.config);
    return resolved;
}

std::string expert_prefix(const ArchSpec& arch, int64_t il, int64_t ie) {
    const std::string gate = arch.expert_tensors(il, ie).gate;  // "<prefix><proj>.weight"
    const size_t cut = gate.rfind('.', gate.rfind('.') - 1);
    return gate.substr(0, cut + 1);
}

std::string lowrank_tensor(const std::string& weight_name, char which) {
    const std::string_view suffix = ".weight";
    const std::string stem = weight_name.ends_with(suffix) ? weight_name.substr(0, weight_name.size() - suffix.size())
                                                           : weight_name;
    return stem + ".lowrank_" + which;
}

ExpertTensorNames lowrank_base_tensors(const ArchSpec& arch, int64_t il) {
    ExpertTensorNames names = arch.expert_tensors(il, 0);
    for (std::string* n : {&names.gate, &names.up, &names.down}) {
        const std::string key = ".experts.0.";
        const size_t at = n->find(key);
        if (at == std::string::npos) throw InternalError("model", "cannot name the low-rank base of '" + *n + "'");
        *n = n->substr(0, at) + ".experts.base." + n->substr(at + key.size());
    }
    return names;
}

}  // namespace moekit::model
