// `moekit quantize`: weight quantization of a MoE checkpoint (METHODS.md §8).
//
// Formats:
//   gguf     one llama.cpp-loadable GGUF v3 file (io/gguf.h; tensor names, metadata and
//            tokenizer as llama.cpp's converter writes them, quantize/gguf_model.h); blocks
//            bit-exact with ggml's reference quantizers (quantize/ggml_quants.h). The type comes
//            from --type (q4_0, q4_K, q5_0, q6_K, q8_0, f16, bf16, f32) or --bits (4 -> q4_K,
//            5 -> q5_0, 6 -> q6_K, 8 -> q8_0). Rows whose length is not a multiple of the block
//            fall back as llama-quantize does (q4_K -> q5_0, q6_K -> q8_0, else f16), and the
//            report says which tensors did. Next to OUT.gguf: OUT.moekit.json.
//   hf-fake  a Hugging Face checkpoint in the original layout whose quantized tensors hold the
//            dequantized values (as float32, so `moekit eval` measures exactly the quantized
//            model; --fake-dtype source rounds them to the source dtype), for eval/transformers.
//            The quantizer is the ggml --type if given (what llama.cpp computes with), else the
//            integer grid of quantize/rtn.h (--bits, --group-size, --asym).
// Which tensors: every 2-D weight ending in ".weight" except norms and routers (llama-quantize's
// rule; --keep-embeddings also leaves token embedding and output head alone); everything else is
// copied (hf-fake) or written as F32 (gguf, as the converter does).
//
// Methods: rtn (round to nearest); gptq (quantize/gptq_model.h: sequential layers, routed experts
// GPTQ'd with a layer-wide, per-expert or gate-weighted Hessian, the rest RTN) for --format
// hf-fake with the integer grid; GPTQ into GGUF blocks is not implemented yet (refused).
// Mixed precision (quantize/mixed_precision.h): bits per routed expert (hf-fake) or one ggml type
// per layer-projection (gguf, where all experts of a projection share one tensor).
// Report: per quantized tensor SNR (dB), relative RMSE and max |error| (vs the fp32 source),
// in OUT's moekit.json and --json.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cuda/device_ops.h"
#include "model/corpus.h"
#include "quantize/ggml_quants.h"
#include "quantize/gptq_model.h"
#include "quantize/mixed_precision.h"
#include "quantize/rtn.h"

namespace moekit::quantize {

struct QuantizeOptions {
    std::filesystem::path model_dir;
    std::filesystem::path out;            // OUT.gguf (gguf) or OUT_DIR (hf-fake); required unless dry_run
    std::string format = "gguf";          // gguf | hf-fake | gptq (refused: not implemented)
    std::string method = "rtn";           // rtn | gptq
    int bits = 4;
    std::string type;                     // ggml type name; empty: from bits (gguf) / integer grid (hf-fake)
    int64_t group_size = 128;             // integer grid (hf-fake without --type)
    bool symmetric = true;
    bool keep_embeddings = false;
    std::string fake_dtype = "f32";       // hf-fake: f32 | source
    bool dry_run = false;
    bool force = false;
    // GPTQ (quantize/gptq_model.h): hf-fake with the integer grid only.
    model::CorpusOptions calib;           // gptq only
    int64_t batch_tokens = 16384;
    std::string hessian = "expert";       // layer | expert | agq
    double damp = 0.01;
    bool act_order = false;
    int64_t min_expert_tokens = 0;        // 0: d_model
    // Mixed precision (quantize/mixed_precision.h): hf-fake with the integer grid only.
    bool mixed_precision = false;
    double avg_bits = 3.5;
    std::vector<int> candidate_bits = {2, 3, 4, 8};               // hf-fake integer grid
    std::vector<std::string> candidate_types = {"q4_0", "q5_0", "q8_0"};  // gguf
    double mp_alpha = 1.0, mp_beta = 1.0;
    int threads = 0;
    // --device cuda: GPTQ's and mixed precision's calibration forward passes on the device
    // (model::EngineOptions::device); the quantization itself stays on the CPU. nullptr: the CPU.
    std::shared_ptr<backend::DeviceOps> device = nullptr;
    std::string tool_version;
    std::function<void(double, const std::string&)> progress;
};

struct TensorReport {
    std::string name;                     // output tensor name (GGUF name or HF name)
    std::vector<std::string> sources;
    std::string type;                     // ggml type or "int4 g128 sym" ...
    std::string requested_type;           // before the llama.cpp fallback
    bool fallback = false;
    int64_t n_elements = 0;
    uint64_t bytes = 0;                   // stored bytes (gguf) / payload bits/8 (hf-fake)
    double snr_db = 0, rel_rmse = 0, max_abs_error = 0;
};

struct QuantizeResult {
    QuantizeOptions options;
    std::string model_type, gguf_arch, quantizer;
    std::vector<TensorReport> tensors;    // quantized tensors (and, for gguf, every F32/F16 one)
    std::vector<std::string> notes;
    int64_t n_fallback = 0;
    uint64_t input_tensor_bytes = 0, output_bytes = 0;
    double quantized_params = 0, avg_bits = 0;   // over quantized tensors
    double wall_s = 0, quantize_s = 0;
    // GPTQ.
    std::vector<GptqExpertReport> gptq_experts;
    int64_t calib_tokens = 0, gptq_passes = 0;  // gptq_passes: layer passes over the calibration set
    std::vector<double> gptq_layer_seconds;       // GPTQ compute per MoE layer
    std::vector<double> gptq_layer_wall_seconds;  // per MoE layer: calibration pass + GPTQ + propagation
    std::vector<ExpertProfile> mixed;     // mixed precision: per-expert factors and bits
    double expert_avg_bits = 0;           // mixed precision: achieved average over routed experts
    std::vector<ProjectionProfile> mixed_gguf;  // mixed precision in GGUF: per layer-projection
    int threads = 0;
    nlohmann::ordered_json moekit_json;
};

QuantizeResult quantize(const QuantizeOptions& options);

nlohmann::ordered_json make_moekit_json(const QuantizeResult& result);
nlohmann::ordered_json to_json(const QuantizeResult& result);
std::string to_text(const QuantizeResult& result);

// Error statistics of an approximation y of x (n values).
struct ErrorStats {
    double sum_x2 = 0, sum_e2 = 0, max_abs = 0;
    int64_t n = 0;
    void add(const float* x, const float* y, int64_t count);
    double snr_db() const;
    double rel_rmse() const;
};

}  // namespace moekit::quantize
