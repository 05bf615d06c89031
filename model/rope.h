// Rotary position embeddings as transformers 5.x computes them for the supported architectures:
// inverse frequencies for rope_type default / linear / yarn / llama3 (read from config.json's
// rope_parameters, or 4.x rope_scaling + rope_theta), cos/sin in fp32 scaled by the type's
// attention factor, applied either rotate-half style (Llama, Mixtral, Qwen, OLMoE, DeepSeek-V3
// with rope_interleave=false) or to interleaved pairs (x0,x1),(x2,x3),... (DeepSeek-V2's complex
// form; DeepSeek-V3 with rope_interleave=true, whose de-interleaved output layout is a common
// permutation of q and k and so gives the same attention scores).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/hf_config.h"
#include "model/arch.h"

namespace moekit::model::detail {

enum class RopeStyle { half, interleaved };

struct RopeSpec {
    std::string type = "default";
    int64_t dim = 0;                 // rotary dimensions per head (even)
    RopeStyle style = RopeStyle::half;
    std::vector<float> inv_freq;     // dim / 2
    float attention_factor = 1.0f;   // multiplies cos and sin (yarn)
    double mla_mscale2 = 1.0;        // DeepSeek MLA: softmax scale multiplier mscale(factor, mscale_all_dim)^2
};

// Throws Error("engine", ...) for a rope_type it does not implement.
RopeSpec rope_spec(const io::HfConfig& config, const ModelConfig& mc);

// cos/sin for positions [0, n_pos).
class RopeTable {
public:
    RopeTable(const RopeSpec& spec, int64_t n_pos);
    // Rotates one head's rotary slice x[0, dim) in place for position pos.
    void apply(float* x, int64_t pos) const;
    int64_t dim() const { return dim_; }
    int64_t n_pos() const { return dim_ > 0 ? static_cast<int64_t>(cos_.size()) / (dim_ / 2) : 0; }
    RopeStyle style() const { return style_; }
    const float* cos_data() const { return cos_.data(); }  // [n_pos, dim / 2], attention factor applied
    const float* sin_data() const { return sin_.data(); }

private:
    int64_t dim_ = 0;
    RopeStyle style_ = RopeStyle::half;
    std::vector<float> cos_, sin_;  // [n_pos, dim / 2]
};

}  // namespace moekit::model::detail
