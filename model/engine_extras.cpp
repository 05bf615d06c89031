#include "model/engine_extras.h"

#include <string>

#include "core/error.h"

namespace moekit::model::detail {

namespace {

using Json = nlohmann::ordered_json;

int64_t int_or(const Json& j, const char* key, int64_t fallback) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null() || !it->is_number()) return fallback;
    return static_cast<int64_t>(it->get<double>());
}

bool bool_or(const Json& j, const char* key, bool fallback) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_boolean()) return fallback;
    return it->get<bool>();
}

}  // namespace

EngineExtras read_extras(const io::HfConfig& config, const ModelConfig& mc) {
    const Json& j = config.json();
    const std::string src = config.source().string();
    if (mc.hidden_act != "silu")
        throw Error("engine", src + ": hidden_act '" + mc.hidden_act + "' is not supported (the engine implements silu)");

    EngineExtras ex;
    ex.rope = rope_spec(config, mc);
    ex.sliding_window.assign(static_cast<size_t>(mc.n_layer), 0);
    const int64_t window = int_or(j, "sliding_window", 0);
    if (mc.model_type == "mixtral") {
        ex.sliding_window.assign(static_cast<size_t>(mc.n_layer), window);
    } else if (mc.model_type == "qwen3_moe") {
        if (bool_or(j, "use_sliding_window", false)) ex.sliding_window.assign(static_cast<size_t>(mc.n_layer), window);
    } else if (mc.model_type == "qwen2_moe") {
        const bool use = bool_or(j, "use_sliding_window", false);
        const int64_t max_window_layers = int_or(j, "max_window_layers", 28);
        auto types = j.find("layer_types");
        for (int64_t il = 0; il < mc.n_layer; ++il) {
            bool sliding;
            if (types != j.end() && types->is_array() && static_cast<int64_t>(types->size()) > il && (*types)[il].is_string())
                sliding = (*types)[il].get<std::string>() == "sliding_attention";
            else
                sliding = ((il + 1) % 2 != 0) && il < max_window_layers && use;
            if (sliding && use) ex.sliding_window[static_cast<size_t>(il)] = window;
        }
    }
    for (int64_t& w : ex.sliding_window)
        if (w < 0) w = 0;
    if (mc.model_type == "olmoe") {
        auto it = j.find("clip_qkv");
        if (it != j.end() && it->is_number()) ex.clip_qkv = it->get<double>();
    }
    return ex;
}

}  // namespace moekit::model::detail
