// moekit.json, --json and the terminal table of `moekit quantize` (quantize.h).
#include <cmath>
#include <cstdio>
#include <sstream>

#include "quantize/quantize.h"

namespace moekit::quantize {
namespace {

nlohmann::ordered_json num(double v) {
    if (std::isfinite(v)) return v;
    return v > 0 ? "inf" : v < 0 ? "-inf" : "nan";  // JSON has no infinities (an exact tensor has SNR inf)
}

}  // namespace

nlohmann::ordered_json make_moekit_json(const QuantizeResult& r) {
    const auto& o = r.options;
    nlohmann::ordered_json j;
    j["schema_version"] = 1;
    j["tool"] = "moekit quantize";
    j["tool_version"] = o.tool_version;
    j["params"] = {
        {"model_dir", o.model_dir.string()}, {"format", o.format}, {"method", o.method}, {"bits", o.bits},
        {"type", o.type}, {"group_size", o.group_size}, {"symmetric", o.symmetric},
        {"keep_embeddings", o.keep_embeddings}, {"fake_dtype", o.fake_dtype}, {"threads", r.threads},
        {"conventions",
         {{"quantized_tensors", "2-D *.weight tensors except norms and routers (llama-quantize's rule); "
                                "token embedding and output head too unless keep_embeddings"},
          {"snr_db", "10 log10(sum w^2 / sum (w - q(w))^2) over the tensor, fp32 source vs dequantized"},
          {"rel_rmse", "sqrt(sum (w - q(w))^2 / sum w^2)"},
          {"ggml_blocks", "bit-exact with ggml-quants.c quantize_row_*_ref (no importance matrix)"},
          {"int_grid", "GPTQ reference quantizer grid: sym zero=(maxq+1)/2, asym zero=round(-min/scale), "
                       "groups along the input dimension"}}}};
    j["model_type"] = r.model_type;
    if (!r.gguf_arch.empty()) j["gguf_architecture"] = r.gguf_arch;
    j["quantizer"] = r.quantizer;
    j["avg_bits_quantized"] = r.avg_bits;
    j["quantized_params"] = r.quantized_params;
    j["n_fallback"] = r.n_fallback;
    j["notes"] = r.notes;
    j["input_tensor_bytes"] = r.input_tensor_bytes;
    j["output_bytes"] = r.output_bytes;
    if (r.options.method == "gptq") {
        j["params"]["gptq"] = {{"hessian", r.options.hessian}, {"damp", r.options.damp}, {"act_order", r.options.act_order},
                               {"block_size", 128}, {"min_expert_tokens", r.options.min_expert_tokens},
                               {"calib_tokens", r.calib_tokens}, {"layer_passes", r.gptq_passes}};
        j["gptq_layer_seconds"] = r.gptq_layer_seconds;
        j["gptq_layer_wall_seconds"] = r.gptq_layer_wall_seconds;
        auto& ex = j["gptq_experts"] = nlohmann::ordered_json::array();
        for (const auto& e : r.gptq_experts)
            ex.push_back({{"layer", e.layer}, {"expert", e.expert}, {"tokens", e.tokens}, {"starved", e.starved},
                          {"loss_gate", e.loss_gate}, {"loss_up", e.loss_up}, {"loss_down", e.loss_down}});
    }
    if (r.options.mixed_precision && !r.mixed_gguf.empty()) {
        j["params"]["mixed_precision"] = {{"avg_bits", r.options.avg_bits}, {"candidate_types", r.options.candidate_types},
                                          {"alpha", r.options.mp_alpha}, {"beta", r.options.mp_beta},
                                          {"unit", "layer-projection (GGUF: one type per expert tensor)"},
                                          {"objective", "min sum_units sum_e phi_e^alpha w_e^beta MSE_e(projection at type) "
                                                        "s.t. mean bits per weight <= avg_bits (exact DP, 1/16-bit units)"}};
        j["expert_avg_bits"] = r.expert_avg_bits;
        auto& mp = j["mixed_precision"] = nlohmann::ordered_json::array();
        static const char* proj[] = {"gate", "up", "down"};
        for (const auto& p : r.mixed_gguf) {
            nlohmann::ordered_json types = nlohmann::ordered_json::array();
            for (auto t : p.types) types.push_back(std::string(ggml_type_name(t)));
            mp.push_back({{"layer", p.layer}, {"projection", proj[p.projection]}, {"candidates", types}, {"error", p.error},
                          {"type", std::string(ggml_type_name(p.type))}});
        }
    } else if (r.options.mixed_precision) {
        j["params"]["mixed_precision"] = {{"avg_bits", r.options.avg_bits}, {"candidate_bits", r.options.candidate_bits},
                                          {"alpha", r.options.mp_alpha}, {"beta", r.options.mp_beta},
                                          {"objective", "min sum phi^alpha w^beta L_b s.t. sum b <= avg_bits * n_experts (exact DP)"}};
        j["expert_avg_bits"] = r.expert_avg_bits;
        auto& mp = j["mixed_precision"] = nlohmann::ordered_json::array();
        for (const auto& p : r.mixed)
            mp.push_back({{"layer", p.layer}, {"expert", p.expert}, {"tokens", p.tokens}, {"frequency", p.frequency},
                          {"gate_mass", p.gate_mass}, {"error", p.error}, {"bits", p.bits}});
    }
    auto& ts = j["tensors"] = nlohmann::ordered_json::array();
    for (const auto& t : r.tensors) {
        nlohmann::ordered_json e = {{"name", t.name}, {"type", t.type}};
        if (t.sources.size() == 1 && t.sources[0] != t.name) e["source"] = t.sources[0];
        if (t.sources.size() > 1) e["sources"] = t.sources.size();
        if (t.fallback) e["fallback_from"] = t.requested_type;
        e["n_elements"] = t.n_elements;
        e["bytes"] = t.bytes;
        e["snr_db"] = num(t.snr_db);
        e["rel_rmse"] = num(t.rel_rmse);
        e["max_abs_error"] = num(t.max_abs_error);
        ts.push_back(std::move(e));
    }
    return j;
}

nlohmann::ordered_json to_json(const QuantizeResult& r) {
    nlohmann::ordered_json j = r.moekit_json;
    j["ok"] = true;
    j["dry_run"] = r.options.dry_run;
    j["output"] = r.options.out.string();
    j["timing"] = {{"quantize_s", r.quantize_s}, {"wall_s", r.wall_s}};
    return j;
}

std::string to_text(const QuantizeResult& r) {
    std::ostringstream s;
    char buf[256];
    s << "moekit quantize: " << r.model_type << (r.gguf_arch.empty() ? "" : " -> GGUF " + r.gguf_arch) << ", "
      << r.quantizer << " (" << r.options.method << ")\n";
    std::snprintf(buf, sizeof buf, "%-44s %-6s %10s %9s %10s %12s\n", "tensor", "type", "elements", "SNR dB",
                  "rel RMSE", "max |err|");
    s << buf;
    const bool show_all = r.tensors.size() <= 60;
    std::size_t shown = 0;
    for (const auto& t : r.tensors) {
        if (!show_all && t.type == "f32") continue;
        if (++shown > 60) break;
        std::snprintf(buf, sizeof buf, "%-44s %-6s %10lld %9.2f %10.4f %12.4g%s\n", t.name.c_str(), t.type.c_str(),
                      static_cast<long long>(t.n_elements), t.snr_db, t.rel_rmse, t.max_abs_error,
                      t.fallback ? ("  (fallback from " + t.requested_type + ")").c_str() : "");
        s << buf;
    }
    if (shown > 60) s << "... (" << r.tensors.size() << " tensors; all in moekit.json)\n";
    std::snprintf(buf, sizeof buf, "average %.3f bits per quantized weight over %.0f weights\n", r.avg_bits,
                  r.quantized_params);
    s << buf;
    for (const auto& n : r.notes) s << "note: " << n << "\n";
    if (r.options.dry_run) {
        s << "dry run: nothing written\n";
    } else {
        std::snprintf(buf, sizeof buf, "wrote %s (%.2f MB from %.2f MB of tensors) in %.2f s\n",
                      r.options.out.string().c_str(), r.output_bytes / 1e6, r.input_tensor_bytes / 1e6, r.wall_s);
        s << buf;
    }
    return s.str();
}

}  // namespace moekit::quantize
