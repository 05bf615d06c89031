// NAEE subset search (prune/naee.h).
#include "prune/naee.h"

#include <omp.h>

#include <algorithm>
#include <limits>
#include <numeric>

#include "core/error.h"
#include "model/moe.h"
#include "prune/plan.h"

namespace moekit::prune {

namespace {

// n choose r, saturating at `cap` + 1.
int64_t choose(int64_t n, int64_t r, int64_t cap) {
    if (r < 0 || r > n) return 0;
    r = std::min(r, n - r);
    double c = 1;
    for (int64_t i = 1; i <= r; ++i) {
        c = c * static_cast<double>(n - r + i) / static_cast<double>(i);
        if (c > static_cast<double>(cap)) return cap + 1;
    }
    return static_cast<int64_t>(c + 0.5);
}

// Squared error sum_t ||Y_t - Y'_t||^2 of the routed output with only `kept` experts, against
// `reference` (nullptr: against zero, i.e. ||Y'||^2).
double routed_error(const model::ModelConfig& mc, const NaeeCapture& cap, const std::vector<int64_t>& kept,
                    const model::Matrix* reference, model::Matrix* out) {
    const int64_t T = cap.n_tokens(), K = static_cast<int64_t>(kept.size());
    model::ModelConfig sub = mc;
    sub.n_expert = K;
    sub.n_expert_layer.clear();
    model::detail::RoutingResult r;
    r.logits.resize(T, K);
    for (int64_t j = 0; j < K; ++j) r.logits.col(j) = cap.logits.col(kept[static_cast<size_t>(j)]);
    model::detail::Weight bias;
    if (!cap.correction_bias.empty()) {
        bias.rows = 1;
        bias.cols = K;
        for (int64_t e : kept) bias.data.push_back(cap.correction_bias[static_cast<size_t>(e)]);
    }
    model::detail::route(sub, bias, r, 1);
    double err = 0;
    Eigen::RowVectorXf y(cap.outputs.front().cols());
    for (int64_t t = 0; t < T; ++t) {
        y.setZero();
        for (int64_t j = 0; j < r.selected.cols(); ++j)
            y += r.gates(t, j) * cap.outputs[static_cast<size_t>(kept[static_cast<size_t>(r.selected(t, j))])].row(t);
        if (out) out->row(t) = y;
        err += reference ? (reference->row(t) - y).cast<double>().squaredNorm() : y.cast<double>().squaredNorm();
    }
    return err;
}

std::vector<int64_t> all_experts(int64_t n) {
    std::vector<int64_t> v(static_cast<size_t>(n));
    std::iota(v.begin(), v.end(), 0);
    return v;
}

std::vector<int64_t> without(const std::vector<int64_t>& set, const std::vector<int64_t>& drop) {
    std::vector<int64_t> out;
    for (int64_t e : set)
        if (std::find(drop.begin(), drop.end(), e) == drop.end()) out.push_back(e);
    return out;
}

}  // namespace

NaeeObserver::NaeeObserver(const model::ModelConfig& mc) : index_(static_cast<size_t>(mc.n_layer), -1) {
    for (int64_t il = 0; il < mc.n_layer; ++il) {
        if (!mc.is_moe_layer[static_cast<size_t>(il)]) continue;
        index_[static_cast<size_t>(il)] = static_cast<int64_t>(captures_.size());
        NaeeCapture c;
        c.layer = il;
        c.logits.resize(0, mc.n_expert_at(il));
        c.outputs.resize(static_cast<size_t>(mc.n_expert_at(il)), model::Matrix(0, mc.d_model));
        captures_.push_back(std::move(c));
    }
    rows_before_.assign(captures_.size(), 0);
}

void NaeeObserver::on_router(const model::RouterEvent& ev) {
    const auto i = static_cast<size_t>(index_.at(static_cast<size_t>(ev.layer)));
    NaeeCapture& c = captures_[i];
    rows_before_[i] = c.logits.rows();
    c.logits.conservativeResize(rows_before_[i] + ev.logits.rows(), Eigen::NoChange);
    c.logits.bottomRows(ev.logits.rows()) = ev.logits;
}

void NaeeObserver::on_expert(const model::ExpertEvent& ev) {
    const auto i = static_cast<size_t>(index_.at(static_cast<size_t>(ev.layer)));
    model::Matrix& o = captures_[i].outputs.at(static_cast<size_t>(ev.expert));
    if (static_cast<int64_t>(ev.rows.size()) != ev.output.rows() || o.rows() != rows_before_[i])
        throw InternalError("prune", "NAEE capture expects every expert on every token once per pass");
    o.conservativeResize(o.rows() + ev.output.rows(), Eigen::NoChange);
    o.bottomRows(ev.output.rows()) = ev.output;
}

double subset_error(const model::ModelConfig& mc, const NaeeCapture& cap, const std::vector<int64_t>& kept) {
    model::Matrix reference(cap.n_tokens(), cap.outputs.front().cols());
    routed_error(mc, cap, all_experts(static_cast<int64_t>(cap.outputs.size())), nullptr, &reference);
    return std::sqrt(routed_error(mc, cap, kept, &reference, nullptr));
}

double output_norm(const model::ModelConfig& mc, const NaeeCapture& cap) {
    return std::sqrt(routed_error(mc, cap, all_experts(static_cast<int64_t>(cap.outputs.size())), nullptr, nullptr));
}

NaeeLayerResult naee_search(const model::ModelConfig& mc, const NaeeCapture& cap, int64_t n_keep,
                            const std::vector<bool>& protect, const NaeeOptions& opt) {
    const auto E = static_cast<int64_t>(cap.outputs.size());
    const int64_t r = E - n_keep;
    const GroupRule g = group_rule(mc);
    const int64_t group_size = g.preserve ? E / g.n_group : E;
    const int64_t quota = g.preserve ? n_keep / g.n_group : n_keep;
    const int nt = std::max(1, opt.threads);
    NaeeLayerResult res;
    res.layer = cap.layer;

    model::Matrix reference(cap.n_tokens(), cap.outputs.front().cols());
    const std::vector<int64_t> everyone = all_experts(E);
    res.reference_norm = std::sqrt(routed_error(mc, cap, everyone, nullptr, &reference));
    auto error_of = [&](const std::vector<int64_t>& kept) { return routed_error(mc, cap, kept, &reference, nullptr); };

    // Dropping one expert alone leaves a count grouped routing cannot use: no per-expert score then.
    res.single_drop_error.assign(static_cast<size_t>(E), std::numeric_limits<double>::quiet_NaN());
    if (!g.active()) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
        for (int64_t e = 0; e < E; ++e) res.single_drop_error[static_cast<size_t>(e)] = std::sqrt(error_of(without(everyone, {e})));
    }

