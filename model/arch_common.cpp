#include "model/arch_common.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace moekit::model::detail {

namespace {

using Json = nlohmann::ordered_json;

const Json* find(const io::HfConfig& cfg, std::string_view key) {
    const Json& json = cfg.json();
    if (!json.is_object()) return nullptr;
    auto it = json.find(std::string(key));
    if (it == json.end() || it->is_null()) return nullptr;
    return &*it;
}

std::string show(const Json& value) {
    std::string text = value.dump();
    if (text.size() > 60) text = text.substr(0, 57) + "...";
    return text;
}

int64_t to_int(const io::HfConfig& cfg, std::string_view key, const Json& value) {
    if (value.is_number_integer()) return value.get<int64_t>();
    if (value.is_number_float()) {
        double d = value.get<double>();
        if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) return static_cast<int64_t>(d);
    }
    config_error(cfg, "field '" + std::string(key) + "' must be an integer, got " + show(value));
}

}  // namespace

void config_error(const io::HfConfig& cfg, const std::string& what) {
    throw Error("model", cfg.source().string() + ": " + what);
}

bool has(const io::HfConfig& cfg, std::string_view key) { return find(cfg, key) != nullptr; }

int64_t require_int(const io::HfConfig& cfg, std::string_view key) {
    const Json* v = find(cfg, key);
    if (!v) config_error(cfg, "required field '" + std::string(key) + "' is missing");
    return to_int(cfg, key, *v);
}

int64_t int_or(const io::HfConfig& cfg, std::string_view key, int64_t fallback) {
    const Json* v = find(cfg, key);
    return v ? to_int(cfg, key, *v) : fallback;
}

int64_t require_int_any(const io::HfConfig& cfg, std::initializer_list<std::string_view> keys) {
    std::string names;
    for (std::string_view key : keys) {
        if (const Json* v = find(cfg, key)) return to_int(cfg, key, *v);
        names += (names.empty() ? "'" : " or '") + std::string(key) + "'";
    }
    config_error(cfg, "required field " + names + " is missing");
}

double double_or(const io::HfConfig& cfg, std::string_view key, double fallback) {
    const Json* v = find(cfg, key);
    if (!v) return fallback;
    if (!v->is_number()) config_error(cfg, "field '" + std::string(key) + "' must be a number, got " + show(*v));
    return v->get<double>();
}

bool bool_or(const io::HfConfig& cfg, std::string_view key, bool fallback) {
    const Json* v = find(cfg, key);
    if (!v) return fallback;
    if (!v->is_boolean()) config_error(cfg, "field '" + std::string(key) + "' must be true or false, got " + show(*v));
    return v->get<bool>();
}

std::string string_or(const io::HfConfig& cfg, std::string_view key, std::string fallback) {
    const Json* v = find(cfg, key);
    if (!v) return fallback;
    if (!v->is_string()) config_error(cfg, "field '" + std::string(key) + "' must be a string, got " + show(*v));
    return v->get<std::string>();
}

std::vector<int64_t> int_list_or_empty(const io::HfConfig& cfg, std::string_view key) {
    const Json* v = find(cfg, key);
    if (!v) return {};
    if (!v->is_array()) config_error(cfg, "field '" + std::string(key) + "' must be a list of integers, got " + show(*v));
    std::vector<int64_t> out;
    for (const Json& item : *v) out.push_back(to_int(cfg, key, item));
    return out;
}

double rope_theta(const io::HfConfig& cfg, double fallback) {
    if (const Json* params = find(cfg, "rope_parameters"); params && params->is_object()) {
        auto it = params->find("rope_theta");
        if (it != params->end() && !it->is_null()) {
            if (!it->is_number()) config_error(cfg, "field 'rope_parameters.rope_theta' must be a number, got " + show(*it));
            return it->get<double>();
        }
    }
    return double_or(cfg, "rope_theta", fallback);
}

