// Tests for the profile report renderers (analysis/report_csv, analysis/report_html): a profile
// document built by hand in the shape of docs/PROFILE.md (2-3 layers, 8 experts, 2 domains, and
// edge variants: no domains, nulls, one layer, an HTML-injection domain name, a 64 x 256 model).
// CSV files are read back with an independent RFC 4180 parser written here and every cell is
// compared with the JSON it came from; the HTML is checked for its figures, heatmap cell counts,
// escaping and the absence of external resources, and rendered in headless Chromium by
// scripts/check_report_html.py when Chromium and the project's Python exist.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "analysis/report_csv.h"
#include "analysis/report_figures.h"
#include "analysis/report_html.h"
#include "analysis/report_json.h"
#include "analysis/report_svg.h"
#include "test_util.h"

namespace {

using Json = nlohmann::ordered_json;
using moekit::analysis::render_csv_tables;
using moekit::analysis::render_html;
using Rows = std::vector<std::vector<std::string>>;

const std::string kEvil = "<script>alert(1)</script>&\"";

// ---- a profile document in the shape of docs/PROFILE.md -------------------------------------

struct Shape {
    int n_layer = 3;  // MoE layers
    int n_expert = 8;
    int k = 2;
    std::vector<std::string> domains = {"en", "code"};
    bool nulls = false;  // undefined statistics as null, a null interval, a null layer entry
    bool matrices = true;
};

// Deterministic values in (0, 1) (splitmix64).
struct Rng {
    uint64_t s;
    double next() {
        uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        return (double(z >> 11) + 0.5) * 0x1.0p-53;
    }
};

Json iv(Rng& r, double scale) {
    const double v = r.next() * scale;
    return {{"value", v}, {"ci95", {v * (0.9 + 0.05 * r.next()), v * (1.05 + 0.05 * r.next())}}};
}

Json matrix(Rng& r, int n, bool unit_diagonal) {
    Json m = Json::array();
    for (int i = 0; i < n; ++i) {
        Json row = Json::array();
        for (int j = 0; j < n; ++j) row.push_back(unit_diagonal && i == j ? 1.0 : r.next() * 0.5);
        m.push_back(std::move(row));
    }
    return m;
}

Json make_profile(const Shape& s) {
    Rng r{12345};
    const int E = s.n_expert, L = s.n_layer, D = int(s.domains.size());
    Json p;
    p["schema_version"] = 1;
    p["command"] = "profile";
    p["moekit_version"] = "0.1.0-test";
    Json moe_layers = Json::array();
    for (int j = 0; j < L; ++j) moe_layers.push_back(2 * j + 1);
    p["model"] = {{"dir", "/models/tiny-moe"}, {"model_type", "qwen3_moe"}, {"display_name", "tiny-moe"}, {"n_layer", 2 * L + 1},
                  {"n_expert", E}, {"n_expert_used", s.k}, {"moe_layers", moe_layers}, {"scoring", "softmax"},
                  {"routing", "softmax top-k"}};
    Json domains = Json::array();
    for (const auto& d : s.domains) domains.push_back({{"name", d}, {"tokens", 4096}, {"sequences", 16}});
    p["data"] = {{"source", "trace"}, {"traces", {"/runs/a.trace"}}, {"tokens", 4096 * std::max(D, 1)}, {"sequences", 16 * std::max(D, 1)},
                 {"domains", domains}};
    p["params"] = {{"seq_len", 256}, {"max_tokens", 0}, {"segment_lengths", {4, 16, 64, 256}}, {"cache_ratios", {1, 2, 3, 4}},
                   {"default_segment_length", 16}, {"default_cache_ratio", 2},
                   {"bootstrap", {{"batches", 50}, {"batches_used", 32}, {"resamples", 1000}, {"seed", 0}, {"level", 0.95}}},
                   {"logit_sample_stride", 8}, {"vocab_min_count", 20},
                   {"conventions", {{"selection", "the architecture's own selection"}, {"srp", "alpha_star ties -> smallest"}}}};
    const std::vector<std::string> ms = {"4", "16", "64", "256"}, rhos = {"1", "2", "3", "4"};
    auto consistency = [&](bool with_expert) {
        Json c;
        for (const auto& m : ms) {
            Json v = iv(r, 100);
            v["alpha_star"] = std::stoi(m) / 2;
            v["rho_hat"] = 1.0 + r.next();
            c["srp"][m] = v;
        }
        if (with_expert)
            for (const auto& m : ms) {
                Json e = Json::array();
                for (int i = 0; i < E; ++i) e.push_back(r.next() * 100);
                c["srp_expert"][m] = e;
            }
        for (const char* metric : {"sch", "lru", "lfu"})
            for (const auto& rho : rhos) {
                Json v = iv(r, 100);
                v["capacity"] = std::stoi(rho) * s.k;
                c[metric][rho] = v;
            }
        return c;
    };
    Json ml;
    ml["load"] = {{"max_vio_mean", iv(r, 1)}, {"cv_mean", iv(r, 1)}, {"entropy_mean", iv(r, 1)}, {"gini_mean", iv(r, 1)},
                  {"jain_mean", iv(r, 1)}, {"router_entropy_mean", iv(r, 2)}, {"aux_loss", iv(r, 2)}, {"dead_experts", 1}};
    ml["consistency"] = consistency(false);
    ml["congestion"] = {{"gamma_single", {{"min", 3.5}, {"max", 12.25}, {"mean", 7.0}}},
                        {"gamma_multi", {{"min", 1.5}, {"max", 4.0}, {"mean", 2.5}}}};
    p["model_level"] = ml;

    Json layers = Json::array();
    for (int j = 0; j < L; ++j) {
        Json l;
        l["layer"] = 2 * j + 1;
        l["moe_index"] = j;
        Json counts = Json::array(), shares = Json::array(), dead = Json::array();
        std::vector<int64_t> c(size_t(E), 0);
        int64_t total = 0;
        for (int e = 0; e < E; ++e) {
            c[size_t(e)] = (j == 0 && e == 3) ? 0 : 1 + int64_t(r.next() * 2000);
            total += c[size_t(e)];
        }
        for (int e = 0; e < E; ++e) {
            counts.push_back(c[size_t(e)]);
            shares.push_back(double(c[size_t(e)]) / double(total));
            if (c[size_t(e)] == 0) dead.push_back(e);
        }
        l["load"] = {{"counts", counts}, {"shares", shares}, {"max_vio", iv(r, 1)}, {"cv", iv(r, 1)}, {"entropy", iv(r, 1)},
                     {"gini", iv(r, 1)}, {"jain", iv(r, 1)}, {"router_entropy", iv(r, 2)}, {"dead", dead}};
        if (s.nulls && j == 0) l["load"]["gini"] = nullptr;
        l["consistency"] = consistency(true);
        l["congestion"] = {{"single", {{"temperature", iv(r, 2)}, {"gamma", iv(r, 20)}, {"l1", 0.1}, {"softmax_l1", 0.2}}},
                           {"multi", {{"gamma", iv(r, 10)}, {"l1", 0.09}, {"softmax_l1", 0.2}, {"converged", true}}},
                           {"quality", "centered_logit"}};
        Json spec;
        Json rate = Json::array(), jsd = Json::array();
        for (int d = 0; d < D; ++d) {
            Json row = Json::array(), jrow = Json::array();
            for (int e = 0; e < E; ++e) row.push_back(r.next() * 2.0 * s.k / E);
            for (int d2 = 0; d2 < D; ++d2) jrow.push_back(d == d2 ? 0.0 : r.next());
            rate.push_back(row);
            jsd.push_back(jrow);
        }
        spec["domain_rate"] = rate;
        Json cv = Json::array(), vin = Json::array(), vnext = Json::array(), mao = Json::array();
        for (int e = 0; e < E; ++e) {
            cv.push_back(D < 2 || (s.nulls && e == 1) ? Json(nullptr) : Json(r.next()));
            vin.push_back(s.nulls && e % 3 == 0 ? Json(nullptr) : Json(r.next()));
            vnext.push_back(r.next());
            mao.push_back(r.next() * 100);
        }
        spec["domain_cv"] = cv;
        spec["vocab_input"] = vin;
        spec["vocab_next"] = vnext;
        spec["jsd"] = jsd;
        if (s.matrices) spec["coactivation"] = matrix(r, E, true);
        if (j + 1 < L && s.matrices) {
            Json topk = Json::array();
            for (int e = 0; e < E; ++e) topk.push_back(r.next());
            spec["affinity_next"] = {{"matrix", matrix(r, E, false)}, {"top", {{{"from", 0}, {"to", 1}, {"value", 0.4}}}}, {"topk_mass", topk}};
        } else {
            spec["affinity_next"] = nullptr;
        }
        spec["max_abs_out"] = mao;
        l["specialization"] = spec;
        layers.push_back(std::move(l));
    }
    p["layers"] = layers;
    p["super_experts"] = Json::array({{{"layer", 1}, {"expert", 5}, {"max_abs_out", 1234.5}}});
    Json summary;
    summary["most_balanced"] = {{{"layer", 1}, {"max_vio", 0.1}}};
    summary["least_balanced"] = {{{"layer", 2 * L - 1}, {"max_vio", 0.9}}};
    summary["dead"] = Json::array();
    if (L > 0) summary["dead"].push_back({{"layer", 1}, {"expert", 3}});
    summary["top_specialized"] = Json::array();
    if (D >= 2) summary["top_specialized"].push_back({{"layer", 1}, {"expert", 2}, {"domain", s.domains[1]}, {"rate", 0.5}, {"ratio_to_uniform", 2.0}});
    p["summary"] = summary;
    return p;
}

// ---- an independent RFC 4180 reader ---------------------------------------------------------

Rows parse_csv(const std::string& text) {
    Rows rows;
    std::vector<std::string> row;
    std::string field;
    size_t i = 0;
    bool any = false;
    while (i < text.size()) {
        const char c = text[i];
        if (c == '"' && field.empty()) {
            ++i;
            while (true) {
                if (i >= text.size()) throw std::runtime_error("unterminated quoted field");
                if (text[i] == '"') {
                    if (i + 1 < text.size() && text[i + 1] == '"') {
                        field += '"';
                        i += 2;
                        continue;
                    }
                    ++i;
                    break;
                }
                field += text[i++];
            }
            any = true;
        } else if (c == ',') {
            row.push_back(field), field.clear(), ++i, any = true;
        } else if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
            row.push_back(field), field.clear(), rows.push_back(row), row.clear(), i += 2, any = false;
        } else if (c == '\n' || c == '\r' || c == '"') {
            throw std::runtime_error("bare CR/LF or quote outside a quoted field at byte " + std::to_string(i));
        } else {
            field += c, ++i, any = true;
        }
    }
    if (any || !field.empty()) throw std::runtime_error("last record lacks CRLF");
    return rows;
}

