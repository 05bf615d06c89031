// The terminal summary of `moekit profile` (analysis/profile.h): what matters first, read from
// the profile document so a summary of a saved profile.json reads the same.
#include <cstdio>
#include <sstream>
#include <string>

#include "analysis/profile.h"

namespace moekit::analysis {

using nlohmann::ordered_json;

namespace {

std::string fmt(double v, int digits = 2) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", digits, v);
    return buf;
}

std::string with_ci(const ordered_json& iv, int digits = 2) {
    if (!iv.is_object() || !iv.contains("value") || !iv["value"].is_number()) return "n/a";
    std::string s = fmt(iv["value"].get<double>(), digits);
    if (iv.contains("ci95") && iv["ci95"].is_array() && iv["ci95"].size() == 2 && iv["ci95"][0].is_number())
        s += " [" + fmt(iv["ci95"][0].get<double>(), digits) + ", " + fmt(iv["ci95"][1].get<double>(), digits) + "]";
    return s;
}

}  // namespace

std::string profile_summary_text(const ordered_json& doc) {
    std::ostringstream out;
    const auto& model = doc["model"];
    const auto& data = doc["data"];
    const auto& params = doc["params"];
    out << "moekit profile: " << model.value("name", std::string("?")) << " (" << model.value("model_type", std::string("?")) << "), "
        << model.value("n_expert", 0) << " experts, top-" << model.value("n_expert_used", 0) << ", "
        << model["moe_layers"].size() << " MoE layers of " << model.value("n_layer", 0) << "\n";
    out << "Data: " << data.value("tokens", 0) << " tokens in " << data.value("sequences", 0) << " sequences";
    if (data.contains("domains") && data["domains"].size() > 0) {
        out << " (";
        bool first = true;
        for (const auto& d : data["domains"]) {
            out << (first ? "" : ", ") << d.value("name", std::string("?")) << " " << d.value("tokens", 0);
            first = false;
        }
        out << ")";
    }
    out << "; intervals: 95% bootstrap over " << params["bootstrap"].value("batches_used", 0) << " batches\n\n";

    const auto& load = doc["model_level"]["load"];
    out << "Load balance\n";
    out << "  mean MaxVio " << with_ci(load["max_vio_mean"]) << ", CV " << with_ci(load["cv_mean"]) << ", normalized entropy "
        << with_ci(load["entropy_mean"], 3) << "\n";
    out << "  router entropy per token " << with_ci(load["router_entropy_mean"], 3) << " nats; HF aux loss "
        << with_ci(load["aux_loss"], 3) << " (uniform = " << model.value("n_expert_used", 0) << ")\n";
    auto layer_list = [&](const char* key) {
        std::string s;
        for (const auto& e : doc["summary"][key]) s += (s.empty() ? "" : ", ") + std::string("L") + std::to_string(e["layer"].get<int64_t>()) + " " + fmt(e["max_vio"].get<double>());
        return s;
    };
    out << "  most balanced (MaxVio): " << layer_list("most_balanced") << "; least balanced: " << layer_list("least_balanced") << "\n";
    const auto& dead = doc["summary"]["dead"];
    out << "  dead experts: ";
    if (dead.empty()) out << "none";
    for (size_t i = 0; i < dead.size() && i < 12; ++i)
        out << (i ? ", " : "") << "L" << dead[i]["layer"].get<int64_t>() << "/E" << dead[i]["expert"].get<int64_t>();
    if (dead.size() > 12) out << " (+" << dead.size() - 12 << " more)";
    out << "\n  super experts: ";
    if (doc["super_experts"].empty()) out << "none";
    for (size_t i = 0; i < doc["super_experts"].size() && i < 8; ++i) {
        const auto& s = doc["super_experts"][i];
        out << (i ? ", " : "") << "L" << s["layer"].get<int64_t>() << "/E" << s["expert"].get<int64_t>() << " (max |out| "
            << fmt(s["max_abs_out"].get<double>(), 1) << ")";
    }
    out << "\n\n";

    const auto& cons = doc["model_level"]["consistency"];
    const std::string m = std::to_string(params.value("default_segment_length", 16));
    const std::string rho = std::to_string(params.value("default_cache_ratio", 2));
    out << "Routing consistency (model level, x100)\n";
    out << "  SRP:";
    for (const auto& [key, v] : cons["srp"].items()) out << "  m=" << key << " " << with_ci(v, 1);
    out << "\n  SCH m=" << m << ":";
    for (const auto& [key, v] : cons["sch"].items()) out << "  rho=" << key << " " << with_ci(v, 1);
    if (cons["lru"].contains(rho))
        out << "\n  at rho=" << rho << ": LRU " << with_ci(cons["lru"][rho], 1) << ", LFU " << with_ci(cons["lfu"][rho], 1);
    out << "\n\n";

    const auto& cong = doc["model_level"]["congestion"];
    out << "Congestion gamma_eff across layers\n";
    if (cong.contains("gamma_single") && cong["gamma_single"].contains("min"))
        out << "  single-type (temperature fit): " << fmt(cong["gamma_single"]["min"].get<double>()) << " .. "
            << fmt(cong["gamma_single"]["max"].get<double>()) << " (mean " << fmt(cong["gamma_single"]["mean"].get<double>()) << ")\n";
    if (cong.contains("gamma_multi") && cong["gamma_multi"].contains("min"))
        out << "  multi-type (fixed-point fit):  " << fmt(cong["gamma_multi"]["min"].get<double>()) << " .. "
            << fmt(cong["gamma_multi"]["max"].get<double>()) << " (mean " << fmt(cong["gamma_multi"]["mean"].get<double>()) << ")\n";
    out << "\n";

    const auto& top = doc["summary"]["top_specialized"];
    out << "Most domain-specialized experts";
    if (top.empty()) out << ": needs at least two domains with tokens\n";
    else out << " (share of the domain's tokens routed to the expert; uniform = k/E)\n";
    for (size_t i = 0; i < top.size() && i < 5; ++i) {
        const auto& t = top[i];
        out << "  L" << t["layer"].get<int64_t>() << "/E" << t["expert"].get<int64_t>() << ": " << t["domain"].get<std::string>() << " "
            << fmt(100.0 * t["rate"].get<double>(), 1) << "% (" << fmt(t["ratio_to_uniform"].get<double>(), 1) << "x uniform)\n";
    }
    return out.str();
}

}  // namespace moekit::analysis