void check_positive(const io::HfConfig& cfg, std::string_view key, int64_t value) {
    if (value <= 0) config_error(cfg, "invalid " + std::string(key) + " = " + std::to_string(value) + " (must be > 0)");
}

void check_non_negative(const io::HfConfig& cfg, std::string_view key, int64_t value) {
    if (value < 0) config_error(cfg, "invalid " + std::string(key) + " = " + std::to_string(value) + " (must be >= 0)");
}

void read_common(const io::HfConfig& cfg, ModelConfig& mc, double default_eps, double default_theta) {
    mc.model_type = string_or(cfg, "model_type", "");
    mc.n_layer = require_int(cfg, "num_hidden_layers");
    mc.d_model = require_int(cfg, "hidden_size");
    mc.n_head = require_int(cfg, "num_attention_heads");
    mc.vocab_size = require_int(cfg, "vocab_size");
    check_positive(cfg, "num_hidden_layers", mc.n_layer);
    check_positive(cfg, "hidden_size", mc.d_model);
    check_positive(cfg, "num_attention_heads", mc.n_head);
    check_positive(cfg, "vocab_size", mc.vocab_size);
    mc.n_head_kv = int_or(cfg, "num_key_value_heads", mc.n_head);
    check_positive(cfg, "num_key_value_heads", mc.n_head_kv);
    if (mc.n_head % mc.n_head_kv != 0)
        config_error(cfg, "invalid num_key_value_heads = " + std::to_string(mc.n_head_kv) +
                              " (must divide num_attention_heads = " + std::to_string(mc.n_head) + ")");
    mc.tie_word_embeddings = bool_or(cfg, "tie_word_embeddings", false);
    mc.rms_norm_eps = double_or(cfg, "rms_norm_eps", default_eps);
    if (!(mc.rms_norm_eps > 0.0)) config_error(cfg, "invalid rms_norm_eps = " + std::to_string(mc.rms_norm_eps) + " (must be > 0)");
    mc.rope_theta = rope_theta(cfg, default_theta);
    if (!(mc.rope_theta > 0.0)) config_error(cfg, "invalid rope_theta = " + std::to_string(mc.rope_theta) + " (must be > 0)");
    mc.hidden_act = string_or(cfg, "hidden_act", "silu");
    read_fp8(cfg, mc);
}

void check_top_k(const io::HfConfig& cfg, const ModelConfig& mc, std::string_view count_key) {
    if (mc.n_expert_used <= 0 || mc.n_expert_used > mc.n_expert)
        config_error(cfg, "invalid num_experts_per_tok = " + std::to_string(mc.n_expert_used) + " (must be in 1.." +
                              std::string(count_key) + " = " + std::to_string(mc.n_expert) + ")");
}

void read_routed_experts(const io::HfConfig& cfg, ModelConfig& mc, std::initializer_list<std::string_view> count_keys) {
    const std::string_view count_key = *count_keys.begin();
    mc.n_expert = require_int_any(cfg, count_keys);
    check_positive(cfg, count_key, mc.n_expert);
    mc.n_expert_used = require_int(cfg, "num_experts_per_tok");
    check_top_k(cfg, mc, count_key);
}

