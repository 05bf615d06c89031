// Low-rank factors -> CheckpointEdit, dense or factored (svd/edit.h).
#include "svd/edit.h"

#include <cstring>

#include "core/dtype.h"
#include "core/error.h"

namespace moekit::svd {

Format parse_format(const std::string& name) {
    if (name == "dense") return Format::dense;
    if (name == "factored") return Format::factored;
    throw Error("svd", "unknown --format '" + name + "' (dense or factored)");
}

std::string format_name(Format format) { return format == Format::dense ? "dense" : "factored"; }

std::string base_tensor(const model::ArchSpec& arch, int64_t il, int p) {
    const model::ExpertTensorNames names = model::lowrank_base_tensors(arch, il);
    return p == 0 ? names.gate : p == 1 ? names.up : names.down;
}

namespace {

bool writable(core::DType t) { return t == core::DType::F32 || t == core::DType::BF16 || t == core::DType::F16; }

// Rounds v to `dtype` and back (what the written tensor holds).
float round_to(core::DType dtype, float v) {
    if (dtype == core::DType::BF16) return core::bf16_to_f32(core::f32_to_bf16(v));
    if (dtype == core::DType::F16) return core::f16_to_f32(core::f32_to_f16(v));
    return v;
}

}  // namespace

void check_expert_dtypes(const io::Checkpoint& ckpt, const model::ArchSpec& arch, const model::ModelConfig& mc) {
    for (int64_t il = 0; il < mc.n_layer; ++il) {
        if (!mc.is_moe_layer[static_cast<size_t>(il)]) continue;
        for (int64_t ie = 0; ie < mc.n_expert_at(il); ++ie) {
            const model::ExpertTensorNames names = arch.expert_tensors(il, ie);
            for (const std::string& n : {names.gate, names.up, names.down}) {
                const auto& e = ckpt.at(n);
                if (!writable(e.info->dtype) || ckpt.find(n + "_scale_inv"))
                    throw Error("svd", "expert tensor '" + n + "' is " + std::string(core::dtype_name(e.info->dtype)) +
                                           (ckpt.find(n + "_scale_inv") ? " with block scales" : "") +
                                           "; only F32, BF16 and F16 experts can be compressed");
            }
        }
    }
}

io::CheckpointEdit make_edit(const io::Checkpoint& ckpt, const model::ArchSpec& arch, const std::vector<LayerFactors>& layers,
                             Format format, Method method, double ratio) {
    io::CheckpointEdit edit;
    nlohmann::ordered_json rank = nlohmann::ordered_json::object();
    for (const LayerFactors& lf : layers) {
        const int64_t il = lf.layer;
        const bool has_base = !lf.base[0].empty();
        const core::DType base_dtype = ckpt.at(arch.expert_tensors(il, 0).gate).info->dtype;
        for (int p = 0; p < 3 && has_base && format == Format::factored; ++p) {
            const Factors& f0 = lf.experts.front().proj[p];
            const std::vector<float>* base = &lf.base[p];
            edit.put.push_back(io::f32_tensor_source(base_tensor(arch, il, p), base_dtype, {f0.m, f0.n}, [base] { return *base; }));
        }
        for (size_t ie = 0; ie < lf.experts.size(); ++ie) {
            const model::ExpertTensorNames names = arch.expert_tensors(il, static_cast<int64_t>(ie));
            for (int p = 0; p < 3; ++p) {
                const std::string& w = p == 0 ? names.gate : p == 1 ? names.up : names.down;
                const core::DType dtype = ckpt.at(w).info->dtype;
                const Factors* f = &lf.experts[ie].proj[p];
                rank[kProjNames[p]] = f->r;
                if (format == Format::factored) {
                    edit.drop.insert(w);
                    edit.put.push_back(io::f32_tensor_source(model::lowrank_tensor(w, 'a'), dtype, {f->m, f->r}, [f] { return f->a; }));
                    edit.put.push_back(io::f32_tensor_source(model::lowrank_tensor(w, 'b'), dtype, {f->r, f->n}, [f] { return f->b; }));
                    continue;
                }
                const std::vector<float>* base = has_base ? &lf.base[p] : nullptr;
                edit.put.push_back(io::f32_tensor_source(w, dtype, {f->m, f->n}, [f, base, dtype] {
                    using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
                    RowMatrix a = Eigen::Map<const RowMatrix>(f->a.data(), f->m, f->r);
                    RowMatrix b = Eigen::Map<const RowMatrix>(f->b.data(), f->r, f->n);
                    a = a.unaryExpr([dtype](float v) { return round_to(dtype, v); });
                    b = b.unaryExpr([dtype](float v) { return round_to(dtype, v); });
                    RowMatrix w = a * b;
                    if (base)
                        w += Eigen::Map<const RowMatrix>(base->data(), f->m, f->n)
                                 .unaryExpr([dtype](float v) { return round_to(dtype, v); });
                    return std::vector<float>(w.data(), w.data() + w.size());
                }));
            }
        }
    }
    if (format == Format::factored) {
        edit.config_patch[std::string(model::kLowRankKey)] = {
            {"format", "factored"}, {"method", method_name(method)}, {"ratio", ratio},
            {"base", !layers.empty() && !layers.front().base[0].empty()}, {"rank", rank}};
    }
    return edit;
}

}  // namespace moekit::svd
