// Figures of the profile HTML report (analysis/report_figures.h).
#include "analysis/report_figures.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <optional>

#include "analysis/report_svg.h"

namespace moekit::analysis::report {
namespace {

using Values = std::vector<std::optional<double>>;

// Experts pooled into blocks of `block` consecutive ids so that at most max_cols columns remain.
struct Pool {
    size_t block = 1, cols = 0;
    Pool(size_t n, size_t max_cols) {
        max_cols = std::max<size_t>(1, max_cols);
        block = std::max<size_t>(1, (n + max_cols - 1) / max_cols);
        cols = (n + block - 1) / block;
    }
    size_t begin(size_t c) const { return c * block; }
    size_t end(size_t c, size_t n) const { return std::min(n, (c + 1) * block); }
    std::string label(size_t c, size_t n) const {
        if (block == 1) return std::to_string(c);
        return std::to_string(begin(c)) + "\xE2\x80\x93" + std::to_string(end(c, n) - 1);
    }
};

std::optional<double> mean_of(const Values& v, size_t b, size_t e) {
    double sum = 0;
    size_t n = 0;
    for (size_t i = b; i < e && i < v.size(); ++i)
        if (v[i]) sum += *v[i], ++n;
    return n ? std::optional<double>(sum / double(n)) : std::nullopt;
}

Values numbers(const Json* array, size_t n) {
    Values out(n);
    for (size_t i = 0; i < n; ++i) out[i] = number(item(array, i));
    return out;
}

// log2 scale of ratios to uniform, symmetric, 2^-b .. 2^b with b in 1..4 from the data.
ColorScale ratio_scale(const std::vector<Values>& rows, const std::string& title) {
    double m = 1.0;
    for (const auto& r : rows)
        for (const auto& v : r)
            if (v && *v > 0) m = std::max(m, std::fabs(std::log2(*v)));
    const int b = std::clamp(static_cast<int>(std::ceil(m - 1e-9)), 1, 4);
    ColorScale s;
    s.log2 = true;
    s.lo = std::ldexp(1.0, -b);
    s.hi = std::ldexp(1.0, b);
    s.title = title;
    for (int i = -b; i <= b; ++i) {
        const std::string p = std::to_string(1 << std::abs(i));
        s.ticks.emplace_back(std::ldexp(1.0, i), i < 0 ? "1/" + p + "\xC3\x97" : i == 0 ? "1\xC3\x97 (uniform)" : p + "\xC3\x97");
    }
    return s;
}

ColorScale linear_scale(double vmax, const std::string& title) {
    ColorScale s;
    const auto ticks = nice_ticks(0.0, vmax > 0 ? vmax : 1.0, 4);
    s.lo = 0.0;
    s.hi = ticks.back();
    s.title = title;
    for (const double t : ticks) s.ticks.emplace_back(t, fmt(t, 3));
    return s;
}

std::string layer_list(const std::vector<const Json*>& layers, const std::vector<size_t>& shown) {
    std::string out;
    for (size_t i = 0; i < shown.size(); ++i)
        out += (i ? ", " : "") + layer_label(layer_index(layers[shown[i]], shown[i]));
    return out;
}

double n_expert_used(const Json& profile) { return number(get(profile, {"model", "n_expert_used"})).value_or(0.0); }

// The experts a matrix panel shows: all of them up to kMaxMatrixSide, otherwise the
// kMaxMatrixSide with the highest load in that layer (ties to the lower id), in id order.
std::vector<size_t> busiest(const Json* layer, size_t n) {
    std::vector<size_t> ids(n);
    for (size_t i = 0; i < n; ++i) ids[i] = i;
    if (n <= kMaxMatrixSide) return ids;
    const Values load = numbers(get(get(layer, "load"), "counts"), n);
    std::stable_sort(ids.begin(), ids.end(), [&](size_t a, size_t b) { return load[a].value_or(-1) > load[b].value_or(-1); });
    ids.resize(kMaxMatrixSide);
    std::sort(ids.begin(), ids.end());
    return ids;
}

// E x E matrices of a few layers (row experts from the layer, column experts from `col_layer`).
struct MatrixFigure {
    const char* id;
    const char* title;
    std::string symbol;       // "C" or "A"
    std::string x_label, y_label;
    bool neutral_diagonal;
};

struct MatrixPanel {
    size_t pos;               // position in layers
    const Json* matrix;
    const Json* col_layer;    // whose load picks the column experts
    std::string title;
};

Figure matrix_figure(const Json& profile, const MatrixFigure& mf, const std::vector<const Json*>& layers,
                     const std::vector<MatrixPanel>& candidates, const std::string& caption) {
    const size_t n = static_cast<size_t>(n_expert(profile));
    const auto shown = spread(candidates.size(), kMaxMatrixPanels);
    HeatmapSpec spec;
    double vmax = 0;
    size_t side = 0;
    for (const size_t s : shown) {
        const MatrixPanel& mp = candidates[s];
        const auto rows = busiest(layers[mp.pos], n), cols = busiest(mp.col_layer, n);
        side = std::max(side, rows.size());
        HeatPanel panel;
        panel.title = mp.title;
        panel.rows = rows.size();
        panel.cols = cols.size();
        for (const size_t i : rows) panel.row_labels.push_back(std::to_string(i));
        for (const size_t j : cols) panel.col_labels.push_back(std::to_string(j));
        for (const size_t i : rows) {
            const Json* mrow = item(mp.matrix, i);
            for (const size_t j : cols) {
                HeatCell cell;
                cell.value = number(item(mrow, j));
                cell.tooltip = mp.title + ": " + mf.symbol + "[" + std::to_string(i) + "," + std::to_string(j) + "] = " +
                               (cell.value ? format_number(*cell.value) : std::string("n/a"));
                if (mf.neutral_diagonal && i == j) {
                    cell.neutral = true;
                    cell.tooltip += " (diagonal, not coloured)";
                } else if (cell.value) {
                    vmax = std::max(vmax, *cell.value);
                }
                panel.cells.push_back(std::move(cell));
            }
        }
        spec.panels.push_back(std::move(panel));
    }
    const int cw = cell_size(side, 380.0, 4, 24);
    spec.cell_w = spec.cell_h = cw;
    spec.panels_per_row = double(cw) * double(side) <= 220.0 ? 4 : 2;
    spec.x_label = mf.x_label;
    spec.y_label = mf.y_label;
    spec.scale = linear_scale(vmax, mf.symbol + "[i,j]");
    spec.neutral_label = mf.neutral_diagonal ? "diagonal" : "";
    spec.description = mf.title;
    std::string cap = caption;
    std::vector<size_t> shown_pos;
    for (const size_t s : shown) shown_pos.push_back(candidates[s].pos);
    if (shown.size() < candidates.size())
        cap += " Showing " + std::to_string(shown.size()) + " of " + std::to_string(candidates.size()) + " layers (" +
               html_escape(layer_list(layers, shown_pos)) + ", evenly spaced).";
    if (n > kMaxMatrixSide)
        cap += " With E = " + std::to_string(n) + ", each panel shows the " + std::to_string(kMaxMatrixSide) +
               " experts with the highest load (rows: in that layer; columns: in the column's layer), in id order.";
    if (shown.size() < candidates.size() || n > kMaxMatrixSide) cap += " Every entry is in the CSV table.";
    return {mf.id, mf.title, render_heatmap(spec), cap};
}

}  // namespace

std::string layer_label(int64_t il) { return "L" + std::to_string(il); }

Figure placeholder_figure(const char* id, const char* title, const std::string& message) {
    const std::string svg = "<svg class=\"chart\" viewBox=\"0 0 760 56\" width=\"760\" height=\"56\" role=\"img\" aria-label=\"" +
                            html_escape(message) +
                            "\"><rect x=\"0.5\" y=\"0.5\" width=\"759\" height=\"55\" fill=\"#fafafa\" stroke=\"#c8c8c8\"/>"
                            "<text x=\"380\" y=\"32\" text-anchor=\"middle\" fill=\"#666\">" +
                            html_escape(message) + "</text></svg>";
    return {id, title, svg, html_escape(message)};
}

std::vector<size_t> spread(size_t n, size_t count) {
    std::vector<size_t> out;
    if (n == 0 || count == 0) return out;
    if (n <= count) {
        for (size_t i = 0; i < n; ++i) out.push_back(i);
        return out;
    }
    if (count == 1) return {0};
    for (size_t i = 0; i < count; ++i) {
        const size_t p = static_cast<size_t>(std::llround(double(i) * double(n - 1) / double(count - 1)));
        if (out.empty() || out.back() != p) out.push_back(p);
    }
    return out;
}

std::string numeric_key(const Json* object, double value) {
    for (const auto& k : keys(object)) {
        char* end = nullptr;
        const double v = std::strtod(k.c_str(), &end);
        if (!k.empty() && end == k.c_str() + k.size() && v == value) return k;
    }
    return "";
}

Figure figure_load(const Json& profile) {
    const auto layers = report::layers(profile);
    const size_t n = static_cast<size_t>(n_expert(profile));
    if (layers.empty() || n == 0) return placeholder_figure("fig-load", "Expert load", "No MoE layers in this profile.");
    const Pool pool(n, kMaxHeatCells / layers.size());
    std::vector<Values> ratios;
    HeatPanel panel;
    panel.rows = layers.size();
    panel.cols = pool.cols;
    for (size_t c = 0; c < pool.cols; ++c) panel.col_labels.push_back(std::to_string(pool.begin(c)));
    for (size_t pos = 0; pos < layers.size(); ++pos) {
        const Json* load = get(layers[pos], "load");
        Values share = numbers(get(load, "shares"), n);
        const Values count = numbers(get(load, "counts"), n);
        double total = 0;
        for (const auto& c : count) total += c.value_or(0.0);
        Values ratio(n);
        for (size_t e = 0; e < n; ++e) {
            if (!share[e] && count[e] && total > 0) share[e] = *count[e] / total;
            if (share[e]) ratio[e] = *share[e] * double(n);
        }
        const std::string label = layer_label(layer_index(layers[pos], pos));
        panel.row_labels.push_back(label);
        for (size_t c = 0; c < pool.cols; ++c) {
            HeatCell cell;
            cell.value = mean_of(ratio, pool.begin(c), pool.end(c, n));
            if (pool.block == 1) {
                cell.tooltip = label + " expert " + std::to_string(c) + ": " +
                               (share[c] ? "share " + format_number(*share[c]) + " = " + fmt(*ratio[c]) + "\xC3\x97 uniform"
                                         : std::string("no data")) +
                               (count[c] ? ", count " + format_number(*count[c]) : "") +
                               (count[c] && *count[c] == 0 ? " (dead)" : "");
            } else {
                cell.tooltip = label + " experts " + pool.label(c, n) + ": mean " + fmt(cell.value, 6) + "\xC3\x97 uniform";
            }
            panel.cells.push_back(std::move(cell));
        }
        ratios.push_back(std::move(ratio));
    }
    HeatmapSpec spec;
    spec.panels.push_back(std::move(panel));
    spec.cell_w = cell_size(pool.cols, 880.0, 2, 28);
    spec.cell_h = cell_size(layers.size(), 520.0, 4, 22);
    spec.x_label = pool.block == 1 ? "expert" : "expert (blocks of " + std::to_string(pool.block) + ")";
    spec.y_label = "MoE layer";
    spec.scale = ratio_scale(ratios, "share \xC3\x97 E");
    spec.description = "Heatmap of expert load share relative to uniform, per layer and expert";
    std::string cap = "Load share f<sub>e</sub> of each expert relative to uniform 1/E (log<sub>2</sub> colour "
                      "scale, clipped at the ends; dead experts take the lowest colour). Hover a cell for the exact share and count.";
    if (pool.block > 1)
        cap += " Experts are pooled in blocks of " + std::to_string(pool.block) + " (mean ratio) to keep the page small.";
    return {"fig-load", "Expert load per layer", render_heatmap(spec), cap};
}

Figure figure_domain(const Json& profile) {
    const auto layers = report::layers(profile);
    const auto domains = domain_names(profile);
    const size_t n = static_cast<size_t>(n_expert(profile));
    const double k = n_expert_used(profile);
    if (domains.empty())
        return placeholder_figure("fig-domain", "Domain specialization", "No domains in this profile (data.domains is empty).");
    if (layers.empty() || n == 0 || k <= 0)
        return placeholder_figure("fig-domain", "Domain specialization", "No MoE layers or expert counts in this profile.");
    const size_t d_count = domains.size();
    const Pool pool(n, std::max<size_t>(1, kMaxDomainCells / d_count));
    const size_t max_layers = std::max<size_t>(1, kMaxDomainCells / (d_count * pool.cols));
    const auto shown = spread(layers.size(), max_layers);
    const double uniform = k / double(n);

    HeatPanel panel;
    panel.cols = pool.cols;
    for (size_t c = 0; c < pool.cols; ++c) panel.col_labels.push_back(std::to_string(pool.begin(c)));
    std::vector<Values> ratios;
    for (const size_t pos : shown) {
        const std::string label = layer_label(layer_index(layers[pos], pos));
        const Json* rates = get(layers[pos], {"specialization", "domain_rate"});
        if (panel.rows > 0) panel.row_separators.push_back(panel.rows);
        for (size_t d = 0; d < d_count; ++d) {
            const Values rate = numbers(item(rates, d), n);
            Values ratio(n);
            for (size_t e = 0; e < n; ++e)
                if (rate[e]) ratio[e] = *rate[e] / uniform;
            std::string short_name = domains[d].size() > 14 ? domains[d].substr(0, 13) + "\xE2\x80\xA6" : domains[d];
            panel.row_labels.push_back(label + " \xC2\xB7 " + short_name);
            for (size_t c = 0; c < pool.cols; ++c) {
                HeatCell cell;
                cell.value = mean_of(ratio, pool.begin(c), pool.end(c, n));
                const std::string where = label + ", domain \"" + domains[d] + "\", ";
                if (pool.block == 1)
                    cell.tooltip = where + "expert " + std::to_string(c) + ": rate " +
                                   (rate[c] ? format_number(*rate[c]) + " = " + fmt(*ratio[c]) + "\xC3\x97 k/E" : "n/a");
                else
                    cell.tooltip = where + "experts " + pool.label(c, n) + ": mean " + fmt(cell.value, 6) + "\xC3\x97 k/E";
                panel.cells.push_back(std::move(cell));
            }
            ratios.push_back(std::move(ratio));
            ++panel.rows;
        }
    }
    HeatmapSpec spec;
    spec.cell_w = cell_size(pool.cols, 880.0, 2, 28);
    spec.cell_h = cell_size(panel.rows, 560.0, 3, 16);
    spec.panels.push_back(std::move(panel));
    spec.x_label = pool.block == 1 ? "expert" : "expert (blocks of " + std::to_string(pool.block) + ")";
    spec.y_label = "layer \xC2\xB7 domain";
    spec.scale = ratio_scale(ratios, "rate / (k/E)");
    spec.description = "Heatmap of per-domain expert activation rate relative to k/E";
    std::string cap = "Share of each domain's tokens routed to the expert, N<sub>e,D</sub>/N<sub>D</sub>, relative to the "
                      "uniform rate k/E = " + fmt(uniform) + " (log<sub>2</sub> colour scale). Rows are grouped by layer; domains: ";
    for (size_t d = 0; d < d_count; ++d) cap += (d ? ", " : "") + std::string("\u201C") + html_escape(domains[d]) + "\u201D";
    cap += ".";
    if (shown.size() < layers.size())
        cap += " Showing " + std::to_string(shown.size()) + " of " + std::to_string(layers.size()) + " layers (" +
               html_escape(layer_list(layers, shown)) + ", evenly spaced) to keep the page small; every layer is in domains.csv.";
    if (pool.block > 1) cap += " Experts are pooled in blocks of " + std::to_string(pool.block) + " (mean ratio).";
    return {"fig-domain", "Domain specialization", render_heatmap(spec), cap};
}

Figure figure_coactivation(const Json& profile) {
    const auto layers = report::layers(profile);
    std::vector<MatrixPanel> candidates;
    for (size_t pos = 0; pos < layers.size(); ++pos)
        if (const Json* m = get(layers[pos], {"specialization", "coactivation"}))
            candidates.push_back({pos, m, layers[pos], "layer " + std::to_string(layer_index(layers[pos], pos))});
    if (candidates.empty() || n_expert(profile) == 0)
        return placeholder_figure("fig-coactivation", "Expert co-activation", "No co-activation matrices in this profile.");
    const double k = n_expert_used(profile), n = double(n_expert(profile));
    const std::string caption =
        "C[i,j] = #{t : i, j \u2208 S<sub>t</sub>} / #{t : i \u2208 S<sub>t</sub>}: of the tokens routed to expert i (row), the "
        "share also routed to expert j (column). Independent uniform routing gives (k\u22121)/(E\u22121) = " +
        (n > 1 ? fmt((k - 1) / (n - 1)) : std::string("n/a")) + ".";
    return matrix_figure(profile, {"fig-coactivation", "Expert co-activation", "C", "expert j (also selected)", "expert i", true},
                         layers, candidates, caption);
}

Figure figure_affinity(const Json& profile) {
    const auto layers = report::layers(profile);
    std::vector<MatrixPanel> candidates;
    for (size_t pos = 0; pos < layers.size(); ++pos) {
        const Json* m = get(layers[pos], {"specialization", "affinity_next", "matrix"});
        if (m == nullptr) continue;
        const bool has_next = pos + 1 < layers.size();
        std::string t = "layer " + std::to_string(layer_index(layers[pos], pos)) + " \xE2\x86\x92 ";
        t += has_next ? std::to_string(layer_index(layers[pos + 1], pos + 1)) : std::string("next");
        candidates.push_back({pos, m, has_next ? layers[pos + 1] : nullptr, t});
    }
    if (candidates.empty() || n_expert(profile) == 0)
        return placeholder_figure("fig-affinity", "Inter-layer affinity",
                                  "No inter-layer affinity in this profile (it needs at least two MoE layers).");
    const double k = n_expert_used(profile), n = double(n_expert(profile));
    const std::string caption =
        "A<sub>l</sub>[i,j]: of the tokens routed to expert i at layer l (row), the share routed to expert j at the next "
        "MoE layer (column); rows sum to k, uniform is k/E = " + (n > 0 ? fmt(k / n) : std::string("n/a")) + ".";
    return matrix_figure(profile, {"fig-affinity", "Inter-layer affinity", "A", "expert j at the next layer", "expert i at layer l", false},
                         layers, candidates, caption);
}

}  // namespace moekit::analysis::report
