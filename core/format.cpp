// Human-readable number formatting for terminal output.
#include "core/format.h"

#include <array>
#include <cmath>
#include <cstdio>

namespace moekit::core {
namespace {

std::string scaled(double value, double base, const std::array<const char*, 6>& units) {
    std::size_t unit = 0;
    double magnitude = std::fabs(value);
    while (magnitude >= base && unit + 1 < units.size()) {
        magnitude /= base;
        value /= base;
        ++unit;
    }
    char buf[48];
    if (unit == 0 && value == std::floor(value))
        std::snprintf(buf, sizeof buf, "%.0f%s%s", value, units[0][0] ? " " : "", units[0]);
    else
        std::snprintf(buf, sizeof buf, magnitude >= 100 ? "%.1f %s" : "%.2f %s", value, units[unit]);
    return buf;
}

}  // namespace

std::string human_count(double value) { return scaled(value, 1000.0, {"", "K", "M", "B", "T", "P"}); }

std::string human_bytes(double bytes) { return scaled(bytes, 1024.0, {"B", "KiB", "MiB", "GiB", "TiB", "PiB"}); }

std::string percent(double fraction, int decimals) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*f%%", decimals, fraction * 100.0);
    return buf;
}

std::string index_ranges(const std::vector<int64_t>& sorted) {
    if (sorted.empty()) return "none";
    std::string out;
    std::size_t i = 0;
    while (i < sorted.size()) {
        std::size_t j = i;
        while (j + 1 < sorted.size() && sorted[j + 1] == sorted[j] + 1) ++j;
        if (!out.empty()) out += ", ";
        out += std::to_string(sorted[i]);
        if (j > i) out += "-" + std::to_string(sorted[j]);
        i = j + 1;
    }
    return out;
}

std::string fmt(const char* printf_format, double value) {
    char buf[64];
    std::snprintf(buf, sizeof buf, printf_format, value);
    return buf;
}

std::string megabytes(uint64_t bytes) { return fmt("%.2f MB", static_cast<double>(bytes) / 1e6); }

}  // namespace moekit::core
