// Plan -> CheckpointEdit (prune/edit.h).
#include "prune/edit.h"

#include <cstring>

#include "core/dtype.h"
#include "core/error.h"

namespace moekit::prune {

namespace {

// Rows `kept` of a tensor whose first dimension indexes experts, byte-for-byte.
io::TensorSource slice_rows(const io::Checkpoint& ckpt, const std::string& name, const std::vector<int64_t>& kept, int64_t n_expert) {
    const io::Checkpoint::Entry& entry = ckpt.at(name);
    const io::TensorInfo& info = *entry.info;
    if (info.shape.empty() || info.shape[0] != n_expert)
        throw Error("prune", "tensor '" + name + "' should have " + std::to_string(n_expert) + " rows (one per expert)");
    const uint64_t row_bytes = info.nbytes() / static_cast<uint64_t>(n_expert);
    io::TensorSource src;
    src.name = name;
    src.dtype = info.dtype;
    src.shape = info.shape;
    src.shape[0] = static_cast<int64_t>(kept.size());
    src.nbytes = row_bytes * kept.size();
    src.fill = [&ckpt, name, kept, row_bytes](std::byte* dst) {
        const auto bytes = ckpt.bytes(name);
        for (size_t i = 0; i < kept.size(); ++i)
            std::memcpy(dst + i * row_bytes, bytes.data() + static_cast<uint64_t>(kept[i]) * row_bytes, row_bytes);
    };
    return src;
}

}  // namespace

io::CheckpointEdit make_edit(const io::Checkpoint& ckpt, const model::ArchSpec& arch, const model::ModelConfig& mc,
                             const Plan& plan, EditSummary* summary) {
    io::CheckpointEdit edit;
    EditSummary sum;
    for (const LayerPlan& lp : plan.layers) {
        const int64_t il = lp.layer;
        for (int64_t e : lp.removed)
            for (const std::string& name : ckpt.names_with_prefix(model::expert_prefix(arch, il, e))) {
                edit.drop.insert(name);
                ++sum.dropped;
            }
        for (size_t i = 0; i < lp.kept.size(); ++i) {
            const int64_t e = lp.kept[i];
            if (e == static_cast<int64_t>(i)) continue;
            const std::string from = model::expert_prefix(arch, il, e), to = model::expert_prefix(arch, il, static_cast<int64_t>(i));
            for (const std::string& name : ckpt.names_with_prefix(from)) {
                edit.rename[name] = to + name.substr(from.size());
                ++sum.renamed;
            }
        }
        const std::string router = arch.router_weight(il);
        const std::string base = router.substr(0, router.size() - std::string("weight").size());
        if (ckpt.find(base + "weight_scale_inv"))
            throw Error("prune", "router '" + router + "' is FP8-quantized (weight_scale_inv); slicing it is not supported");
        for (const std::string& name : {router, base + "bias", base + "e_score_correction_bias"}) {
            if (!ckpt.find(name)) continue;
            edit.put.push_back(slice_rows(ckpt, name, lp.kept, lp.n_expert));
            ++sum.sliced;
        }
    }

    // config.json: expert counts.
    const auto& cfg = ckpt.config().json();
    const int64_t n_new = plan.max_kept();
    for (const std::string& key : {std::string(arch.expert_count_key()), std::string("num_experts"),
                                  std::string("num_local_experts"), std::string("n_routed_experts")}) {
        auto it = cfg.find(key);
        if (it != cfg.end() && it->is_number_integer() && it->get<int64_t>() == mc.n_expert) edit.config_patch[key] = n_new;
    }
    const std::string per_layer_key(model::kExpertsPerLayerKey);
    if (!plan.uniform()) {
        std::vector<int64_t> counts(static_cast<size_t>(mc.n_layer), 0);
        for (const LayerPlan& lp : plan.layers) counts[static_cast<size_t>(lp.layer)] = static_cast<int64_t>(lp.kept.size());
        edit.config_patch[per_layer_key] = counts;
    } else if (cfg.contains(per_layer_key)) {
        edit.config_patch[per_layer_key] = nullptr;  // merge patch: remove the field
    }

    // DeepSeek-V3 MTP layers hold experts of the old count and cannot be calibrated: drop them.
    int64_t mtp_dropped = 0;
    for (int64_t j = 0; j < mc.n_mtp_layer; ++j) {
        const std::vector<std::string> names = ckpt.names_with_prefix("model.layers." + std::to_string(mc.n_layer + j) + ".");
        for (const std::string& name : names) edit.drop.insert(name);
        sum.dropped += static_cast<int64_t>(names.size());
        mtp_dropped += names.empty() ? 0 : 1;
    }
    if (mtp_dropped > 0) {
        if (cfg.contains("num_nextn_predict_layers")) edit.config_patch["num_nextn_predict_layers"] = 0;
        sum.notes.push_back("dropped " + std::to_string(mtp_dropped) +
                            " multi-token-prediction layer(s): transformers and moekit never run them, so their experts "
                            "could not be scored; num_nextn_predict_layers set to 0");
    }
    if (summary) *summary = sum;
    return edit;
}

nlohmann::ordered_json expert_map_json(const Plan& plan) {
    nlohmann::ordered_json map = nlohmann::ordered_json::object();
    for (const LayerPlan& lp : plan.layers) map[std::to_string(lp.layer)] = lp.kept;
    return map;
}

}  // namespace moekit::prune
