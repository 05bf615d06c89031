// Congestion coefficient gamma_eff of `moekit profile` (METHODS.md §3, "Three Phases of Expert
// Routing"): routing read as a congestion game in which a token choosing expert e gets utility
// q_e - gamma * rho_e (rho = load share). Linearized, the single-type equilibrium is a
// temperature-scaled softmax rho = softmax(q / T) with T = 1 + gamma / E.
//
// The estimator is ours (the paper's text is not available); what it does exactly:
//  * quality q_e = mean over all tokens of the centered raw router logit z_te - mean_j z_tj;
//    observed rho_e = the load share f_e of analysis/load_stats (the architecture's selection).
//  * Single type: T = argmin over T in [1e-2, 1e3] of L1(softmax(q/T), rho) (L1 = sum |a - b|):
//    a log grid of 20 points per decade, ties to the T closest to 1, then golden-section search
//    on ln T inside the best grid point's bracket down to 1e-12; gamma = E * (T - 1). A constant q
//    carries no information: T = 1. softmax_l1 = L1 at T = 1.
//  * Multi type: rho(gamma) solves rho = mean_t softmax(z_t - gamma * rho) over the trace's
//    sampled tokens (raw logits at every logit_sample_stride-th position). Solver: damped
//    fixed-point iteration x <- x + beta * (m(x) - x), beta = 2 / (2 + gamma * max_e m_e(x))
//    (the optimal step for the map's Jacobian spectrum bound), with Anderson acceleration over
//    the last 5 steps (history dropped when the residual grows tenfold); converged when
//    ||m(x) - x||_1 <= 1e-12, at most 5000 iterations; started from the observed rho (warm
//    starts from the neighbouring gamma during the search). The map is evaluated as two matrix
//    products with a_te = exp(z_te - max_j z_tj) precomputed, so only E exponentials per
//    evaluation. gamma = argmin over {0} and E * [1e-3, 1e3] of L1(rho(gamma), rho_obs): a
//    grid of 8 log points per decade, then golden section (in ln gamma, or linear in a bracket
//    that starts at 0). softmax_l1 = L1 at gamma = 0; converged = every solve of the fit did.
//  * Intervals: the batch bootstrap of analysis/bootstrap.h; every resample recomputes q, rho
//    (and the sampled tokens' weights) from its draw and refits. Resample fits start from a
//    grid around the full-data estimate (single: T * 10^[-0.2, 0.2]; multi: gamma * 2^[-3, 3])
//    and fall back to the full search when their best point lies on that grid's edge. The
//    multi-type bootstrap uses the plan's first min(R, 200) resamples ("multi_resamples"),
//    solved together (one matrix product per iteration for all of them); a resample whose
//    equilibrium did not converge is dropped (NaN).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include <Eigen/Core>
#include <nlohmann/json.hpp>

#include "analysis/bootstrap.h"
#include "analysis/trace.h"
#include "model/engine.h"

