// Load and balance statistics of `moekit profile` (METHODS.md §1), computed from a RoutingTrace:
// per-layer expert loads and their balance measures (MaxVio, CV, load entropy, Gini, Jain, dead
// experts), the mean per-token router entropy, and the model-level means over MoE layers plus
// the Switch/HF auxiliary loss pooled over all layers' tokens, each with a batch-bootstrap
// interval (analysis/bootstrap.h).
//
// Every statistic is a function of per-batch sums (expert counts, tokens, router entropy, router
// probability mass), so one pass over a layer's `selected` builds them and each bootstrap
// resample only touches B x E numbers. Layers are addressed by MoE index j (trace.layers[j]).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include <nlohmann/json.hpp>

#include "analysis/bootstrap.h"
#include "analysis/trace.h"

namespace moekit::analysis {

inline constexpr const char* kLoadConvention =
    "Load_e = #(token, slot) pairs with e in the architecture's selected set; share f_e = Load_e/(T*k); "
    "max_vio = (max_e Load_e - T*k/E)/(T*k/E); cv = population std (ddof 0)/mean of Load; entropy = "
    "-sum f_e ln f_e / ln E with 0 ln 0 = 0; gini = sum_i (2i-n-1) x_i/(n sum x) over Load sorted "
    "ascending (i 1-based); jain = (sum x)^2/(n sum x^2); dead = experts with Load 0; a layer with no "
    "load at all is reported as an equal load (max_vio 0, cv 0, gini 0, jain 1, entropy 1), entropy is 1 "
    "when E = 1; "
    "router_entropy = mean over tokens of -sum_e p ln p, p = softmax(raw logits); *_mean = unweighted "
    "mean over MoE layers (each resample recomputes all layers from the same draw); aux_loss = E * "
    "sum_e (sum_layers Load_e/(T*L)) * (sum_layers sum_t p_te/(T*L)) (transformers' "
    "load_balancing_loss_func with all layers' tokens pooled, but on the architecture's selection; "
    "uniform routing gives k)";

struct LoadMetrics {
    double max_vio = 0.0;
    double cv = 0.0;
    double entropy = 0.0;  // normalized load entropy in [0, 1]
    double gini = 0.0;
    double jain = 0.0;
    int64_t dead = 0;      // experts with zero load
};

// Balance measures of one load vector (METHODS.md §1). tokens_times_k is T*k (the MaxVio mean and
// the share denominator). Throws Error("analysis") for an empty vector, negative or non-finite
// counts, or positive counts with tokens_times_k <= 0. All-zero counts give the equal-load
// values named in kLoadConvention (max_vio 0, cv 0, gini 0, jain 1, entropy 1); E = 1 has entropy 1.
LoadMetrics load_metrics(std::span<const double> counts, int64_t tokens_times_k);
// The same with a real-valued T*k (bootstrap-weighted token totals).
LoadMetrics load_metrics(std::span<const double> counts, double tokens_times_k);

// Per-batch sums of one MoE layer: everything a load statistic needs, for any batch weighting.
struct LoadBatchSums {
    int64_t n_batch = 0;
    int64_t n_expert = 0;               // E
    int64_t n_expert_used = 0;          // k
    std::vector<double> tokens;         // [B] tokens per batch
    std::vector<double> counts;         // [B * E] Load_e per batch (selected (token, slot) pairs)
    std::vector<double> sum_entropy;    // [B] sum over tokens of the router entropy
    std::vector<double> sum_prob;       // [B * E] sum over tokens of softmax(z_t)_e
};

// One pass over layers[j].selected; batch of a token = batch_of_seq[its sequence]. Throws
// Error("analysis") for an out-of-range MoE index or expert id, or sizes that disagree.
LoadBatchSums load_batch_sums(const RoutingTrace& trace, int64_t j, const std::vector<int32_t>& batch_of_seq,
                              int64_t n_batch);

// Weighted totals: sum_b w_b * (batch sums); w = BootstrapPlan::full() gives the full data.
struct LoadTotals {
    double tokens = 0.0;
    double sum_entropy = 0.0;
    std::vector<double> counts;    // [E]
    std::vector<double> sum_prob;  // [E]
};
LoadTotals load_totals(const LoadBatchSums& sums, const std::vector<int32_t>& weights, bool with_prob = false);

// The layer statistics under a batch weighting (what one bootstrap resample computes).
struct LayerLoadStats {
    LoadMetrics metrics;
    double router_entropy = 0.0;   // mean per-token router entropy (0 without tokens)
};
LayerLoadStats layer_load_stats(const LoadBatchSums& sums, const std::vector<int32_t>& weights);

// Model-level statistics under a batch weighting: means over layers and the pooled aux loss.
struct ModelLoadStats {
    double max_vio_mean = 0.0, cv_mean = 0.0, entropy_mean = 0.0, gini_mean = 0.0, jain_mean = 0.0;
    double router_entropy_mean = 0.0;
    double aux_loss = 0.0;         // 0 without tokens
    int64_t dead_experts = 0;      // summed over layers
};
ModelLoadStats model_load_stats(const std::vector<LoadBatchSums>& layers, const std::vector<int32_t>& weights);

// An interval from the full-data value and the resampled values, with BootstrapPlan::interval's
// convention (non-finite resamples dropped; 2.5/97.5 percentiles; lo = hi = value without any).
Interval interval_from_resamples(double value, std::vector<double> resampled);

// docs/PROFILE.md `layers[].load`: {counts, shares, max_vio, cv, entropy, gini, jain,
// router_entropy (intervals), dead (expert ids)}.
nlohmann::ordered_json load_layer_json(const RoutingTrace& trace, int64_t j, const BootstrapPlan& plan);

// docs/PROFILE.md `model_level.load`: {max_vio_mean, cv_mean, entropy_mean, gini_mean, jain_mean,
// router_entropy_mean, aux_loss (intervals), dead_experts}. Values are null without MoE layers.
nlohmann::ordered_json load_model_json(const RoutingTrace& trace, const BootstrapPlan& plan);

}  // namespace moekit::analysis
