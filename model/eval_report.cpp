// `moekit eval` results: JSON and text rendering, and moekit.json expert maps (model/eval.h).
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/format.h"
#include "core/gemm_bf16.h"
#include "core/sgemm.h"
#include "model/eval.h"

namespace moekit::model {

namespace fs = std::filesystem;

namespace {

std::string gemm_backend(const EvalOptions& o) {
    if (o.device) return o.compute == Compute::kBf16 ? "cuBLAS GemmEx bf16 x bf16 -> fp32" : "cuBLAS sgemm (fp32)";
    return o.compute == Compute::kBf16 ? core::bf16::describe() : std::string(core::sgemm_backend()) + " (fp32)";
}

constexpr const char* kConvention =
    "non-overlapping windows of seq_len ids per domain (a final partial window of >= 2 ids is kept); each window an "
    "independent forward pass (positions from 0, causal); logits at positions 0..n-2 predict ids 1..n-1; "
    "nll = -log_softmax(fp32 logits, float64)[target] summed in float64; ppl = exp(sum nll / scored); total pools all "
    "domains' scored tokens";
constexpr const char* kRefConvention =
    "KL(ref || model) = sum_v p_ref(v) (log p_ref(v) - log p_model(v)) per scored token, float64; kl_p99 = 99th "
    "percentile with linear interpolation; top1_agreement = fraction of scored tokens whose argmax agrees; routing "
    "agreement per MoE layer = mean over every token position of |S_ref & map(S_model)| / k_ref, S = the "
    "architecture's own selected experts (biases included)";

double fraction(int64_t num, int64_t den) { return den ? static_cast<double>(num) / static_cast<double>(den) : 0.0; }

nlohmann::ordered_json domain_json(const DomainResult& d, const EvalReport& report) {
    nlohmann::ordered_json j;
    if (!d.path.empty()) {
        j["path"] = d.path.string();
        j["format"] = d.format;
    }
    j["documents"] = d.documents;
    j["documents_used"] = d.documents_used;
    j["tokens"] = d.tokens;
    j["tokens_available"] = d.tokens_available;
    j["windows"] = d.windows;
    j["scored"] = d.scored;
    j["nll_sum"] = d.nll_sum;
    j["mean_nll"] = d.mean_nll();
    j["ppl"] = d.ppl();
    if (report.has_ref) {
        const double ref_mean = d.scored ? d.ref_nll_sum / static_cast<double>(d.scored) : 0.0;
        j["ref_mean_nll"] = ref_mean;
        j["ref_ppl"] = std::exp(ref_mean);
        j["kl_mean"] = d.scored ? d.kl_sum / static_cast<double>(d.scored) : 0.0;
        j["kl_p99"] = d.kl_p99;
        j["top1_agreement"] = fraction(d.top1_agree, d.scored);
        if (report.routing_available) {
            nlohmann::ordered_json layers = nlohmann::ordered_json::array();
            double mean = 0;
            for (const auto& ra : d.routing) {
                layers.push_back({{"layer", ra.layer}, {"agreement", ra.value()}, {"tokens", ra.tokens}});
                mean += ra.value();
            }
            j["routing_agreement"] = {{"mean", d.routing.empty() ? 0.0 : mean / static_cast<double>(d.routing.size())},
                                      {"per_layer", layers}};
        } else {
            j["routing_agreement"] = nullptr;
        }
    }
    return j;
}

using core::fmt;

std::string pad(std::string s, size_t width, bool right = true) {
    if (s.size() >= width) return s;
    return right ? std::string(width - s.size(), ' ') + s : s + std::string(width - s.size(), ' ');
}

}  // namespace

nlohmann::ordered_json to_json(const EvalReport& report) {
    const EvalOptions& o = report.options;
    nlohmann::ordered_json j;
    j["schema_version"] = 1;
    j["ok"] = true;
    j["command"] = "eval";
    nlohmann::ordered_json data = nlohmann::ordered_json::array();
    for (const auto& s : o.corpus.data) data.push_back({{"domain", s.domain}, {"path", s.path.string()}});
    j["params"] = {{"model_dir", o.model_dir.string()},
                   {"ref_dir", o.ref_dir ? nlohmann::ordered_json(o.ref_dir->string()) : nlohmann::ordered_json(nullptr)},
                   {"data", data},
                   {"format", io::format_name(o.corpus.format)},
                   {"seq_len", o.corpus.seq_len},
                   {"max_tokens", o.corpus.max_tokens},
                   {"add_eos", o.corpus.add_eos},
                   {"add_bos", o.corpus.add_bos ? nlohmann::ordered_json(*o.corpus.add_bos) : nlohmann::ordered_json("tokenizer_config")},
                   {"bos_id", report.bos_id ? nlohmann::ordered_json(*report.bos_id) : nlohmann::ordered_json(nullptr)},
                   {"eos_id", report.eos_id ? nlohmann::ordered_json(*report.eos_id) : nlohmann::ordered_json(nullptr)},
                   {"tokenization", report.tokenization},
                   {"text_documents", "text files: CRLF/CR -> LF, strip leading/trailing LF, split on blank lines "
                                      "(\"\\n\\n\"), drop whitespace-only documents; JSONL: one document per record"},
                   {"batch_tokens", o.batch_tokens},
                   {"chunk_rows", o.chunk_rows},
                   {"threads", report.threads},
                   {"device", o.device ? o.device->describe() : "cpu"},
                   {"compute", compute_name(o.compute)},
                   {"gemm_backend", gemm_backend(o)},
                   {"convention", kConvention}};
    if (report.has_ref) j["params"]["ref_convention"] = kRefConvention;
    j["model"] = {{"model_type", report.model_type}, {"name", report.display_name}, {"vocab_size", report.vocab_size},
                  {"n_layer", report.n_layer}, {"n_expert", report.n_expert}, {"n_expert_used", report.n_expert_used}};
    if (report.has_ref)
        j["reference"] = {{"n_expert", report.ref_n_expert}, {"routing_available", report.routing_available},
                          {"routing_note", report.routing_note}};
    nlohmann::ordered_json domains = nlohmann::ordered_json::object();
    for (const auto& d : report.domains) domains[d.domain] = domain_json(d, report);
    j["domains"] = domains;
    j["total"] = domain_json(report.total, report);
    j["timing"] = {{"wall_s", report.wall_s}, {"eval_s", report.eval_s}, {"tokens_per_s", report.tokens_per_s()}};
    return j;
}

std::string to_text(const EvalReport& report) {
    std::ostringstream out;
    const EvalOptions& o = report.options;
    out << "Model:      " << o.model_dir.string() << " (" << report.display_name << ", " << report.n_layer << " layers, "
        << report.n_expert << " experts, top-" << report.n_expert_used << ")\n";
    if (report.has_ref) out << "Reference:  " << o.ref_dir->string() << " (" << report.ref_n_expert << " experts)\n";
    if (o.device) out << "Device:     " << o.device->describe() << "\n";
    if (o.compute != Compute::kF32)
        out << "Compute:    " << compute_name(o.compute) << " matmuls, fp32 accumulation (" << gemm_backend(o) << ")\n";
    out << "Windows:    seq_len " << o.corpus.seq_len << (o.corpus.max_tokens ? ", first " + std::to_string(o.corpus.max_tokens) + " tokens per domain" : "")
        << "\nTokens:     " << report.tokenization << "\n\n";

    std::vector<const DomainResult*> rows;
    for (const auto& d : report.domains) rows.push_back(&d);
    rows.push_back(&report.total);
    out << pad("domain", 12, false) << pad("docs", 7) << pad("tokens", 10) << pad("scored", 10) << pad("mean NLL", 10)
        << pad("ppl", 11);
    if (report.has_ref) out << pad("ref ppl", 11) << pad("KL mean", 11) << pad("KL p99", 11) << pad("top-1", 8) << pad("routing", 9);
    out << "\n";
    for (const DomainResult* d : rows) {
        out << pad(d->domain, 12, false) << pad(std::to_string(d->documents_used), 7) << pad(std::to_string(d->tokens), 10)
            << pad(std::to_string(d->scored), 10) << pad(fmt("%.4f", d->mean_nll()), 10) << pad(fmt("%.3f", d->ppl()), 11);
        if (report.has_ref) {
            const double n = static_cast<double>(std::max<int64_t>(d->scored, 1));
            double routing = 0;
            for (const auto& ra : d->routing) routing += ra.value();
            out << pad(fmt("%.3f", std::exp(d->ref_nll_sum / n)), 11) << pad(fmt("%.3g", d->kl_sum / n), 11)
                << pad(fmt("%.3g", d->kl_p99), 11) << pad(fmt("%.2f%%", 100.0 * fraction(d->top1_agree, d->scored)), 8)
                << pad(report.routing_available ? fmt("%.2f%%", 100.0 * routing / static_cast<double>(std::max<size_t>(d->routing.size(), 1))) : "n/a", 9);
        }
        out << "\n";
    }
    if (report.has_ref) {
        out << "\nRouting agreement (|S_ref & S_model| / k per token, all positions): " << report.routing_note << "\n";
        if (report.routing_available) {
            out << pad("layer", 7);
            for (const DomainResult* d : rows) out << pad(d->domain, 10);
            out << "\n";
            for (size_t m = 0; m < report.total.routing.size(); ++m) {
                out << pad(std::to_string(report.total.routing[m].layer), 7);
                for (const DomainResult* d : rows) out << pad(fmt("%.2f%%", 100.0 * d->routing[m].value()), 10);
                out << "\n";
            }
        }
    }
    out << "\n" << report.total.tokens << " tokens in " << fmt("%.2f", report.eval_s) << " s ("
        << fmt("%.0f", report.tokens_per_s()) << " tokens/s" << (report.has_ref ? ", both models" : "") << ", " << report.threads
        << (report.threads == 1 ? " thread" : " threads") << "); wall time " << fmt("%.2f", report.wall_s) << " s\n";
    return out.str();
}

std::optional<ExpertMap> read_expert_map(const fs::path& model_dir, int64_t n_layer, const std::vector<bool>& is_moe_layer,
                                         int64_t n_expert, int64_t ref_n_expert) {
    return read_expert_map(model_dir, n_layer, is_moe_layer, std::vector<int64_t>(static_cast<size_t>(n_layer), n_expert),
                           ref_n_expert);
}

std::optional<ExpertMap> read_expert_map(const fs::path& model_dir, int64_t n_layer, const std::vector<bool>& is_moe_layer,
                                         const std::vector<int64_t>& n_expert_per_layer, int64_t ref_n_expert) {
    const fs::path file = model_dir / "moekit.json";
    std::error_code ec;
    if (!fs::exists(file, ec)) return std::nullopt;
    nlohmann::json doc;
    try {
        std::ifstream in(file);
        doc = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
        throw Error("eval", "'" + file.string() + "' is not valid JSON: " + e.what());
    }
    if (!doc.is_object() || !doc.contains("expert_map") || doc["expert_map"].is_null()) return std::nullopt;
    const nlohmann::json& em = doc["expert_map"];
    auto bad = [&](const std::string& why) { return Error("eval", "'" + file.string() + "': expert_map " + why); };
    ExpertMap map(static_cast<size_t>(n_layer));
    auto layer_entry = [&](int64_t il, const nlohmann::json& entry) {
        const std::string where = "layer " + std::to_string(il) + ": ";
        if (il < 0 || il >= n_layer) throw bad("names layer " + std::to_string(il) + ", the model has " + std::to_string(n_layer));
        if (!is_moe_layer[static_cast<size_t>(il)]) return;
        const int64_t n_expert = n_expert_per_layer[static_cast<size_t>(il)];
        if (!entry.is_array() || static_cast<int64_t>(entry.size()) != n_expert)
            throw bad(where + "needs a list of " + std::to_string(n_expert) + " entries (one per expert)");
        auto& out = map[static_cast<size_t>(il)];
        for (const auto& e : entry) {
            std::vector<int32_t> origins;
            for (const auto& v : e.is_array() ? e : nlohmann::json::array({e})) {
                if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= ref_n_expert)
                    throw bad(where + "entry " + v.dump() + " is not a reference expert index in [0, " + std::to_string(ref_n_expert) + ")");
                origins.push_back(v.get<int32_t>());
            }
            out.push_back(std::move(origins));
        }
    };
    if (em.is_object()) {
        for (const auto& [key, entry] : em.items()) {
            int64_t il = -1;
            try {
                size_t used = 0;
                il = std::stoll(key, &used);
                if (used != key.size()) il = -1;
            } catch (const std::exception&) {
            }
            if (il < 0) throw bad("key '" + key + "' is not a layer index");
            layer_entry(il, entry);
        }
    } else if (em.is_array() && static_cast<int64_t>(em.size()) == n_layer) {
        for (int64_t il = 0; il < n_layer; ++il)
            if (!em[static_cast<size_t>(il)].is_null() && !em[static_cast<size_t>(il)].empty()) layer_entry(il, em[static_cast<size_t>(il)]);
    } else {
        throw bad("must be an object {\"<layer>\": [...]} or a list with one entry per decoder layer (" + std::to_string(n_layer) + ")");
    }
    for (int64_t il = 0; il < n_layer; ++il)
        if (is_moe_layer[static_cast<size_t>(il)] && map[static_cast<size_t>(il)].empty())
            throw bad("has no entry for MoE layer " + std::to_string(il));
    return map;
}

}  // namespace moekit::model
