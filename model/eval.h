// `moekit eval`: perplexity per data domain, and with a reference model the distortion of the
// next-token distributions (KL, top-1 agreement) and of the routing (per MoE layer).
//
// Convention (matches tests/golden/demo_ppl.json): each domain's token stream (io/dataset.h) is
// cut into non-overlapping windows of seq_len ids; a final partial window is kept when it has at
// least 2 ids. Each window is an independent teacher-forced forward pass (positions 0..n-1, causal,
// no cache carried over). Logits at positions 0..n-2 predict the ids at 1..n-1 (n-1 scored tokens
// per window). nll = -log_softmax(fp32 logits, in float64)[target], summed in float64;
// mean_nll = sum / scored; ppl = exp(mean_nll); "total" pools every domain's scored tokens.
//
// With a reference model, over the same scored tokens: KL(ref || model) =
// sum_v p_ref(v) (log p_ref(v) - log p_model(v)) in float64, its mean and 99th percentile (linear
// interpolation, numpy's default); top-1 agreement = fraction of tokens whose argmax (first index
// on ties) coincides. Routing agreement per MoE layer, over every token position of every window:
// mean over tokens of |S_ref ∩ map(S_model)| / k_ref, S = the architecture's own selected set.
// map: identity when the expert counts agree and MODEL_DIR/moekit.json has no expert_map,
// otherwise expert_map (see read_expert_map). Without a usable map, routing agreement is reported
// as unavailable with the reason.
//
// Memory: windows are batched (batch_tokens ids per forward pass); per batch the final hidden
// states of both models are kept and the vocabulary projection runs in chunks of chunk_rows rows,
// so T x vocab logits are never held.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/dataset.h"
#include "model/corpus.h"
#include "model/engine.h"

namespace moekit::model {

struct EvalOptions {
    std::filesystem::path model_dir;
    CorpusOptions corpus;                 // --data and how it becomes windows
    std::optional<std::filesystem::path> ref_dir;
    int64_t batch_tokens = 16384;         // ids per forward pass (at least one window)
    int64_t chunk_rows = 512;             // rows per vocabulary-projection chunk
    int threads = 0;                      // 0: all cores
    // Matmul precision of MODEL_DIR's engine (EngineOptions::compute). The reference model always
    // runs in fp32, so `--compute bf16 --ref MODEL_DIR` measures what bf16 compute changes.
    Compute compute = Compute::kF32;
    // Where both engines run (EngineOptions::device): nullptr = the CPU; the CLI passes
    // backend::make_cuda_ops for --device cuda. bf16 compute on a device needs no oneDNN.
    std::shared_ptr<backend::DeviceOps> device = nullptr;
    // Called on the calling thread: fraction done in [0, 1] and a short description.
    std::function<void(double, const std::string&)> progress;
};

// Per decoder MoE layer routing agreement, accumulated over tokens.
struct RoutingAgreement {
    int64_t layer = 0;
    double sum = 0;                       // sum over tokens of |S_ref ∩ map(S_model)| / k_ref
    int64_t tokens = 0;
    double value() const { return tokens ? sum / static_cast<double>(tokens) : 0.0; }
};

struct DomainResult {
    std::string domain;
    std::filesystem::path path;
    std::string format;                   // e.g. "text", "bin int32"
    int64_t documents = 0;
    int64_t documents_used = 0;
    int64_t tokens = 0;                   // ids evaluated (after max_tokens)
    int64_t tokens_available = 0;         // stream length before truncation (lower bound if cut early)
    int64_t windows = 0;
    int64_t scored = 0;
    double nll_sum = 0;
    double mean_nll() const { return scored ? nll_sum / static_cast<double>(scored) : 0.0; }
    double ppl() const;
    // Reference comparison (when EvalOptions::ref_dir).
    double ref_nll_sum = 0;
    double kl_sum = 0;
    double kl_p99 = 0;
    int64_t top1_agree = 0;
    std::vector<RoutingAgreement> routing;  // one per MoE layer (empty when unavailable)
};

struct EvalReport {
    EvalOptions options;                  // as resolved (seq_len filled in); progress unset
    std::string model_type;
    std::string display_name;
    int64_t vocab_size = 0;
    int64_t n_layer = 0;
    int64_t n_expert = 0;
    int64_t n_expert_used = 0;
    std::string tokenization;             // TokenizeRule::describe(), or "pre-tokenized ids"
    bool has_text = false;
    std::optional<int32_t> bos_id, eos_id;
    std::vector<DomainResult> domains;
    DomainResult total;                   // pooled over domains
    // Reference.
    bool has_ref = false;
    int64_t ref_n_expert = 0;
    bool routing_available = false;
    std::string routing_note;             // how selections were mapped, or why unavailable
    // Timing: wall_s from start to end of evaluate(); eval_s forward passes and scoring only.
    double wall_s = 0;
    double eval_s = 0;
    int threads = 0;
    double tokens_per_s() const;          // total.tokens / eval_s (one pass of each model counted once)
};

// Throws moekit::Error for bad input (data files, checkpoints, mismatched vocabularies, bad
// seq_len); everything else is an internal error.
EvalReport evaluate(const EvalOptions& options);

nlohmann::ordered_json to_json(const EvalReport& report);
std::string to_text(const EvalReport& report);

// MODEL_DIR/moekit.json "expert_map": for each MoE layer, the reference (original) expert index
// of every expert of MODEL_DIR; an entry may be a list of indices (a merged expert stands for all
// of them). Accepted shapes: {"<layer>": [...], ...} or a list with one entry per decoder layer
// (null/[] for dense layers). Returns nullopt when the file or the field is absent. Throws
// Error("eval") naming the file for a malformed map or an index outside [0, ref_n_expert).
using ExpertMap = std::vector<std::vector<std::vector<int32_t>>>;  // [layer][expert] -> originals
std::optional<ExpertMap> read_expert_map(const std::filesystem::path& model_dir, int64_t n_layer,
                                         const std::vector<bool>& is_moe_layer, int64_t n_expert,
                                         int64_t ref_n_expert);
// The same for models whose MoE layers hold different expert counts (n_expert_per_layer: one
// count per decoder layer, ModelConfig::n_expert_at).
std::optional<ExpertMap> read_expert_map(const std::filesystem::path& model_dir, int64_t n_layer,
                                         const std::vector<bool>& is_moe_layer,
                                         const std::vector<int64_t>& n_expert_per_layer, int64_t ref_n_expert);

}  // namespace moekit::model
