// CSV tables of `moekit profile` (report/*.csv), rendered from the profile JSON document
// (docs/PROFILE.md, "CSV tables" says exactly what each file holds). RFC 4180: CRLF line ends, a
// header row, fields quoted when they contain a comma, a double quote, CR or LF (quotes doubled);
// numbers with '.' decimals in the shortest text that round-trips to the same double; an empty
// cell for a null / missing value.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moekit::analysis {

// File name ("layers.csv", ...) -> contents. Every table is present (header only when the
// profile has nothing for it, e.g. domains.csv without domains).
std::map<std::string, std::string> render_csv_tables(const nlohmann::ordered_json& profile);

// One RFC 4180 field / record (exposed for the tests and for other tables).
std::string csv_field(const std::string& value);
std::string csv_record(const std::vector<std::string>& fields);

}  // namespace moekit::analysis
