// Private to the forward engine: the config fields the forward pass needs beyond ModelConfig,
// read straight from config.json (so the architecture parsers stay about checkpoint structure):
// rotary parameters, per-layer sliding windows, OLMoE's clip_qkv. Also rejects what the engine
// does not implement (activations other than SiLU, unsupported rope types).
#pragma once

#include <cstdint>
#include <vector>

#include "io/hf_config.h"
#include "model/arch.h"
#include "model/rope.h"

namespace moekit::model::detail {

struct EngineExtras {
    RopeSpec rope;
    std::vector<int64_t> sliding_window;  // per decoder layer; 0 = full causal attention
    double clip_qkv = 0.0;                // 0 = none
};

// Mixtral: sliding_window (when not null) on every layer. Qwen3-MoE: sliding_window on every
// layer iff use_sliding_window. Qwen2-MoE: iff use_sliding_window, on the layers layer_types
// marks "sliding_attention" (5.x default rule when absent: odd-numbered i + 1, i <
// max_window_layers). OLMoE / DeepSeek: none.
EngineExtras read_extras(const io::HfConfig& config, const ModelConfig& mc);

}  // namespace moekit::model::detail
