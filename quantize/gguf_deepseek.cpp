// DeepSeek-V2 / V3 -> llama.cpp's "deepseek2" GGUF layout, as convert_hf_to_gguf.py's
// DeepseekV2Model writes it (declared in gguf_model_impl.h):
//   * MLA: attn_q (no q LoRA) or attn_q_a / attn_q_a_norm / attn_q_b; attn_kv_a_mqa,
//     attn_kv_a_norm; kv_b_proj is not written as such but split per head into attn_k_b (the
//     nope rows, transposed: ne {nope, kv_lora_rank, n_head}) and attn_v_b (ne {kv_lora_rank, v,
//     n_head}), the layout llama.cpp's absorbed-MLA graph multiplies with;
//   * layers before first_k_dense_replace: dense ffn_gate/ffn_up/ffn_down; MoE layers: router,
//     V3's e_score_correction_bias as exp_probs_b.bias, stacked experts, shared experts *_shexp;
//   * multi-token-prediction layers (V3, model.layers.{n_layer + j}) are left out, as the
//     converter does.
// Metadata deliberately differs from the converter in three places, each because the converter's
// file would not load or would run a different model in llama.cpp (and each is reported in
// the notes): attention.q_lora_rank = 0 is written when the config has none (llama.cpp requires
// the key unless the model has 26/27 layers, the DeepSeek-V2-Lite heuristic, and 0 selects its
// plain attn_q path); V3's expert_gating_func = sigmoid, expert_weights_scale and
// expert_weights_norm come from the resolved config (transformers 5 omits scoring_func from V3
// configs, and llama.cpp's default is softmax).
#include <cmath>

#include "core/error.h"
#include "quantize/gguf_model_impl.h"

