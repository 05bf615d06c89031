// GPTQ over a whole MoE model, layer by layer (METHODS.md §8): decoder layer l is calibrated on
// the hidden states that the already-quantized layers 0..l-1 produce. moekit's engine reads
// weights from a checkpoint, so after each layer the quantized layers so far are written to a
// temporary fake-quantized checkpoint next to the output and the next pass runs on it (one
// forward pass per MoE layer: n_layer passes in all, each over the whole model).
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
#include <map>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "model/corpus.h"
#include "quantize/gptq.h"

namespace moekit::quantize {

struct GptqModelOptions {
    GptqOptions gptq;
    std::string hessian = "expert";        // layer | expert | agq
    int64_t min_expert_tokens = 0;         // 0: the expert's input width (d_model)
    model::CorpusOptions calib;
    int64_t batch_tokens = 16384;
    std::map<std::pair<int64_t, int64_t>, int> expert_bits;  // (layer, expert) -> bits (mixed precision)
    std::filesystem::path scratch_dir;     // where temporary per-layer checkpoints go
    int threads = 0;
    // Tensors to fake-quantize with RTN (every quantizable tensor that is not a routed expert
    // projection); called with the tensor name and its fp32 data.
    std::function<void(const std::string&, std::vector<float>&)> rtn;
    std::function<void(double, const std::string&)> progress;
};

struct GptqExpertReport {
    int64_t layer = 0, expert = 0;
    int64_t tokens = 0;                    // routed calibration tokens
    bool starved = false;                  // RTN fallback
    double loss_gate = 0, loss_up = 0, loss_down = 0;  // GPTQ proxy losses
};

struct GptqModelResult {
    std::map<std::string, std::vector<float>> weights;  // every quantized tensor, fp32 fake values
    std::vector<GptqExpertReport> experts;
    int64_t calib_tokens = 0, calib_windows = 0;
    int64_t passes = 0;
    double seconds = 0;
    std::vector<double> layer_seconds;     // GPTQ time per MoE layer (excluding the forward pass)
};

// `rtn_names`: the non-expert tensors to quantize with options.rtn.
GptqModelResult gptq_model(const io::Checkpoint& checkpoint, const std::vector<std::string>& rtn_names,
                           const GptqModelOptions& options);

}  // namespace moekit::quantize