// Column index by header name.
size_t col(const Rows& t, const std::string& name) {
    for (size_t i = 0; i < t.at(0).size(); ++i)
        if (t[0][i] == name) return i;
    ADD_FAILURE() << "no column " << name;
    return 0;
}

// A cell must be the exact JSON number (round-trip) or empty for null.
void expect_cell(const std::string& cell, const Json& v, const std::string& where) {
    if (v.is_null()) {
        EXPECT_EQ(cell, "") << where;
    } else if (v.is_number_integer()) {
        EXPECT_EQ(cell, std::to_string(v.get<int64_t>())) << where;
    } else {
        ASSERT_FALSE(cell.empty()) << where;
        char* end = nullptr;
        const double got = std::strtod(cell.c_str(), &end);
        EXPECT_EQ(end, cell.c_str() + cell.size()) << where << ": '" << cell << "'";
        EXPECT_EQ(got, v.get<double>()) << where << ": '" << cell << "'";
    }
}

size_t count(const std::string& hay, const std::string& needle) {
    size_t n = 0;
    for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + needle.size())) ++n;
    return n;
}

// The <figure id="..."> ... </figure> element of a page.
std::string figure(const std::string& html, const std::string& id) {
    const size_t b = html.find("<figure id=\"" + id + "\"");
    if (b == std::string::npos) return "";
    return html.substr(b, html.find("</figure>", b) + 9 - b);
}

