// The pruning plan (prune/plan.h).
#include "prune/plan.h"

#include <algorithm>
#include <charconv>
#include <numeric>
#include <tuple>

#include "core/error.h"

namespace moekit::prune {

namespace {

std::string count_text(int64_t n, int64_t of) { return std::to_string(n) + " of " + std::to_string(of); }

// Experts in ranking order: protected first, then higher score, ties to the lower index.
std::vector<int64_t> ranking(const LayerPlan& lp) {
    std::vector<int64_t> order(static_cast<size_t>(lp.n_expert));
    std::iota(order.begin(), order.end(), 0);
    auto prot = [&](int64_t e) { return !lp.protect.empty() && lp.protect[static_cast<size_t>(e)]; };
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        if (prot(a) != prot(b)) return prot(a);
        return lp.scores[static_cast<size_t>(a)] > lp.scores[static_cast<size_t>(b)];
    });
    return order;
}

int64_t n_protected(const LayerPlan& lp) {
    return static_cast<int64_t>(std::count(lp.protect.begin(), lp.protect.end(), true));
}

[[noreturn]] void too_many_protected(const LayerPlan& lp, int64_t room, const std::string& where) {
    throw Error("prune", "layer " + std::to_string(lp.layer) + ": " + std::to_string(n_protected(lp)) +
                             " protected super experts do not fit in the " + std::to_string(room) + " kept " + where +
                             "; keep more experts or pass --no-protect-super-experts");
}

bool count_fits(const model::ModelConfig& mc, const GroupRule& g, int64_t count) {
    if (count < mc.n_expert_used) return false;
    if (!g.active()) return true;
    return count % g.n_group == 0 && count / g.n_group >= g.min_per_group && g.topk_group * (count / g.n_group) >= mc.n_expert_used;
}

// kept/removed from a chosen set.
void finish(LayerPlan& lp, std::vector<int64_t> kept) {
    std::sort(kept.begin(), kept.end());
    lp.kept = kept;
    lp.removed.clear();
    for (int64_t e = 0; e < lp.n_expert; ++e)
        if (!std::binary_search(kept.begin(), kept.end(), e)) lp.removed.push_back(e);
}

void select_uniform(const GroupRule& g, LayerPlan& lp, int64_t count) {
    const std::vector<int64_t> order = ranking(lp);
    std::vector<int64_t> kept;
    if (g.preserve) {
        const int64_t size = lp.n_expert / g.n_group, quota = count / g.n_group;
        std::vector<int64_t> taken(static_cast<size_t>(g.n_group), 0);
        for (int64_t e : order) {
            auto& n = taken[static_cast<size_t>(e / size)];
            const bool prot = !lp.protect.empty() && lp.protect[static_cast<size_t>(e)];
            if (n >= quota) {
                if (prot) too_many_protected(lp, quota, "experts of group " + std::to_string(e / size));
                continue;
            }
            ++n;
            kept.push_back(e);
        }
    } else {
        if (n_protected(lp) > count) too_many_protected(lp, count, "experts");
        kept.assign(order.begin(), order.begin() + count);
    }
    finish(lp, std::move(kept));
}

}  // namespace

KeepSpec parse_keep(std::string_view text) {
    KeepSpec k;
    k.text = std::string(text);
    auto bad = [&](const std::string& why) {
        return Error("prune", "--keep '" + k.text + "': " + why +
                                  " (a ratio of each layer's experts such as 0.5, or a count such as 8)");
    };
    if (text.empty()) throw bad("empty");
    const bool has_dot = text.find_first_of(".eE") != std::string_view::npos;
    double value = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || ptr != text.data() + text.size() || !std::isfinite(value)) throw bad("not a number");
    if (value <= 0) throw bad("must be positive");
    if (has_dot || value < 1) {
        if (value > 1) throw bad("a ratio must be at most 1");
        k.is_ratio = true;
        k.ratio = value;
    } else {
        if (value != std::floor(value) || value > 1e9) throw bad("a count must be a whole number");
        k.is_ratio = false;
        k.count = static_cast<int64_t>(value);
    }
    return k;
}

