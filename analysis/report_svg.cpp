// Inline-SVG heatmaps and line charts for the profile report (analysis/report_svg.h).
#include "analysis/report_svg.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>

namespace moekit::analysis::report {
namespace {

// Pixel coordinates: at most one decimal, no trailing zeros (keeps large heatmaps small).
std::string px(double v) {
    char buf[32];
    const double r = std::round(v * 10.0) / 10.0;
    if (r == std::floor(r))
        std::snprintf(buf, sizeof buf, "%.0f", r);
    else
        std::snprintf(buf, sizeof buf, "%.1f", r);
    return buf;
}

std::string text_el(double x, double y, std::string_view s, const char* anchor = "start", const char* extra = "") {
    return "<text x=\"" + px(x) + "\" y=\"" + px(y) + "\" text-anchor=\"" + anchor + "\"" + extra + ">" +
           html_escape(s) + "</text>";
}

std::string rect_el(double x, double y, double w, double h, const std::string& fill, const std::string& extra = "") {
    return "<rect x=\"" + px(x) + "\" y=\"" + px(y) + "\" width=\"" + px(w) + "\" height=\"" + px(h) +
           "\" fill=\"" + fill + "\"" + extra + "/>";
}

std::string line_el(double x1, double y1, double x2, double y2, const std::string& stroke, double width = 1.0,
                    const std::string& extra = "") {
    return "<line x1=\"" + px(x1) + "\" y1=\"" + px(y1) + "\" x2=\"" + px(x2) + "\" y2=\"" + px(y2) +
           "\" stroke=\"" + stroke + "\" stroke-width=\"" + px(width) + "\"" + extra + "/>";
}

// Smallest "round" step >= need (1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, ...).
size_t label_step(double need) {
    static const std::array<size_t, 9> kBase = {1, 2, 4, 5, 8, 10, 16, 20, 25};
    for (size_t scale = 1;; scale *= 100)
        for (const size_t b : kBase)
            if (double(b * scale) >= need) return b * scale;
}

size_t max_len(const std::vector<std::string>& labels) {
    size_t n = 0;
    for (const auto& s : labels) n = std::max(n, s.size());
    return n;
}

// Vertical colour bar with ticks, plus swatches for no-data / neutral cells. Returns its height.
double colour_legend(std::string& out, const ColorScale& scale, double x, double y, double bar_h,
                     const std::vector<std::pair<std::string, std::string>>& swatches) {
    out += text_el(x, y + 10, scale.title, "start", " font-weight=\"600\"");
    const double top = y + 20;
    const int steps = 40;
    for (int i = 0; i < steps; ++i) {
        const double t0 = double(i) / steps;
        // Bar runs from high (top) to low (bottom).
        out += rect_el(x, top + bar_h * t0, 14, bar_h / steps + 0.5, viridis(1.0 - (t0 + 0.5 / steps)));
    }
    for (const auto& [value, label] : scale.ticks) {
        const double yy = top + bar_h * (1.0 - scale.position(value));
        out += line_el(x + 14, yy, x + 18, yy, "#333");
        out += text_el(x + 21, yy + 3.5, label);
    }
    double yy = top + bar_h + 16;
    for (const auto& [colour, label] : swatches) {
        out += rect_el(x, yy - 9, 14, 10, colour);
        out += text_el(x + 20, yy, label);
        yy += 16;
    }
    return yy - y;
}

}  // namespace

std::string html_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&#39;"; break;
            default:
                if ((static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n') || c == 0x7f)
                    out += "\xEF\xBF\xBD";
                else
                    out += c;
        }
    }
    return out;
}

std::string fmt(double value, int digits) {
    if (!std::isfinite(value)) return "n/a";
    char buf[48];
    std::snprintf(buf, sizeof buf, "%.*g", digits, value);
    return buf;
}

std::string fmt(const std::optional<double>& value, int digits) { return value ? fmt(*value, digits) : "n/a"; }

