// Line-chart figures of the profile HTML report: SRP vs segment length, cache hit rates vs cache
// ratio, and gamma_eff per layer (analysis/report_figures.h declares them).
#include <algorithm>
#include <cstdlib>

#include "analysis/report_figures.h"
#include "analysis/report_svg.h"

namespace moekit::analysis::report {
namespace {

double parse_key(const std::string& k) { return std::strtod(k.c_str(), nullptr); }

// Keys such as "4", "16" united over the model level and all layers, numerically sorted.
std::vector<std::string> metric_keys(const Json& profile, const std::vector<const Json*>& layers,
                                     std::initializer_list<const char*> metrics) {
    std::vector<std::string> out;
    for (const char* m : metrics) {
        add_keys(get(profile, {"model_level", "consistency", m}), out);
        for (const Json* l : layers) add_keys(get(get(l, "consistency"), m), out);
    }
    std::vector<std::string> numeric;
    for (const auto& k : out) {
        char* end = nullptr;
        std::strtod(k.c_str(), &end);
        if (!k.empty() && end == k.c_str() + k.size()) numeric.push_back(k);
    }
    std::stable_sort(numeric.begin(), numeric.end(), [](const auto& a, const auto& b) { return parse_key(a) < parse_key(b); });
    return numeric;
}

std::string with_ci(const Interval& iv, int digits = 4) {
    std::string s = fmt(iv.value, digits);
    if (iv.lo && iv.hi) s += " [" + fmt(*iv.lo, digits) + ", " + fmt(*iv.hi, digits) + "]";
    return s;
}

LinePoint point(double x, const Json* v, const std::string& tooltip_prefix) {
    const Interval iv = interval(v);
    LinePoint p;
    p.x = x;
    p.y = iv.value;
    p.lo = iv.lo;
    p.hi = iv.hi;
    p.tooltip = tooltip_prefix + with_ci(iv);
    return p;
}

// Thin per-layer lines are coloured by depth: viridis over the layer's position.
std::string depth_colour(size_t pos, size_t n) { return viridis(n > 1 ? double(pos) / double(n - 1) : 0.5); }

ColorScale depth_legend(const std::vector<const Json*>& layers, const std::string& title) {
    ColorScale s;
    s.lo = 0;
    s.hi = double(std::max<size_t>(layers.size(), 2) - 1);
    s.title = title;
    for (const size_t pos : spread(layers.size(), 3))
        s.ticks.emplace_back(double(pos), layer_label(layer_index(layers[pos], pos)));
    return s;
}

}  // namespace

Figure figure_srp(const Json& profile) {
    const auto layers = report::layers(profile);
    const auto ms = metric_keys(profile, layers, {"srp"});
    if (ms.empty()) return placeholder_figure("fig-srp", "Segment routing best performance", "No SRP values in this profile.");
    LineChartSpec spec;
    spec.log2_x = true;
    for (const auto& m : ms) spec.x_ticks.emplace_back(parse_key(m), m);
    spec.x_label = "segment length m (tokens, log scale)";
    spec.y_label = "SRP \xC3\x97 100";
    spec.y_min = 0.0;
    const size_t n = layers.size();
    for (size_t pos = 0; pos < n; ++pos) {
        const std::string label = layer_label(layer_index(layers[pos], pos));
        LineSeries s;
        s.name = label;
        s.color = depth_colour(pos, n);
        s.width = 1.0;
        s.opacity = n > 1 ? 0.6 : 1.0;
        s.marker = "dot";
        s.x_offset_px = n > 1 ? (double(pos) / double(n - 1) - 0.5) * 14.0 : 0.0;
        s.in_legend = n == 1;
        const Json* srp = get(get(layers[pos], "consistency"), "srp");
        for (const auto& m : ms) {
            const Json* v = get(srp, m);
            LinePoint p = point(parse_key(m), v, label + ", m = " + m + ": SRP ");
            if (const auto a = integer(get(v, "alpha_star"))) p.tooltip += ", \xCE\xB1* = " + std::to_string(*a);
            if (const auto r = number(get(v, "rho_hat"))) p.tooltip += ", \xCF\x81\xCC\x82 = " + fmt(*r);
            s.points.push_back(std::move(p));
        }
        spec.series.push_back(std::move(s));
    }
    const Json* model = get(profile, {"model_level", "consistency", "srp"});
    if (model != nullptr) {
        LineSeries s;
        s.name = "model";
        s.color = "#111111";
        s.width = 2.5;
        for (const auto& m : ms) s.points.push_back(point(parse_key(m), get(model, m), "model, m = " + m + ": SRP "));
        spec.series.push_back(std::move(s));
    }
    if (n > 1) spec.color_legend = depth_legend(layers, "layer (thin lines)");
    spec.description = "Line chart of SRP against segment length, model level and per layer";
    const std::string caption =
        "Segment routing best performance (best F1 of predicting each expert's activity in a window of m tokens "
        "from a threshold on its count in that window), \xC3\x97 100, with 95% bootstrap intervals. Thick black: the "
        "whole model; thin lines: each MoE layer, coloured by depth (nudged sideways so whiskers do not overlap).";
    return {"fig-srp", "Segment routing best performance (SRP)", render_line_chart(spec), caption};
}

Figure figure_sch(const Json& profile) {
    const auto layers = report::layers(profile);
    const auto rhos = metric_keys(profile, layers, {"sch", "lru", "lfu"});
    if (rhos.empty()) return placeholder_figure("fig-sch", "Cache hit rates", "No cache hit rates in this profile.");
    LineChartSpec spec;
    for (const auto& r : rhos) spec.x_ticks.emplace_back(parse_key(r), r);
    spec.x_label = "cache ratio \xCF\x81 (capacity \xCF\x81\xC2\xB7k per layer, \xCF\x81\xC2\xB7L\xC2\xB7k for the model)";
    spec.y_label = "hit rate \xC3\x97 100";
    spec.y_min = 0.0;
    const size_t n = layers.size();
    for (size_t pos = 0; pos < n; ++pos) {
        const std::string label = layer_label(layer_index(layers[pos], pos));
        LineSeries s;
        s.name = label + " SCH";
        s.color = depth_colour(pos, n);
        s.width = 1.0;
        s.opacity = 0.45;
        s.marker = "dot";
        s.in_legend = false;
        const Json* sch = get(get(layers[pos], "consistency"), "sch");
        for (const auto& r : rhos) s.points.push_back(point(parse_key(r), get(sch, r), label + ", \xCF\x81 = " + r + ": SCH "));
        spec.series.push_back(std::move(s));
    }
    struct Kind {
        const char* key;
        const char* name;
        const char* colour;
        const char* marker;
        double offset;
    };
    for (const Kind& kind : {Kind{"sch", "SCH (model)", kBlue, "circle", 0.0}, Kind{"lru", "LRU (model)", kVermillion, "square", -5.0},
                             Kind{"lfu", "LFU (model)", kGreen, "square", 5.0}}) {
        const Json* block = get(profile, {"model_level", "consistency", kind.key});
        if (block == nullptr) continue;
        LineSeries s;
        s.name = kind.name;
        s.color = kind.colour;
        s.width = 2.2;
        s.marker = kind.marker;
        s.x_offset_px = kind.offset;
        for (const auto& r : rhos) {
            LinePoint p = point(parse_key(r), get(block, r), std::string(kind.name) + ", \xCF\x81 = " + r + ": ");
            if (const auto c = number(get(get(block, r), "capacity"))) p.tooltip += ", capacity " + fmt(*c, 8);
            s.points.push_back(std::move(p));
        }
        spec.series.push_back(std::move(s));
    }
    if (n > 0) spec.color_legend = depth_legend(layers, "per-layer SCH (thin)");
    spec.description = "Line chart of cache hit rates against cache ratio";
    const std::string caption =
        "Segment cache best hit rate (SCH: an oracle that evicts the expert needed least in the next m tokens) and what "
        "real LRU and LFU caches of the same capacity achieve, \xC3\x97 100 with 95% bootstrap intervals, for one cache "
        "over all layers' experts (bold) and per layer (thin, SCH only).";
    return {"fig-sch", "Expert cache hit rates", render_line_chart(spec), caption};
}

Figure figure_congestion(const Json& profile) {
    const auto layers = report::layers(profile);
    LineChartSpec spec;
    spec.x_label = "MoE layer (decoder index)";
    spec.y_label = "\xCE\xB3_eff";
    LineSeries single, multi;
    single.name = "single type";
    single.color = kBlue;
    single.x_offset_px = -3;
    multi.name = "multi type";
    multi.color = kOrange;
    multi.marker = "square";
    multi.x_offset_px = 3;
    bool any = false;
    for (size_t pos = 0; pos < layers.size(); ++pos) {
        const int64_t il = layer_index(layers[pos], pos);
        const std::string label = layer_label(il);
        const Json* cong = get(layers[pos], "congestion");
        const Json* s = get(cong, "single");
        const Json* m = get(cong, "multi");
        LinePoint ps = point(double(il), get(s, "gamma"), label + " single-type: \xCE\xB3_eff ");
        ps.tooltip += ", T " + with_ci(interval(get(s, "temperature"))) + ", L1 " + fmt(number(get(s, "l1"))) +
                      " (softmax L1 " + fmt(number(get(s, "softmax_l1"))) + ")";
        LinePoint pm = point(double(il), get(m, "gamma"), label + " multi-type: \xCE\xB3 ");
        pm.tooltip += ", L1 " + fmt(number(get(m, "l1"))) + " (softmax L1 " + fmt(number(get(m, "softmax_l1"))) + ")";
        if (const Json* c = get(m, "converged"); c != nullptr && c->is_boolean())
            pm.tooltip += c->get<bool>() ? ", converged" : ", NOT converged";
        any = any || ps.y || pm.y;
        single.points.push_back(std::move(ps));
        multi.points.push_back(std::move(pm));
        if (layers.size() <= 24) spec.x_ticks.emplace_back(double(il), std::to_string(il));
    }
    if (!any) return placeholder_figure("fig-congestion", "Congestion coefficient", "No \xCE\xB3_eff values in this profile.");
    spec.series = {std::move(single), std::move(multi)};
    spec.description = "Chart of the congestion coefficient gamma_eff per layer";
    const std::string caption =
        "Congestion coefficient per MoE layer with 95% bootstrap intervals. Single type: \xCE\xB3<sub>eff</sub> = "
        "E\xC2\xB7(T\xE2\x88\x92" "1) from the temperature T that best maps softmax(q/T) of the mean centered logits to the "
        "observed load; multi type: the \xCE\xB3 whose logit-choice equilibrium over sampled tokens best fits the load.";
    return {"fig-congestion", "Congestion coefficient \xCE\xB3_eff", render_line_chart(spec), caption};
}

}  // namespace moekit::analysis::report
