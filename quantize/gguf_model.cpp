// HF checkpoint -> llama.cpp GGUF layout (see gguf_model.h).
#include "quantize/gguf_model.h"

#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "quantize/gguf_model_impl.h"

namespace moekit::quantize {
namespace {

struct ArchInfo {
    std::string gguf_arch;
    bool permute_qk = false;         // llama.cpp's converter permutes Q/K rows ("llama" arch)
    bool expert_ff_key = false;      // writes {arch}.expert_feed_forward_length
};

ArchInfo arch_info(const model::ModelConfig& c) {
    if (c.model_type == "olmoe") return {"olmoe", false, false};
    if (c.model_type == "qwen3_moe") return {"qwen3moe", false, true};
    if (c.model_type == "qwen2_moe") return {"qwen2moe", false, true};
    if (c.model_type == "mixtral") return {"llama", true, false};
    if (c.model_type == "deepseek_v2" || c.model_type == "deepseek_v3") return {"deepseek2", false, true};
    throw Error("quantize", "--format gguf: architecture '" + c.model_type +
                                "' is not implemented yet for GGUF output (supported: olmoe, qwen2_moe, qwen3_moe, "
                                "mixtral, deepseek_v2, deepseek_v3); --format hf-fake works for every architecture");
}

bool is_deepseek(const model::ModelConfig& c) { return c.model_type == "deepseek_v2" || c.model_type == "deepseek_v3"; }

std::vector<int64_t> reversed(const std::vector<int64_t>& shape) { return {shape.rbegin(), shape.rend()}; }

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool skip_nothing(const model::ModelConfig&, const std::string&) { return false; }

}  // namespace

int64_t GgufTensorPlan::rows() const {
    int64_t r = 1;
    for (std::size_t i = 1; i < ne.size(); ++i) r *= ne[i];
    return r;
}

namespace detail {

GgufTensorPlan& PlanBuilder::add(std::string name, const std::string& src, TensorRole role, int64_t layer) {
    const auto& e = ck_.at(src);
    GgufTensorPlan t;
    t.name = std::move(name);
    t.ne = reversed(e.info->shape);
    t.sources = {src};
    t.role = role;
    t.layer = layer;
    // llama-quantize's rule: 2-D+ ".weight" tensors except norms and routers.
    t.quantizable = ends_with(t.name, ".weight") && t.ne.size() >= 2 && role != TensorRole::norm &&
                    role != TensorRole::router;
    used_.insert(src);
    plan_.tensors.push_back(std::move(t));
    return plan_.tensors.back();
}

void PlanBuilder::add_experts(const model::ArchSpec& arch, int64_t il, int64_t n_expert) {
    // Routed experts, stacked: ne = {row length, rows, n_expert}.
    static const char* names[] = {"ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"};
    for (int proj = 0; proj < 3; ++proj) {
        GgufTensorPlan t;
        t.name = "blk." + std::to_string(il) + "." + names[proj];
        t.role = proj == 0 ? TensorRole::expert_gate : proj == 1 ? TensorRole::expert_up : TensorRole::expert_down;
        t.layer = il;
        t.quantizable = true;
        for (int64_t ie = 0; ie < n_expert; ++ie) {
            const auto n = arch.expert_tensors(il, ie);
            const std::string& src = proj == 0 ? n.gate : proj == 1 ? n.up : n.down;
            const auto& e = ck_.at(src);
            if (ie == 0) {
                t.ne = reversed(e.info->shape);
                t.ne.push_back(n_expert);
            } else if (reversed(e.info->shape) != std::vector<int64_t>(t.ne.begin(), t.ne.end() - 1)) {
                throw Error("quantize", "--format gguf: expert tensor '" + src +
                                            "' has a different shape from expert 0 of its layer; GGUF stacks them");
            }
            t.sources.push_back(src);
            used_.insert(src);
        }
        plan_.tensors.push_back(std::move(t));
    }
}

void PlanBuilder::finish(const std::string& gguf_arch, bool (*skip)(const model::ModelConfig&, const std::string&),
                         const model::ModelConfig& c) const {
    for (const auto& [name, entry] : ck_.tensors()) {
        if (used_.count(name) || skip(c, name)) continue;
        if (name.find("rotary_emb.inv_freq") != std::string::npos) continue;  // recomputed by llama.cpp
        throw Error("quantize", "--format gguf: checkpoint tensor '" + name + "' has no llama.cpp GGUF name for " +
                                    gguf_arch);
    }
}

void add_general_keys(io::GgufWriter& w, const std::string& a, const io::Checkpoint& ck) {
    using io::GgufValue;
    w.set("general.architecture", GgufValue::str(a));
    w.set("general.type", GgufValue::str("model"));
    w.set("general.name", GgufValue::str(ck.dir().filename().string()));
}

nlohmann::ordered_json rope_parameters(const io::HfConfig& hf) {
    const auto& j = hf.json();
    nlohmann::ordered_json p = nlohmann::ordered_json::object();
    for (const char* k : {"rope_parameters", "rope_scaling"})
        if (auto it = j.find(k); it != j.end() && it->is_object()) {
            p = *it;
            break;
        }
    // The converter mirrors the 4.x spellings into rope_parameters.
    if (!p.contains("rope_type") && p.contains("type")) p["rope_type"] = p["type"];
    if (!p.contains("original_max_position_embeddings"))
        if (auto it = j.find("original_max_position_embeddings"); it != j.end() && it->is_number())
            p["original_max_position_embeddings"] = *it;
    return p;
}

void add_rope_scaling(io::GgufWriter& w, const std::string& a, const io::HfConfig& hf) {
    using io::GgufValue;
    const auto p = rope_parameters(hf);
    if (!p.contains("rope_type") || !p["rope_type"].is_string()) return;
    const std::string type = p["rope_type"];
    auto number = [&](const char* k) -> std::optional<double> {
        if (auto it = p.find(k); it != p.end() && it->is_number()) return it->get<double>();
        return std::nullopt;
    };
    const auto factor = number("factor");
    if ((type == "linear" || type == "yarn") && factor) {
        w.set(a + ".rope.scaling.type", GgufValue::str(type));
        w.set(a + ".rope.scaling.factor", GgufValue::f32(static_cast<float>(*factor)));
    }
    if (type == "yarn" && factor) {
        const auto orig = number("original_max_position_embeddings");
        if (!orig)
            throw Error("quantize", hf.source().string() +
                                        ": yarn rope scaling without original_max_position_embeddings");
        w.set(a + ".rope.scaling.original_context_length", GgufValue::u32(static_cast<uint32_t>(*orig)));
        if (auto v = number("extrapolation_factor")) w.set(a + ".rope.scaling.yarn_ext_factor", GgufValue::f32(static_cast<float>(*v)));
        auto attn = number("attention_factor");
        if (!attn) attn = number("attn_factor");
        if (attn) w.set(a + ".rope.scaling.yarn_attn_factor", GgufValue::f32(static_cast<float>(*attn)));
        if (auto v = number("beta_fast")) w.set(a + ".rope.scaling.yarn_beta_fast", GgufValue::f32(static_cast<float>(*v)));
        if (auto v = number("beta_slow")) w.set(a + ".rope.scaling.yarn_beta_slow", GgufValue::f32(static_cast<float>(*v)));
    }
    if (type == "longrope" || type == "su") w.set(a + ".rope.scaling.type", GgufValue::str("longrope"));
}

}  // namespace detail

GgufModelPlan plan_gguf_model(const io::Checkpoint& ck, const model::ArchSpec& arch, const model::ModelConfig& c) {
    const ArchInfo info = arch_info(c);
    if (!c.n_expert_layer.empty())
        throw Error("quantize", "--format gguf: layers with different expert counts (config field " +
                                    std::string(model::kExpertsPerLayerKey) +
                                    ") cannot be expressed in llama.cpp's GGUF; use --format hf-fake");
    if (is_deepseek(c)) return detail::plan_gguf_deepseek(ck, arch, c);
    GgufModelPlan plan;
    plan.arch = info.gguf_arch;
    for (int64_t il = 0; il < c.n_layer; ++il)
        if (!c.is_moe_layer[static_cast<std::size_t>(il)])
            throw Error("quantize", "--format gguf: decoder layer " + std::to_string(il) +
                                        " is a dense MLP layer, which llama.cpp's " + info.gguf_arch +
                                        " architecture does not have; use --format hf-fake");
    detail::PlanBuilder b(ck, plan);

    b.add("token_embd.weight", "model.embed_tokens.weight", TensorRole::embedding, -1);
    for (int64_t il = 0; il < c.n_layer; ++il) {
        const std::string p = "model.layers." + std::to_string(il) + ".";
        const std::string blk = "blk." + std::to_string(il) + ".";
        b.add(blk + "attn_norm.weight", p + "input_layernorm.weight", TensorRole::norm, il);
        static const std::pair<const char*, const char*> attn[] = {
            {"q_proj", "attn_q"}, {"k_proj", "attn_k"}, {"v_proj", "attn_v"}, {"o_proj", "attn_output"}};
        for (const auto& [hf, gg] : attn) {
            for (const char* kind : {"weight", "bias"}) {
                const std::string src = p + "self_attn." + hf + "." + kind;
                if (!ck.find(src)) continue;
                auto& t = b.add(blk + gg + "." + kind, src, TensorRole::attention, il);
                if (info.permute_qk && std::string(kind) == "weight") {
                    if (std::string(hf) == "q_proj") t.permute_heads = c.n_head;
                    if (std::string(hf) == "k_proj") t.permute_heads = c.n_head_kv;
                }
            }
        }
        for (const auto& [hf, gg] : {std::pair{"q_norm", "attn_q_norm"}, std::pair{"k_norm", "attn_k_norm"}})
            if (ck.find(p + "self_attn." + hf + ".weight"))
                b.add(blk + gg + ".weight", p + "self_attn." + hf + ".weight", TensorRole::norm, il);
        b.add(blk + "ffn_norm.weight", p + "post_attention_layernorm.weight", TensorRole::norm, il);
        b.add(blk + "ffn_gate_inp.weight", arch.router_weight(il), TensorRole::router, il);
        b.add_experts(arch, il, c.n_expert_at(il));
        // Qwen2-MoE shared expert and its sigmoid gate.
        for (const auto& [hf, gg] : {std::pair{"gate_proj", "ffn_gate_shexp"}, std::pair{"up_proj", "ffn_up_shexp"},
                                     std::pair{"down_proj", "ffn_down_shexp"}})
            if (ck.find(p + "mlp.shared_expert." + hf + ".weight"))
                b.add(blk + gg + ".weight", p + "mlp.shared_expert." + hf + ".weight", TensorRole::shared_expert, il);
        if (ck.find(p + "mlp.shared_expert_gate.weight"))
            b.add(blk + "ffn_gate_inp_shexp.weight", p + "mlp.shared_expert_gate.weight", TensorRole::router, il);
    }
    b.add("output_norm.weight", "model.norm.weight", TensorRole::norm, -1);
    if (ck.find("lm_head.weight")) b.add("output.weight", "lm_head.weight", TensorRole::output, -1);
    b.finish(info.gguf_arch, skip_nothing, c);
    if (info.permute_qk)
        plan.notes.push_back("Mixtral is written as llama.cpp's \"llama\" architecture; Q and K rows are permuted "
                             "the way convert_hf_to_gguf.py does it");
    return plan;
}

void add_gguf_hparams(io::GgufWriter& w, const GgufModelPlan& plan, const io::Checkpoint& ck,
                      const model::ModelConfig& c) {
    using io::GgufValue;
    if (is_deepseek(c)) {
        detail::add_gguf_hparams_deepseek(w, plan, ck, c);
        w.set("general.quantization_version", GgufValue::u32(2));
        return;
    }
    const auto& hf = ck.config();
    const std::string a = plan.arch;
    const ArchInfo info = arch_info(c);
    detail::add_general_keys(w, a, ck);
    w.set(a + ".block_count", GgufValue::u32(static_cast<uint32_t>(c.n_layer)));
    w.set(a + ".context_length", GgufValue::u32(static_cast<uint32_t>(hf.get_int("max_position_embeddings"))));
    w.set(a + ".embedding_length", GgufValue::u32(static_cast<uint32_t>(c.d_model)));
    w.set(a + ".feed_forward_length", GgufValue::u32(static_cast<uint32_t>(hf.get_int("intermediate_size"))));
    w.set(a + ".attention.head_count", GgufValue::u32(static_cast<uint32_t>(c.n_head)));
    w.set(a + ".attention.head_count_kv", GgufValue::u32(static_cast<uint32_t>(c.n_head_kv)));
    detail::add_rope_scaling(w, a, hf);
    w.set(a + ".rope.freq_base", GgufValue::f32(static_cast<float>(c.rope_theta)));
    w.set(a + ".attention.layer_norm_rms_epsilon", GgufValue::f32(static_cast<float>(c.rms_norm_eps)));
    w.set(a + ".expert_count", GgufValue::u32(static_cast<uint32_t>(c.n_expert)));
    w.set(a + ".expert_used_count", GgufValue::u32(static_cast<uint32_t>(c.n_expert_used)));
    if (hf.has("head_dim")) {
        w.set(a + ".attention.key_length", GgufValue::u32(static_cast<uint32_t>(hf.get_int("head_dim"))));
        w.set(a + ".attention.value_length", GgufValue::u32(static_cast<uint32_t>(hf.get_int("head_dim"))));
    }
    if (info.expert_ff_key && hf.has("moe_intermediate_size"))
        w.set(a + ".expert_feed_forward_length", GgufValue::u32(static_cast<uint32_t>(hf.get_int("moe_intermediate_size"))));
    if (c.model_type == "qwen2_moe" && hf.has("shared_expert_intermediate_size"))
        w.set(a + ".expert_shared_feed_forward_length",
              GgufValue::u32(static_cast<uint32_t>(hf.get_int("shared_expert_intermediate_size"))));
    if (a == "llama") {
        w.set(a + ".vocab_size", GgufValue::u32(static_cast<uint32_t>(c.vocab_size)));
        w.set(a + ".rope.dimension_count", GgufValue::u32(static_cast<uint32_t>(c.head_dim)));
    }
    w.set("general.quantization_version", GgufValue::u32(2));
}

std::vector<float> read_gguf_tensor(const io::Checkpoint& ck, const GgufTensorPlan& t) {
    if (t.layout != TensorLayout::plain) {
        // kv_b_proj rows are, per head, nope K rows then v V rows, each of length r (kv_lora_rank).
        const std::vector<float> kv = ck.read_f32(t.sources.at(0));
        const int64_t nh = t.mla_heads, nope = t.mla_nope, nv = t.mla_v;
        const int64_t r = static_cast<int64_t>(kv.size()) / (nh * (nope + nv));
        if (r * nh * (nope + nv) != static_cast<int64_t>(kv.size()))
            throw Error("quantize", "tensor " + t.sources[0] + ": " + std::to_string(kv.size()) +
                                        " values do not split into " + std::to_string(nh) + " heads of " +
                                        std::to_string(nope) + " + " + std::to_string(nv) + " rows");
        std::vector<float> out;
        out.reserve(static_cast<std::size_t>(nh * (t.layout == TensorLayout::mla_k_b ? nope : nv) * r));
        for (int64_t h = 0; h < nh; ++h) {
            const float* head = kv.data() + h * (nope + nv) * r;
            if (t.layout == TensorLayout::mla_k_b) {
                // Transposed: GGUF row j (of r) holds element j of each of the nope rows.
                for (int64_t j = 0; j < r; ++j)
                    for (int64_t i = 0; i < nope; ++i) out.push_back(head[i * r + j]);
            } else {
                out.insert(out.end(), head + nope * r, head + (nope + nv) * r);
            }
        }
        return out;
    }
    std::vector<float> out;
    for (const auto& src : t.sources) {
        std::vector<float> part = ck.read_f32(src);
        out.insert(out.end(), part.begin(), part.end());
    }
    if (t.permute_heads > 0) {
        // llama.cpp's LlamaModel.permute: rows (head, half, i) -> (head, i, half).
        const int64_t cols = t.ne[0], rows = t.ne[1], nh = t.permute_heads;
        const int64_t half = rows / nh / 2;
        if (half * 2 * nh != rows)
            throw Error("quantize", "tensor " + t.sources[0] + ": " + std::to_string(rows) +
                                        " rows do not split into " + std::to_string(nh) + " heads");
        std::vector<float> perm(out.size());
        for (int64_t h = 0; h < nh; ++h)
            for (int64_t s = 0; s < 2; ++s)
                for (int64_t i = 0; i < half; ++i) {
                    const int64_t src_row = h * 2 * half + s * half + i;
                    const int64_t dst_row = h * 2 * half + i * 2 + s;
                    std::copy_n(out.begin() + src_row * cols, cols, perm.begin() + dst_row * cols);
                }
        out.swap(perm);
    }
    return out;
}

}  // namespace moekit::quantize