// Heatmap cells: the <rect>s inside <g class="cells"> groups.
size_t heat_cells(const std::string& fig) {
    size_t n = 0;
    for (size_t p = fig.find("<g class=\"cells\">"); p != std::string::npos; p = fig.find("<g class=\"cells\">", p + 1))
        n += count(fig.substr(p, fig.find("</g>", p) - p), "<rect ");
    return n;
}

std::map<std::string, Rows> tables(const Json& p) {
    std::map<std::string, Rows> out;
    for (const auto& [name, text] : render_csv_tables(p)) out[name] = parse_csv(text);
    return out;
}

}  // namespace

// ---- CSV ------------------------------------------------------------------------------------

TEST(ReportCsv, NumbersRoundTripAndFieldsQuote) {
    using moekit::analysis::report::format_number;
    for (const double v : {0.1, 1.0 / 3.0, 2.0 / 3.0, 1e-300, 5e-324, 1.7976931348623157e308, -2.5, 123456.789, 1e22, 0.30000000000000004}) {
        const std::string s = format_number(v);
        EXPECT_EQ(std::strtod(s.c_str(), nullptr), v) << s;
        EXPECT_EQ(s.find(','), std::string::npos) << s;
    }
    EXPECT_EQ(format_number(3.0), "3");
    EXPECT_EQ(format_number(-42.0), "-42");
    EXPECT_EQ(format_number(0.5), "0.5");
    EXPECT_EQ(format_number(NAN), "");
    EXPECT_EQ(moekit::analysis::csv_field("plain"), "plain");
    EXPECT_EQ(moekit::analysis::csv_field("a,b"), "\"a,b\"");
    EXPECT_EQ(moekit::analysis::csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    EXPECT_EQ(moekit::analysis::csv_field("two\nlines"), "\"two\nlines\"");
    EXPECT_EQ(moekit::analysis::csv_record({"a", "", "c,d"}), "a,,\"c,d\"\r\n");
}

TEST(ReportCsv, TablesHoldEveryValueOfTheProfile) {
    const Shape shape;
    const Json p = make_profile(shape);
    const auto t = tables(p);
    const std::vector<std::string> names = {"affinity.csv", "coactivation.csv", "consistency.csv", "divergence.csv",
                                            "domains.csv", "experts.csv", "layers.csv"};
    ASSERT_EQ(t.size(), names.size());
    for (const auto& n : names) ASSERT_TRUE(t.count(n)) << n;
    const int L = 3, E = 8, D = 2;

    // layers.csv: one row per layer; every interval as value, lo, hi.
    const Rows& layers = t.at("layers.csv");
    ASSERT_EQ(layers.size(), size_t(1 + L));
    EXPECT_EQ(std::vector<std::string>(layers[0].begin(), layers[0].begin() + 6),
              (std::vector<std::string>{"layer", "moe_index", "max_vio", "max_vio_lo", "max_vio_hi", "cv"}));
    for (int j = 0; j < L; ++j) {
        const Json& l = p["layers"][j];
        const auto& row = layers[size_t(1 + j)];
        ASSERT_EQ(row.size(), layers[0].size());
        EXPECT_EQ(row[col(layers, "layer")], std::to_string(2 * j + 1));
        for (const char* m : {"max_vio", "cv", "entropy", "gini", "jain", "router_entropy"}) {
            expect_cell(row[col(layers, m)], l["load"][m]["value"], m);
            expect_cell(row[col(layers, std::string(m) + "_lo")], l["load"][m]["ci95"][0], m);
            expect_cell(row[col(layers, std::string(m) + "_hi")], l["load"][m]["ci95"][1], m);
        }
        EXPECT_EQ(row[col(layers, "n_dead")], j == 0 ? "1" : "0");
        for (const char* m : {"4", "16", "64", "256"}) {
            expect_cell(row[col(layers, std::string("srp_m") + m)], l["consistency"]["srp"][m]["value"], m);
            expect_cell(row[col(layers, std::string("srp_m") + m + "_hi")], l["consistency"]["srp"][m]["ci95"][1], m);
        }
        expect_cell(row[col(layers, "lfu_rho3_lo")], l["consistency"]["lfu"]["3"]["ci95"][0], "lfu");
        expect_cell(row[col(layers, "gamma_single")], l["congestion"]["single"]["gamma"]["value"], "gamma");
        expect_cell(row[col(layers, "temperature_hi")], l["congestion"]["single"]["temperature"]["ci95"][1], "T");
        expect_cell(row[col(layers, "gamma_multi_lo")], l["congestion"]["multi"]["gamma"]["ci95"][0], "gamma multi");
        expect_cell(row[col(layers, "softmax_l1_multi")], l["congestion"]["multi"]["softmax_l1"], "l1");
        EXPECT_EQ(row[col(layers, "multi_converged")], "true");
    }
    // The srp columns come in numeric order, not string order.
    EXPECT_LT(col(layers, "srp_m16"), col(layers, "srp_m256"));

    // experts.csv: one row per (layer, expert).
    const Rows& experts = t.at("experts.csv");
    ASSERT_EQ(experts.size(), size_t(1 + L * E));
    EXPECT_EQ(experts[0].back(), "super");
    for (int j = 0; j < L; ++j)
        for (int e = 0; e < E; ++e) {
            const auto& row = experts[size_t(1 + j * E + e)];
            const Json& l = p["layers"][j];
            const std::string where = "L" + std::to_string(j) + "e" + std::to_string(e);
            EXPECT_EQ(row[0], std::to_string(2 * j + 1));
            EXPECT_EQ(row[1], std::to_string(e));
            expect_cell(row[col(experts, "count")], l["load"]["counts"][e], where);
            expect_cell(row[col(experts, "share")], l["load"]["shares"][e], where);
            EXPECT_EQ(row[col(experts, "dead")], l["load"]["counts"][e].get<int64_t>() == 0 ? "1" : "0") << where;
            expect_cell(row[col(experts, "srp_m16")], l["consistency"]["srp_expert"]["16"][e], where);
            expect_cell(row[col(experts, "rate_en")], l["specialization"]["domain_rate"][0][e], where);
            expect_cell(row[col(experts, "rate_code")], l["specialization"]["domain_rate"][1][e], where);
            expect_cell(row[col(experts, "domain_cv")], l["specialization"]["domain_cv"][e], where);
            expect_cell(row[col(experts, "vocab_input")], l["specialization"]["vocab_input"][e], where);
            expect_cell(row[col(experts, "vocab_next")], l["specialization"]["vocab_next"][e], where);
            expect_cell(row[col(experts, "max_abs_out")], l["specialization"]["max_abs_out"][e], where);
            if (j + 1 < L)
                expect_cell(row[col(experts, "affinity_topk_mass")], l["specialization"]["affinity_next"]["topk_mass"][e], where);
            else
                EXPECT_EQ(row[col(experts, "affinity_topk_mass")], "") << where;
            EXPECT_EQ(row[col(experts, "super")], (j == 0 && e == 5) ? "1" : "0") << where;
        }

    // consistency.csv: model rows then layer rows; 4 SRP + 3 x 4 cache rows each.
    const Rows& cons = t.at("consistency.csv");
    EXPECT_EQ(cons[0], (std::vector<std::string>{"level", "layer", "metric", "parameter", "value", "lo", "hi", "alpha_star",
                                                 "rho_hat", "capacity"}));
    ASSERT_EQ(cons.size(), size_t(1 + 16 * (1 + L)));
    for (size_t i = 1; i < cons.size(); ++i) {
        const auto& row = cons[i];
        const Json& block = row[0] == "model" ? p["model_level"]["consistency"]
                                              : p["layers"][(std::stoi(row[1]) - 1) / 2]["consistency"];
        EXPECT_EQ(row[1].empty(), row[0] == "model");
        const Json& v = block.at(row[2]).at(row[3]);
        expect_cell(row[4], v["value"], row[2] + row[3]);
        expect_cell(row[5], v["ci95"][0], row[2] + row[3]);
        expect_cell(row[6], v["ci95"][1], row[2] + row[3]);
        if (row[2] == "srp") {
            expect_cell(row[7], v["alpha_star"], "alpha");
            expect_cell(row[8], v["rho_hat"], "rho_hat");
            EXPECT_EQ(row[9], "");
        } else {
            expect_cell(row[9], v["capacity"], "capacity");
        }
    }

    // domains.csv: (layer, domain, expert) with the ratio to k/E recomputed here.
    const Rows& dom = t.at("domains.csv");
    ASSERT_EQ(dom.size(), size_t(1 + L * D * E));
    for (size_t i = 1; i < dom.size(); ++i) {
        const int j = (std::stoi(dom[i][0]) - 1) / 2, d = dom[i][1] == "en" ? 0 : 1, e = std::stoi(dom[i][2]);
        const double rate = p["layers"][j]["specialization"]["domain_rate"][d][e].get<double>();
        expect_cell(dom[i][3], rate, "rate");
        EXPECT_NEAR(std::strtod(dom[i][4].c_str(), nullptr), rate * E / shape.k, 1e-15 * rate * E);
    }
    EXPECT_EQ(t.at("divergence.csv").size(), size_t(1 + L * D * D));
    expect_cell(t.at("divergence.csv")[2][3], p["layers"][0]["specialization"]["jsd"][0][1], "jsd");

    // Matrices in long form: every entry.
    const Rows& co = t.at("coactivation.csv");
    ASSERT_EQ(co.size(), size_t(1 + L * E * E));
    for (size_t i = 1; i < co.size(); ++i)
        expect_cell(co[i][3], p["layers"][(std::stoi(co[i][0]) - 1) / 2]["specialization"]["coactivation"][std::stoi(co[i][1])][std::stoi(co[i][2])], "co");
    const Rows& aff = t.at("affinity.csv");
    EXPECT_EQ(aff[0], (std::vector<std::string>{"layer", "next_layer", "i", "j", "value"}));
    ASSERT_EQ(aff.size(), size_t(1 + (L - 1) * E * E));  // the last layer has no next layer
    for (size_t i = 1; i < aff.size(); ++i) {
        const int j = (std::stoi(aff[i][0]) - 1) / 2;
        EXPECT_EQ(aff[i][1], std::to_string(2 * j + 3));
        expect_cell(aff[i][4], p["layers"][j]["specialization"]["affinity_next"]["matrix"][std::stoi(aff[i][2])][std::stoi(aff[i][3])], "aff");
    }
}

TEST(ReportCsv, DomainNamesAreQuotedPerRfc4180) {
    Shape shape;
    shape.domains = {kEvil, "a,b\nc"};
    const auto t = tables(make_profile(shape));
    const Rows& experts = t.at("experts.csv");
    col(experts, "rate_" + kEvil);
    col(experts, "rate_a,b\nc");
    const Rows& dom = t.at("domains.csv");
    EXPECT_EQ(dom[1][1], kEvil);
    EXPECT_EQ(dom[1 + 8][1], "a,b\nc");
    EXPECT_NE(render_csv_tables(make_profile(shape)).at("domains.csv").find("\"<script>alert(1)</script>&\"\"\""), std::string::npos);
}

TEST(ReportCsv, EdgeVariants) {
    // No domains: no rate columns, empty domain tables.
    Shape none;
    none.domains = {};
    auto t = tables(make_profile(none));
    EXPECT_EQ(t.at("domains.csv").size(), 1u);
    EXPECT_EQ(t.at("divergence.csv").size(), 1u);
    for (const auto& h : t.at("experts.csv")[0]) EXPECT_NE(h.rfind("rate_", 0), 0u) << h;
    EXPECT_EQ(t.at("experts.csv")[1][col(t.at("experts.csv"), "domain_cv")], "");

    // One layer: no affinity.
    Shape one;
    one.n_layer = 1;
    t = tables(make_profile(one));
    EXPECT_EQ(t.at("layers.csv").size(), 2u);
    EXPECT_EQ(t.at("affinity.csv").size(), 1u);
    EXPECT_EQ(t.at("coactivation.csv").size(), 1u + 64u);

    // Nulls: empty cells, never "null".
    Shape nulls;
    nulls.nulls = true;
    Json p = make_profile(nulls);
    p["layers"].push_back(nullptr);  // a null layer entry is skipped
    t = tables(p);
    EXPECT_EQ(t.at("layers.csv").size(), 4u);
    const Rows& layers = t.at("layers.csv");
    EXPECT_EQ(layers[1][col(layers, "gini")], "");
    EXPECT_EQ(layers[1][col(layers, "gini_lo")], "");
    const Rows& experts = t.at("experts.csv");
    EXPECT_EQ(experts[1][col(experts, "vocab_input")], "");
    EXPECT_EQ(experts[2][col(experts, "domain_cv")], "");
    for (const auto& [name, text] : render_csv_tables(p)) EXPECT_EQ(text.find("null"), std::string::npos) << name;

    // An empty document renders header-only tables.
    for (const auto& [name, rows] : tables(Json::object())) EXPECT_EQ(rows.size(), 1u) << name;
}

// ---- HTML -----------------------------------------------------------------------------------

TEST(ReportHtml, PageHasEveryFigureAndNoExternalResources) {
    const Json p = make_profile(Shape{});
    const std::string html = render_html(p);
    EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
    EXPECT_NE(html.find("<title>moekit profile: tiny-moe on en, code</title>"), std::string::npos);
    for (const auto& id : moekit::analysis::report_figure_ids()) {
        EXPECT_EQ(count(html, "<figure id=\"" + id + "\""), 1u) << id;
        const std::string fig = figure(html, id);
        EXPECT_NE(fig.find("<svg"), std::string::npos) << id;
        EXPECT_NE(fig.find("<figcaption>"), std::string::npos) << id;
        EXPECT_GT(count(fig, "<text"), 3u) << id << ": axis labels and legend";
        EXPECT_EQ(fig.find("stroke=\"#c8c8c8\""), std::string::npos) << id << ": a placeholder instead of a chart";
    }
    EXPECT_EQ(moekit::analysis::report_figure_ids().size(), 7u);
    for (const char* bad : {"http://", "https://", "<script", "<link", "src=", "url(", "@import", "<iframe", "<img"})
        EXPECT_EQ(html.find(bad), std::string::npos) << bad;

    // Heatmap cells: layer x expert, (layer, domain) x expert, one E x E panel per layer.
    EXPECT_EQ(heat_cells(figure(html, "fig-load")), 3u * 8u);
    EXPECT_EQ(heat_cells(figure(html, "fig-domain")), 3u * 2u * 8u);
    EXPECT_EQ(heat_cells(figure(html, "fig-coactivation")), 3u * 64u);
    EXPECT_EQ(heat_cells(figure(html, "fig-affinity")), 2u * 64u);
    const std::string load = figure(html, "fig-load");
    EXPECT_EQ(count(load, "<title>"), 3u * 8u);
    // Tooltips carry the exact value.
    const std::string share = moekit::analysis::report::format_number(p["layers"][1]["load"]["shares"][6].get<double>());
    EXPECT_NE(load.find("L3 expert 6: share " + share), std::string::npos) << share;
    EXPECT_NE(load.find("L1 expert 3: share 0 = 0\xC3\x97 uniform, count 0 (dead)"), std::string::npos);
    // Summary facts.
    EXPECT_NE(html.find("L1 expert 5 (max |out| 1234.5)"), std::string::npos);
    EXPECT_NE(html.find("L1: 3"), std::string::npos);  // dead experts
    EXPECT_NE(html.find("3.5 \xE2\x80\x93 12.25"), std::string::npos);  // gamma_eff range
    // Line charts: one marker per (series, x).
    EXPECT_EQ(count(figure(html, "fig-srp"), "<circle"), (3u + 1u) * 4u + 1u);  // + the legend swatch
    EXPECT_EQ(count(figure(html, "fig-congestion"), "<title>"), 2u * 3u);
}

TEST(ReportHtml, TextFromTheProfileIsEscaped) {
    Shape shape;
    shape.domains = {kEvil, "plain"};
    Json p = make_profile(shape);
    p["model"]["display_name"] = "<b>bold</b>";
    p["model"]["dir"] = "/x/\"><img src=x onerror=alert(1)>";
    p["params"]["conventions"]["<i>key</i>"] = "a & b";
    const std::string html = render_html(p);
    EXPECT_EQ(html.find("<script>alert(1)"), std::string::npos);
    EXPECT_EQ(html.find("<b>bold"), std::string::npos);
    EXPECT_EQ(html.find("<img"), std::string::npos);
    EXPECT_EQ(html.find("<i>key"), std::string::npos);
    EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;"), std::string::npos);
    EXPECT_NE(html.find("&lt;b&gt;bold&lt;/b&gt;"), std::string::npos);
    EXPECT_NE(html.find("a &amp; b"), std::string::npos);
    // Inside heatmap tooltips too.
    EXPECT_NE(figure(html, "fig-domain").find("<title>L1, domain &quot;&lt;script&gt;"), std::string::npos);
}

TEST(ReportHtml, EdgeVariantsStillRenderEveryFigure) {
    Shape none;
    none.domains = {};
    Shape one;
    one.n_layer = 1;
    Shape nulls;
    nulls.nulls = true;
    Shape no_matrices;
    no_matrices.matrices = false;
    Json sparse = make_profile(Shape{});
    sparse.erase("model_level");
    sparse.erase("summary");
    sparse["layers"][1]["congestion"] = nullptr;
    for (const Json& p : {make_profile(none), make_profile(one), make_profile(nulls), make_profile(no_matrices), sparse,
                          Json::object(), Json(Json::array())}) {
        const std::string html = render_html(p);
        for (const auto& id : moekit::analysis::report_figure_ids()) {
            const std::string fig = figure(html, id);
            ASSERT_FALSE(fig.empty()) << id;
            EXPECT_NE(fig.find("<svg"), std::string::npos) << id;
            EXPECT_TRUE(fig.find("<rect") != std::string::npos || fig.find("<path") != std::string::npos) << id;
        }
    }
    EXPECT_NE(figure(render_html(make_profile(none)), "fig-domain").find("No domains"), std::string::npos);
    EXPECT_NE(figure(render_html(make_profile(one)), "fig-affinity").find("at least two MoE layers"), std::string::npos);
    EXPECT_EQ(heat_cells(figure(render_html(make_profile(one)), "fig-load")), 8u);
    // Null values are drawn as "no data" cells and shown as n/a, never as 0.
    const std::string html = render_html(make_profile(nulls));
    EXPECT_NE(html.find("n/a"), std::string::npos);
    EXPECT_EQ(heat_cells(figure(html, "fig-load")), 24u);
}

TEST(ReportHtml, LargeModelStaysSmall) {
    Shape big;
    big.n_layer = 64;
    big.n_expert = 256;
    big.k = 8;
    big.domains = {"en", "code", "math"};
    const Json p = make_profile(big);
    const std::string html = render_html(p);
    namespace r = moekit::analysis::report;
    EXPECT_LT(html.size(), 8u << 20) << "page of " << html.size() << " bytes";
    EXPECT_EQ(heat_cells(figure(html, "fig-load")), 64u * 256u);
    const size_t domain_cells = heat_cells(figure(html, "fig-domain"));
    EXPECT_LE(domain_cells, r::kMaxDomainCells);
    EXPECT_EQ(domain_cells % (3u * 256u), 0u);  // whole layers of all domains
    EXPECT_NE(figure(html, "fig-domain").find("Showing " + std::to_string(domain_cells / 768) + " of 64 layers"), std::string::npos);
    const std::string co = figure(html, "fig-coactivation");
    EXPECT_EQ(heat_cells(co), r::kMaxMatrixPanels * r::kMaxMatrixSide * r::kMaxMatrixSide);
    EXPECT_EQ(heat_cells(figure(html, "fig-affinity")), r::kMaxMatrixPanels * r::kMaxMatrixSide * r::kMaxMatrixSide);
    EXPECT_NE(co.find("Showing 4 of 64 layers (L1, L43, L85, L127, evenly spaced)"), std::string::npos);
    EXPECT_NE(co.find("each panel shows the 48 experts with the highest load"), std::string::npos);
    // The panel of layer 1 shows exactly its 48 busiest experts (chosen here by a plain sort).
    const Json& l0 = p["layers"][0];
    std::vector<std::pair<int64_t, int>> by_load;
    for (int e = 0; e < 256; ++e) by_load.emplace_back(-l0["load"]["counts"][e].get<int64_t>(), e);
    std::sort(by_load.begin(), by_load.end());
    for (int rank = 0; rank < 256; ++rank) {
        const int e = by_load[size_t(rank)].second, other = by_load[0].second;
        const std::string tip = "<title>layer 1: C[" + std::to_string(e) + "," + std::to_string(other) + "] = ";
        const size_t at = co.find(tip);
        if (rank < 48) {
            ASSERT_NE(at, std::string::npos) << tip;
            const std::string want = r::format_number(l0["specialization"]["coactivation"][e][other].get<double>());
            EXPECT_EQ(co.substr(at + tip.size(), want.size()), want);
        } else {
            EXPECT_EQ(at, std::string::npos) << tip;
        }
    }
}

TEST(ReportHtml, SpreadAndKeys) {
    namespace r = moekit::analysis::report;
    EXPECT_EQ(r::spread(10, 4), (std::vector<size_t>{0, 3, 6, 9}));
    EXPECT_EQ(r::spread(3, 4), (std::vector<size_t>{0, 1, 2}));
    EXPECT_EQ(r::spread(5, 1), (std::vector<size_t>{0}));
    EXPECT_TRUE(r::spread(0, 4).empty());
    const Json o = {{"4", 1}, {"16", 2}};
    EXPECT_EQ(r::numeric_key(&o, 16), "16");
    EXPECT_EQ(r::numeric_key(&o, 3), "");
    EXPECT_EQ(r::html_escape("a<b>&\"'\x01"), "a&lt;b&gt;&amp;&quot;&#39;\xEF\xBF\xBD");
    EXPECT_EQ(r::viridis(0.0), "#440154");
    EXPECT_EQ(r::viridis(1.0), "#fde725");
    EXPECT_EQ(r::viridis(0.5), "#21918c");
}

// Renders the page in headless Chromium through scripts/check_report_html.py (figures present in
// the rendered DOM with drawn SVG, no external resources, non-blank screenshot). Set
// MOEKIT_REPORT_KEEP=DIR to keep the page and its screenshot for a look.
TEST(ReportHtml, RendersInHeadlessChromium) {
    namespace fs = std::filesystem;
    const fs::path python = MOEKIT_PYTHON;
    const fs::path script = fs::path(MOEKIT_TEST_DATA) / ".." / "scripts" / "check_report_html.py";
    bool chromium = false;
    for (const char* c : {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"}) chromium = chromium || fs::exists(c);
    if (!fs::exists(python)) GTEST_SKIP() << "*** SKIPPED: no Python at MOEKIT_PYTHON=" << python;
    if (!chromium) GTEST_SKIP() << "*** SKIPPED: chromium not found";
    ASSERT_TRUE(fs::exists(script)) << script;
    moekit::test::TempDir dir("report");
    Shape shape;
    shape.domains = {"en", kEvil};
    moekit::test::write_all(dir / "index.html", render_html(make_profile(shape)));
    const fs::path png = dir / "screenshot.png";
    const std::string cmd = "'" + python.string() + "' '" + script.string() + "' '" + dir.path().string() + "' --screenshot '" +
                            png.string() + "' 2>&1";
    const int status = std::system(cmd.c_str());
    ASSERT_NE(status, -1);
    const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (rc == 77) GTEST_SKIP() << "*** SKIPPED: chromium not usable (check_report_html.py exit 77)";
    EXPECT_EQ(rc, 0) << cmd;
    EXPECT_TRUE(fs::exists(png));
    if (const char* keep = std::getenv("MOEKIT_REPORT_KEEP")) {
        fs::create_directories(keep);
        fs::copy_file(dir / "index.html", fs::path(keep) / "index.html", fs::copy_options::overwrite_existing);
        if (fs::exists(png)) fs::copy_file(png, fs::path(keep) / "screenshot.png", fs::copy_options::overwrite_existing);
    }
}
