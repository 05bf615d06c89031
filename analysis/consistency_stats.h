// The consistency section of `moekit profile` (METHODS.md §2): SRP at every segment length and
// SCH / LRU / LFU hit rates at every cache ratio, per MoE layer and for the whole model, from a
// RoutingTrace, with batch-bootstrap intervals (analysis/bootstrap.h).
//
// Conventions (named in profile.json params.conventions):
//  * SRP and hit rates are reported ×100, as the paper does.
//  * SRP windows never cross sequences; model-level SRP sums every layer's histogram.
//  * A token's request list R_i is its selected experts sorted by gate weight, descending (ties
//    keep the router's rank order). Layer level: capacity C = ρ·k. Model level: one cache over all
//    layers' experts (ids offset by layer·E), each token requests L·k experts in layer order,
//    C = ρ·L·k.
//  * Hit rates are computed per sequence and averaged over sequences (unweighted mean).
//  * Intervals: SRP from per-batch histograms, hit rates from per-batch sums of per-sequence rates.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "analysis/bootstrap.h"
#include "analysis/trace.h"

namespace moekit::analysis {

inline constexpr const char* kConsistencyConvention =
    "SRP/SCH x100 per METHODS.md §2; SRP windows within sequences, model SRP = summed layer histograms; "
    "R_i = selected experts by descending gate (ties: router rank); layer cache C = rho*k, model cache "
    "C = rho*L*k over layer-offset ids; hit rates averaged over sequences; LRU/LFU count cold misses as misses";

struct ConsistencyParams {
    std::vector<int64_t> segment_lengths{4, 16, 64, 256};
    std::vector<int64_t> cache_ratios{1, 2, 3, 4};
    int64_t sch_segment_length = 16;   // SCH look-ahead m
    int threads = 0;                   // 0: OpenMP default
};

struct ConsistencyReport {
    std::vector<nlohmann::ordered_json> layers;  // layers[j].consistency objects
    nlohmann::ordered_json model;                // model_level.consistency
};

ConsistencyReport consistency_report(const RoutingTrace& trace, const BootstrapPlan& plan, const ConsistencyParams& params);

// Request list of token t of MoE layer j (selected sorted by descending gate, stable).
std::vector<int32_t> token_requests(const RoutingTrace& trace, int64_t j, int64_t t);

}  // namespace moekit::analysis
