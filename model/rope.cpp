#include "model/rope.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace moekit::model::detail {

namespace {

using Json = nlohmann::ordered_json;

double num_or(const Json& j, const char* key, double fallback) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null() || !it->is_number()) return fallback;
    return it->get<double>();
}

// transformers' compute_default_rope_parameters, in fp32 like torch.
std::vector<float> default_inv_freq(double base, int64_t dim) {
    std::vector<float> inv(static_cast<size_t>(dim / 2));
    for (int64_t i = 0; i < dim / 2; ++i) {
        const float e = static_cast<float>(2 * i) / static_cast<float>(dim);
        const float p = static_cast<float>(std::pow(base, static_cast<double>(e)));
        inv[static_cast<size_t>(i)] = 1.0f / p;
    }
    return inv;
}

double yarn_mscale(double scale, double mscale) { return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0; }

// transformers _compute_yarn_parameters.
void yarn(const Json& p, double base, int64_t dim, double max_pos, RopeSpec& spec) {
    const double orig = num_or(p, "original_max_position_embeddings", max_pos);
    double factor = num_or(p, "factor", 0.0);
    if (factor == 0.0) factor = max_pos / orig;
    const double mscale = num_or(p, "mscale", 0.0);
    const double mscale_all_dim = num_or(p, "mscale_all_dim", 0.0);
    double attention_factor = num_or(p, "attention_factor", -1.0);
    if (attention_factor < 0.0)
        attention_factor = (mscale != 0.0 && mscale_all_dim != 0.0)
                               ? yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim)
                               : yarn_mscale(factor, 1.0);
    double beta_fast = num_or(p, "beta_fast", 0.0);
    double beta_slow = num_or(p, "beta_slow", 0.0);
    if (beta_fast == 0.0) beta_fast = 32.0;
    if (beta_slow == 0.0) beta_slow = 1.0;
    bool truncate = true;
    if (auto it = p.find("truncate"); it != p.end() && it->is_boolean()) truncate = it->get<bool>();

    auto correction_dim = [&](double rotations) {
        return (static_cast<double>(dim) * std::log(orig / (rotations * 2.0 * M_PI))) / (2.0 * std::log(base));
    };
    double low = correction_dim(beta_fast), high = correction_dim(beta_slow);
    if (truncate) {
        low = std::floor(low);
        high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, static_cast<double>(dim - 1));
    if (low == high) high += 0.001;

    const int64_t half = dim / 2;
    spec.inv_freq.resize(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i) {
        const float e = static_cast<float>(2 * i) / static_cast<float>(dim);
        const float pos_freq = static_cast<float>(std::pow(base, static_cast<double>(e)));
        const float extrapolation = 1.0f / pos_freq;
        const float interpolation = 1.0f / (static_cast<float>(factor) * pos_freq);
        float ramp = static_cast<float>((static_cast<float>(i) - low) / (high - low));
        ramp = std::clamp(ramp, 0.0f, 1.0f);
        const float extrapolation_factor = 1.0f - ramp;
        spec.inv_freq[static_cast<size_t>(i)] =
            interpolation * (1.0f - extrapolation_factor) + extrapolation * extrapolation_factor;
    }
    spec.attention_factor = static_cast<float>(attention_factor);
}

// transformers _compute_llama3_parameters.
void llama3(const Json& p, RopeSpec& spec) {
    const double factor = num_or(p, "factor", 1.0);
    const double low_ff = num_or(p, "low_freq_factor", 1.0);
    const double high_ff = num_or(p, "high_freq_factor", 4.0);
    const double old_ctx = num_or(p, "original_max_position_embeddings", 8192.0);
    const double low_wavelen = old_ctx / low_ff, high_wavelen = old_ctx / high_ff;
    for (float& f : spec.inv_freq) {
        const double wavelen = 2.0 * M_PI / f;
        double v = wavelen > low_wavelen ? f / factor : f;
        if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
            const double smooth = (old_ctx / wavelen - low_ff) / (high_ff - low_ff);
            v = (1.0 - smooth) * v / factor + smooth * v;
        }
        f = static_cast<float>(v);
    }
}

}  // namespace