void read_experts_per_layer(const io::HfConfig& cfg, ModelConfig& mc) {
    const std::string key(kExpertsPerLayerKey);
    if (!has(cfg, key)) return;
    std::vector<int64_t> counts = int_list_or_empty(cfg, key);
    if (static_cast<int64_t>(counts.size()) != mc.n_layer)
        config_error(cfg, "field '" + key + "' must list one expert count per decoder layer (" +
                              std::to_string(mc.n_layer) + "), got " + std::to_string(counts.size()));
    const RoutingSpec& r = mc.routing;
    const bool grouped = r.n_group > 1;
    int64_t largest = 0;
    bool uniform = true;
    for (int64_t il = 0; il < mc.n_layer; ++il) {
        const int64_t n = counts[static_cast<size_t>(il)];
        const std::string where = "field '" + key + "' layer " + std::to_string(il) + ": ";
        if (!mc.is_moe_layer[static_cast<size_t>(il)]) {
            if (n != 0) config_error(cfg, where + "a dense layer must have 0 experts, got " + std::to_string(n));
            continue;
        }
        if (n < mc.n_expert_used || n > mc.n_expert)
            config_error(cfg, where + std::to_string(n) + " experts (must be in num_experts_per_tok = " +
                                  std::to_string(mc.n_expert_used) + " .. " + std::to_string(mc.n_expert) + ")");
        if (grouped && (n % r.n_group != 0 || r.topk_group * (n / r.n_group) < mc.n_expert_used ||
                        (r.scoring == Scoring::sigmoid && n / r.n_group < 2)))
            config_error(cfg, where + std::to_string(n) + " experts do not fit group-limited routing (n_group = " +
                                  std::to_string(r.n_group) + ", topk_group = " + std::to_string(r.topk_group) + ")");
        largest = std::max(largest, n);
        uniform = uniform && n == mc.n_expert;
    }
    if (largest != mc.n_expert && mc.n_moe_layer() > 0)
        config_error(cfg, "field '" + key + "': the largest per-layer count (" + std::to_string(largest) +
                              ") must equal the config's expert count (" + std::to_string(mc.n_expert) + ")");
    if (!uniform) mc.n_expert_layer = std::move(counts);
}

void read_lowrank(const io::HfConfig& cfg, ModelConfig& mc) {
    const std::string key(kLowRankKey);
    const Json* v = find(cfg, key);
    if (!v || v->is_null()) return;
    const auto format = v->is_object() ? v->find("format") : v->end();
    if (!v->is_object() || format == v->end() || !format->is_string() || format->get<std::string>() != "factored")
        config_error(cfg, "field '" + key + "' must be an object with \"format\": \"factored\", got " + v->dump());
    mc.lowrank_factored = true;
    const auto base = v->find("base");
    if (base != v->end() && !base->is_boolean()) config_error(cfg, "field '" + key + ".base' must be true or false");
    mc.lowrank_base = base != v->end() && base->get<bool>();
}

void read_fp8(const io::HfConfig& cfg, ModelConfig& mc) {
    const Json* q = find(cfg, "quantization_config");
    if (!q || !q->is_object()) return;
    auto block = q->find("weight_block_size");
    auto fmt = q->find("fmt");
    auto method = q->find("quant_method");
    bool is_fp8 = (block != q->end() && !block->is_null()) ||
                  (fmt != q->end() && fmt->is_string() && fmt->get<std::string>() == "e4m3") ||
                  (method != q->end() && method->is_string() && method->get<std::string>() == "fp8");
    if (!is_fp8) return;
    mc.fp8_block = {128, 128};
    if (block != q->end() && !block->is_null()) {
        if (!block->is_array() || block->size() != 2)
            config_error(cfg, "invalid quantization_config.weight_block_size = " + show(*block) + " (expected [rows, cols])");
        for (size_t i = 0; i < 2; ++i) {
            int64_t b = to_int(cfg, "quantization_config.weight_block_size", (*block)[i]);
            if (b <= 0) config_error(cfg, "invalid quantization_config.weight_block_size = " + show(*block) + " (must be > 0)");
            mc.fp8_block[i] = b;
        }
    }
}

std::string layer_prefix(int64_t il) { return "model.layers." + std::to_string(il) + "."; }

void TensorList::globals(const ModelConfig& mc) {
    add("model.embed_tokens.weight", {mc.vocab_size, mc.d_model}, TensorCategory::embedding);
    add("model.norm.weight", {mc.d_model}, TensorCategory::norm);
    if (!mc.tie_word_embeddings) add("lm_head.weight", {mc.vocab_size, mc.d_model}, TensorCategory::lm_head);
}

