// What `moekit svd` reports: OUT_DIR/moekit.json, the README.md note, --json and the terminal
// table (svd/svd.h).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <sstream>

#include "core/format.h"
#include "svd/svd.h"

namespace moekit::svd {

namespace {

using Json = nlohmann::ordered_json;

using core::fmt;

Json conventions(Method method) {
    Json c = {
        {"rank", method == Method::d2_moe
                     ? "r = floor((ratio * E - 1) * m * n / (E * (m + n))): E experts of [m, n] keep ratio * E * m * n "
                       "parameters, of which the shared base takes m * n"
                     : "r = floor(m * n * ratio / (m + n)), clamped to [1, min(m, n)]"},
        {"factors", "W [m, n] ~ A B with A = U_r S_r^(1/2) [m, r], B = S_r^(1/2) V_r^T (S^-1) [r, n]"},
        {"tail_energy", "per layer and projection, the mean over experts of sum_{i>r} s_i^2 / sum_i s_i^2 of the "
                        "matrix factorized (W S when whitened, W otherwise; d2-moe: the delta W_i - W_b)"},
    };
    if (method != Method::plain) {
        c["whitening"] = "H = (1/N) sum x x^T over the expert's routed calibration tokens (gate/up: the expert input x; "
                         "down: silu(W_gate x) * (W_up x)), accumulated in double; S = chol(H), or chol(H + "
                         "(-lambda_min + 1e-6) I) when H is not positive definite; U S V^T = svd(W S)";
        c["fallback"] = "an expert with no routed calibration token is factorized by plain SVD (svd(W))";
    }
    if (method == Method::d2_moe)
        c["base"] = "W_b = sum_i alpha_i W_i per layer and projection, alpha_i = tokens_i / sum tokens (uniform if the "
                    "layer saw none); each expert's delta W_i - W_b is factorized with the same whitening";
    return c;
}

}  // namespace

Json make_moekit_json(const SvdResult& r) {
    const SvdOptions& o = r.options;
    Json j;
    j["schema_version"] = 1;
    j["command"] = "svd";
    if (!o.tool_version.empty()) j["moekit_version"] = o.tool_version;
    std::vector<int64_t> moe_layers;
    for (const LayerFactors& lf : r.layers) moe_layers.push_back(lf.layer);
    j["source"] = {{"model_dir", o.model_dir.string()}, {"model_type", r.model_type}, {"n_layer", r.n_layer},
                   {"moe_layers", moe_layers}, {"n_expert", r.n_expert}, {"d_model", r.d_model},
                   {"d_ff_expert", r.d_ff_expert}};
    j["params"] = {{"method", method_name(r.method)}, {"ratio", o.ratio}, {"format", format_name(r.format)},
                   {"calib", r.calib_files}, {"seq_len", r.seq_len}, {"max_tokens", o.calib.max_tokens},
                   {"batch_tokens", o.batch_tokens}, {"calibration_passes", r.calib_passes}, {"tokenization", r.tokenization},
                   {"conventions", conventions(r.method)}};
    j["result"] = {{"rank", {{"gate", r.rank[0]}, {"up", r.rank[1]}, {"down", r.rank[2]}}},
                   {"expert_params", r.expert_params},
                   {"kept_params", r.kept_params},
                   {"kept_fraction", r.expert_params ? static_cast<double>(r.kept_params) / static_cast<double>(r.expert_params) : 0.0},
                   {"calib_tokens", r.calib_tokens},
                   {"input_tensor_bytes", r.input_tensor_bytes},
                   {"output_tensor_bytes", r.output_tensor_bytes},
                   {"transformers_loadable", r.format == Format::dense}};
    Json layers = Json::array();
    for (const LayerFactors& lf : r.layers) {
        std::vector<int64_t> fallback;
        int64_t shifted = 0;
        for (size_t ie = 0; ie < lf.experts.size(); ++ie) {
            if (lf.experts[ie].fallback) fallback.push_back(static_cast<int64_t>(ie));
            if (lf.experts[ie].shift > 0) ++shifted;
        }
        Json l = {{"layer", lf.layer}, {"tokens", lf.tokens}, {"fallback_experts", fallback},
                  {"experts_with_shifted_h", shifted},
                  {"tail_energy", {{"gate", lf.tail_energy[0]}, {"up", lf.tail_energy[1]}, {"down", lf.tail_energy[2]}}}};
        if (!lf.alpha.empty()) l["alpha"] = lf.alpha;
        layers.push_back(std::move(l));
    }
    j["layers"] = std::move(layers);
    return j;
}

std::string readme_note(const SvdResult& r) {
    std::ostringstream out;
    out << "## Low-rank experts (moekit svd)\n\n"
        << "Every routed expert's gate/up/down projection was replaced by a rank-" << r.rank[0] << "/" << r.rank[1] << "/"
        << r.rank[2] << " approximation (method " << method_name(r.method) << ", kept-parameter ratio "
        << fmt("%g", r.options.ratio) << "; the factors hold " << r.kept_params << " of the experts' " << r.expert_params
        << " parameters). Shared experts, attention, router and embeddings are unchanged.\n\n";
    if (r.format == Format::dense)
        out << "Format: dense. The reconstructed weights are stored in the original layout and dtype, so any loader "
               "(transformers included) runs this checkpoint; it is as large as the original.\n";
    else
        out << "Format: factored. Each projection is stored as `<proj>.lowrank_a` [m, r] and `<proj>.lowrank_b` [r, n] "
               "(W ~ A B)"
            << (r.method == Method::d2_moe ? " plus a shared base `...experts.base.<proj>.weight` per layer (W ~ W_b + A B)" : "")
            << "; config.json field `moekit_lowrank` tells moekit's engine, which applies the factors as two GEMMs. "
               "transformers cannot load this checkpoint.\n";
    out << "\nmoekit.json records the parameters, ranks, routed calibration tokens per expert and the experts that "
           "fell back to plain SVD for lack of tokens.\n";
    return out.str();
}

Json to_json(const SvdResult& r) {
    Json j = r.moekit_json;
    j["ok"] = true;
    j["dry_run"] = r.options.dry_run;
    j["output"] = r.written ? Json(r.written->dir.string()) : Json(nullptr);
    j["timing"] = {{"calibration_s", r.calib_s}, {"factorize_s", r.factor_s}, {"write_s", r.write_s},
                   {"wall_s", r.wall_s}, {"threads", r.threads}, {"device", r.device}};
    return j;
}

std::string to_text(const SvdResult& r) {
    std::ostringstream out;
    out << "Model:       " << r.options.model_dir.string() << " (" << r.display_name << ", " << r.layers.size()
        << " MoE layers, " << r.n_expert << " experts of [" << r.d_ff_expert << " x " << r.d_model << "])\n";
    out << "Method:      " << method_name(r.method) << ", --ratio " << fmt("%g", r.options.ratio) << ", format "
        << format_name(r.format) << "; rank gate/up/down " << r.rank[0] << "/" << r.rank[1] << "/" << r.rank[2] << "\n";
    if (r.method != Method::plain)
        out << "Calibration: " << r.calib_tokens << " tokens in " << r.calib_windows << " windows of <= " << r.seq_len << "\n";
    out << "Parameters:  experts " << r.expert_params << " -> " << r.kept_params << " ("
        << fmt("%.1f%%", r.expert_params ? 100.0 * static_cast<double>(r.kept_params) / static_cast<double>(r.expert_params) : 0.0)
        << ")\n\n";
    out << "layer  tokens (min..max)  fallback  tail energy gate/up/down\n";
    for (const LayerFactors& lf : r.layers) {
        int64_t lo = INT64_MAX, hi = 0, fb = 0;
        for (size_t ie = 0; ie < lf.tokens.size(); ++ie) {
            lo = std::min(lo, lf.tokens[ie]);
            hi = std::max(hi, lf.tokens[ie]);
            fb += lf.experts[ie].fallback ? 1 : 0;
        }
        char line[160];
        std::snprintf(line, sizeof line, "%5lld  %7lld..%-8lld  %8lld  %.4f / %.4f / %.4f\n", static_cast<long long>(lf.layer),
                      static_cast<long long>(lo), static_cast<long long>(hi), static_cast<long long>(fb),
                      lf.tail_energy[0], lf.tail_energy[1], lf.tail_energy[2]);
        out << line;
    }
    out << "\n";
    if (r.written)
        out << "Wrote " << r.written->dir.string() << ": " << core::megabytes(r.output_tensor_bytes) << " of tensors (input "
            << core::megabytes(r.input_tensor_bytes) << ")\n";
    else
        out << "Dry run: nothing written (would write " << core::megabytes(r.output_tensor_bytes) << " of tensors; input "
            << core::megabytes(r.input_tensor_bytes) << ")\n";
    return out.str();
}

}  // namespace moekit::svd
