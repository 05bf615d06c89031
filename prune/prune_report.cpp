// What `moekit prune` reports: OUT_DIR/moekit.json, the README.md note, --json and the
// terminal table (prune/prune.h).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "core/format.h"
#include "prune/prune.h"

namespace moekit::prune {

namespace {

using Json = nlohmann::ordered_json;

using core::fmt;

Json conventions(Method method) {
    Json c = {
        {"selection", "the architecture's own selected experts S_t and applied gates g (biases, renormalization and "
                      "routed_scaling_factor included)"},
        {"ranking", "lower score is pruned first; ties keep the lower expert index"},
        {"keep", "a ratio keeps round(ratio * E) experts per layer (half away from zero); an integer is a count"},
        {"global_budget", "scores normalized per layer by mean |score|; protected and the best min_keep experts of each "
                          "layer kept first; the rest of the budget by one threshold over all layers"},
        {"super_experts", "m = max |down_proj output| over routed calibration tokens; super iff m > p99.5 (linear "
                          "interpolation) of all MoE layers' m, m > max(m)/10, decoder layer < 0.75 * n_layer"},
    };
    switch (method) {
        case Method::frequency: c["score"] = "Load_e = #{(t, slot): e in S_t}"; break;
        case Method::weighted_frequency: c["score"] = "sum_t g_{t,e}"; break;
        case Method::ean: c["score"] = "mean over routed t of ||E_e(x_t)||_2 (0 if never routed)"; break;
        case Method::reap:
            c["score"] = "mean over routed t of g~_{t,e} ||E_e(x_t)||_2, g~ = g / sum of the token's selected gates (0 if never routed)";
            break;
        case Method::tcess: c["score"] = "mean over all calibration tokens of z_{t,e} 1[e in S_t], z = raw router logit"; break;
        case Method::easy_ep:
            c["score"] = "sum over routed t of g_{t,e} ||E_e(x_t)||_2 max(1 - cos(h_t, h_t + y_t), 0), h = residual before "
                         "the MoE block, y = routed output (no shared experts)";
            break;
        case Method::naee:
            c["score"] = "||Z - Z'||_F when only this expert is dropped (null for grouped routing); the kept set minimizes "
                         "||Z - Z'||_F over the sampled tokens, Z' routed by the sliced router";
            break;
        case Method::random: c["score"] = "uniform [0, 1): top 53 bits of mt19937_64 seeded with seed_seq{seed lo, seed hi, layer lo, layer hi}"; break;
    }
    return c;
}

}  // namespace

Json make_moekit_json(const PruneResult& r) {
    const PruneOptions& o = r.options;
    Json j;
    j["schema_version"] = 1;
    j["command"] = "prune";
    if (!o.tool_version.empty()) j["moekit_version"] = o.tool_version;
    std::vector<int64_t> moe_layers;
    for (const LayerPlan& lp : r.plan.layers) moe_layers.push_back(lp.layer);
    j["source"] = {{"model_dir", o.model_dir.string()}, {"model_type", r.model_type}, {"n_layer", r.n_layer},
                   {"moe_layers", moe_layers}, {"n_expert", r.n_expert}, {"n_expert_used", r.n_expert_used}};
    const KeepSpec& keep = r.plan_options.keep;
    j["params"] = {
        {"method", method_name(r.method)},
        {"keep", keep.text},
        {"keep_kind", keep.is_ratio ? "ratio" : "count"},
        {"budget", budget_name(r.plan_options.budget)},
        {"min_keep", r.plan_options.budget == Budget::global ? Json(r.plan.min_keep) : Json(nullptr)},
        {"protect_super_experts", o.protect_super_experts},
        {"seed", o.seed},
        {"calib", r.calib_files},
        {"format", io::format_name(o.calib.format)},
        {"seq_len", r.seq_len},
        {"max_tokens", o.calib.max_tokens},
        {"add_eos", o.calib.add_eos},
        {"add_bos", o.calib.add_bos ? Json(*o.calib.add_bos) : Json("auto")},
        {"tokenization", r.tokenization},
        {"naee_max_tokens", o.naee_max_tokens},
        {"naee_max_subsets", o.naee_max_subsets},
        {"conventions", conventions(r.method)},
    };
    const bool uniform = r.plan.uniform();
    Json counts = Json::object();
    for (const LayerPlan& lp : r.plan.layers) counts[std::to_string(lp.layer)] = lp.kept.size();
    Json notes = Json::array();
    for (const auto& n : r.edit.notes) notes.push_back(n);
    if (!uniform)
        notes.push_back("per-layer expert counts differ: config.json carries moekit_experts_per_layer; moekit loads this "
                        "checkpoint, transformers does not");
    j["result"] = {{"uniform", uniform},
                   {"transformers_loadable", uniform},
                   {"config_extension", uniform ? Json(nullptr) : Json(std::string(model::kExpertsPerLayerKey))},
                   {"n_expert_per_layer", counts},
                   {"experts_kept", r.plan.total_kept()},
                   {"experts_total", r.plan.total_experts()},
                   {"threshold", r.plan_options.budget == Budget::global ? Json(r.plan.threshold) : Json(nullptr)},
                   {"input_tensor_bytes", r.input_tensor_bytes},
                   {"output_tensor_bytes", r.output_tensor_bytes},
                   {"notes", notes}};
    j["calibration"] = {{"tokens", r.calib_tokens}, {"windows", r.calib_windows}, {"naee_tokens", r.naee_tokens}};
    Json supers = Json::array();
    for (const SuperExpert& s : r.super_experts)
        supers.push_back({{"layer", s.layer}, {"expert", s.expert}, {"max_abs_output", s.max_abs}});
    j["super_experts"] = {{"protected", o.protect_super_experts},
                          {"p99_5", r.super_rule.threshold},
                          {"max", r.super_rule.max_all},
                          {"layers_below", r.super_rule.layer_limit},
                          {"experts", supers}};
    Json layers = Json::array();
    for (size_t i = 0; i < r.plan.layers.size(); ++i) {
        const LayerPlan& lp = r.plan.layers[i];
        const LayerStats& s = r.stats[i];
        Json l = {{"layer", lp.layer}, {"n_expert", lp.n_expert}, {"kept", lp.kept}, {"removed", lp.removed}, {"scores", lp.scores}};
        if (!lp.normalized.empty()) l["normalized_scores"] = lp.normalized;
        std::vector<int64_t> prot;
        for (size_t e = 0; e < lp.protect.size(); ++e)
            if (lp.protect[e]) prot.push_back(static_cast<int64_t>(e));
        l["protected"] = prot;
        Json all = Json::object();
        for (Method m : all_methods())
            if (m != Method::naee && m != Method::random) all[std::string(method_name(m))] = method_scores(m, s);
        all["max_abs_output"] = s.max_abs;
        l["all_scores"] = all;
        if (i < r.naee.size()) {
            const NaeeLayerResult& n = r.naee[i];
            l["naee"] = {{"search", n.search}, {"subsets_evaluated", n.subsets_evaluated}, {"error", n.error},
                         {"reference_norm", n.reference_norm}, {"relative_error", n.reference_norm > 0 ? n.error / n.reference_norm : 0.0}};
        }
        layers.push_back(std::move(l));
    }
    j["layers"] = std::move(layers);
    j["expert_map"] = expert_map_json(r.plan);
    return j;
}

std::string readme_note(const PruneResult& r) {
    std::ostringstream out;
    const bool uniform = r.plan.uniform();
    out << "## Pruned with moekit\n\n"
        << "Made by `moekit prune` from `" << r.options.model_dir.string() << "` with method `" << method_name(r.method)
        << "`, `--keep " << r.plan_options.keep.text << "`, budget `" << budget_name(r.plan_options.budget) << "`: "
        << r.plan.total_kept() << " of " << r.plan.total_experts() << " routed experts kept over " << r.plan.layers.size()
        << " MoE layers";
    if (uniform) out << " (" << r.plan.layers.front().kept.size() << " per layer)";
    out << ", calibrated on " << r.calib_tokens << " tokens. Kept experts are renumbered 0..E'-1 in their original order "
        << "and the router rows sliced to match. `moekit.json` lists, per layer, the removed experts, every expert's "
        << "score and the parameters used; its `expert_map` gives the original index of every new expert "
        << "(`moekit eval --ref ORIGINAL` uses it).\n";
    if (!uniform)
        out << "\n**Per-layer expert counts differ.** A Hugging Face config holds one expert count, so `config.json` "
            << "sets it to the largest count and adds the moekit extension field `" << model::kExpertsPerLayerKey
            << "` (one count per decoder layer, 0 for dense layers). moekit (`eval`, `inspect`, `profile`) reads it; "
            << "**transformers cannot load this checkpoint**: it builds every layer with the config's one expert count, "
            << "finds the smaller layers' router and expert tensors mismatched and raises an error (passing "
            << "`ignore_mismatched_sizes=True` would silently replace them with random weights: do not). Prune with "
            << "`--budget uniform` for a checkpoint transformers loads as-is.\n";
    for (const auto& n : r.edit.notes) out << "\nNote: " << n << ".\n";
    return out.str();
}

Json to_json(const PruneResult& r) {
    Json j = r.moekit_json;
    j["ok"] = true;
    j["dry_run"] = r.options.dry_run;
    j["output"] = r.written ? Json(r.written->dir.string()) : Json(nullptr);
    j["calibration_source"] = Json::array({r.calibration.to_json()});
    j["timing"] = {{"calibration_s", r.calib_s}, {"naee_s", r.naee_s}, {"plan_s", r.plan_s}, {"write_s", r.write_s},
                   {"wall_s", r.wall_s}, {"threads", r.threads}, {"device", r.device}};
    return j;
}

std::string to_text(const PruneResult& r) {
    std::ostringstream out;
    const Plan& p = r.plan;
    out << "Model:       " << r.options.model_dir.string() << " (" << r.display_name << ", " << p.layers.size() << " MoE layers, "
        << r.n_expert << " experts, top-" << r.n_expert_used << ")\n";
    out << "Method:      " << method_name(r.method) << ", --keep " << r.plan_options.keep.text << ", "
        << budget_name(r.plan_options.budget) << " budget";
    if (r.plan_options.budget == Budget::global) out << " (per-layer minimum " << p.min_keep << ")";
    out << "\nCalibration: " << r.calib_tokens << " tokens in " << r.calib_windows << " windows of <= " << r.seq_len << "\n";
    out << "Super experts: ";
    if (!r.options.protect_super_experts) out << "not protected (--no-protect-super-experts)";
    else if (r.super_experts.empty()) out << "none found";
    for (size_t i = 0; i < r.super_experts.size(); ++i)
        out << (i ? ", " : "") << "layer " << r.super_experts[i].layer << " expert " << r.super_experts[i].expert
            << " (max |out| " << fmt("%.3g", r.super_experts[i].max_abs) << ")";
    out << (r.super_experts.empty() ? "" : " protected") << "\n\n";

    out << "layer  kept    score kept (min..max)     score removed (min..max)  removed experts\n";
    for (const LayerPlan& lp : p.layers) {
        auto range = [&](const std::vector<int64_t>& set) {
            double lo = INFINITY, hi = -INFINITY;
            for (int64_t e : set) {
                const double s = lp.scores[static_cast<size_t>(e)];
                if (std::isnan(s)) continue;
                lo = std::min(lo, s);
                hi = std::max(hi, s);
            }
            return lo > hi ? std::string("-") : fmt("%.4g", lo) + " .. " + fmt("%.4g", hi);
        };
        char head[64];
        std::snprintf(head, sizeof head, "%5lld  %3zu/%-3lld ", static_cast<long long>(lp.layer), lp.kept.size(),
                      static_cast<long long>(lp.n_expert));
        std::string removed;
        for (int64_t e : lp.removed) {
            if (!removed.empty()) removed += ' ';
            removed += std::to_string(e);
        }
        char line[256];
        std::snprintf(line, sizeof line, "%s %-25s %-25s %s\n", head, range(lp.kept).c_str(), range(lp.removed).c_str(), removed.c_str());
        out << line;
    }
    for (const NaeeLayerResult& n : r.naee)
        out << "NAEE layer " << n.layer << ": " << n.search << " search over " << n.subsets_evaluated << " sets, relative error "
            << fmt("%.4f", n.reference_norm > 0 ? n.error / n.reference_norm : 0.0) << " on " << r.naee_tokens << " tokens\n";
    out << "\nKept " << p.total_kept() << " of " << p.total_experts() << " routed experts; tensors " << core::megabytes(r.input_tensor_bytes)
        << " -> " << core::megabytes(r.output_tensor_bytes) << "\n";
    if (!p.uniform())
        out << "Per-layer counts differ: written with config field " << model::kExpertsPerLayerKey
            << " (moekit loads it; transformers will NOT load this checkpoint)\n";
    for (const auto& n : r.edit.notes) out << "Note: " << n << "\n";
    out << "Time: calibration " << fmt("%.2f", r.calib_s) << " s";
    if (r.method == Method::naee) out << ", NAEE " << fmt("%.2f", r.naee_s) << " s";
    out << ", plan " << fmt("%.2f", r.plan_s) << " s, writing " << fmt("%.2f", r.write_s) << " s; total "
        << fmt("%.2f", r.wall_s) << " s (" << r.threads << (r.threads == 1 ? " thread)\n" : " threads)\n");
    if (r.written)
        out << "Wrote " << r.written->dir.string() << " (" << r.written->shard_files.size() << " safetensors file"
            << (r.written->shard_files.size() == 1 ? "" : "s") << ", moekit.json, README.md)\n";
    else
        out << "Dry run: nothing written\n";
    return out.str();
}

}  // namespace moekit::prune
