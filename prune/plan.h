// The pruning plan: which experts of every MoE layer survive, from per-expert scores (lower is
// pruned first), the --keep target, the budget (uniform per layer, or one global threshold with
// a per-layer minimum), protected super experts, top-k and group-limited routing constraints.
//
// Conventions:
//  * --keep: a number with a '.' (or below 1) is a ratio of each layer's experts, kept count =
//    round(ratio * E) (half away from zero); otherwise an integer count per layer.
//  * Ranking: higher score first, ties towards the lower expert index; protected experts are
//    kept before anything else.
//  * Global budget: the total kept is the sum of the uniform per-layer targets. Scores are
//    normalized per layer by their mean absolute value (s_e / (sum_j |s_j| / E); all-zero
//    layers give 0); every layer first keeps its protected experts and its best min_keep
//    experts (default max(k, ceil(target / 2))); the rest of the budget goes to the highest
//    normalized scores of all layers (ties: lower layer, then lower expert) — one threshold.
//  * Group-limited routing (n_group > 1: DeepSeek-V3 always, DeepSeek-V2 group_limited_greedy):
//    the kept count must be a multiple of n_group (and keep topk_group groups able to hold k;
//    V3 scores a group by its top-2, so at least 2 per group), otherwise refused. When
//    topk_group < n_group the groups matter for selection, so every group keeps count/n_group
//    of its own experts (kept experts stay in their group after renumbering); otherwise the
//    choice is free. The global budget is refused for grouped routing.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "model/arch.h"

namespace moekit::prune {

struct KeepSpec {
    std::string text;
    bool is_ratio = true;
    double ratio = 0;
    int64_t count = 0;
};
// Throws Error("prune") for anything that is not a positive ratio in (0, 1] or a positive count.
KeepSpec parse_keep(std::string_view text);
// Kept experts for a layer of n_expert experts.
int64_t keep_count(const KeepSpec& keep, int64_t n_expert);

enum class Budget { uniform, global };
Budget parse_budget(std::string_view name);  // "uniform" | "global"
std::string_view budget_name(Budget budget);

struct PlanOptions {
    KeepSpec keep;
    Budget budget = Budget::uniform;
    int64_t min_keep = 0;              // global budget: per-layer minimum; 0 = max(k, ceil(target / 2))
};

struct LayerPlan {
    int64_t layer = 0;                 // decoder layer index
    int64_t n_expert = 0;              // before pruning
    std::vector<double> scores;        // per original expert
    std::vector<bool> protect;         // super experts (never pruned)
    std::vector<double> normalized;    // global budget only
    std::vector<int64_t> kept;         // ascending original indices; new index = position
    std::vector<int64_t> removed;      // ascending
};

struct Plan {
    std::vector<LayerPlan> layers;     // MoE layers, ascending
    Budget budget = Budget::uniform;
    int64_t min_keep = 0;              // global budget: the per-layer minimum used
    double threshold = std::numeric_limits<double>::quiet_NaN();  // global: lowest kept normalized score
    bool uniform() const;              // every layer keeps the same count
    int64_t max_kept() const;
    int64_t total_kept() const;
    int64_t total_experts() const;
};

// Group-limited routing facts that constrain the kept counts.
struct GroupRule {
    int64_t n_group = 1;               // 1: no groups
    int64_t topk_group = 1;
    bool preserve = false;             // topk_group < n_group: keep count / n_group per group
    int64_t min_per_group = 1;         // 2 for sigmoid (top-2 group score)
    bool active() const { return n_group > 1; }
};
GroupRule group_rule(const model::ModelConfig& config);

// Everything about the keep target that can be refused before calibration: keeps all experts
// (or more), fewer than top-k, a count group-limited routing cannot use, a min_keep outside
// [k, E], the global budget with grouped routing. Throws Error("prune") saying what to use.
void check_keep(const model::ModelConfig& config, const PlanOptions& options);

// `layers` arrive with layer, n_expert, scores and protect filled; kept/removed (and normalized
// for the global budget) are filled in. Throws Error("prune") when protected experts do not fit.
Plan make_plan(const model::ModelConfig& config, std::vector<LayerPlan> layers, const PlanOptions& options);

// A plan whose kept sets were chosen elsewhere (NAEE's subset search); validated against the
// same constraints.
Plan plan_from_subsets(const model::ModelConfig& config, std::vector<LayerPlan> layers);

}  // namespace moekit::prune
