// HF checkpoint -> llama.cpp GGUF layout (see gguf_model.h).
#include "quantize/gguf_model.h"

#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"

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
    throw Error("quantize", "--format gguf: architecture '" + c.model_type +
                                "' is not implemented yet for GGUF output (supported: olmoe, qwen2_moe, qwen3_moe, "
                                "mixtral); --format hf-fake works for every architecture");
}

std::vector<int64_t> reversed(const std::vector<int64_t>& shape) { return {shape.rbegin(), shape.rend()}; }

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

int64_t GgufTensorPlan::rows() const {
    int64_t r = 1;
    for (std::size_t i = 1; i < ne.size(); ++i) r *= ne[i];
    return r;
}

GgufModelPlan plan_gguf_model(const io::Checkpoint& ck, const model::ArchSpec& arch, const model::ModelConfig& c) {
    const ArchInfo info = arch_info(c);
    GgufModelPlan plan;
    plan.arch = info.gguf_arch;
    if (!c.n_expert_layer.empty())
        throw Error("quantize", "--format gguf: layers with different expert counts (config field " +
                                    std::string(model::kExpertsPerLayerKey) +
                                    ") cannot be expressed in llama.cpp's GGUF; use --format hf-fake");
    for (int64_t il = 0; il < c.n_layer; ++il)
        if (!c.is_moe_layer[static_cast<std::size_t>(il)])
            throw Error("quantize", "--format gguf: decoder layer " + std::to_string(il) +
                                        " is a dense MLP layer, which llama.cpp's " + info.gguf_arch +
                                        " architecture does not have; use --format hf-fake");
    std::set<std::string> used;
    auto add = [&](std::string name, const std::string& src, TensorRole role, int64_t il) {
        const auto& e = ck.at(src);
        GgufTensorPlan t;
        t.name = std::move(name);
        t.ne = reversed(e.info->shape);
        t.sources = {src};
        t.role = role;
        t.layer = il;
        const bool is_weight = ends_with(t.name, ".weight");
        t.quantizable = is_weight && t.ne.size() >= 2 && role != TensorRole::norm && role != TensorRole::router;
        used.insert(src);
        plan.tensors.push_back(std::move(t));
        return &plan.tensors.back();
    };

    add("token_embd.weight", "model.embed_tokens.weight", TensorRole::embedding, -1);
    for (int64_t il = 0; il < c.n_layer; ++il) {
        const std::string p = "model.layers." + std::to_string(il) + ".";
        const std::string b = "blk." + std::to_string(il) + ".";
        add(b + "attn_norm.weight", p + "input_layernorm.weight", TensorRole::norm, il);
        static const std::pair<const char*, const char*> attn[] = {
            {"q_proj", "attn_q"}, {"k_proj", "attn_k"}, {"v_proj", "attn_v"}, {"o_proj", "attn_output"}};
        for (const auto& [hf, gg] : attn) {
            for (const char* kind : {"weight", "bias"}) {
                const std::string src = p + "self_attn." + hf + "." + kind;
                if (!ck.find(src)) continue;
                auto* t = add(b + gg + "." + kind, src, TensorRole::attention, il);
                if (info.permute_qk && std::string(kind) == "weight") {
                    if (std::string(hf) == "q_proj") t->permute_heads = c.n_head;
                    if (std::string(hf) == "k_proj") t->permute_heads = c.n_head_kv;
                }
            }
        }
        for (const auto& [hf, gg] : {std::pair{"q_norm", "attn_q_norm"}, std::pair{"k_norm", "attn_k_norm"}})
            if (ck.find(p + "self_attn." + hf + ".weight"))
                add(b + gg + ".weight", p + "self_attn." + hf + ".weight", TensorRole::norm, il);
        add(b + "ffn_norm.weight", p + "post_attention_layernorm.weight", TensorRole::norm, il);
        add(b + "ffn_gate_inp.weight", arch.router_weight(il), TensorRole::router, il);
        // Routed experts, stacked: ne = {row length, rows, n_expert}.
        const int64_t n_expert = c.n_expert_at(il);
        for (int proj = 0; proj < 3; ++proj) {
            GgufTensorPlan t;
            static const char* names[] = {"ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"};
            t.name = b + names[proj];
            t.role = proj == 0 ? TensorRole::expert_gate : proj == 1 ? TensorRole::expert_up : TensorRole::expert_down;
            t.layer = il;
            t.quantizable = true;
            for (int64_t ie = 0; ie < n_expert; ++ie) {
                const auto n = arch.expert_tensors(il, ie);
                const std::string& src = proj == 0 ? n.gate : proj == 1 ? n.up : n.down;
                const auto& e = ck.at(src);
                if (ie == 0) {
                    t.ne = reversed(e.info->shape);
                    t.ne.push_back(n_expert);
                }
                t.sources.push_back(src);
                used.insert(src);
            }
            plan.tensors.push_back(std::move(t));
        }
        // Qwen2-MoE shared expert and its sigmoid gate.
        for (const auto& [hf, gg] : {std::pair{"gate_proj", "ffn_gate_shexp"}, std::pair{"up_proj", "ffn_up_shexp"},
                                     std::pair{"down_proj", "ffn_down_shexp"}})
            if (ck.find(p + "mlp.shared_expert." + hf + ".weight"))
                add(b + gg + ".weight", p + "mlp.shared_expert." + hf + ".weight", TensorRole::shared_expert, il);
        if (ck.find(p + "mlp.shared_expert_gate.weight"))
            add(b + "ffn_gate_inp_shexp.weight", p + "mlp.shared_expert_gate.weight", TensorRole::router, il);
    }
    add("output_norm.weight", "model.norm.weight", TensorRole::norm, -1);
    if (ck.find("lm_head.weight")) add("output.weight", "lm_head.weight", TensorRole::output, -1);

    for (const auto& [name, entry] : ck.tensors()) {
        if (used.count(name)) continue;
        if (name.find("rotary_emb.inv_freq") != std::string::npos) continue;  // recomputed by llama.cpp
        throw Error("quantize", "--format gguf: checkpoint tensor '" + name + "' has no llama.cpp GGUF name for " +
                                    info.gguf_arch);
    }
    if (info.permute_qk)
        plan.notes.push_back("Mixtral is written as llama.cpp's \"llama\" architecture; Q and K rows are permuted "
                             "the way convert_hf_to_gguf.py does it");
    return plan;
}

void add_gguf_hparams(io::GgufWriter& w, const GgufModelPlan& plan, const io::Checkpoint& ck,
                      const model::ModelConfig& c) {
    using io::GgufValue;
    const auto& hf = ck.config();
    const std::string a = plan.arch;
    const ArchInfo info = arch_info(c);
    w.set("general.architecture", GgufValue::str(a));
    w.set("general.type", GgufValue::str("model"));
    w.set("general.name", GgufValue::str(ck.dir().filename().string()));
    w.set(a + ".block_count", GgufValue::u32(static_cast<uint32_t>(c.n_layer)));
    w.set(a + ".context_length", GgufValue::u32(static_cast<uint32_t>(hf.get_int("max_position_embeddings"))));
    w.set(a + ".embedding_length", GgufValue::u32(static_cast<uint32_t>(c.d_model)));
    w.set(a + ".feed_forward_length", GgufValue::u32(static_cast<uint32_t>(hf.get_int("intermediate_size"))));
    w.set(a + ".attention.head_count", GgufValue::u32(static_cast<uint32_t>(c.n_head)));
    w.set(a + ".attention.head_count_kv", GgufValue::u32(static_cast<uint32_t>(c.n_head_kv)));
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
