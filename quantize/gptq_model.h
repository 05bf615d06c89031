// GPTQ over a whole MoE model, layer by layer (METHODS.md §8): decoder layer l is calibrated on
// the hidden states that the already-quantized layers 0..l-1 produce. One streamed pass: the
// calibration hidden states are kept between layers (model::Engine's layer-by-layer forward);
// at MoE layer l they go through l with its original weights while an observer collects the
// routed-expert inputs, l's experts are GPTQ'd (and its other tensors RTN'd), then the hidden
// states go through l once more with the quantized values (model::WeightOverrides) to become
// layer l+1's input. Dense layers are RTN'd and run once. Cost: two layer passes per MoE layer,
// linear in depth; memory: the calibration hidden states + one layer's weights (fp32, original
// and quantized) + the quantized tensors handed to the caller (GptqModelOptions::sink).
//
// What gets GPTQ: the routed experts' gate/up/down projections. Their inputs come from the
// engine's routed-expert site (the normed MoE-block input of the tokens routed to the expert);
// down_proj's input is recomputed from the already-quantized gate/up: silu(x Wg_q^T) * (x Wu_q^T).
//   hessian = "layer"   one H per layer from every calibration token (routing ignored), the
//                       plain-GPTQ baseline;
//   hessian = "expert"  H per expert from its routed tokens only (expert-aware);
//   hessian = "agq"     per expert, each routed token weighted by its gate g (MoEQuant AGQ: x sqrt g).
// Experts that see fewer than min_expert_tokens routed tokens ("starved") are quantized with RTN
// on the same grid and listed; no scale is ever computed from an empty Hessian.
// Attention, shared experts, dense MLPs, embeddings and the output head use RTN (the engine
// exposes no site for their inputs); the report says so.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <map>
#include <string>
#include <vector>

#include "cuda/device_ops.h"
#include "io/checkpoint.h"
#include "model/arch.h"
#include "model/corpus.h"
#include "model/engine.h"
#include "quantize/gptq.h"

namespace moekit::quantize {

struct GptqModelOptions {
    GptqOptions gptq;
    std::string hessian = "expert";        // layer | expert | agq
    int64_t min_expert_tokens = 0;         // 0: the expert's input width (d_model)
    model::CorpusOptions calib;
    int64_t batch_tokens = 16384;
    std::map<std::pair<int64_t, int64_t>, int> expert_bits;  // (layer, expert) -> bits (mixed precision)
    int threads = 0;
    // Where the calibration forward runs (model::EngineOptions::device); nullptr: the CPU.
    std::shared_ptr<backend::DeviceOps> device = nullptr;
    // Tensors to fake-quantize with RTN (every quantizable tensor that is not a routed expert
    // projection); called with the tensor name and its fp32 data.
    std::function<void(const std::string&, std::vector<float>&)> rtn;
    std::function<void(double, const std::string&)> progress;
    // Receives every quantized tensor (name, fp32 fake-quantized values) as soon as it is final
    // (embedding/head first, then layer by layer), so the caller can spill it and the model's
    // quantized weights never all sit in memory. Unset: they are kept in GptqModelResult::weights.
    std::function<void(const std::string&, std::vector<float>&&)> sink;
};

struct GptqExpertReport {
    int64_t layer = 0, expert = 0;
    int64_t tokens = 0;                    // routed calibration tokens
    bool starved = false;                  // RTN fallback
    double loss_gate = 0, loss_up = 0, loss_down = 0;  // GPTQ proxy losses
};

struct GptqModelResult {
    std::map<std::string, std::vector<float>> weights;  // every quantized tensor (when no sink)
    std::vector<GptqExpertReport> experts;
    int64_t calib_tokens = 0, calib_windows = 0;
    int64_t passes = 0;                    // layer passes over the calibration set (2 per MoE layer)
    double seconds = 0;
    std::vector<double> layer_seconds;     // GPTQ time per MoE layer (excluding the forward pass)
    std::vector<double> layer_wall_seconds;  // per MoE layer: calibration pass + GPTQ + propagation
};

// One MoE layer's calibration data: the routed-expert inputs and gates of layer `layer` (and,
// for the layer-wide Hessian, every token's MoE-block input), appended over engine passes.
class GptqLayerInputs : public model::Observer {
public:
    GptqLayerInputs(int64_t layer, int64_t n_expert, int64_t d_model, bool all_tokens);
    uint32_t sites() const override;
    void on_expert(const model::ExpertEvent& ev) override;
    void on_moe_block(const model::MoeBlockEvent& ev) override;

    int64_t layer, d_model;
    bool all_tokens;
    std::vector<std::vector<float>> x, g;  // per expert: routed inputs [n, d_model], gates [n]
    std::vector<float> all;                // every token's MoE-block input (all_tokens)
};

// GPTQ of MoE layer `il`'s routed experts (original weights from `checkpoint`) on the collected
// inputs: fills `weights` with their fake-quantized values and returns one report per expert.
// The building block of gptq_model; tests use it to check the streamed driver against a
// re-forward-from-scratch reference.
std::vector<GptqExpertReport> gptq_moe_layer(const io::Checkpoint& checkpoint, const model::ArchSpec& arch,
                                             const model::ModelConfig& config, int64_t il, const GptqLayerInputs& inputs,
                                             const GptqModelOptions& options,
                                             std::map<std::string, std::vector<float>>& weights);

// `rtn_names`: the non-expert tensors to quantize with options.rtn.
GptqModelResult gptq_model(const io::Checkpoint& checkpoint, const std::vector<std::string>& rtn_names,
                           const GptqModelOptions& options);

}  // namespace moekit::quantize
