// NAEE (Not All Experts are Equal; METHODS.md §5): per MoE layer, the set of experts to drop that
// minimizes ||Z - Z'||_F over calibration tokens, where Z is the layer's MoE output and Z' the
// output of the pruned layer. Z' is computed exactly as the pruned checkpoint will route: the
// router rows (and DeepSeek-V3's correction bias) sliced to the kept experts, the architecture's
// own routing (moekit's engine router, model/moe.h) re-run on the sliced logits — so softmax
// renormalizes over the kept experts, top-k picks among them — and the kept experts' outputs
// gated. Shared experts are the same in Z and Z' and cancel.
//
// Search: exhaustive over all drop sets of the unprotected experts when there are at most
// max_subsets of them (group-limited routing: only sets that drop the same number from every
// group, when topk_group < n_group), greedy otherwise (drop, one at a time, the expert whose
// removal gives the smallest error; ties to the lower index). Grouped routing (n_group > 1)
// refuses the greedy search: its intermediate counts are not valid for the router. Per-expert
// NAEE score (reported; lower = pruned first): the error of dropping that expert alone (NaN for
// grouped routing, where a single drop is not a valid model).
//
// Needs every expert's output on every sampled token (the engine's kSiteAllExperts): memory is
// n_moe_layer x E x T_sample x d_model floats, so the calibration is sampled (prune.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/engine.h"

namespace moekit::prune {

// What NAEE needs of one MoE layer: router logits and every expert's output on T tokens.
struct NaeeCapture {
    int64_t layer = -1;
    model::Matrix logits;                   // [T, E]
    std::vector<model::Matrix> outputs;     // E x [T, d]: E_e(x_t) before gating
    std::vector<float> correction_bias;     // DeepSeek-V3 e_score_correction_bias [E], else empty
    int64_t n_tokens() const { return logits.rows(); }
};

// Records NaeeCapture for every MoE layer (rows of successive forward passes are appended).
class NaeeObserver : public model::Observer {
public:
    explicit NaeeObserver(const model::ModelConfig& config);
    uint32_t sites() const override { return model::kSiteRouter | model::kSiteAllExperts; }
    void on_router(const model::RouterEvent& event) override;
    void on_expert(const model::ExpertEvent& event) override;
    // Captures of the MoE layers, ascending decoder index.
    std::vector<NaeeCapture>& captures() { return captures_; }

private:
    std::vector<NaeeCapture> captures_;
    std::vector<int64_t> index_;            // decoder layer -> captures_ index (-1 dense)
    std::vector<int64_t> rows_before_;      // per capture: rows before the current pass
};

// ||Y(all) - Y(kept)||_F for one layer (kept: ascending original indices).
double subset_error(const model::ModelConfig& config, const NaeeCapture& capture, const std::vector<int64_t>& kept);
// ||Y(all)||_F.
double output_norm(const model::ModelConfig& config, const NaeeCapture& capture);

struct NaeeOptions {
    int64_t max_subsets = 5000;             // exhaustive search up to this many drop sets
    int threads = 1;
};

struct NaeeLayerResult {
    int64_t layer = 0;
    std::vector<int64_t> kept;              // ascending
    double error = 0;                       // ||Z - Z'||_F of the chosen set
    double reference_norm = 0;              // ||Z||_F (routed part)
    std::vector<double> single_drop_error;  // per expert: error when only it is dropped (its score)
    std::string search;                     // "exhaustive" | "greedy"
    int64_t subsets_evaluated = 0;
};

// protect: experts that must be kept (may be empty). Throws Error("prune") when the constraints
// leave no valid set.
NaeeLayerResult naee_search(const model::ModelConfig& config, const NaeeCapture& capture, int64_t n_keep,
                            const std::vector<bool>& protect, const NaeeOptions& options);

}  // namespace moekit::prune
