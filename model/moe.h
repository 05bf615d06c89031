// The MoE sub-block of a decoder layer: router (logits -> scores -> selected experts -> gates,
// exactly per architecture, METHODS.md §0), routed experts computed as batched GEMMs over the
// tokens gathered per expert, shared experts, and the observer calls of the router / expert /
// all-experts / moe_block sites.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/engine.h"
#include "model/engine_weights.h"

namespace moekit::model::detail {

struct RoutingResult {
    Matrix logits;         // [T, E]
    Matrix scores;         // [T, E] softmax / sigmoid of the logits (no bias)
    IndexMatrix selected;  // [T, k] in ranking order (descending selection score; ties: lower index first)
    Matrix gates;          // [T, k]
};

// Fills scores, selected and gates from r.logits. `correction_bias` is DeepSeek-V3's
// e_score_correction_bias (empty otherwise). DeepSeek-V2 never renormalizes (transformers 5.x;
// released V2 configs have norm_topk_prob = false).
void route(const ModelConfig& mc, const Weight& correction_bias, RoutingResult& r, int n_threads);

// Observers split by the sites they asked for.
struct ObserverSets {
    std::vector<Observer*> router, expert, all_experts, moe_block, layer;
};

struct MoeContext {
    int64_t layer;
    const TokenLayout& tokens;
    const ObserverSets& observers;
    const WeightLoader& loader;
    int n_threads;
};

// residual: hidden state entering the sub-block (for observers); x: post-attention-normed input.
// Routed experts are loaded into lw (only those with tokens, or all when an observer asked for
// kSiteAllExperts), used, and released chunk by chunk. out [T, d]: routed + shared output.
void moe_block(const Matrix& residual, const Matrix& x, LayerWeights& lw, const ModelConfig& mc, const MoeContext& ctx,
               Matrix& out);

}  // namespace moekit::model::detail
