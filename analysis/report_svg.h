// Inline-SVG chart primitives for the `moekit profile` HTML report (analysis/report_html): heatmaps
// with per-cell <title> tooltips and a colour-bar legend, and line charts with CI whiskers. No
// scripts, no external resources, no ids (so several charts can share one page); every piece of
// text passes through html_escape. Colours: viridis (colour-blind safe, perceptually uniform)
// approximated by 9 stops for sequential scales, Okabe-Ito for categorical series.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moekit::analysis::report {

// Escapes & < > " ' for text and attribute values; control characters other than tab/newline
// (which HTML cannot carry) become U+FFFD.
std::string html_escape(std::string_view text);

// Display numbers: `digits` significant digits ("%.*g"), "n/a" when absent.
std::string fmt(double value, int digits = 4);
std::string fmt(const std::optional<double>& value, int digits = 4);

// t in [0, 1] (clamped) -> "#rrggbb" on viridis.
std::string viridis(double t);

// Okabe-Ito colours for categorical series.
inline constexpr const char* kBlue = "#0072B2";
inline constexpr const char* kOrange = "#E69F00";
inline constexpr const char* kVermillion = "#D55E00";
inline constexpr const char* kGreen = "#009E73";
inline constexpr const char* kNoData = "#d9d9d9";   // cells without a value
inline constexpr const char* kNeutral = "#9e9e9e";  // cells deliberately not coloured (diagonal)

// Maps values to viridis: linear on [lo, hi] or log2 on [lo, hi] (lo > 0; values <= 0 clamp low).
struct ColorScale {
    bool log2 = false;
    double lo = 0.0, hi = 1.0;
    std::string title;                                 // legend title
    std::vector<std::pair<double, std::string>> ticks; // legend ticks (value, label)
    double position(double value) const;               // 0..1
    std::string color(double value) const;
};

struct HeatCell {
    std::optional<double> value;  // absent: drawn in kNoData
    std::string tooltip;          // plain text (escaped when rendered)
    bool neutral = false;         // drawn in kNeutral (e.g. a co-activation diagonal)
};

struct HeatPanel {
    std::string title;
    size_t rows = 0, cols = 0;
    std::vector<HeatCell> cells;          // row-major, rows * cols
    std::vector<std::string> row_labels;  // rows entries ("" = none); thinned when cells are small
    std::vector<std::string> col_labels;  // cols entries
    std::vector<size_t> row_separators;   // a white rule above these rows (groups of rows)
};

struct HeatmapSpec {
    std::vector<HeatPanel> panels;
    std::string x_label, y_label;
    ColorScale scale;
    int cell_w = 10, cell_h = 10;         // pixels
    size_t panels_per_row = 1;
    std::string neutral_label;            // legend entry for neutral cells ("" = none)
    bool show_no_data = true;             // legend entry for missing values
    std::string description;              // aria-label of the <svg>
};

// One <svg>; each panel's cells are the <rect> children of one <g class="cells">.
std::string render_heatmap(const HeatmapSpec& spec);

// Cell size (pixels) that fits `count` cells into `extent` pixels, clamped to [min, max].
int cell_size(size_t count, double extent, int min, int max);

struct LinePoint {
    double x = 0.0;
    std::optional<double> y, lo, hi;      // lo/hi: whisker, drawn when both are present
    std::string tooltip;
};

struct LineSeries {
    std::string name;
    std::string color = kBlue;
    double width = 1.5;
    double opacity = 1.0;
    std::string marker = "circle";        // "circle", "square", "dot" (small circle) or "" (none)
    double x_offset_px = 0.0;             // nudges markers/whiskers apart when series share x
    bool in_legend = true;
    std::vector<LinePoint> points;        // an absent y breaks the line
};

struct LineChartSpec {
    std::string x_label, y_label;
    bool log2_x = false;
    std::vector<std::pair<double, std::string>> x_ticks;  // empty: automatic
    std::optional<double> y_min, y_max;                   // absent: from the data (nice bounds)
    std::vector<LineSeries> series;
    std::optional<ColorScale> color_legend;               // e.g. layer depth of the thin lines
    int width = 900, height = 360;
    std::string description;
};

std::string render_line_chart(const LineChartSpec& spec);

// Round numbers for axis ticks covering [lo, hi] (about `count` of them).
std::vector<double> nice_ticks(double lo, double hi, int count);

}  // namespace moekit::analysis::report
