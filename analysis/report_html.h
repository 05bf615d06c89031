// The `moekit profile` HTML report (report/index.html): one self-contained, offline page rendered
// from the profile JSON document (docs/PROFILE.md): title, summary, a per-layer table with 95%
// intervals and inline SVG figures (analysis/report_figures.h). No scripts, fonts or external
// resources; every string taken from the JSON is HTML-escaped.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moekit::analysis {

std::string render_html(const nlohmann::ordered_json& profile);

// The <figure id>s every rendered page has, in page order (a figure without data shows a
// framed message instead of a chart). scripts/check_report_html.py checks the same list.
const std::vector<std::string>& report_figure_ids();

}  // namespace moekit::analysis