RopeSpec rope_spec(const io::HfConfig& config, const ModelConfig& mc) {
    const Json& j = config.json();
    Json p = Json::object();
    if (auto it = j.find("rope_parameters"); it != j.end() && it->is_object()) p = *it;
    else if (auto it2 = j.find("rope_scaling"); it2 != j.end() && it2->is_object()) p = *it2;

    RopeSpec spec;
    if (auto it = p.find("rope_type"); it != p.end() && it->is_string()) spec.type = it->get<std::string>();
    else if (auto it2 = p.find("type"); it2 != p.end() && it2->is_string()) spec.type = it2->get<std::string>();

    const bool mla = mc.mla.kv_lora_rank > 0;
    spec.dim = mla ? mc.mla.qk_rope_head_dim : mc.head_dim;
    if (spec.dim <= 0 || spec.dim % 2 != 0)
        throw Error("engine", config.source().string() + ": rotary dimension " + std::to_string(spec.dim) + " must be even");
    if (mc.model_type == "deepseek_v2") {
        spec.style = RopeStyle::interleaved;
    } else if (mc.model_type == "deepseek_v3") {
        bool interleave = true;
        if (auto it = j.find("rope_interleave"); it != j.end() && it->is_boolean()) interleave = it->get<bool>();
        spec.style = interleave ? RopeStyle::interleaved : RopeStyle::half;
    }

    const double base = mc.rope_theta;
    const double max_pos = num_or(j, "max_position_embeddings", 2048.0);
    spec.inv_freq = default_inv_freq(base, spec.dim);
    if (spec.type == "default") {
    } else if (spec.type == "linear") {
        const float factor = static_cast<float>(num_or(p, "factor", 1.0));
        for (float& f : spec.inv_freq) f /= factor;
    } else if (spec.type == "yarn") {
        yarn(p, base, spec.dim, max_pos, spec);
    } else if (spec.type == "llama3") {
        llama3(p, spec);
    } else {
        throw Error("engine", config.source().string() + ": rope type '" + spec.type +
                                  "' is not supported by the forward engine (supported: default, linear, yarn, llama3)");
    }
    // DeepSeek's yarn_apply_mscale: any non-default rope type with mscale_all_dim scales the MLA
    // softmax by mscale(factor, mscale_all_dim)^2.
    if (spec.type != "default") {
        const double mscale_all_dim = num_or(p, "mscale_all_dim", 0.0);
        if (mscale_all_dim != 0.0) {
            const double m = yarn_mscale(num_or(p, "factor", 1.0), mscale_all_dim);
            spec.mla_mscale2 = m * m;
        }
    }
    return spec;
}

RopeTable::RopeTable(const RopeSpec& spec, int64_t n_pos) : dim_(spec.dim), style_(spec.style) {
    const int64_t half = dim_ / 2;
    cos_.resize(static_cast<size_t>(n_pos * half));
    sin_.resize(static_cast<size_t>(n_pos * half));
    for (int64_t pos = 0; pos < n_pos; ++pos)
        for (int64_t i = 0; i < half; ++i) {
            const float angle = static_cast<float>(pos) * spec.inv_freq[static_cast<size_t>(i)];
            const size_t at = static_cast<size_t>(pos * half + i);
            cos_[at] = static_cast<float>(std::cos(static_cast<double>(angle))) * spec.attention_factor;
            sin_[at] = static_cast<float>(std::sin(static_cast<double>(angle))) * spec.attention_factor;
        }
}

void RopeTable::apply(float* x, int64_t pos) const {
    const int64_t half = dim_ / 2;
    const float* c = cos_.data() + pos * half;
    const float* s = sin_.data() + pos * half;
    if (style_ == RopeStyle::half) {
        for (int64_t i = 0; i < half; ++i) {
            const float a = x[i], b = x[i + half];
            x[i] = a * c[i] - b * s[i];
            x[i + half] = b * c[i] + a * s[i];
        }
    } else {
        for (int64_t i = 0; i < half; ++i) {
            const float a = x[2 * i], b = x[2 * i + 1];
            x[2 * i] = a * c[i] - b * s[i];
            x[2 * i + 1] = b * c[i] + a * s[i];
        }
    }
}

}  // namespace moekit::model::detail
