// What `moekit merge` reports: OUT_DIR/moekit.json, the README.md note, --json and the terminal
// table (merge/merge.h).
#include <cstdio>
#include <sstream>

#include "core/format.h"
#include "merge/merge.h"

namespace moekit::merge {

namespace {

using Json = nlohmann::ordered_json;

using core::fmt;

Json conventions(const MergeResult& r) {
    Json c = {
        {"frequency", "f_e = #{(t, slot): e in S_t} over all calibration tokens, S_t the architecture's own selection"},
        {"weights", "member weight f^_i = f_i / sum of the group's f (uniform when the group received no token)"},
        {"order", "new expert j is group j; groups ordered by their smallest original expert"},
        {"singletons", "a group of one expert is that expert, bytes unchanged, router row unchanged"},
        {"agreement", "per layer on the captured calibration tokens: overlap = mean_t |{e in S_t : group(e) in S'_t}| / k "
                      "(S_t original selection, S'_t the merged model's; as moekit eval --ref computes it through expert_map); "
                      "top1 = share of tokens with group(S_t[0]) = S'_t[0]"},
        {"router_bias", "router bias and e_score_correction_bias of a group: frequency-weighted mean of its members' entries"},
    };
    switch (r.method) {
        case Method::m_smoe:
            c["grouping"] = "M-SMoE: the N most frequent experts (ties: lower index) are dominant; every other expert joins the "
                            "dominant one with the highest cosine similarity of router-logit columns over the calibration tokens";
            break;
        case Method::hc_smoe:
            c["grouping"] = "HC-SMoE: average-linkage agglomerative clustering, distance 1 - cosine of the experts' mean outputs "
                            "over the sampled tokens (every expert on every sampled token)";
            break;
        case Method::sub_moe:
            c["grouping"] = "Sub-MoE: k-means on cosine distances between expert outputs (each expert = its outputs on all sampled "
                            "tokens, unit-normalized; kernel k-means from the Gram matrix), k-means++ seeding from "
                            "mt19937_64(seed + 0x9e3779b97f4a7c15 * layer), 10 restarts, lowest inertia kept";
            break;
    }
    c["merge"] = r.method == Method::sub_moe
                     ? "joint SVD per projection: [W_1 ... W_n] (input dim) = U S V^T, W = U_r S_r sum_i f^_i V_i (r = svd_rank, "
                       "0 = full rank, which equals the weighted average exactly and is computed as that)"
                     : "frequency-weighted average per projection W = sum_i f^_i W_i";
    c["alignment"] = r.options.align ? "each member's intermediate neurons permuted to the group's most frequent member (ties: lower "
                                       "index) by the linear assignment maximizing the summed inner products of gate rows, up rows "
                                       "and down columns (Hungarian method)"
                                     : "off (--no-align)";
    c["router"] = r.options.router == "refit"
                      ? "refit: per group, least squares x.w ~ logsumexp of the members' logits over the captured router inputs, "
                        "ridge lambda = 1e-6 trace(X^T X)/d towards the frequency-weighted mean row"
                      : "mean: frequency-weighted mean of the members' router rows";
    if (r.n_group > 1) c["group_limited"] = "each routing group of n_group is merged within itself into N / n_group experts";
    return c;
}

Json agreement_json(const Agreement& a) { return {{"overlap", a.overlap}, {"top1", a.top1}, {"tokens", a.tokens}}; }

}  // namespace

Json make_moekit_json(const MergeResult& r) {
    const MergeOptions& o = r.options;
    Json j;
    j["schema_version"] = 1;
    j["command"] = "merge";
    if (!o.tool_version.empty()) j["moekit_version"] = o.tool_version;
    std::vector<int64_t> moe_layers;
    for (const LayerMerge& lm : r.layers) moe_layers.push_back(lm.layer);
    j["source"] = {{"model_dir", o.model_dir.string()}, {"model_type", r.model_type}, {"n_layer", r.n_layer},
                   {"moe_layers", moe_layers}, {"n_expert", r.n_expert}, {"n_expert_used", r.n_expert_used}};
    j["params"] = {
        {"method", method_name(r.method)},
        {"experts", o.experts},
        {"n_expert_new", r.n_new},
        {"router", o.router},
        {"align", o.align},
        {"svd_rank", o.svd_rank},
        {"seed", o.seed},
        {"calib", r.calib_files},
        {"format", io::format_name(o.calib.format)},
        {"seq_len", r.seq_len},
        {"max_tokens", o.calib.max_tokens},
        {"add_eos", o.calib.add_eos},
        {"add_bos", o.calib.add_bos ? Json(*o.calib.add_bos) : Json("auto")},
        {"tokenization", r.tokenization},
        {"sample_tokens", o.sample_tokens},
        {"conventions", conventions(r)},
    };
    Json notes = Json::array();
    for (const auto& n : r.edit.notes) notes.push_back(n);
    double overlap = 0, overlap_mean = 0;
    for (const LayerReport& rep : r.reports) {
        overlap += rep.agreement.overlap / static_cast<double>(r.reports.size());
        overlap_mean += rep.agreement_mean.overlap / static_cast<double>(r.reports.size());
    }
    j["result"] = {{"n_expert", r.n_new},
                   {"transformers_loadable", true},
                   {"routing_agreement", overlap},
                   {"routing_agreement_mean_router", overlap_mean},
                   {"input_tensor_bytes", r.input_tensor_bytes},
                   {"output_tensor_bytes", r.output_tensor_bytes},
                   {"notes", notes}};
    j["calibration"] = {{"tokens", r.calib_tokens}, {"windows", r.calib_windows}, {"captured_tokens", r.captured_tokens},
                        {"capture_stride", r.capture_stride}, {"sample_tokens", r.sample_tokens}};
    Json layers = Json::array();
    for (size_t i = 0; i < r.layers.size(); ++i) {
        const LayerMerge& lm = r.layers[i];
        const LayerReport& rep = r.reports[i];
        layers.push_back({{"layer", lm.layer},
                          {"n_expert", lm.n_expert},
                          {"load", rep.load},
                          {"groups", lm.groups},
                          {"weights", lm.weights},
                          {"reference", lm.reference},
                          {"alignment_distance_ratio", rep.align_gain},
                          {"routing_agreement", agreement_json(rep.agreement)},
                          {"routing_agreement_mean_router", agreement_json(rep.agreement_mean)}});
    }
    j["layers"] = std::move(layers);
    Json map = Json::object();
    for (const LayerMerge& lm : r.layers) map[std::to_string(lm.layer)] = lm.groups;
    j["expert_map"] = std::move(map);
    return j;
}

std::string readme_note(const MergeResult& r) {
    std::ostringstream out;
    out << "## Merged with moekit\n\n"
        << "Made by `moekit merge` from `" << r.options.model_dir.string() << "` with method `" << method_name(r.method) << "`, `--experts "
        << r.options.experts << "`, router `" << r.options.router << "`" << (r.options.align ? "" : ", no alignment") << ": the "
        << r.n_expert << " routed experts of each of the " << r.layers.size() << " MoE layers merged into " << r.n_new
        << ", calibrated on " << r.calib_tokens << " tokens. New expert j merges the original experts of group j; "
        << "`moekit.json` lists every layer's groups, member weights and routing agreement with the original, and the parameters "
        << "used; its `expert_map` gives the originals of every new expert (`moekit eval --ref ORIGINAL` uses it).\n";
    for (const auto& n : r.edit.notes) out << "\nNote: " << n << ".\n";
    return out.str();
}

Json to_json(const MergeResult& r) {
    Json j = r.moekit_json;
    j["ok"] = true;
    j["dry_run"] = r.options.dry_run;
    j["output"] = r.written ? Json(r.written->dir.string()) : Json(nullptr);
    j["calibration_source"] = Json::array({r.calibration.to_json()});
    if (!r.sample_calibration.kind.empty()) j["calibration_source"].push_back(r.sample_calibration.to_json());
    j["timing"] = {{"calibration_s", r.calib_s}, {"sample_s", r.sample_s}, {"plan_s", r.plan_s}, {"write_s", r.write_s},
                   {"wall_s", r.wall_s}, {"layer_merge_s", r.layer_merge_s}, {"threads", r.threads}, {"device", r.device}};
    return j;
}

std::string to_text(const MergeResult& r) {
    std::ostringstream out;
    out << "Model:       " << r.options.model_dir.string() << " (" << r.display_name << ", " << r.layers.size() << " MoE layers, "
        << r.n_expert << " experts, top-" << r.n_expert_used << ")\n";
    out << "Method:      " << method_name(r.method) << ", " << r.n_expert << " -> " << r.n_new << " experts per layer, router "
        << r.options.router << (r.options.align ? ", aligned" : ", not aligned");
    if (r.method == Method::sub_moe) out << ", joint SVD " << (r.options.svd_rank > 0 ? "rank " + std::to_string(r.options.svd_rank) : std::string("full rank"));
    out << "\nCalibration: " << r.calib_tokens << " tokens in " << r.calib_windows << " windows of <= " << r.seq_len << " ("
        << r.captured_tokens << " router inputs captured";
    if (r.sample_tokens > 0) out << ", every expert on " << r.sample_tokens << " sampled tokens";
    out << ")\n\n";
    out << "layer  agreement (overlap, top1)  mean router  groups (original experts of new expert 0, 1, ...)\n";
    for (size_t i = 0; i < r.layers.size(); ++i) {
        const LayerMerge& lm = r.layers[i];
        const LayerReport& rep = r.reports[i];
        std::string groups;
        for (const auto& g : lm.groups) {
            if (g.size() == 1) {
                groups += std::to_string(g[0]) + " ";
                continue;
            }
            groups += "{";
            for (size_t m = 0; m < g.size(); ++m) groups += (m ? "," : "") + std::to_string(g[m]);
            groups += "} ";
        }
        char line[160];
        std::snprintf(line, sizeof line, "%5lld  %8.3f  %8.3f          %8.3f     ", static_cast<long long>(lm.layer), rep.agreement.overlap,
                      rep.agreement.top1, rep.agreement_mean.overlap);
        out << line << groups << "\n";
    }
    out << "\nRouting agreement: overlap of the original top-" << r.n_expert_used
        << " (mapped to groups) with the merged top-k, on the captured calibration tokens\n";
    out << "Tensors " << core::megabytes(r.input_tensor_bytes) << " -> " << core::megabytes(r.output_tensor_bytes) << "\n";
    for (const auto& n : r.edit.notes) out << "Note: " << n << "\n";
    out << "Time: calibration " << fmt("%.2f", r.calib_s) << " s";
    if (r.sample_tokens > 0) out << ", all-experts sample " << fmt("%.2f", r.sample_s) << " s";
    out << ", grouping/alignment/router " << fmt("%.2f", r.plan_s) << " s, writing " << fmt("%.2f", r.write_s) << " s; total "
        << fmt("%.2f", r.wall_s) << " s (" << r.threads << (r.threads == 1 ? " thread)\n" : " threads)\n");
    if (r.written)
        out << "Wrote " << r.written->dir.string() << " (" << r.written->shard_files.size() << " safetensors file"
            << (r.written->shard_files.size() == 1 ? "" : "s") << ", moekit.json, README.md)\n";
    else
        out << "Dry run: nothing written\n";
    return out.str();
}

}  // namespace moekit::merge
