// The router of a merged layer (METHODS.md §6 "Router after merging") and the routing agreement
// with the original.
//  * mean: row_g = sum_{i in g} f^_i w_i.
//  * refit (default): row_g minimizes sum_t (x_t . w - y_t)^2 + lambda ||w - mean row_g||^2 with
//    y_t = logsumexp_{i in g} z_{t,i} over the captured calibration router inputs, i.e. it solves
//    (X^T X + lambda I) w = X^T y + lambda mean_g, lambda = 1e-6 trace(X^T X) / d (so directions
//    the calibration never spans keep the mean row). X^T X and X^T y are sums over tokens
//    (mergeable). With softmax routing, softmax over the new logits then gives each group the
//    routing mass of its members, sum_{i in g} p_i; with sigmoid routing (DeepSeek-V3) the group's
//    odds are the sum of its members' odds. Groups of one expert keep their row unchanged.
//  * e_score_correction_bias (DeepSeek-V3) and a router bias, when present: frequency-weighted
//    mean of the members' entries (both modes).
//  * agreement (per layer, on the captured tokens): with S_t the original selection and S'_t the
//    merged model's, overlap = mean_t |{e in S_t : group(e) in S'_t}| / k (what `moekit eval
//    --ref` reports through expert_map) and top1 = share of tokens with group(S_t[0]) = S'_t[0].
#pragma once

#include <cstdint>
#include <vector>

#include "merge/grouping.h"
#include "model/engine.h"

namespace moekit::merge {

// router: [E, d]; weights[g]: normalized member weights.
model::Matrix mean_router(const model::Matrix& router, const Groups& groups, const std::vector<std::vector<double>>& weights);

// x: [T, d] router inputs; logits: [T, E] original logits; mean: the mean router (regularizer).
model::Matrix refit_router(const model::Matrix& x, const model::Matrix& logits, const Groups& groups, const model::Matrix& router,
                           const model::Matrix& mean);

// sum_{i in g} w_i v_i per group.
std::vector<float> mean_vector(const std::vector<float>& v, const Groups& groups, const std::vector<std::vector<double>>& weights);

struct Agreement {
    double overlap = 0;
    double top1 = 0;
    int64_t tokens = 0;
};

Agreement routing_agreement(const model::ModelConfig& config, const model::Matrix& x, const model::Matrix& logits,
                            const std::vector<float>& correction_bias, const model::Matrix& new_router,
                            const std::vector<float>& new_correction_bias, const Groups& groups);

}  // namespace moekit::merge