namespace moekit::quantize::detail {
namespace {

// DeepSeek-V2's group_limited_greedy ranks groups by their best expert. When at least top-k groups
// survive, every group holding one of the k best experts survives (its best expert is at least
// the k-th best score), so the selection is the plain top-k: written without groups, llama.cpp
// (which ranks groups by their top-2 sum, V3's rule) computes exactly that.
bool v2_groups_are_plain_topk(const model::ModelConfig& c) {
    return c.model_type == "deepseek_v2" && c.routing.n_group > 1 && c.routing.topk_group >= c.n_expert_used;
}

constexpr uint32_t kGatingSoftmax = 1, kGatingSigmoid = 2;  // llama.cpp's llama_expert_gating_func_type

std::string layer_prefix(int64_t il) { return "model.layers." + std::to_string(il) + "."; }

bool is_mtp_tensor(const model::ModelConfig& c, const std::string& name) {
    if (name.rfind("model.layers.", 0) != 0) return false;
    const std::size_t dot = name.find('.', 13);
    try {
        return std::stoll(name.substr(13, dot - 13)) >= c.n_layer;
    } catch (const std::exception&) {
        return false;
    }
}

int64_t leading_dense(const model::ModelConfig& c) {
    int64_t n = 0;
    while (n < c.n_layer && !c.is_moe_layer[static_cast<std::size_t>(n)]) ++n;
    return n;
}

std::optional<std::string> scoring_func(const io::HfConfig& hf) {
    for (const char* k : {"score_function", "scoring_func", "score_func"})
        if (hf.has(k)) return hf.get_string(k);
    return std::nullopt;
}

}  // namespace

GgufModelPlan plan_gguf_deepseek(const io::Checkpoint& ck, const model::ArchSpec& arch, const model::ModelConfig& c) {
    GgufModelPlan plan;
    plan.arch = "deepseek2";
    const int64_t n_dense = leading_dense(c);
    for (int64_t il = n_dense; il < c.n_layer; ++il)
        if (!c.is_moe_layer[static_cast<std::size_t>(il)])
            throw Error("quantize", "--format gguf: decoder layer " + std::to_string(il) +
                                        " is a dense MLP layer after MoE layers (moe_layer_freq); llama.cpp's deepseek2 "
                                        "has dense layers only before leading_dense_block_count; use --format hf-fake");
    if (c.mlp_bias)
        throw Error("quantize", "--format gguf: mlp_bias = true (biased dense/shared MLPs) has no tensors in llama.cpp's "
                                "deepseek2; use --format hf-fake");
    const auto& mla = c.mla;
    PlanBuilder b(ck, plan);
    b.add("token_embd.weight", "model.embed_tokens.weight", TensorRole::embedding, -1);
    for (int64_t il = 0; il < c.n_layer; ++il) {
        const std::string p = layer_prefix(il), a = p + "self_attn.";
        const std::string blk = "blk." + std::to_string(il) + ".";
        b.add(blk + "attn_norm.weight", p + "input_layernorm.weight", TensorRole::norm, il);
        if (mla.q_lora_rank > 0) {
            b.add(blk + "attn_q_a.weight", a + "q_a_proj.weight", TensorRole::attention, il);
            b.add(blk + "attn_q_a_norm.weight", a + "q_a_layernorm.weight", TensorRole::norm, il);
            b.add(blk + "attn_q_b.weight", a + "q_b_proj.weight", TensorRole::attention, il);
        } else {
            b.add(blk + "attn_q.weight", a + "q_proj.weight", TensorRole::attention, il);
        }
        b.add(blk + "attn_kv_a_mqa.weight", a + "kv_a_proj_with_mqa.weight", TensorRole::attention, il);
        b.add(blk + "attn_kv_a_norm.weight", a + "kv_a_layernorm.weight", TensorRole::norm, il);
        const std::string kv_b = a + "kv_b_proj.weight";
        const auto& kv_shape = ck.at(kv_b).info->shape;
        if (kv_shape.size() != 2 || kv_shape[0] != c.n_head * (mla.qk_nope_head_dim + mla.v_head_dim))
            throw Error("quantize", "--format gguf: " + kv_b + " is not [num_attention_heads * (qk_nope_head_dim + "
                                    "v_head_dim), kv_lora_rank]; cannot split it into attn_k_b / attn_v_b");
        for (const auto layout : {TensorLayout::mla_k_b, TensorLayout::mla_v_b}) {
            GgufTensorPlan t;
            const bool k = layout == TensorLayout::mla_k_b;
            t.name = blk + (k ? "attn_k_b.weight" : "attn_v_b.weight");
            t.ne = k ? std::vector<int64_t>{mla.qk_nope_head_dim, kv_shape[1], c.n_head}
                     : std::vector<int64_t>{kv_shape[1], mla.v_head_dim, c.n_head};
            t.sources = {kv_b};
            t.role = TensorRole::attention;
            t.layer = il;
            t.quantizable = true;  // llama-quantize quantizes both (rows of nope / kv_lora_rank)
            t.layout = layout;
            t.mla_heads = c.n_head;
            t.mla_nope = mla.qk_nope_head_dim;
            t.mla_v = mla.v_head_dim;
            plan.tensors.push_back(std::move(t));
        }
        b.mark_used(kv_b);
        b.add(blk + "attn_output.weight", a + "o_proj.weight", TensorRole::attention, il);
        b.add(blk + "ffn_norm.weight", p + "post_attention_layernorm.weight", TensorRole::norm, il);
        if (il < n_dense) {
            for (const char* proj : {"gate", "up", "down"})
                b.add(blk + "ffn_" + proj + ".weight", p + "mlp." + proj + "_proj.weight", TensorRole::other, il);
            continue;
        }
        b.add(blk + "ffn_gate_inp.weight", arch.router_weight(il), TensorRole::router, il);
        if (ck.find(p + "mlp.gate.e_score_correction_bias"))
            b.add(blk + "exp_probs_b.bias", p + "mlp.gate.e_score_correction_bias", TensorRole::router, il);
        b.add_experts(arch, il, c.n_expert_at(il));
        if (c.n_shared_expert > 0)
            for (const char* proj : {"gate", "up", "down"})
                b.add(blk + "ffn_" + proj + "_shexp.weight", p + "mlp.shared_experts." + proj + "_proj.weight",
                      TensorRole::shared_expert, il);
    }
    b.add("output_norm.weight", "model.norm.weight", TensorRole::norm, -1);
    if (ck.find("lm_head.weight")) {
        if (c.tie_word_embeddings)
            b.mark_used("lm_head.weight");  // the converter drops a tied head; llama.cpp reuses token_embd
        else
            b.add("output.weight", "lm_head.weight", TensorRole::output, -1);
    }
    b.finish(plan.arch, is_mtp_tensor, c);

    const auto& hf = ck.config();
    plan.notes.push_back("DeepSeek is written as llama.cpp's \"deepseek2\" architecture: kv_b_proj is split per head "
                         "into attn_k_b (transposed) and attn_v_b, as convert_hf_to_gguf.py does");
    if (c.n_mtp_layer > 0) {
        bool present = false;
        for (const auto& [name, e] : ck.tensors()) present = present || is_mtp_tensor(c, name);
        if (present)
            plan.notes.push_back(std::to_string(c.n_mtp_layer) +
                                 " multi-token-prediction layer(s) left out (convert_hf_to_gguf.py skips them too)");
    }
    if (mla.q_lora_rank == 0)
        plan.notes.push_back("attention.q_lora_rank = 0 written (convert_hf_to_gguf.py omits it; llama.cpp requires it "
                             "unless the model has 26 or 27 layers, and 0 selects its plain attn_q path)");
    if (c.model_type == "deepseek_v3" && !scoring_func(hf))
        plan.notes.push_back("expert_gating_func = sigmoid written although config.json has no scoring_func "
                             "(convert_hf_to_gguf.py would write none and llama.cpp would route with softmax)");
    if (v2_groups_are_plain_topk(c))
        plan.notes.push_back("expert_group_count = 1 written (convert_hf_to_gguf.py writes n_group): with topk_group >= "
                             "top-k DeepSeek-V2's group_limited_greedy selects exactly the plain top-k, which llama.cpp then "
                             "computes; with the groups it would apply DeepSeek-V3's top-2-sum group rule and route differently");
    else if (c.model_type == "deepseek_v2" && c.routing.n_group > 1)
        plan.notes.push_back("llama.cpp scores expert groups by the sum of their top-2 experts (DeepSeek-V3's rule); "
                             "DeepSeek-V2's group_limited_greedy uses the best expert, so llama.cpp may route "
                             "differently from transformers");
    if (c.model_type == "deepseek_v2" && c.routing.norm_topk_prob)
        plan.notes.push_back("norm_topk_prob = true: llama.cpp renormalizes the top-k gates (expert_weights_norm); "
                             "transformers' DeepSeek-V2 does not");
    return plan;
}

void add_gguf_hparams_deepseek(io::GgufWriter& w, const GgufModelPlan& plan, const io::Checkpoint& ck,
                               const model::ModelConfig& c) {
    using io::GgufValue;
    const auto& hf = ck.config();
    const std::string a = plan.arch;
    const auto& mla = c.mla;
    auto u32 = [](int64_t v) { return GgufValue::u32(static_cast<uint32_t>(v)); };
    add_general_keys(w, a, ck);
    // TextModel.set_gguf_parameters, with num_key_value_heads = 1 (MLA runs as MQA).
    w.set(a + ".block_count", u32(c.n_layer));
    w.set(a + ".context_length", u32(hf.get_int("max_position_embeddings")));
    w.set(a + ".embedding_length", u32(c.d_model));
    w.set(a + ".feed_forward_length", u32(hf.get_int_or("intermediate_size", c.d_ff)));
    w.set(a + ".attention.head_count", u32(c.n_head));
    w.set(a + ".attention.head_count_kv", u32(1));
    add_rope_scaling(w, a, hf);
    w.set(a + ".rope.freq_base", GgufValue::f32(static_cast<float>(c.rope_theta)));
    w.set(a + ".attention.layer_norm_rms_epsilon", GgufValue::f32(static_cast<float>(c.rms_norm_eps)));
    w.set(a + ".expert_count", u32(c.n_expert));
    w.set(a + ".expert_used_count", u32(c.n_expert_used));
    const bool plain_topk = v2_groups_are_plain_topk(c);
    if (hf.has("n_group")) w.set(a + ".expert_group_count", u32(plain_topk ? 1 : hf.get_int("n_group")));
    if (hf.has("topk_group")) w.set(a + ".expert_group_used_count", u32(plain_topk ? 1 : hf.get_int("topk_group")));
    if (const auto sf = scoring_func(hf)) {
        if (*sf != "sigmoid" && *sf != "softmax")
            throw Error("quantize", hf.source().string() + ": scoring_func '" + *sf +
                                        "' has no llama.cpp expert_gating_func (sigmoid, softmax)");
        w.set(a + ".expert_gating_func", u32(*sf == "sigmoid" ? kGatingSigmoid : kGatingSoftmax));
    } else if (c.model_type == "deepseek_v3") {
        w.set(a + ".expert_gating_func", u32(kGatingSigmoid));  // transformers' V3 router is always sigmoid
    }
    // DeepseekV2Model.set_gguf_parameters.
    w.set(a + ".leading_dense_block_count", u32(leading_dense(c)));
    w.set(a + ".vocab_size", u32(c.vocab_size));
    w.set(a + ".attention.q_lora_rank", u32(mla.q_lora_rank));
    w.set(a + ".attention.kv_lora_rank", u32(mla.kv_lora_rank));
    w.set(a + ".attention.key_length", u32(mla.kv_lora_rank + mla.qk_rope_head_dim));
    w.set(a + ".attention.value_length", u32(mla.kv_lora_rank));
    w.set(a + ".attention.key_length_mla", u32(mla.qk_nope_head_dim + mla.qk_rope_head_dim));
    w.set(a + ".attention.value_length_mla", u32(mla.v_head_dim));
    w.set(a + ".expert_feed_forward_length", u32(c.d_ff_expert));
    w.set(a + ".expert_shared_count", u32(c.n_shared_expert));
    // V2 writes only what its config says (llama.cpp's defaults are transformers' V2 defaults);
    // V3 the resolved values, whose defaults (2.5, renormalize) llama.cpp does not share.
    const bool v3 = c.model_type == "deepseek_v3";
    if (v3 || hf.has("routed_scaling_factor"))
        w.set(a + ".expert_weights_scale", GgufValue::f32(static_cast<float>(c.routing.routed_scaling_factor)));
    if (c.routing.norm_topk_prob && (v3 || hf.get_bool_or("norm_topk_prob", false)))
        w.set(a + ".expert_weights_norm", GgufValue::boolean(true));
    w.set(a + ".rope.dimension_count", u32(mla.qk_rope_head_dim));
    const auto rope = rope_parameters(hf);
    if (auto it = rope.find("mscale_all_dim"); it != rope.end() && it->is_number())
        // llama.cpp divides this by 0.1 again on load (its TAG_DEEPSEEK2_YARN_LOG_MUL_FIX).
        w.set(a + ".rope.scaling.yarn_log_multiplier", GgufValue::f32(static_cast<float>(0.1 * it->get<double>())));
}

}  // namespace moekit::quantize::detail