std::string viridis(double t) {
    // matplotlib's viridis at 0, 1/8, ..., 1.
    static const std::array<std::array<double, 3>, 9> kStops = {{{68, 1, 84},
                                                                 {71, 45, 123},
                                                                 {59, 82, 139},
                                                                 {44, 114, 142},
                                                                 {33, 145, 140},
                                                                 {40, 174, 128},
                                                                 {94, 201, 98},
                                                                 {173, 220, 48},
                                                                 {253, 231, 37}}};
    if (!std::isfinite(t)) t = 0.0;
    t = std::clamp(t, 0.0, 1.0) * 8.0;
    const size_t i = std::min<size_t>(static_cast<size_t>(t), 7);
    const double f = t - double(i);
    char buf[8];
    int rgb[3];
    for (int c = 0; c < 3; ++c)
        rgb[c] = static_cast<int>(std::lround(kStops[i][size_t(c)] * (1 - f) + kStops[i + 1][size_t(c)] * f));
    std::snprintf(buf, sizeof buf, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
    return buf;
}

double ColorScale::position(double value) const {
    double a = lo, b = hi, v = value;
    if (log2) {
        if (!(v > 0)) return 0.0;
        a = std::log2(a);
        b = std::log2(b);
        v = std::log2(v);
    }
    if (!(b > a)) return 0.5;
    return std::clamp((v - a) / (b - a), 0.0, 1.0);
}

std::string ColorScale::color(double value) const { return viridis(position(value)); }

int cell_size(size_t count, double extent, int min, int max) {
    if (count == 0) return max;
    return std::clamp(static_cast<int>(std::floor(extent / double(count))), min, max);
}

std::string render_heatmap(const HeatmapSpec& spec) {
    const double cw = spec.cell_w, ch = spec.cell_h;
    size_t row_chars = 0, col_chars = 0;
    for (const auto& p : spec.panels) {
        row_chars = std::max(row_chars, max_len(p.row_labels));
        col_chars = std::max(col_chars, max_len(p.col_labels));
    }
    const size_t row_step = label_step(11.0 / ch);
    const size_t col_step = label_step((double(col_chars) * 6.2 + 6.0) / cw);
    const double left = 22.0 + double(row_chars) * 6.2 + 6.0, top = 20.0, bottom = 38.0, gap = 26.0;

    const size_t ppr = std::max<size_t>(1, spec.panels_per_row);
    const size_t n_grid_rows = (spec.panels.size() + ppr - 1) / ppr;
    std::vector<double> col_w(ppr, 0.0), row_h(n_grid_rows, 0.0);
    for (size_t p = 0; p < spec.panels.size(); ++p) {
        col_w[p % ppr] = std::max(col_w[p % ppr], left + double(spec.panels[p].cols) * cw);
        row_h[p / ppr] = std::max(row_h[p / ppr], top + double(spec.panels[p].rows) * ch + bottom);
    }
    double grid_w = 0, grid_h = 0;
    for (const double w : col_w) grid_w += w + gap;
    for (const double h : row_h) grid_h += h;

    std::string body;
    double y0 = 0;
    for (size_t gr = 0; gr < n_grid_rows; ++gr) {
        double x0 = 0;
        for (size_t gc = 0; gc < ppr; ++gc) {
            const size_t p = gr * ppr + gc;
            if (p >= spec.panels.size()) break;
            const HeatPanel& panel = spec.panels[p];
            const double ox = x0 + left, oy = y0 + top;
            if (!panel.title.empty()) body += text_el(ox, y0 + 13, panel.title, "start", " font-weight=\"600\"");
            body += "<g class=\"cells\">";
            for (size_t r = 0; r < panel.rows; ++r)
                for (size_t c = 0; c < panel.cols; ++c) {
                    const HeatCell& cell = panel.cells[r * panel.cols + c];
                    const std::string fill = cell.neutral ? kNeutral : cell.value ? spec.scale.color(*cell.value) : kNoData;
                    body += "<rect x=\"" + px(ox + double(c) * cw) + "\" y=\"" + px(oy + double(r) * ch) + "\" width=\"" +
                            px(cw) + "\" height=\"" + px(ch) + "\" fill=\"" + fill + "\"><title>" +
                            html_escape(cell.tooltip) + "</title></rect>";
                }
            body += "</g>";
            for (const size_t r : panel.row_separators)
                body += line_el(ox, oy + double(r) * ch, ox + double(panel.cols) * cw, oy + double(r) * ch, "#fff", 1.5);
            for (size_t r = 0; r < panel.rows && r < panel.row_labels.size(); ++r)
                if (r % row_step == 0 && !panel.row_labels[r].empty())
                    body += text_el(ox - 4, oy + (double(r) + 0.5) * ch + 3.5, panel.row_labels[r], "end", " font-size=\"10\"");
            const double by = oy + double(panel.rows) * ch;
            for (size_t c = 0; c < panel.cols && c < panel.col_labels.size(); ++c)
                if (c % col_step == 0 && !panel.col_labels[c].empty())
                    body += text_el(ox + (double(c) + 0.5) * cw, by + 12, panel.col_labels[c], "middle", " font-size=\"10\"");
            body += text_el(ox + double(panel.cols) * cw / 2, by + 30, spec.x_label, "middle");
            const double cy = oy + double(panel.rows) * ch / 2;
            body += "<text x=\"" + px(x0 + 11) + "\" y=\"" + px(cy) + "\" text-anchor=\"middle\" transform=\"rotate(-90 " +
                    px(x0 + 11) + " " + px(cy) + ")\">" + html_escape(spec.y_label) + "</text>";
            x0 += col_w[gc] + gap;
        }
        y0 += row_h[gr];
    }

    std::vector<std::pair<std::string, std::string>> swatches;
    if (spec.show_no_data) swatches.emplace_back(kNoData, "no data");
    if (!spec.neutral_label.empty()) swatches.emplace_back(kNeutral, spec.neutral_label);
    std::string legend;
    // Tall enough for one tick label per 14 px.
    const double bar_h = std::max(std::clamp(grid_h - 90.0, 90.0, 200.0), 14.0 * double(spec.scale.ticks.size()));
    const double legend_h = colour_legend(legend, spec.scale, grid_w + 4, 4, bar_h, swatches);
    const double width = grid_w + 140, height = std::max(grid_h, legend_h + 8);
    return "<svg class=\"chart\" viewBox=\"0 0 " + px(width) + " " + px(height) + "\" width=\"" + px(width) +
           "\" height=\"" + px(height) + "\" role=\"img\" aria-label=\"" + html_escape(spec.description) + "\">" +
           body + legend + "</svg>";
}

std::vector<double> nice_ticks(double lo, double hi, int count) {
    if (!(hi > lo)) hi = lo + 1.0;
    const double raw = (hi - lo) / std::max(count, 1);
    const double mag = std::pow(10.0, std::floor(std::log10(raw)));
    double step = mag;
    for (const double m : {1.0, 2.0, 2.5, 5.0, 10.0})
        if (m * mag >= raw) {
            step = m * mag;
            break;
        }
    std::vector<double> out;
    for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step)
        out.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
    return out;
}

