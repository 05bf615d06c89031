// Human-readable numbers for terminal output ("1.23 M", "4.9 MiB", "0-3, 5").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moekit::core {

std::string human_count(double value);     // 1234567 -> "1.23 M"
std::string human_bytes(double bytes);     // binary units: "4.91 MiB"
std::string percent(double fraction, int decimals = 1);  // 0.366 -> "36.6%"
// Compresses sorted indices into ranges: {0,1,2,5} -> "0-2, 5"; empty -> "none".
std::string index_ranges(const std::vector<int64_t>& sorted);
// One number through a printf format: fmt("%.3f", 0.5) -> "0.500".
std::string fmt(const char* printf_format, double value);
// Decimal megabytes with two decimals, as the command reports print sizes: "8.93 MB".
std::string megabytes(uint64_t bytes);

}  // namespace moekit::core