namespace moekit::analysis {

inline constexpr const char* kCongestionConvention =
    "gamma_eff (estimator ours): quality q_e = mean over tokens of the centered raw router logit "
    "z_te - mean_j z_tj; observed rho = load share f_e; L1 = sum_e |a_e - b_e|; single: T = argmin over "
    "[1e-2, 1e3] of L1(softmax(q/T), rho) (log grid 20/decade, ties to T nearest 1, golden section on ln T; "
    "constant q gives T = 1), gamma = E*(T-1), softmax_l1 = L1 at T = 1; multi: rho(gamma) = the fixed point "
    "rho = mean over sampled tokens of softmax(z_t - gamma*rho) (damped iteration, beta = 2/(2 + gamma*max "
    "rho), Anderson depth 5, ||residual||_1 <= 1e-12, <= 5000 iterations), gamma = argmin over {0} and "
    "E*[1e-3, 1e3] of L1(rho(gamma), rho_obs) (log grid 8/decade, golden section), softmax_l1 = L1 at "
    "gamma = 0; intervals: batch bootstrap, the multi-type one over the first min(R, 200) resamples "
    "(multi_resamples), resamples without a converged equilibrium dropped";

inline constexpr double kMinTemperature = 1e-2;
inline constexpr double kMaxTemperature = 1e3;
inline constexpr int64_t kMaxMultiResamples = 200;

// softmax(x / temperature), max-shifted. L1 distance sum_e |a_e - b_e| (sizes must match).
std::vector<double> softmax(std::span<const double> x, double temperature = 1.0);
double l1_distance(std::span<const double> a, std::span<const double> b);

struct TemperatureFit {
    double temperature = 1.0;
    double gamma = 0.0;       // E * (T - 1)
    double l1 = 0.0;          // L1(softmax(q/T), rho)
    double softmax_l1 = 0.0;  // L1(softmax(q), rho)
};

// Throws Error("analysis") for empty, mismatched or non-finite inputs.
TemperatureFit fit_temperature(std::span<const double> quality, std::span<const double> rho);
// The bootstrap's variant: grid 10^[-0.2, 0.2] * hint (full search when the best point is on its
// edge), golden section down to `tolerance` in ln T.
TemperatureFit fit_temperature_near(std::span<const double> quality, std::span<const double> rho, double hint,
                                    double tolerance = 1e-9);

struct EquilibriumOptions {
    double tolerance = 1e-12;        // ||m(rho) - rho||_1 at convergence
    int64_t max_iterations = 5000;
    int anderson_depth = 5;
};

struct Equilibrium {
    std::vector<double> rho;         // m(x) at the last iterate (a distribution)
    int64_t iterations = 0;
    double residual = 0.0;           // ||m(x) - x||_1 at the last iterate
    bool converged = false;
};

// rho = sum_t w_t softmax(z_t - gamma*rho) / sum_t w_t over the rows of `logits` [N x E]
// (row_weights empty: all 1). gamma >= 0. rho0: starting point (empty: uniform).
Equilibrium equilibrium(const Eigen::Ref<const model::Matrix>& logits, double gamma, const EquilibriumOptions& options = {},
                        std::span<const double> row_weights = {}, std::span<const double> rho0 = {});

struct MultiTypeFit {
    double gamma = 0.0;
    double l1 = 0.0;          // L1(rho(gamma), rho_obs)
    double softmax_l1 = 0.0;  // L1(rho(0), rho_obs)
    bool converged = true;    // every equilibrium solved during the fit converged
};

// Minimizes L1(rho(gamma), rho_obs) over gamma >= 0 (full search).
MultiTypeFit fit_multi_type(const Eigen::Ref<const model::Matrix>& logits, std::span<const double> rho_obs,
                            std::span<const double> row_weights = {});

// Several weightings of the same rows fitted together (the bootstrap). Rows are grouped
// (row_group[t] in [0, n_group)); fit c weights every row of group g by group_weights[c][g] and
// targets targets[c]. gamma_hint > 0: search 2^[-3, 3] * gamma_hint first (full search for the
// fits whose best point is on that grid's edge); otherwise the full search. softmax_l1 is 0.
std::vector<MultiTypeFit> fit_multi_type_grouped(const Eigen::Ref<const model::Matrix>& logits,
                                                 std::span<const int32_t> row_group, int64_t n_group,
                                                 const std::vector<std::vector<double>>& group_weights,
                                                 const std::vector<std::vector<double>>& targets, double gamma_hint,
                                                 double tolerance = 1e-6);

// Full-data fits and the resampled values behind congestion_layer_json (MoE layer j).
struct CongestionEstimates {
    TemperatureFit single;
    std::vector<double> temperature;   // [plan.n_resample()] single-type T per resample
    bool has_multi = false;            // false when the trace has no sampled logits
    MultiTypeFit multi;
    std::vector<double> multi_gamma;   // [min(R, kMaxMultiResamples)] (NaN: not converged)
    int64_t multi_rows = 0;            // sampled tokens used
};
CongestionEstimates congestion_estimates(const RoutingTrace& trace, int64_t j, const BootstrapPlan& plan);

// docs/PROFILE.md `layers[].congestion`: {single: {temperature, gamma (intervals), l1, softmax_l1},
// multi: {gamma (interval), l1, softmax_l1, converged} | null, quality: "centered_logit",
// multi_resamples, multi_rows}.
nlohmann::ordered_json congestion_layer_json(const RoutingTrace& trace, int64_t j, const BootstrapPlan& plan);

// docs/PROFILE.md `model_level.congestion`: {gamma_single: {min, max, mean}, gamma_multi: {...}}
// over the layers' full-data gamma values (null when no layer has one).
nlohmann::ordered_json congestion_model_json(const std::vector<nlohmann::ordered_json>& layers);

}  // namespace moekit::analysis
