// CSV tables of `moekit profile` from the profile JSON (analysis/report_csv.h; the columns are
// listed in docs/PROFILE.md "CSV tables").
#include "analysis/report_csv.h"

#include <algorithm>
#include <cstdlib>
#include <set>
#include <utility>

#include "analysis/report_json.h"

namespace moekit::analysis {
namespace {

using report::Json;
using Row = std::vector<std::string>;

// Builds one table: header first, then rows; every row is padded/cut to the header's width.
class Table {
public:
    explicit Table(Row header) : width_(header.size()) { out_ = csv_record(header); }
    void add(Row row) {
        row.resize(width_);
        out_ += csv_record(row);
    }
    std::string str() && { return std::move(out_); }

private:
    size_t width_;
    std::string out_;
};

std::string cell(const Json* j) { return report::text(j); }
std::string cell(const std::optional<double>& v) { return v ? report::format_number(*v) : ""; }

// "value, lo, hi" of an interval (a bare number fills only the first).
void push_interval(Row& row, const Json* j) {
    const auto iv = report::interval(j);
    row.push_back(cell(iv.value));
    row.push_back(cell(iv.lo));
    row.push_back(cell(iv.hi));
}
void push_interval_header(Row& header, const std::string& name) {
    header.push_back(name);
    header.push_back(name + "_lo");
    header.push_back(name + "_hi");
}

// Keys such as "4", "16", "256" sorted numerically when they all parse (document order otherwise).
void sort_numeric(std::vector<std::string>& keys) {
    auto parse = [](const std::string& s, double& v) {
        char* end = nullptr;
        v = std::strtod(s.c_str(), &end);
        return !s.empty() && end == s.c_str() + s.size();
    };
    double v = 0;
    for (const auto& k : keys)
        if (!parse(k, v)) return;
    std::stable_sort(keys.begin(), keys.end(), [&](const std::string& a, const std::string& b) {
        double x = 0, y = 0;
        parse(a, x);
        parse(b, y);
        return x < y;
    });
}

// Union over the model level and all layers of the keys of consistency.<metric>.
std::vector<std::string> consistency_keys(const Json& profile, const std::vector<const Json*>& layers,
                                          const char* metric) {
    std::vector<std::string> out;
    report::add_keys(report::get(profile, {"model_level", "consistency", metric}), out);
    for (const Json* l : layers) report::add_keys(report::get(report::get(l, "consistency"), metric), out);
    sort_numeric(out);
    return out;
}

const char* const kLoadMetrics[] = {"max_vio", "cv", "entropy", "gini", "jain", "router_entropy"};
const char* const kCacheMetrics[] = {"sch", "lru", "lfu"};

std::string layers_csv(const Json& profile, const std::vector<const Json*>& layers) {
    const auto srp_keys = consistency_keys(profile, layers, "srp");
    const auto rho_keys = [&] {
        std::vector<std::string> k;
        for (const char* m : kCacheMetrics) {
            for (auto& key : consistency_keys(profile, layers, m))
                if (std::find(k.begin(), k.end(), key) == k.end()) k.push_back(key);
        }
        sort_numeric(k);
        return k;
    }();
    Row header = {"layer", "moe_index"};
    for (const char* m : kLoadMetrics) push_interval_header(header, m);
    header.push_back("n_dead");
    for (const auto& m : srp_keys) push_interval_header(header, "srp_m" + m);
    for (const char* metric : kCacheMetrics)
        for (const auto& r : rho_keys) push_interval_header(header, std::string(metric) + "_rho" + r);
    push_interval_header(header, "temperature");
    push_interval_header(header, "gamma_single");
    header.insert(header.end(), {"l1_single", "softmax_l1_single"});
    push_interval_header(header, "gamma_multi");
    header.insert(header.end(), {"l1_multi", "softmax_l1_multi", "multi_converged"});

    Table table(header);
    for (size_t pos = 0; pos < layers.size(); ++pos) {
        const Json* l = layers[pos];
        const Json* load = report::get(l, "load");
        const Json* cons = report::get(l, "consistency");
        const Json* single = report::get(report::get(l, "congestion"), "single");
        const Json* multi = report::get(report::get(l, "congestion"), "multi");
        Row row = {std::to_string(report::layer_index(l, pos)), cell(report::get(l, "moe_index"))};
        for (const char* m : kLoadMetrics) push_interval(row, report::get(load, m));
        const Json* dead = report::get(load, "dead");
        row.push_back(dead != nullptr && dead->is_array() ? std::to_string(dead->size()) : "");
        for (const auto& m : srp_keys) push_interval(row, report::get(report::get(cons, "srp"), m));
        for (const char* metric : kCacheMetrics)
            for (const auto& r : rho_keys) push_interval(row, report::get(report::get(cons, metric), r));
        push_interval(row, report::get(single, "temperature"));
        push_interval(row, report::get(single, "gamma"));
        row.push_back(cell(report::get(single, "l1")));
        row.push_back(cell(report::get(single, "softmax_l1")));
        push_interval(row, report::get(multi, "gamma"));
        row.push_back(cell(report::get(multi, "l1")));
        row.push_back(cell(report::get(multi, "softmax_l1")));
        row.push_back(cell(report::get(multi, "converged")));
        table.add(std::move(row));
    }
    return std::move(table).str();
}

std::string experts_csv(const Json& profile, const std::vector<const Json*>& layers) {
    const auto domains = report::domain_names(profile);
    const int64_t n_expert = report::n_expert(profile);
    std::vector<std::string> srp_keys;
    for (const Json* l : layers) report::add_keys(report::get(l, {"consistency", "srp_expert"}), srp_keys);
    sort_numeric(srp_keys);
    std::set<std::pair<int64_t, int64_t>> super;
    for (const Json* s : report::items(report::get(profile, "super_experts"))) {
        const auto il = report::integer(report::get(s, "layer"));
        const auto ie = report::integer(report::get(s, "expert"));
        if (il && ie) super.emplace(*il, *ie);
    }

    Row header = {"layer", "expert", "count", "share", "dead"};
    for (const auto& m : srp_keys) header.push_back("srp_m" + m);
    for (const auto& d : domains) header.push_back("rate_" + d);
    header.insert(header.end(), {"domain_cv", "vocab_input", "vocab_next", "affinity_topk_mass", "max_abs_out", "super"});

    Table table(header);
    for (size_t pos = 0; pos < layers.size(); ++pos) {
        const Json* l = layers[pos];
        const int64_t il = report::layer_index(l, pos);
        const Json* load = report::get(l, "load");
        const Json* spec = report::get(l, "specialization");
        std::set<int64_t> dead;
        for (const Json* d : report::items(report::get(load, "dead")))
            if (const auto ie = report::integer(d)) dead.insert(*ie);
        const bool has_dead = report::get(load, "dead") != nullptr;
        const Json* rates = report::get(spec, "domain_rate");
        for (int64_t ie = 0; ie < n_expert; ++ie) {
            const size_t e = static_cast<size_t>(ie);
            const Json* count = report::item(report::get(load, "counts"), e);
            Row row = {std::to_string(il), std::to_string(ie), cell(count),
                       cell(report::item(report::get(load, "shares"), e))};
            if (has_dead)
                row.push_back(dead.count(ie) ? "1" : "0");
            else if (const auto c = report::number(count))
                row.push_back(*c == 0 ? "1" : "0");
            else
                row.push_back("");
            for (const auto& m : srp_keys)
                row.push_back(cell(report::item(report::get(report::get(l, {"consistency", "srp_expert"}), m), e)));
            for (size_t d = 0; d < domains.size(); ++d) row.push_back(cell(report::item(report::item(rates, d), e)));
            row.push_back(cell(report::item(report::get(spec, "domain_cv"), e)));
            row.push_back(cell(report::item(report::get(spec, "vocab_input"), e)));
            row.push_back(cell(report::item(report::get(spec, "vocab_next"), e)));
            row.push_back(cell(report::item(report::get(report::get(spec, "affinity_next"), "topk_mass"), e)));
            row.push_back(cell(report::item(report::get(spec, "max_abs_out"), e)));
            row.push_back(super.count({il, ie}) ? "1" : "0");
            table.add(std::move(row));
        }
    }
    return std::move(table).str();
}

// One row of consistency.csv per (level, layer, metric, parameter).
void consistency_rows(Table& table, const std::string& level, const std::string& layer, const Json* cons) {
    for (const char* metric : {"srp", "sch", "lru", "lfu"}) {
        const Json* block = report::get(cons, metric);
        auto params = report::keys(block);
        sort_numeric(params);
        for (const auto& p : params) {
            const Json* v = report::get(block, p);
            Row row = {level, layer, metric, p};
            push_interval(row, v);
            row.push_back(cell(report::get(v, "alpha_star")));
            row.push_back(cell(report::get(v, "rho_hat")));
            row.push_back(cell(report::get(v, "capacity")));
            table.add(std::move(row));
        }
    }
}

std::string consistency_csv(const Json& profile, const std::vector<const Json*>& layers) {
    Table table({"level", "layer", "metric", "parameter", "value", "lo", "hi", "alpha_star", "rho_hat", "capacity"});
    consistency_rows(table, "model", "", report::get(profile, {"model_level", "consistency"}));
    for (size_t pos = 0; pos < layers.size(); ++pos)
        consistency_rows(table, "layer", std::to_string(report::layer_index(layers[pos], pos)),
                         report::get(layers[pos], "consistency"));
    return std::move(table).str();
}

std::string domains_csv(const Json& profile, const std::vector<const Json*>& layers) {
    const auto domains = report::domain_names(profile);
    const int64_t n_expert = report::n_expert(profile);
    const auto k = report::number(report::get(profile, {"model", "n_expert_used"}));
    const double uniform = k && n_expert > 0 ? *k / double(n_expert) : 0.0;
    Table table({"layer", "domain", "expert", "rate", "ratio_to_uniform"});
    for (size_t pos = 0; pos < layers.size(); ++pos) {
        const std::string il = std::to_string(report::layer_index(layers[pos], pos));
        const Json* rates = report::get(layers[pos], {"specialization", "domain_rate"});
        for (size_t d = 0; d < domains.size(); ++d)
            for (int64_t ie = 0; ie < n_expert; ++ie) {
                const auto rate = report::number(report::item(report::item(rates, d), size_t(ie)));
                table.add({il, domains[d], std::to_string(ie), cell(rate),
                           rate && uniform > 0 ? report::format_number(*rate / uniform) : ""});
            }
    }
    return std::move(table).str();
}

std::string divergence_csv(const Json& profile, const std::vector<const Json*>& layers) {
    const auto domains = report::domain_names(profile);
    Table table({"layer", "domain_a", "domain_b", "jsd"});
    for (size_t pos = 0; pos < layers.size(); ++pos) {
        const std::string il = std::to_string(report::layer_index(layers[pos], pos));
        const Json* jsd = report::get(layers[pos], {"specialization", "jsd"});
        for (size_t a = 0; a < domains.size(); ++a)
            for (size_t b = 0; b < domains.size(); ++b)
                table.add({il, domains[a], domains[b], cell(report::item(report::item(jsd, a), b))});
    }
    return std::move(table).str();
}

// Square E x E matrices in long form; extra columns (next_layer) come before i, j.
void matrix_rows(Table& table, const Row& prefix, const Json* matrix, int64_t n_expert) {
    for (int64_t i = 0; i < n_expert; ++i) {
        const Json* r = report::item(matrix, size_t(i));
        for (int64_t j = 0; j < n_expert; ++j) {
            Row row = prefix;
            row.insert(row.end(), {std::to_string(i), std::to_string(j), cell(report::item(r, size_t(j)))});
            table.add(std::move(row));
        }
    }
}

std::string coactivation_csv(const Json& profile, const std::vector<const Json*>& layers) {
    const int64_t n_expert = report::n_expert(profile);
    Table table({"layer", "i", "j", "value"});
    for (size_t pos = 0; pos < layers.size(); ++pos) {
        const Json* m = report::get(layers[pos], {"specialization", "coactivation"});
        if (m != nullptr) matrix_rows(table, {std::to_string(report::layer_index(layers[pos], pos))}, m, n_expert);
    }
    return std::move(table).str();
}

std::string affinity_csv(const Json& profile, const std::vector<const Json*>& layers) {
    const int64_t n_expert = report::n_expert(profile);
    Table table({"layer", "next_layer", "i", "j", "value"});
    for (size_t pos = 0; pos < layers.size(); ++pos) {
        const Json* m = report::get(layers[pos], {"specialization", "affinity_next", "matrix"});
        if (m == nullptr) continue;
        const std::string next = pos + 1 < layers.size() ? std::to_string(report::layer_index(layers[pos + 1], pos + 1)) : "";
        matrix_rows(table, {std::to_string(report::layer_index(layers[pos], pos)), next}, m, n_expert);
    }
    return std::move(table).str();
}

}  // namespace

std::string csv_field(const std::string& value) {
    if (value.find_first_of(",\"\r\n") == std::string::npos) return value;
    std::string out = "\"";
    for (const char c : value) {
        if (c == '"') out += '"';
        out += c;
    }
    return out + "\"";
}

std::string csv_record(const std::vector<std::string>& fields) {
    std::string out;
    for (size_t i = 0; i < fields.size(); ++i) {
        if (i > 0) out += ',';
        out += csv_field(fields[i]);
    }
    return out + "\r\n";
}

std::map<std::string, std::string> render_csv_tables(const nlohmann::ordered_json& profile) {
    const auto layers = report::layers(profile);
    std::map<std::string, std::string> out;
    out["layers.csv"] = layers_csv(profile, layers);
    out["experts.csv"] = experts_csv(profile, layers);
    out["consistency.csv"] = consistency_csv(profile, layers);
    out["domains.csv"] = domains_csv(profile, layers);
    out["divergence.csv"] = divergence_csv(profile, layers);
    out["coactivation.csv"] = coactivation_csv(profile, layers);
    out["affinity.csv"] = affinity_csv(profile, layers);
    return out;
}

}  // namespace moekit::analysis
