// Loading one decoder layer's weights as fp32 (see engine_weights.h).
#include "model/engine_weights.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <tuple>

#include "core/dtype.h"
#include "core/gemm_bf16.h"
#include "core/error.h"

namespace moekit::model::detail {

namespace {

std::string layer_prefix(int64_t il) { return "model.layers." + std::to_string(il) + "."; }

// Block-FP8 checkpoints (DeepSeek-V3 style) store W ≈ fp8(W) * scale_inv[i / bo, j / bi].
const io::Checkpoint::Entry* fp8_scale(const io::Checkpoint& ckpt, std::string_view name,
                                       const io::TensorInfo& info) {
    if (info.dtype != core::DType::F8_E4M3 && info.dtype != core::DType::F8_E5M2) return nullptr;
    return ckpt.find(std::string(name) + "_scale_inv");
}

// Multiplies rows [row_begin, row_begin + n) of a [rows, cols] fp8-decoded tensor (held in dst,
// n x cols) by their block scales.
void apply_fp8_scale(const io::Checkpoint::Entry& scale, std::string_view name, const std::vector<int64_t>& shape,
                     int64_t row_begin, int64_t n, float* dst) {
    const auto& sshape = scale.info->shape;
    if (shape.size() != 2 || sshape.size() != 2 || sshape[0] <= 0 || sshape[1] <= 0)
        throw Error("engine", "tensor '" + std::string(name) + "': unsupported fp8 scale layout");
    const int64_t rows = shape[0], cols = shape[1];
    const int64_t bo = (rows + sshape[0] - 1) / sshape[0];
    const int64_t bi = (cols + sshape[1] - 1) / sshape[1];
    std::vector<float> s(scale.info->n_elements());
    scale.file->read_f32(*scale.info, s.data());
    for (int64_t r = 0; r < n; ++r) {
        const float* srow = s.data() + ((row_begin + r) / bo) * sshape[1];
        float* drow = dst + r * cols;
        for (int64_t c = 0; c < cols; ++c) drow[c] *= srow[c / bi];
    }
}

}  // namespace

EngineProfile& engine_profile() {
    static EngineProfile p;
    static const bool init = [] {
        p.enabled = std::getenv("MOEKIT_ENGINE_PROFILE") != nullptr;
        if (p.enabled)
            std::atexit([] {
                static const char* names[] = {"embed", "load_layer", "attention", "router+moe",
                                              "(of which load_experts)", "dense_mlp", "final_norm", "logits", "release"};
                std::fprintf(stderr, "[engine profile]");
                for (int i = 0; i < EngineProfile::kCount; ++i)
                    std::fprintf(stderr, " %s %.3fs;", names[i], double(p.ns[i].load()) * 1e-9);
                std::fprintf(stderr, "\n");
            });
        return true;
    }();
    (void)init;
    return p;
}

namespace {
int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

PhaseTimer::PhaseTimer(EngineProfile::Phase phase) : phase_(phase) {
    if (engine_profile().enabled) t0_ = now_ns();
}

PhaseTimer::~PhaseTimer() {
    if (t0_ >= 0) engine_profile().ns[phase_] += now_ns() - t0_;
}

WeightLoader::WeightLoader(const io::Checkpoint& checkpoint, const ArchSpec& arch, const ModelConfig& config,
                           WeightCounter& counter)
    : ckpt_(checkpoint), arch_(arch), mc_(config), counter_(counter) {}

std::vector<int64_t> WeightLoader::shape(std::string_view name) const { return ckpt_.at(name).info->shape; }

std::span<const float> WeightLoader::override_of(std::string_view name) const {
    if (!overrides_) return {};
    const std::span<const float> v = overrides_->find(name);
    if (!v.empty() && v.size() != ckpt_.at(name).info->n_elements())
        throw Error("engine", "override of tensor '" + std::string(name) + "' has " + std::to_string(v.size()) +
                                  " values, the checkpoint's has " + std::to_string(ckpt_.at(name).info->n_elements()));
    return v;
}

void WeightLoader::read_into(std::string_view name, float* dst, uint64_t n_expected) const {
    const auto& entry = ckpt_.at(name);
    if (entry.info->n_elements() != n_expected)
        throw Error("engine", "tensor '" + std::string(name) + "' has " + std::to_string(entry.info->n_elements()) +
                                  " elements, expected " + std::to_string(n_expected));
    if (const auto ov = override_of(name); !ov.empty()) {
        std::copy(ov.begin(), ov.end(), dst);
        return;
    }
    entry.file->read_f32(*entry.info, dst);
    const auto* scale = fp8_scale(ckpt_, name, *entry.info);
    if (scale) apply_fp8_scale(*scale, name, entry.info->shape, 0, entry.info->shape[0], dst);
    if (release_pages_) {
        entry.file->release(*entry.info);
        if (scale) scale->file->release(*scale->info);
    }
}

Weight WeightLoader::alloc(int64_t rows, int64_t cols) const {
    Weight w;
    w.data = std::vector<float, CountingAllocator<float>>(CountingAllocator<float>(&counter_));
    w.rows = rows;
    w.cols = cols;
    w.data.resize(static_cast<size_t>(rows * cols));
    return w;
}

Weight WeightLoader::load(std::string_view name) const {
    const auto& shp = ckpt_.at(name).info->shape;
    if (shp.size() != 1 && shp.size() != 2) throw Error("engine", "tensor '" + std::string(name) + "' is not 1-D or 2-D");
    Weight w = shp.size() == 2 ? alloc(shp[0], shp[1]) : alloc(1, shp[0]);
    read_into(name, w.data.data(), w.data.size());
    return w;
}

void WeightLoader::to_compute(Weight& w) const {
    if (compute_ != Compute::kBf16 || w.data.empty()) return;
    w.packed = std::vector<std::byte, CountingAllocator<std::byte>>(CountingAllocator<std::byte>(&counter_));
    w.packed.resize(core::bf16::packed_bytes(w.rows, w.cols));
    core::bf16::pack(w.data.data(), w.rows, w.cols, w.packed.data());
    w.data = std::vector<float, CountingAllocator<float>>(CountingAllocator<float>(&counter_));  // frees the fp32 copy
}

Weight WeightLoader::load_optional(std::string_view name) const {
    if (!ckpt_.find(name)) return Weight{};
    return load(name);
}

MlpWeights WeightLoader::load_mlp(const std::string& gate, const std::string& up, const std::string& down,
                                  bool bias) const {
    MlpWeights m;
    const auto gshape = shape(gate);
    const auto ushape = shape(up);
    if (gshape.size() != 2 || gshape != ushape)
        throw Error("engine", "tensors '" + gate + "' and '" + up + "' must be 2-D of the same shape");
    const int64_t f = gshape[0], d = gshape[1];
    m.gate_up = alloc(2 * f, d);
    read_into(gate, m.gate_up.data.data(), static_cast<uint64_t>(f * d));
    read_into(up, m.gate_up.data.data() + f * d, static_cast<uint64_t>(f * d));
    m.down = load(down);
    if (m.down.rows != d || m.down.cols != f)
        throw Error("engine", "tensor '" + down + "' has the wrong shape for intermediate size " + std::to_string(f));
    auto bias_name = [](const std::string& w) { return w.substr(0, w.size() - std::string("weight").size()) + "bias"; };
    if (bias) {
        m.gate_up_bias = alloc(1, 2 * f);
        read_into(bias_name(gate), m.gate_up_bias.data.data(), static_cast<uint64_t>(f));
        read_into(bias_name(up), m.gate_up_bias.data.data() + f, static_cast<uint64_t>(f));
        m.down_bias = load(bias_name(down));
    }
    return m;
}

MlpWeights WeightLoader::load_lowrank(const ExpertTensorNames& names) const {
    MlpWeights m;
    const std::string gb = lowrank_tensor(names.gate, 'b'), ub = lowrank_tensor(names.up, 'b');
    const auto gshape = shape(gb), ushape = shape(ub);
    if (gshape.size() != 2 || ushape.size() != 2 || gshape[1] != ushape[1])
        throw Error("engine", "tensors '" + gb + "' and '" + ub + "' must be 2-D with the same input size");
    const int64_t rg = gshape[0], ru = ushape[0], d = gshape[1];
    m.gate_up_b = alloc(rg + ru, d);
    read_into(gb, m.gate_up_b.data.data(), static_cast<uint64_t>(rg * d));
    read_into(ub, m.gate_up_b.data.data() + rg * d, static_cast<uint64_t>(ru * d));
    m.rank_gate = rg;
    m.gate_a = load(lowrank_tensor(names.gate, 'a'));
    m.up_a = load(lowrank_tensor(names.up, 'a'));
    m.down_b = load(lowrank_tensor(names.down, 'b'));
    m.down_a = load(lowrank_tensor(names.down, 'a'));
    const int64_t f = m.gate_a.rows;
    if (m.gate_a.cols != rg || m.up_a.rows != f || m.up_a.cols != ru || m.down_b.cols != f || m.down_a.rows != d ||
        m.down_a.cols != m.down_b.rows)
        throw Error("engine", "low-rank factors of '" + names.gate + "', '" + names.up + "', '" + names.down +
                                  "' have inconsistent shapes");
    return m;
}

LayerWeights WeightLoader::load_layer(int64_t il) const {
    LayerWeights lw;
    lw.layer = il;
    const std::string p = layer_prefix(il);
    const std::string a = p + "self_attn.";
    lw.input_norm = load(p + "input_layernorm.weight");
    lw.post_norm = load(p + "post_attention_layernorm.weight");

    AttentionWeights& w = lw.attn;
    if (mc_.mla.kv_lora_rank > 0) {
        if (mc_.mla.q_lora_rank > 0) {
            w.q_a = load(a + "q_a_proj.weight");
            w.q_a_bias = load_optional(a + "q_a_proj.bias");
            w.q_a_norm = load(a + "q_a_layernorm.weight");
            w.q_b = load(a + "q_b_proj.weight");
        } else {
            w.q = load(a + "q_proj.weight");
        }
        w.kv_a = load(a + "kv_a_proj_with_mqa.weight");
        w.kv_a_bias = load_optional(a + "kv_a_proj_with_mqa.bias");
        w.kv_a_norm = load(a + "kv_a_layernorm.weight");
        w.kv_b = load(a + "kv_b_proj.weight");
        w.o = load(a + "o_proj.weight");
        w.o_bias = load_optional(a + "o_proj.bias");
    } else {
        w.q = load(a + "q_proj.weight");
        w.k = load(a + "k_proj.weight");
        w.v = load(a + "v_proj.weight");
        w.o = load(a + "o_proj.weight");
        w.q_bias = load_optional(a + "q_proj.bias");
        w.k_bias = load_optional(a + "k_proj.bias");
        w.v_bias = load_optional(a + "v_proj.bias");
        w.o_bias = load_optional(a + "o_proj.bias");
        if (mc_.qk_norm != "none") {
            w.q_norm = load(a + "q_norm.weight");
            w.k_norm = load(a + "k_norm.weight");
        }
    }

    for (Weight* g : {&w.q, &w.k, &w.v, &w.o, &w.q_a, &w.q_b, &w.kv_a, &w.kv_b}) to_compute(*g);

    const std::string m = p + "mlp.";
    if (!mc_.is_moe_layer[static_cast<size_t>(il)]) {
        lw.dense = load_mlp(m + "gate_proj.weight", m + "up_proj.weight", m + "down_proj.weight", mc_.mlp_bias);
        to_compute(lw.dense.gate_up);
        to_compute(lw.dense.down);
        return lw;
    }
    const std::string router = arch_.router_weight(il);
    lw.router = load(router);
    const int64_t n_expert = mc_.n_expert_at(il);
    if (lw.router.rows != n_expert || lw.router.cols != mc_.d_model)
        throw Error("engine", "router '" + router + "' must be [" + std::to_string(n_expert) + ", " +
                                  std::to_string(mc_.d_model) + "]");
    if (mc_.routing.correction_bias) {
        const std::string bias = router.substr(0, router.size() - std::string("weight").size()) + "e_score_correction_bias";
        lw.router_bias = load(bias);
    }
    if (mc_.n_shared_expert > 0) {
        const std::string s = m + (mc_.routing.shared_expert_gate ? "shared_expert." : "shared_experts.");
        lw.shared = load_mlp(s + "gate_proj.weight", s + "up_proj.weight", s + "down_proj.weight", mc_.mlp_bias);
        if (mc_.routing.shared_expert_gate) lw.shared_gate = load(m + "shared_expert_gate.weight");
        to_compute(lw.shared.gate_up);
        to_compute(lw.shared.down);
    }
    lw.experts.resize(static_cast<size_t>(n_expert));
    if (mc_.lowrank_base) {
        const ExpertTensorNames base = lowrank_base_tensors(arch_, il);
        lw.expert_base = load_mlp(base.gate, base.up, base.down, false);
    }
    return lw;
}

void WeightLoader::load_experts(LayerWeights& lw, std::span<const int64_t> experts, int n_threads) const {
    const PhaseTimer timer(EngineProfile::kLoadExperts);
    std::vector<int64_t> todo;
    for (int64_t ie : experts)
        if (lw.experts[static_cast<size_t>(ie)].empty()) todo.push_back(ie);
    const auto n = static_cast<std::ptrdiff_t>(todo.size());
    std::vector<std::exception_ptr> errors(todo.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads) if (n > 1)
    for (std::ptrdiff_t i = 0; i < n; ++i) {
        try {
            const ExpertTensorNames names = arch_.expert_tensors(lw.layer, todo[static_cast<size_t>(i)]);
            MlpWeights& e = lw.experts[static_cast<size_t>(todo[static_cast<size_t>(i)])];
            if (mc_.lowrank_factored) {
                e = load_lowrank(names);
                e.base = lw.expert_base.empty() ? nullptr : &lw.expert_base;
            } else {
                e = load_mlp(names.gate, names.up, names.down, false);
                to_compute(e.gate_up);
                to_compute(e.down);
            }
        } catch (...) {
            errors[static_cast<size_t>(i)] = std::current_exception();
        }
    }
    for (auto& e : errors)
        if (e) std::rethrow_exception(e);
}

namespace {
// Linux's default fault_around_bytes (mm/memory.c): a read fault on a file mapping also maps the
// cached pages of the enclosing 64 KiB-aligned window.
constexpr uint64_t kFaultAroundBytes = uint64_t(64) << 10;
}  // namespace

void WeightLoader::release_layer(int64_t il) const {
    if (!release_pages_) return;
    const std::string p = layer_prefix(il);
    const auto& all = ckpt_.tensors();
    // The layer's byte ranges, adjacent ones merged, so the partial pages two of its tensors
    // share are released as well (small tensors would otherwise leave ~2 pages each).
    std::vector<std::tuple<const io::SafetensorsFile*, uint64_t, uint64_t>> ranges;
    for (auto it = all.lower_bound(p); it != all.end() && it->first.compare(0, p.size(), p) == 0; ++it)
        ranges.emplace_back(it->second.file, it->second.info->begin, it->second.info->end);
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 0; i < ranges.size();) {
        auto [file, begin, end] = ranges[i];
        size_t j = i + 1;
        for (; j < ranges.size() && std::get<0>(ranges[j]) == file && std::get<1>(ranges[j]) <= end; ++j)
            end = std::max(end, std::get<2>(ranges[j]));
        // Widened to the enclosing kFaultAroundBytes-aligned windows: the kernel's fault-around
        // maps already-cached pages of the neighbouring tensors (other layers' ones when layers
        // are interleaved in the file) into the same window; dropping those mappings is harmless
        // (read-only MAP_PRIVATE: they fault back in unchanged if someone reads them later).
        const uint64_t base = file->header().data_offset();
        const uint64_t abs_begin = (base + begin) / kFaultAroundBytes * kFaultAroundBytes;
        const uint64_t abs_end = (base + end + kFaultAroundBytes - 1) / kFaultAroundBytes * kFaultAroundBytes;
        file->release_data(abs_begin > base ? abs_begin - base : 0, abs_end - base);
        i = j;
    }
}

void WeightLoader::release_expert(LayerWeights& lw, int64_t ie) { lw.experts[static_cast<size_t>(ie)] = MlpWeights{}; }

void WeightLoader::gather_rows(std::string_view name, std::span<const int32_t> ids, Matrix& out) const {
    const auto& entry = ckpt_.at(name);
    const auto& shp = entry.info->shape;
    if (shp.size() != 2) throw Error("engine", "tensor '" + std::string(name) + "' is not 2-D");
    const int64_t rows = shp[0], cols = shp[1];
    const auto ov = override_of(name);
    if (!ov.empty()) {
        out.resize(static_cast<Eigen::Index>(ids.size()), cols);
        for (size_t i = 0; i < ids.size(); ++i) {
            if (ids[i] < 0 || ids[i] >= rows)
                throw Error("engine", "token id " + std::to_string(ids[i]) + " is outside '" + std::string(name) + "' (" +
                                          std::to_string(rows) + " rows)");
            std::copy_n(ov.data() + static_cast<size_t>(ids[i]) * static_cast<size_t>(cols), cols,
                        out.row(static_cast<Eigen::Index>(i)).data());
        }
        return;
    }
    const auto bytes = entry.file->bytes(*entry.info);
    const size_t elem = core::dtype_size(entry.info->dtype);
    const auto* scale = fp8_scale(ckpt_, name, *entry.info);
    out.resize(static_cast<Eigen::Index>(ids.size()), cols);
    for (size_t i = 0; i < ids.size(); ++i) {
        const int64_t id = ids[i];
        if (id < 0 || id >= rows)
            throw Error("engine", "token id " + std::to_string(id) + " is outside '" + std::string(name) + "' (" +
                                      std::to_string(rows) + " rows)");
        core::convert_to_f32(entry.info->dtype, bytes.data() + static_cast<size_t>(id * cols) * elem,
                             static_cast<size_t>(cols), out.row(static_cast<Eigen::Index>(i)).data());
        if (scale) apply_fp8_scale(*scale, name, shp, id, 1, out.row(static_cast<Eigen::Index>(i)).data());
    }
    if (release_pages_) {
        entry.file->release(*entry.info);
        if (scale) scale->file->release(*scale->info);
    }
}

void WeightLoader::read_rows(std::string_view name, int64_t row_begin, int64_t n, float* dst) const {
    const auto& entry = ckpt_.at(name);
    const auto& shp = entry.info->shape;
    if (shp.size() != 2 || row_begin < 0 || row_begin + n > shp[0])
        throw Error("engine", "rows [" + std::to_string(row_begin) + ", " + std::to_string(row_begin + n) +
                                  ") outside tensor '" + std::string(name) + "'");
    if (const auto ov = override_of(name); !ov.empty()) {
        std::copy_n(ov.data() + static_cast<size_t>(row_begin * shp[1]), static_cast<size_t>(n * shp[1]), dst);
        return;
    }
    const auto bytes = entry.file->bytes(*entry.info);
    const size_t elem = core::dtype_size(entry.info->dtype);
    core::convert_to_f32(entry.info->dtype, bytes.data() + static_cast<size_t>(row_begin * shp[1]) * elem,
                         static_cast<size_t>(n * shp[1]), dst);
    const auto* scale = fp8_scale(ckpt_, name, *entry.info);
    if (scale) apply_fp8_scale(*scale, name, shp, row_begin, n, dst);
    // Only this block's bytes (page-aligned interior): other threads may be converting the
    // neighbouring blocks; the small scale table is left mapped (shared by every block).
    if (release_pages_)
        entry.file->release(*entry.info, static_cast<uint64_t>(row_begin * shp[1]) * elem,
                            static_cast<uint64_t>((row_begin + n) * shp[1]) * elem);
}

}  // namespace moekit::model::detail
