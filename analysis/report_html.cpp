// The profile HTML report page (analysis/report_html.h): header, summary, per-layer table,
// figures, conventions. Figures come from analysis/report_figures.h.
#include "analysis/report_html.h"

#include <cctype>
#include <map>

#include "analysis/report_figures.h"
#include "analysis/report_json.h"
#include "analysis/report_svg.h"

namespace moekit::analysis {
namespace {

using namespace report;  // NOLINT: this file is the report's page assembly

const char* const kCss = R"(
body{margin:0;background:#eef0f3;color:#1d2330;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:26px 32px 40px;background:#fff;min-height:100vh;box-sizing:border-box}
h1{font-size:25px;margin:0 0 6px}h1 .name{color:#2c5d8f}
h2{font-size:19px;margin:30px 0 12px;padding-bottom:4px;border-bottom:2px solid #e3e6ec}
h3{font-size:15px;margin:16px 0 6px}
.sub{color:#555e6e;margin:2px 0}
nav.toc{margin:12px 0 0;font-size:13px}nav.toc a{margin-right:14px;color:#2c5d8f}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:10px;margin:10px 0 14px}
.card{border:1px solid #e0e4ea;border-radius:7px;padding:8px 12px;background:#f9fafb}
.card .k{font-size:12px;color:#555e6e}.card .v{font-size:21px;font-weight:600;font-variant-numeric:tabular-nums}
.ci{color:#7a8190;font-size:11px;white-space:nowrap;font-weight:400}
.row{display:flex;flex-wrap:wrap;gap:28px;align-items:flex-start}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:12.5px}
th,td{padding:3px 7px;border-bottom:1px solid #eceef2;text-align:right;vertical-align:top}
th{background:#f1f3f6;position:sticky;top:0;font-weight:600}
td:first-child,th:first-child,td.t,th.t{text-align:left}
.scroll{overflow:auto;max-height:680px;border:1px solid #e3e6ec;border-radius:6px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:5px 18px;margin:8px 0}
dt{color:#555e6e}dd{margin:0}
figure{margin:16px 0 26px;padding:12px 14px;border:1px solid #e3e6ec;border-radius:7px;overflow-x:auto}
figure h3{margin:0 0 10px}
figcaption{color:#474f5e;font-size:13px;margin-top:8px;max-width:960px}
svg.chart{display:block;max-width:100%;height:auto}
svg text{font-family:inherit;font-size:11px;fill:#1d2330}
footer{margin-top:36px;color:#7a8190;font-size:12px}
)";

std::string e(const std::string& s) { return html_escape(s); }

std::string iv_html(const Interval& iv, int digits = 4) {
    std::string s = fmt(iv.value, digits);
    if (iv.lo && iv.hi) s += "<br><span class=\"ci\">[" + fmt(*iv.lo, digits) + ", " + fmt(*iv.hi, digits) + "]</span>";
    return s;
}

std::string model_name(const Json& p) {
    for (const char* key : {"display_name", "name", "model_name", "model_type", "dir"}) {
        const std::string s = text(get(p, {"model", key}));
        if (!s.empty()) return s;
    }
    return "unnamed model";
}

std::string data_name(const Json& p) {
    const auto domains = domain_names(p);
    std::string out;
    for (size_t i = 0; i < domains.size(); ++i) out += (i ? ", " : "") + domains[i];
    if (!out.empty()) return out;
    for (const Json* t : items(get(p, {"data", "traces"}))) {
        std::string s = text(t);
        const auto slash = s.find_last_of('/');
        out += (out.empty() ? "" : ", ") + (slash == std::string::npos ? s : s.substr(slash + 1));
    }
    return out.empty() ? text(get(p, {"data", "source"})) : out;
}

std::string card(const std::string& label_html, const std::string& value_html) {
    return "<div class=\"card\"><div class=\"k\">" + label_html + "</div><div class=\"v\">" + value_html + "</div></div>";
}

std::string default_key(const Json& p, const Json* block, const char* param, double fallback) {
    const double want = number(get(p, {"params", param})).value_or(fallback);
    std::string k = numeric_key(block, want);
    if (k.empty() && !keys(block).empty()) k = keys(block).front();
    return k;
}

std::string header(const Json& p) {
    const Json* m = get(p, "model");
    std::string out = "<header><h1>Routing profile of <span class=\"name\">" + e(model_name(p)) + "</span></h1>";
    std::string facts = e(text(get(m, "model_type")));
    const size_t n_moe = layers(p).size();
    if (const auto nl = integer(get(m, "n_layer"))) facts += " \xC2\xB7 " + std::to_string(*nl) + " decoder layers";
    facts += " \xC2\xB7 " + std::to_string(n_moe) + " MoE layers";
    facts += " \xC2\xB7 E = " + e(text(get(m, "n_expert"))) + " experts, top-k = " + e(text(get(m, "n_expert_used")));
    if (const std::string s = text(get(m, "scoring")); !s.empty()) facts += " \xC2\xB7 " + e(s) + " router";
    if (const std::string s = text(get(m, "routing")); !s.empty()) facts += " (" + e(s) + ")";
    out += "<p class=\"sub\">" + facts + "</p>";
    const Json* d = get(p, "data");
    std::string data = "Data: " + e(data_name(p)) + " \xE2\x80\x94 " + e(text(get(d, "tokens"))) + " tokens in " +
                       e(text(get(d, "sequences"))) + " sequences (from " + e(text(get(d, "source"))) + ")";
    const auto domains = items(get(d, "domains"));
    if (!domains.empty()) {
        data += "; per domain: ";
        const auto names = domain_names(p);
        for (size_t i = 0; i < domains.size(); ++i)
            data += (i ? ", " : "") + e(names[i]) + " " + e(text(get(domains[i], "tokens"))) + " tokens";
    }
    out += "<p class=\"sub\">" + data + ".</p>";
    if (const std::string dir = text(get(m, "dir")); !dir.empty()) out += "<p class=\"sub\">Checkpoint: <code>" + e(dir) + "</code></p>";
    out += "<nav class=\"toc\"><a href=\"#summary\">Summary</a><a href=\"#layers\">Per-layer metrics</a>";
    for (const auto& id : report_figure_ids()) out += "<a href=\"#" + id + "\">" + id.substr(4) + "</a>";
    out += "<a href=\"#conventions\">Conventions</a></nav></header>";
    return out;
}

std::string layer_refs(const Json* list, const char* value_key, const char* value_name) {
    std::string out;
    for (const Json* x : items(list)) {
        if (!out.empty()) out += ", ";
        out += e(layer_label(integer(get(x, "layer")).value_or(-1)));
        if (const auto v = number(get(x, value_key))) out += " (" + std::string(value_name) + " " + fmt(*v) + ")";
    }
    return out.empty() ? "n/a" : out;
}

// Rows = metrics, columns = their parameters (m or rho): value with its interval.
std::string param_table(const Json* cons, std::initializer_list<const char*> metrics, const std::string& prefix) {
    std::vector<std::string> params;
    for (const char* m : metrics) add_keys(get(cons, m), params);
    if (params.empty()) return "";
    std::string out = "<table style=\"margin-bottom:10px\"><tr><th></th>";
    for (const auto& p : params) out += "<th>" + prefix + e(p) + "</th>";
    out += "</tr>";
    for (const char* m : metrics) {
        std::string name = m;
        for (auto& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        out += "<tr><td>" + name + "</td>";
        for (const auto& p : params) out += "<td>" + iv_html(interval(get(get(cons, m), p)), 3) + "</td>";
        out += "</tr>";
    }
    return out + "</table>";
}

std::string summary(const Json& p) {
    const Json* ml = get(p, "model_level");
    const Json* cons = get(ml, "consistency");
    const Json* load = get(ml, "load");
    std::string out = "<section id=\"summary\"><h2>Summary</h2><div class=\"cards\">";
    const std::string m = default_key(p, get(cons, "srp"), "default_segment_length", 16);
    const std::string rho = default_key(p, get(cons, "sch"), "default_cache_ratio", 2);
    out += card("Model SRP, m = " + e(m) + " (\xC3\x97 100)", iv_html(interval(get(get(cons, "srp"), m)), 3));
    out += card("Model SCH, \xCF\x81 = " + e(rho) + " (\xC3\x97 100)", iv_html(interval(get(get(cons, "sch"), rho)), 3));
    out += card("LRU / LFU hit rate, \xCF\x81 = " + e(rho), fmt(number(get(get(cons, "lru"), rho)), 3) + " / " +
                                                              fmt(number(get(get(cons, "lfu"), rho)), 3));
    for (const char* kind : {"gamma_single", "gamma_multi"}) {
        const Json* g = get(get(ml, "congestion"), kind);
        std::string v = fmt(number(get(g, "min")), 4) + " \xE2\x80\x93 " + fmt(number(get(g, "max")), 4);
        if (const auto mean = number(get(g, "mean"))) v += "<br><span class=\"ci\">mean " + fmt(*mean, 3) + " over layers</span>";
        out += card(std::string("\xCE\xB3_eff range, ") + (kind[6] == 's' ? "single type" : "multi type"), v);
    }
    out += card("MaxVio, mean over layers", iv_html(interval(get(load, "max_vio_mean")), 3));
    out += card("Dead experts (all layers)", e(text(get(load, "dead_experts"))).empty() ? "n/a" : e(text(get(load, "dead_experts"))));
    out += card("Super experts", std::to_string(size(get(p, "super_experts"))));
    out += "</div><dl class=\"facts\">";
    const Json* s = get(p, "summary");
    out += "<dt>Most balanced layers</dt><dd>" + layer_refs(get(s, "most_balanced"), "max_vio", "MaxVio") + "</dd>";
    out += "<dt>Least balanced layers</dt><dd>" + layer_refs(get(s, "least_balanced"), "max_vio", "MaxVio") + "</dd>";
    // Dead experts grouped by layer, capped (experts.csv has all of them).
    std::map<int64_t, std::string> dead;
    size_t n_dead = 0, shown = 0;
    for (const Json* d : items(get(s, "dead"))) {
        ++n_dead;
        if (shown >= 60) continue;
        std::string& list = dead[integer(get(d, "layer")).value_or(-1)];
        list += (list.empty() ? "" : ", ") + e(text(get(d, "expert")));
        ++shown;
    }
    std::string dead_html;
    for (const auto& [il, list] : dead) dead_html += (dead_html.empty() ? "" : " \xC2\xB7 ") + layer_label(il) + ": " + list;
    if (n_dead > shown) dead_html += " \xE2\x80\xA6 and " + std::to_string(n_dead - shown) + " more (experts.csv)";
    out += "<dt>Dead experts</dt><dd>" + (dead_html.empty() ? "none" : dead_html) + "</dd>";
    std::string super;
    size_t n_super = 0;
    for (const Json* x : items(get(p, "super_experts"))) {
        if (++n_super > 40) continue;
        super += (super.empty() ? "" : ", ") + layer_label(integer(get(x, "layer")).value_or(-1)) + " expert " +
                 e(text(get(x, "expert"))) + " (max |out| " + fmt(number(get(x, "max_abs_out")), 6) + ")";
    }
    if (n_super > 40) super += " \xE2\x80\xA6 and " + std::to_string(n_super - 40) + " more";
    out += "<dt>Super experts</dt><dd>" + (super.empty() ? "none" : super) + "</dd></dl>";

    // Model-level tables: load balance and routing consistency.
    out += "<div class=\"row\"><div><h3>Load balance (mean over layers)</h3><table><tr><th>statistic</th><th>value [95% CI]</th></tr>";
    const std::pair<const char*, const char*> load_rows[] = {
        {"max_vio_mean", "MaxVio"}, {"cv_mean", "CV of load"}, {"entropy_mean", "load entropy (normalized)"},
        {"gini_mean", "Gini"}, {"jain_mean", "Jain index"}, {"router_entropy_mean", "router entropy (nats)"},
        {"aux_loss", "aux loss (uniform = k)"}};
    for (const auto& [key, name] : load_rows)
        out += "<tr><td>" + std::string(name) + "</td><td>" + iv_html(interval(get(load, key))) + "</td></tr>";
    out += "</table></div><div><h3>Routing consistency (model, \xC3\x97 100, [95% CI])</h3>";
    out += param_table(cons, {"srp"}, "m = ") + param_table(cons, {"sch", "lru", "lfu"}, "\xCF\x81 = ");
    out += "</div></div>";

    const auto top = items(get(s, "top_specialized"));
    out += "<h3>Most domain-specialized experts</h3>";
    if (top.empty()) {
        out += "<p class=\"sub\">None reported (needs at least two domains).</p>";
    } else {
        out += "<table><tr><th>layer</th><th>expert</th><th class=\"t\">domain</th><th>rate</th><th>rate / (k/E)</th></tr>";
        for (size_t i = 0; i < top.size() && i < 15; ++i)
            out += "<tr><td>" + layer_label(integer(get(top[i], "layer")).value_or(-1)) + "</td><td>" + e(text(get(top[i], "expert"))) +
                   "</td><td class=\"t\">" + e(text(get(top[i], "domain"))) + "</td><td>" + fmt(number(get(top[i], "rate"))) +
                   "</td><td>" + fmt(number(get(top[i], "ratio_to_uniform"))) + "</td></tr>";
        out += "</table>";
    }
    return out + "</section>";
}

std::string layer_table(const Json& p) {
    const auto ls = layers(p);
    const Json* cons0 = ls.empty() ? nullptr : get(ls.front(), "consistency");
    const std::string m = default_key(p, get(cons0, "srp"), "default_segment_length", 16);
    const std::string rho = default_key(p, get(cons0, "sch"), "default_cache_ratio", 2);
    std::string out = "<section id=\"layers\"><h2>Per-layer metrics</h2><p class=\"sub\">Values with 95% bootstrap "
                      "intervals (over batches of sequences). SRP/SCH/LRU/LFU \xC3\x97 100. All columns are in layers.csv.</p>";
    out += "<div class=\"scroll\"><table><tr><th>layer</th><th>MaxVio</th><th>CV</th><th>load entropy</th><th>Gini</th><th>Jain</th>"
           "<th>router H</th><th>dead</th><th>SRP m=" + e(m) + "</th><th>SCH \xCF\x81=" + e(rho) + "</th><th>LRU \xCF\x81=" +
           e(rho) + "</th><th>LFU \xCF\x81=" + e(rho) + "</th><th>\xCE\xB3_eff single</th><th>\xCE\xB3 multi</th></tr>";
    for (size_t pos = 0; pos < ls.size(); ++pos) {
        const Json* l = ls[pos];
        const Json* load = get(l, "load");
        const Json* cons = get(l, "consistency");
        out += "<tr><td>" + layer_label(layer_index(l, pos)) + "</td>";
        for (const char* k : {"max_vio", "cv", "entropy", "gini", "jain", "router_entropy"})
            out += "<td>" + iv_html(interval(get(load, k))) + "</td>";
        const Json* dead = get(load, "dead");
        out += "<td>" + (dead != nullptr && dead->is_array() ? std::to_string(dead->size()) : std::string("n/a")) + "</td>";
        out += "<td>" + iv_html(interval(get(get(cons, "srp"), m)), 3) + "</td>";
        for (const char* k : {"sch", "lru", "lfu"}) out += "<td>" + iv_html(interval(get(get(cons, k), rho)), 3) + "</td>";
        out += "<td>" + iv_html(interval(get(l, {"congestion", "single", "gamma"})), 3) + "</td>";
        out += "<td>" + iv_html(interval(get(l, {"congestion", "multi", "gamma"})), 3) + "</td></tr>";
    }
    return out + "</table></div></section>";
}

std::string figure_html(const Figure& f) {
    return "<figure id=\"" + f.id + "\"><h3>" + e(f.title) + "</h3>" + f.svg + "<figcaption>" + f.caption_html +
           "</figcaption></figure>";
}

std::string conventions(const Json& p) {
    std::string out = "<section id=\"conventions\"><h2>Conventions and parameters</h2><dl class=\"facts\">";
    const Json* conv = get(p, {"params", "conventions"});
    for (const auto& k : keys(conv)) out += "<dt>" + e(k) + "</dt><dd>" + e(text(get(conv, k))) + "</dd>";
    const Json* params = get(p, "params");
    for (const auto& k : keys(params)) {
        if (k == "conventions") continue;
        const Json* v = get(params, k);
        const std::string s = v->is_string() ? v->get<std::string>() : v->dump(-1, ' ', false, Json::error_handler_t::replace);
        out += "<dt>" + e(k) + "</dt><dd><code>" + e(s) + "</code></dd>";
    }
    return out + "</dl></section>";
}

}  // namespace

const std::vector<std::string>& report_figure_ids() {
    static const std::vector<std::string> ids = {"fig-load", "fig-domain", "fig-coactivation", "fig-affinity",
                                                 "fig-srp", "fig-sch", "fig-congestion"};
    return ids;
}

std::string render_html(const nlohmann::ordered_json& profile) {
    std::string out = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">";
    out += "<title>moekit profile: " + e(model_name(profile)) + " on " + e(data_name(profile)) + "</title>";
    out += "<style>" + std::string(kCss) + "</style></head>\n<body><main>";
    out += header(profile);
    out += summary(profile);
    out += layer_table(profile);
    out += "<section id=\"figures\"><h2>Figures</h2><p class=\"sub\">Hover a heatmap cell or a marker for its exact value.</p>";
    for (const auto& build : {figure_load, figure_domain, figure_coactivation, figure_affinity, figure_srp, figure_sch, figure_congestion})
        out += figure_html(build(profile)) + "\n";
    out += "</section>";
    out += conventions(profile);
    out += "<footer>Generated by moekit " + e(text(get(profile, "moekit_version"))) + " from profile.json (schema_version " +
           e(text(get(profile, "schema_version"))) + "). A self-contained page: no scripts, fonts or external resources.</footer>";
    return out + "</main></body></html>\n";
}

}  // namespace moekit::analysis