int64_t keep_count(const KeepSpec& keep, int64_t n_expert) {
    return keep.is_ratio ? static_cast<int64_t>(std::llround(keep.ratio * static_cast<double>(n_expert))) : keep.count;
}

Budget parse_budget(std::string_view name) {
    if (name == "uniform") return Budget::uniform;
    if (name == "global") return Budget::global;
    throw Error("prune", "unknown --budget '" + std::string(name) + "'; choose uniform or global");
}

std::string_view budget_name(Budget budget) { return budget == Budget::uniform ? "uniform" : "global"; }

bool Plan::uniform() const {
    for (const LayerPlan& lp : layers)
        if (lp.kept.size() != layers.front().kept.size()) return false;
    return true;
}

int64_t Plan::max_kept() const {
    int64_t m = 0;
    for (const LayerPlan& lp : layers) m = std::max<int64_t>(m, static_cast<int64_t>(lp.kept.size()));
    return m;
}

int64_t Plan::total_kept() const {
    int64_t n = 0;
    for (const LayerPlan& lp : layers) n += static_cast<int64_t>(lp.kept.size());
    return n;
}

int64_t Plan::total_experts() const {
    int64_t n = 0;
    for (const LayerPlan& lp : layers) n += lp.n_expert;
    return n;
}

GroupRule group_rule(const model::ModelConfig& mc) {
    GroupRule g;
    if (mc.routing.n_group <= 1) return g;
    g.n_group = mc.routing.n_group;
    g.topk_group = mc.routing.topk_group;
    g.preserve = g.topk_group < g.n_group;
    g.min_per_group = mc.routing.scoring == model::Scoring::sigmoid ? 2 : 1;
    return g;
}

void check_keep(const model::ModelConfig& mc, const PlanOptions& opt) {
    const GroupRule g = group_rule(mc);
    const int64_t k = mc.n_expert_used;
    if (opt.budget == Budget::global && g.active())
        throw Error("prune", "--budget global is not available for " + mc.model_type + " with n_group = " +
                                 std::to_string(g.n_group) + ": every layer's expert count must stay a multiple of n_group; use --budget uniform");
    for (int64_t il = 0; il < mc.n_layer; ++il) {
        if (!mc.is_moe_layer[static_cast<size_t>(il)]) continue;
        const int64_t E = mc.n_expert_at(il), n = keep_count(opt.keep, E);
        const std::string what = "--keep " + opt.keep.text + " keeps " + count_text(n, E) + " experts" +
                                 (mc.n_expert_layer.empty() ? " per layer" : " in layer " + std::to_string(il));
        if (n >= E) throw Error("prune", what + ": nothing would be pruned (keep fewer than all experts)");
        if (n < k) throw Error("prune", what + ", fewer than the " + std::to_string(k) + " experts every token uses (num_experts_per_tok)");
        if (!count_fits(mc, g, n)) {
            std::string hint;
            for (int64_t lo = n - 1; lo >= k; --lo)
                if (count_fits(mc, g, lo)) { hint = std::to_string(lo); break; }
            for (int64_t hi = n + 1; hi < E; ++hi)
                if (count_fits(mc, g, hi)) { hint += (hint.empty() ? "" : " or ") + std::to_string(hi); break; }
            throw Error("prune", what + ", which " + mc.model_type + "'s group-limited routing cannot use: n_group = " +
                                     std::to_string(g.n_group) + " needs a multiple of " + std::to_string(g.n_group) +
                                     " with at least " + std::to_string(g.min_per_group) + " per group and topk_group = " +
                                     std::to_string(g.topk_group) + " groups holding >= " + std::to_string(k) + " experts" +
                                     (hint.empty() ? "; no count below " + std::to_string(E) + " works" : "; try --keep " + hint));
        }
        if (opt.budget == Budget::global && opt.min_keep != 0 && (opt.min_keep < k || opt.min_keep > E))
            throw Error("prune", "--min-keep " + std::to_string(opt.min_keep) + " must be in " + std::to_string(k) + ".." +
                                     std::to_string(E) + " (top-k .. all experts of layer " + std::to_string(il) + ")");
    }
}