    std::vector<int64_t> candidates;
    for (int64_t e = 0; e < E; ++e)
        if (protect.empty() || !protect[static_cast<size_t>(e)]) candidates.push_back(e);
    const auto nc = static_cast<int64_t>(candidates.size());
    if (nc < r)
        throw Error("prune", "NAEE layer " + std::to_string(cap.layer) + ": " + std::to_string(E - nc) +
                                 " protected super experts leave too few experts to drop " + std::to_string(r));

    // Evaluates drop sets in parallel; the best (ties: first listed) becomes the result.
    auto best_of = [&](const std::vector<std::vector<int64_t>>& drops) {
        std::vector<double> err(drops.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
        for (size_t i = 0; i < drops.size(); ++i) err[i] = error_of(without(everyone, drops[i]));
        res.subsets_evaluated += static_cast<int64_t>(drops.size());
        return static_cast<size_t>(std::min_element(err.begin(), err.end()) - err.begin());
    };
    auto group_ok = [&](const std::vector<int64_t>& drop) {
        if (!g.preserve) return true;
        std::vector<int64_t> left(static_cast<size_t>(g.n_group), group_size);
        for (int64_t e : drop) --left[static_cast<size_t>(e / group_size)];
        return std::all_of(left.begin(), left.end(), [&](int64_t n) { return n == quota; });
    };

    std::vector<int64_t> drop;
    if (choose(nc, r, opt.max_subsets) <= opt.max_subsets) {
        res.search = "exhaustive";
        std::vector<std::vector<int64_t>> sets;
        std::vector<int64_t> idx(static_cast<size_t>(r));
        std::iota(idx.begin(), idx.end(), 0);
        while (true) {
            std::vector<int64_t> d;
            for (int64_t i : idx) d.push_back(candidates[static_cast<size_t>(i)]);
            if (group_ok(d)) sets.push_back(std::move(d));
            int64_t i = r - 1;
            while (i >= 0 && idx[static_cast<size_t>(i)] == nc - r + i) --i;
            if (i < 0) break;
            ++idx[static_cast<size_t>(i)];
            for (int64_t j = i + 1; j < r; ++j) idx[static_cast<size_t>(j)] = idx[static_cast<size_t>(j - 1)] + 1;
        }
        if (sets.empty())
            throw Error("prune", "NAEE layer " + std::to_string(cap.layer) + ": no drop set satisfies the group and protection constraints");
        drop = sets[best_of(sets)];
    } else if (g.active()) {
        // Greedy steps would pass through expert counts the grouped router cannot use.
        throw Error("prune", "NAEE on " + mc.model_type + " (n_group = " + std::to_string(g.n_group) +
                                 ") needs the exhaustive search, but layer " + std::to_string(cap.layer) + " has more than " +
                                 std::to_string(opt.max_subsets) + " drop sets; raise --naee-max-subsets or use another method");
    } else {
        res.search = "greedy";
        for (int64_t step = 0; step < r; ++step) {
            std::vector<std::vector<int64_t>> sets;
            for (int64_t c : candidates) {
                if (std::find(drop.begin(), drop.end(), c) != drop.end()) continue;
                std::vector<int64_t> d = drop;
                d.push_back(c);
                sets.push_back(std::move(d));
            }
            if (sets.empty())
                throw InternalError("prune", "NAEE greedy step without candidates");
            drop = sets[best_of(sets)];
        }
    }
    res.kept = without(everyone, drop);
    res.error = std::sqrt(error_of(res.kept));
    return res;
}

}  // namespace moekit::prune