void TensorList::layer_norms(const ModelConfig& mc, int64_t il) {
    std::string p = layer_prefix(il);
    add(p + "input_layernorm.weight", {mc.d_model}, TensorCategory::norm, il);
    add(p + "post_attention_layernorm.weight", {mc.d_model}, TensorCategory::norm, il);
}

void TensorList::gqa_attention(const ModelConfig& mc, int64_t il, bool qkv_bias, bool o_bias) {
    std::string p = layer_prefix(il) + "self_attn.";
    int64_t q_out = mc.n_head * mc.head_dim, kv_out = mc.n_head_kv * mc.head_dim;
    add(p + "q_proj.weight", {q_out, mc.d_model}, TensorCategory::attention, il);
    add(p + "k_proj.weight", {kv_out, mc.d_model}, TensorCategory::attention, il);
    add(p + "v_proj.weight", {kv_out, mc.d_model}, TensorCategory::attention, il);
    add(p + "o_proj.weight", {mc.d_model, q_out}, TensorCategory::attention, il);
    if (qkv_bias) {
        add(p + "q_proj.bias", {q_out}, TensorCategory::attention, il);
        add(p + "k_proj.bias", {kv_out}, TensorCategory::attention, il);
        add(p + "v_proj.bias", {kv_out}, TensorCategory::attention, il);
    }
    if (o_bias) add(p + "o_proj.bias", {mc.d_model}, TensorCategory::attention, il);
}

void TensorList::swiglu(const std::string& prefix, int64_t d_model, int64_t d_ff, TensorCategory category, int64_t il,
                        int64_t ie, bool bias) {
    add(prefix + "gate_proj.weight", {d_ff, d_model}, category, il, ie);
    add(prefix + "up_proj.weight", {d_ff, d_model}, category, il, ie);
    add(prefix + "down_proj.weight", {d_model, d_ff}, category, il, ie);
    if (bias) {
        add(prefix + "gate_proj.bias", {d_ff}, category, il, ie);
        add(prefix + "up_proj.bias", {d_ff}, category, il, ie);
        add(prefix + "down_proj.bias", {d_model}, category, il, ie);
    }
}

std::vector<bool> qwen_moe_layers(const io::HfConfig& cfg, int64_t n_layer, int64_t n_expert) {
    int64_t step = int_or(cfg, "decoder_sparse_step", 1);
    check_positive(cfg, "decoder_sparse_step", step);
    std::vector<int64_t> mlp_only = int_list_or_empty(cfg, "mlp_only_layers");
    std::vector<bool> dense(static_cast<size_t>(n_layer), false);
    for (int64_t il : mlp_only) {
        if (il < 0 || il >= n_layer)
            config_error(cfg, "invalid mlp_only_layers entry " + std::to_string(il) + " (layers are 0.." +
                                  std::to_string(n_layer - 1) + ")");
        dense[static_cast<size_t>(il)] = true;
    }
    std::vector<bool> moe(static_cast<size_t>(n_layer));
    for (int64_t il = 0; il < n_layer; ++il)
        moe[static_cast<size_t>(il)] = !dense[static_cast<size_t>(il)] && n_expert > 0 && (il + 1) % step == 0;
    return moe;
}

std::optional<LayerName> parse_layer_name(std::string_view name) {
    constexpr std::string_view kPrefix = "model.layers.";
    if (!name.starts_with(kPrefix)) return std::nullopt;
    name.remove_prefix(kPrefix.size());
    size_t i = 0;
    int64_t il = 0;
    while (i < name.size() && name[i] >= '0' && name[i] <= '9') {
        if (il > std::numeric_limits<int64_t>::max() / 10 - 10) return std::nullopt;
        il = il * 10 + (name[i] - '0');
        ++i;
    }
    if (i == 0 || i >= name.size() || name[i] != '.' || (i > 1 && name[0] == '0')) return std::nullopt;
    return LayerName{il, name.substr(i + 1)};
}

}  // namespace moekit::model::detail