std::string render_line_chart(const LineChartSpec& spec) {
    const double left = 58, right = 170, top = 12, bottom = 46;
    const double pw = spec.width - left - right, ph = spec.height - top - bottom;
    auto tx = [&](double x) { return spec.log2_x ? std::log2(std::max(x, 1e-300)) : x; };

    // Data ranges.
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (const auto& s : spec.series)
        for (const auto& p : s.points) {
            if (!p.y) continue;
            xmin = std::min(xmin, tx(p.x));
            xmax = std::max(xmax, tx(p.x));
            for (const auto& v : {p.y, p.lo, p.hi})
                if (v) ymin = std::min(ymin, *v), ymax = std::max(ymax, *v);
        }
    for (const auto& [x, label] : spec.x_ticks) xmin = std::min(xmin, tx(x)), xmax = std::max(xmax, tx(x));
    if (!std::isfinite(xmin)) xmin = 0, xmax = 1;
    if (!std::isfinite(ymin)) ymin = 0, ymax = 1;
    if (spec.y_min) ymin = *spec.y_min;
    if (spec.y_max) ymax = *spec.y_max;
    if (!(ymax > ymin)) ymax = ymin + 1;
    const auto yticks = nice_ticks(ymin, ymax, 5);
    if (!spec.y_min) ymin = std::min(ymin, yticks.front());
    if (!spec.y_max) ymax = std::max(ymax, yticks.back());
    const double xpad = xmax > xmin ? (xmax - xmin) * 0.06 : 0.5;
    const double x0 = xmin - xpad, x1 = xmax + xpad;
    auto sx = [&](double x) { return left + (tx(x) - x0) / (x1 - x0) * pw; };
    auto sy = [&](double y) { return top + (1.0 - (y - ymin) / (ymax - ymin)) * ph; };

    std::string out;
    for (const double v : yticks) {
        if (v < ymin - 1e-12 || v > ymax + 1e-12) continue;
        out += line_el(left, sy(v), left + pw, sy(v), "#e6e6e6");
        out += text_el(left - 6, sy(v) + 3.5, fmt(v, 4), "end", " font-size=\"10\"");
    }
    std::vector<std::pair<double, std::string>> xticks = spec.x_ticks;
    if (xticks.empty() && !spec.log2_x)
        for (const double v : nice_ticks(xmin, xmax, 8)) xticks.emplace_back(v, fmt(v, 4));
    for (const auto& [v, label] : xticks) {
        out += line_el(sx(v), top + ph, sx(v), top + ph + 4, "#333");
        out += text_el(sx(v), top + ph + 16, label, "middle", " font-size=\"10\"");
    }
    out += line_el(left, top + ph, left + pw, top + ph, "#333");
    out += line_el(left, top, left, top + ph, "#333");
    out += text_el(left + pw / 2, spec.height - 8.0, spec.x_label, "middle");
    const double cy = top + ph / 2;
    out += "<text x=\"14\" y=\"" + px(cy) + "\" text-anchor=\"middle\" transform=\"rotate(-90 14 " + px(cy) + ")\">" +
           html_escape(spec.y_label) + "</text>";

    for (const auto& s : spec.series) {
        const std::string op = s.opacity < 1.0 ? " opacity=\"" + fmt(s.opacity, 3) + "\"" : "";
        out += "<g" + op + ">";
        std::string d;
        bool pen = false;
        for (const auto& p : s.points) {
            if (!p.y) {
                pen = false;
                continue;
            }
            d += (pen ? "L" : "M") + px(sx(p.x) + s.x_offset_px) + " " + px(sy(*p.y));
            pen = true;
        }
        if (!d.empty())
            out += "<path d=\"" + d + "\" fill=\"none\" stroke=\"" + s.color + "\" stroke-width=\"" + px(s.width) + "\"/>";
        for (const auto& p : s.points) {
            if (!p.y) continue;
            const double x = sx(p.x) + s.x_offset_px, y = sy(*p.y);
            if (p.lo && p.hi) {
                out += line_el(x, sy(*p.lo), x, sy(*p.hi), s.color, std::max(1.0, s.width * 0.7));
                out += line_el(x - 3, sy(*p.lo), x + 3, sy(*p.lo), s.color);
                out += line_el(x - 3, sy(*p.hi), x + 3, sy(*p.hi), s.color);
            }
            const std::string tip = "<title>" + html_escape(p.tooltip) + "</title>";
            if (s.marker == "circle")
                out += "<circle cx=\"" + px(x) + "\" cy=\"" + px(y) + "\" r=\"3.2\" fill=\"" + s.color + "\">" + tip + "</circle>";
            else if (s.marker == "dot")
                out += "<circle cx=\"" + px(x) + "\" cy=\"" + px(y) + "\" r=\"2\" fill=\"" + s.color + "\">" + tip + "</circle>";
            else if (s.marker == "square")
                out += "<rect x=\"" + px(x - 3.2) + "\" y=\"" + px(y - 3.2) + "\" width=\"6.4\" height=\"6.4\" fill=\"" + s.color +
                       "\">" + tip + "</rect>";
        }
        out += "</g>";
    }

    // Legend: one swatch per named series, then the colour bar of the thin lines.
    const double lx = left + pw + 16;
    double ly = top + 8;
    for (const auto& s : spec.series) {
        if (!s.in_legend) continue;
        out += line_el(lx, ly, lx + 22, ly, s.color, std::max(2.0, s.width));
        if (s.marker == "circle") out += "<circle cx=\"" + px(lx + 11) + "\" cy=\"" + px(ly) + "\" r=\"3.2\" fill=\"" + s.color + "\"/>";
        if (s.marker == "square") out += rect_el(lx + 7.8, ly - 3.2, 6.4, 6.4, s.color);
        out += text_el(lx + 28, ly + 4, s.name);
        ly += 18;
    }
    if (spec.color_legend) {
        const ColorScale& cs = *spec.color_legend;
        out += text_el(lx, ly + 10, cs.title, "start", " font-weight=\"600\"");
        const int steps = 24;
        const double bw = 120;
        for (int i = 0; i < steps; ++i)
            out += rect_el(lx + bw * i / steps, ly + 16, bw / steps + 0.5, 10, viridis((i + 0.5) / steps));
        for (const auto& [v, label] : cs.ticks)
            out += text_el(lx + bw * cs.position(v), ly + 38, label, "middle", " font-size=\"10\"");
    }
    return "<svg class=\"chart\" viewBox=\"0 0 " + std::to_string(spec.width) + " " + std::to_string(spec.height) +
           "\" width=\"" + std::to_string(spec.width) + "\" height=\"" + std::to_string(spec.height) +
           "\" role=\"img\" aria-label=\"" + html_escape(spec.description) + "\">" + out + "</svg>";
}

}  // namespace moekit::analysis::report
