// Shared pieces of the per-architecture GGUF planners (gguf_model.cpp: OLMoE, Qwen2/3-MoE,
// Mixtral; gguf_deepseek.cpp: DeepSeek-V2/V3). Not part of the public quantize interface.
#pragma once

#include <set>
#include <string>

#include "io/hf_config.h"
#include "quantize/gguf_model.h"

namespace moekit::quantize::detail {

// Collects GgufTensorPlans and remembers which checkpoint tensors they consume, so finish() can
// refuse a checkpoint tensor that has no GGUF name (instead of silently dropping it).
class PlanBuilder {
public:
    PlanBuilder(const io::Checkpoint& ck, GgufModelPlan& plan) : ck_(ck), plan_(plan) {}
    // One checkpoint tensor -> one GGUF tensor, shape reversed into ggml order.
    GgufTensorPlan& add(std::string name, const std::string& src, TensorRole role, int64_t layer);
    // Routed experts of layer il stacked into blk.il.ffn_{gate,up,down}_exps.weight.
    void add_experts(const model::ArchSpec& arch, int64_t il, int64_t n_expert);
    void mark_used(const std::string& src) { used_.insert(src); }
    // Throws Error("quantize") for any checkpoint tensor not consumed (rotary inv_freq excepted),
    // unless `skip` says the tensor is deliberately left out.
    void finish(const std::string& gguf_arch, bool (*skip)(const model::ModelConfig&, const std::string&),
                const model::ModelConfig& c) const;

private:
    const io::Checkpoint& ck_;
    GgufModelPlan& plan_;
    std::set<std::string> used_;
};

// general.* keys every architecture gets.
void add_general_keys(io::GgufWriter& w, const std::string& arch, const io::Checkpoint& ck);
// {arch}.rope.scaling.* as convert_hf_to_gguf.py's TextModel.set_gguf_parameters writes them from
// rope_parameters (transformers 5) or rope_scaling (4.x): linear, yarn (factor, original context,
// ext/attn factors, beta fast/slow) and longrope (type only); "default" and others: nothing.
void add_rope_scaling(io::GgufWriter& w, const std::string& arch, const io::HfConfig& hf);
// rope_parameters / rope_scaling of the config, with the converter's fallbacks applied.
nlohmann::ordered_json rope_parameters(const io::HfConfig& hf);

// DeepSeek-V2/V3 (gguf_deepseek.cpp).
GgufModelPlan plan_gguf_deepseek(const io::Checkpoint& ck, const model::ArchSpec& arch, const model::ModelConfig& c);
void add_gguf_hparams_deepseek(io::GgufWriter& w, const GgufModelPlan& plan, const io::Checkpoint& ck,
                               const model::ModelConfig& c);

}  // namespace moekit::quantize::detail