Plan make_plan(const model::ModelConfig& mc, std::vector<LayerPlan> layers, const PlanOptions& opt) {
    check_keep(mc, opt);
    const GroupRule g = group_rule(mc);
    Plan plan;
    plan.budget = opt.budget;
    if (opt.budget == Budget::uniform) {
        for (LayerPlan& lp : layers) select_uniform(g, lp, keep_count(opt.keep, lp.n_expert));
        plan.layers = std::move(layers);
        return plan;
    }

    // Global: mandatory experts per layer, then one threshold over normalized scores.
    int64_t budget = 0, mandatory = 0;
    struct Candidate {
        double score;
        size_t layer;
        int64_t expert;
    };
    std::vector<Candidate> rest;
    std::vector<std::vector<int64_t>> kept(layers.size());
    for (size_t i = 0; i < layers.size(); ++i) {
        LayerPlan& lp = layers[i];
        const int64_t target = keep_count(opt.keep, lp.n_expert);
        const int64_t min_keep = opt.min_keep != 0 ? opt.min_keep : std::max(mc.n_expert_used, (target + 1) / 2);
        plan.min_keep = std::max(plan.min_keep, min_keep);
        budget += target;
        double scale = 0;
        for (double s : lp.scores) scale += std::fabs(s);
        scale /= static_cast<double>(lp.n_expert);
        lp.normalized.resize(lp.scores.size());
        for (size_t e = 0; e < lp.scores.size(); ++e) lp.normalized[e] = scale > 0 ? lp.scores[e] / scale : 0.0;
        const std::vector<int64_t> order = ranking(lp);
        const int64_t must = std::max(min_keep, n_protected(lp));
        kept[i].assign(order.begin(), order.begin() + must);
        mandatory += must;
        for (size_t j = static_cast<size_t>(must); j < order.size(); ++j)
            rest.push_back({lp.normalized[static_cast<size_t>(order[j])], i, order[j]});
    }
    if (mandatory > budget)
        throw Error("prune", "--budget global: the per-layer minimum (" + std::to_string(plan.min_keep) +
                                 ") and the protected super experts need " + std::to_string(mandatory) +
                                 " experts, more than the " + std::to_string(budget) + " the --keep target allows; lower --min-keep");
    std::stable_sort(rest.begin(), rest.end(), [](const Candidate& a, const Candidate& b) {
        return std::tie(b.score, a.layer, a.expert) < std::tie(a.score, b.layer, b.expert);
    });
    const auto extra = static_cast<size_t>(budget - mandatory);
    for (size_t j = 0; j < extra; ++j) kept[rest[j].layer].push_back(rest[j].expert);
    if (extra > 0) plan.threshold = rest[extra - 1].score;
    for (size_t i = 0; i < layers.size(); ++i) finish(layers[i], std::move(kept[i]));
    plan.layers = std::move(layers);
    return plan;
}

Plan plan_from_subsets(const model::ModelConfig& mc, std::vector<LayerPlan> layers) {
    const GroupRule g = group_rule(mc);
    for (LayerPlan& lp : layers) {
        std::vector<int64_t> kept = lp.kept;
        finish(lp, kept);
        const auto n = static_cast<int64_t>(lp.kept.size());
        if (!count_fits(mc, g, n) || n >= lp.n_expert)
            throw InternalError("prune", "layer " + std::to_string(lp.layer) + ": chosen subset of " + std::to_string(n) + " experts is invalid");
        for (int64_t e : lp.removed)
            if (!lp.protect.empty() && lp.protect[static_cast<size_t>(e)])
                throw InternalError("prune", "a protected expert was chosen for removal");
    }
    Plan plan;
    plan.layers = std::move(layers);
    return plan;
}

}  // namespace moekit::prune
