// The figures of the `moekit profile` HTML report, each built from the profile JSON document
// (docs/PROFILE.md) with the primitives of analysis/report_svg.h. Page-size caps live here, so a
// 64-layer x 256-expert model still gives a page of a few MB; what was left out or pooled is said
// in the figure's caption (the CSV tables always hold everything).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "analysis/report_json.h"

namespace moekit::analysis::report {

inline constexpr size_t kMaxHeatCells = 16384;   // load heatmap (64 layers x 256 experts fit)
inline constexpr size_t kMaxDomainCells = 8192;  // domain heatmap: fewer layers beyond
inline constexpr size_t kMaxMatrixSide = 48;     // co-activation / affinity: the busiest experts beyond
inline constexpr size_t kMaxMatrixPanels = 4;    // layers shown in those figures

struct Figure {
    std::string id;            // "fig-load", ...
    std::string title;         // plain text
    std::string svg;           // one <svg> element
    std::string caption_html;  // already escaped HTML
};

Figure figure_load(const Json& profile);
Figure figure_domain(const Json& profile);
Figure figure_coactivation(const Json& profile);
Figure figure_affinity(const Json& profile);
Figure figure_srp(const Json& profile);
Figure figure_sch(const Json& profile);
Figure figure_congestion(const Json& profile);

// A figure that says why there is nothing to draw (a framed message; still one <svg>).
Figure placeholder_figure(const char* id, const char* title, const std::string& message);

// Up to `count` positions out of n, evenly spaced, always including the first and the last.
std::vector<size_t> spread(size_t n, size_t count);

// Key of an object whose number equals `value` ("16" for 16), or "" when none does.
std::string numeric_key(const Json* object, double value);

// Layer label used on every figure and table: "L<decoder index>".
std::string layer_label(int64_t il);

}  // namespace moekit::analysis::report
