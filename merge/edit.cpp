// Merged layers -> CheckpointEdit (merge/edit.h).
#include "merge/edit.h"

#include <cstring>

#include "core/dtype.h"
#include "core/error.h"
#include "merge/combine.h"

namespace moekit::merge {

namespace {

void check_float(const io::Checkpoint& ckpt, const std::string& name) {
    const core::DType dt = ckpt.at(name).info->dtype;
    if (dt != core::DType::F32 && dt != core::DType::BF16 && dt != core::DType::F16)
        throw Error("merge", "tensor '" + name + "' is " + std::string(core::dtype_name(dt)) +
                                 "; merging needs F32, BF16 or F16 weights (dequantize FP8 checkpoints first)");
}

// A new tensor named `name` in the dtype of input tensor `like`, filled by `make` (fp32 row-major).
io::TensorSource float_tensor(const io::Checkpoint& ckpt, const std::string& like, const std::string& name,
                              std::vector<int64_t> shape, std::function<std::vector<float>()> make) {
    return io::f32_tensor_source(name, ckpt.at(like).info->dtype, std::move(shape), std::move(make));
}

std::vector<float> to_vector(const model::Matrix& m) { return std::vector<float>(m.data(), m.data() + m.size()); }

model::Matrix read_matrix(const io::Checkpoint& ckpt, const std::string& name) {
    const auto& info = *ckpt.at(name).info;
    if (info.shape.size() != 2) throw Error("merge", "tensor '" + name + "' should be 2-D");
    const std::vector<float> v = ckpt.read_f32(name);
    return Eigen::Map<const model::Matrix>(v.data(), info.shape[0], info.shape[1]);
}

}  // namespace

ExpertWeights read_expert(const io::Checkpoint& ckpt, const model::ArchSpec& arch, int64_t il, int64_t ie) {
    const model::ExpertTensorNames n = arch.expert_tensors(il, ie);
    return ExpertWeights{read_matrix(ckpt, n.gate), read_matrix(ckpt, n.up), read_matrix(ckpt, n.down)};
}

model::Matrix merged_projection(const io::Checkpoint& ckpt, const model::ArchSpec& arch, const LayerMerge& lm, size_t g, int which) {
    const auto& members = lm.groups[g];
    std::vector<model::Matrix> mats;
    for (size_t i = 0; i < members.size(); ++i) {
        const model::ExpertTensorNames names = arch.expert_tensors(lm.layer, members[i]);
        const model::Matrix m = read_matrix(ckpt, which == 0 ? names.gate : which == 1 ? names.up : names.down);
        const std::vector<int64_t>* perm = g < lm.perms.size() && i < lm.perms[g].size() && !lm.perms[g][i].empty() ? &lm.perms[g][i] : nullptr;
        if (!perm) {
            mats.push_back(m);
            continue;
        }
        // Neuron a of the merged expert is neuron perm[a] of the member: gate/up rows, down columns.
        model::Matrix p(m.rows(), m.cols());
        for (size_t a = 0; a < perm->size(); ++a) {
            if (which == 2) p.col(static_cast<Eigen::Index>(a)) = m.col((*perm)[a]);
            else p.row(static_cast<Eigen::Index>(a)) = m.row((*perm)[a]);
        }
        mats.push_back(std::move(p));
    }
    const auto& w = lm.weights[g];
    // At full rank U S V_i = W_i, so the joint SVD merge is exactly the weighted average
    // (tests/unit/test_merge_combine.cpp checks the identity): only a rank cut needs the SVD.
    const int64_t full = std::min<int64_t>(mats[0].rows(), mats[0].cols() * static_cast<int64_t>(mats.size()));
    if (lm.joint_svd && lm.svd_rank > 0 && lm.svd_rank < full) return joint_svd_merge(mats, w, lm.svd_rank);
    return weighted_sum(mats, w);
}

ExpertWeights merged_expert(const io::Checkpoint& ckpt, const model::ArchSpec& arch, const LayerMerge& lm, size_t g) {
    return ExpertWeights{merged_projection(ckpt, arch, lm, g, 0), merged_projection(ckpt, arch, lm, g, 1),
                         merged_projection(ckpt, arch, lm, g, 2)};
}

io::CheckpointEdit make_edit(const io::Checkpoint& ckpt, const model::ArchSpec& arch, const model::ModelConfig& mc,
                             const std::vector<LayerMerge>& layers, EditSummary* summary) {
    io::CheckpointEdit edit;
    EditSummary sum;
    int64_t n_new = 0;
    for (const LayerMerge& lm : layers) {
        const int64_t il = lm.layer;
        const auto N = static_cast<int64_t>(lm.groups.size());
        n_new = std::max(n_new, N);
        // Every expert tensor must be one of gate/up/down in a float dtype.
        for (int64_t e = 0; e < lm.n_expert; ++e) {
            const model::ExpertTensorNames names = arch.expert_tensors(il, e);
            for (const std::string& t : ckpt.names_with_prefix(model::expert_prefix(arch, il, e))) {
                if (t != names.gate && t != names.up && t != names.down)
                    throw Error("merge", "expert tensor '" + t + "' cannot be merged (only the gate/up/down weights of F32, BF16 "
                                                             "or F16 experts can; dequantize FP8 checkpoints first)");
                check_float(ckpt, t);
            }
        }
        std::vector<bool> kept_as_is(static_cast<size_t>(lm.n_expert), false);
        for (int64_t j = 0; j < N; ++j) {
            const auto& g = lm.groups[static_cast<size_t>(j)];
            const model::ExpertTensorNames to = arch.expert_tensors(il, j);
            if (g.size() == 1) {
                kept_as_is[static_cast<size_t>(g[0])] = true;
                if (g[0] == j) continue;
                const model::ExpertTensorNames from = arch.expert_tensors(il, g[0]);
                edit.rename[from.gate] = to.gate;
                edit.rename[from.up] = to.up;
                edit.rename[from.down] = to.down;
                sum.renamed += 3;
                continue;
            }
            const model::ExpertTensorNames like = arch.expert_tensors(il, g[0]);
            const auto gs = ckpt.at(like.gate).info->shape, ds = ckpt.at(like.down).info->shape;
            const LayerMerge* lp = &lm;
            const auto gi = static_cast<size_t>(j);
            const model::ArchSpec* ap = &arch;
            const io::Checkpoint* cp = &ckpt;
            edit.put.push_back(float_tensor(ckpt, like.gate, to.gate, gs, [=] { return to_vector(merged_projection(*cp, *ap, *lp, gi, 0)); }));
            edit.put.push_back(float_tensor(ckpt, like.up, to.up, gs, [=] { return to_vector(merged_projection(*cp, *ap, *lp, gi, 1)); }));
            edit.put.push_back(float_tensor(ckpt, like.down, to.down, ds, [=] { return to_vector(merged_projection(*cp, *ap, *lp, gi, 2)); }));
            sum.merged += 3;
        }
        for (int64_t e = 0; e < lm.n_expert; ++e) {
            if (kept_as_is[static_cast<size_t>(e)]) continue;
            for (const std::string& t : ckpt.names_with_prefix(model::expert_prefix(arch, il, e))) {
                edit.drop.insert(t);
                ++sum.dropped;
            }
        }
        // Router.
        const std::string router = arch.router_weight(il);
        const std::string base = router.substr(0, router.size() - std::string("weight").size());
        if (ckpt.find(base + "weight_scale_inv"))
            throw Error("merge", "router '" + router + "' is FP8-quantized (weight_scale_inv); merging it is not supported");
        check_float(ckpt, router);
        const model::Matrix rw = lm.router;
        edit.put.push_back(float_tensor(ckpt, router, router, {N, rw.cols()}, [rw] { return to_vector(rw); }));
        ++sum.router;
        auto put_vec = [&](const std::string& name, const std::vector<float>& v) {
            if (!ckpt.find(name)) return;
            check_float(ckpt, name);
            if (static_cast<int64_t>(v.size()) != N) throw InternalError("merge", "merged bias '" + name + "' has the wrong size");
            edit.put.push_back(float_tensor(ckpt, name, name, {N}, [v] { return v; }));
            ++sum.router;
        };
        put_vec(base + "bias", lm.router_bias);
        put_vec(base + "e_score_correction_bias", lm.correction_bias);
    }

    const auto& cfg = ckpt.config().json();
    for (const std::string& key : {std::string(arch.expert_count_key()), std::string("num_experts"),
                                  std::string("num_local_experts"), std::string("n_routed_experts")}) {
        auto it = cfg.find(key);
        if (it != cfg.end() && it->is_number_integer() && it->get<int64_t>() == mc.n_expert) edit.config_patch[key] = n_new;
    }
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
                            " multi-token-prediction layer(s): nothing runs them, so their experts could not be calibrated; "
                            "num_nextn_predict_layers set to 0");
    }
    if (summary) *summary = sum;
    return edit;
}

}  // namespace moekit::merge
