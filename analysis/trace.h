// RoutingTrace: everything `moekit profile` measures, recorded once from the model's forward pass
// and enough to recompute every statistic without the model (`--save-trace` / `--trace`).
//
// Token-level data: the token ids and, per MoE layer, each token's selected experts (in the
// router's rank order) and the gate weights actually applied. Everything that needs the router's
// full distribution or the experts' outputs is reduced per sequence into sums/maxima (mergeable),
// except a strided sample of raw router logits that the multi-type congestion fit needs.
//
// The sequence is the unit of merging: traces of disjoint data concatenate (merge_traces), MPI
// ranks record disjoint sequences and rank 0 concatenates them in data order, so the numbers do
// not depend on how the work was split. Bootstrap batches and domains are groups of sequences.
//
// On disk a trace is a safetensors file (readable with the `safetensors` Python package); the
// tensor names and the metadata keys are listed in docs/PROFILE.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "model/engine.h"

namespace moekit::analysis {

struct TraceLayer {
    int64_t layer = 0;                          // decoder layer index
    // Token level, T rows.
    std::vector<int32_t> selected;              // [T * k] expert ids, router rank order
    std::vector<float> gates;                   // [T * k] gate weight applied to each selected expert
    // Sequence level, n_seq rows (sums/maxima over the sequence's tokens).
    std::vector<double> seq_sum_prob;           // [n_seq * E] sum of softmax(z_t)_e
    std::vector<double> seq_sum_centered_logit; // [n_seq * E] sum of z_te - mean_j z_tj
    std::vector<double> seq_sum_entropy;        // [n_seq] sum of -sum_e p ln p, p = softmax(z_t)
    std::vector<double> seq_sum_out_norm;       // [n_seq * E] sum over routed tokens of ||E_e(x_t)||_2
    std::vector<float> seq_max_abs_out;         // [n_seq * E] max over routed tokens of max|E_e(x_t)|
                                                //   (the down_proj output; 0 when never routed)
    // Sampled tokens: position p within its sequence with p % logit_sample_stride == 0.
    std::vector<float> sample_logits;           // [n_sample * E] raw router logits z_t
};

struct RoutingTrace {
    // Model facts (checked equal when traces are merged).
    std::string model_type;
    std::string model_name;                     // display name (checkpoint directory name)
    int64_t n_layer = 0;                        // decoder layers
    int64_t n_expert = 0;                       // E
    int64_t n_expert_used = 0;                  // k
    std::string scoring;                        // "softmax" | "sigmoid" (the router's own)
    int64_t logit_sample_stride = 8;

    // Data.
    std::vector<std::string> domains;           // domain names; seq_domain indexes this
    std::vector<int32_t> token_ids;             // [T] all sequences concatenated
    std::vector<int64_t> seq_begin;             // [n_seq + 1] row offsets into token_ids
    std::vector<int32_t> seq_domain;            // [n_seq]
    std::vector<int64_t> sample_rows;           // [n_sample] token rows whose logits are sampled

    std::vector<TraceLayer> layers;             // one per MoE layer, ascending decoder index

    int64_t n_tokens() const { return static_cast<int64_t>(token_ids.size()); }
    int64_t n_seq() const { return seq_begin.empty() ? 0 : static_cast<int64_t>(seq_begin.size()) - 1; }
    int64_t n_moe_layer() const { return static_cast<int64_t>(layers.size()); }

    // Throws Error("trace") when sizes disagree with the facts above (used after load and merge).
    void validate() const;
};

// Appends `part` (disjoint data of the same model) to `into`. Domains are matched by name
// (new names are appended). Throws Error("trace") when the model facts differ.
void append_trace(RoutingTrace& into, const RoutingTrace& part);
RoutingTrace merge_traces(const std::vector<RoutingTrace>& parts);

// safetensors on disk; writes to a temporary sibling and renames. Throws Error("trace") naming
// the file for a file that is not a moekit trace or is inconsistent.
void save_trace(const RoutingTrace& trace, const std::filesystem::path& path);
RoutingTrace load_trace(const std::filesystem::path& path);

// Bytes of one token of one MoE layer in memory / in the file (for reports and the benchmark).
double trace_bytes_per_token_layer(const RoutingTrace& trace);

// Observer that records a trace while the engine runs (kSiteRouter + kSiteExpert). Call
// begin_batch before each forward_hidden with the batch's sequences and their domain indices;
// the recorder appends them to the trace it was given.
class TraceRecorder : public model::Observer {
public:
    explicit TraceRecorder(RoutingTrace& trace);
    void begin_batch(const std::vector<std::vector<int32_t>>& sequences, const std::vector<int32_t>& domains);
    uint32_t sites() const override { return model::kSiteRouter | model::kSiteExpert; }
    void on_router(const model::RouterEvent& event) override;
    void on_expert(const model::ExpertEvent& event) override;

private:
    RoutingTrace& trace_;
    int64_t batch_row0_ = 0;                    // first token row of the current batch in the trace
    int64_t batch_seq0_ = 0;                    // first sequence index of the current batch
    std::vector<int64_t> batch_row_seq_;        // sequence index (global) of each batch row
};

}  // namespace moekit::analysis
