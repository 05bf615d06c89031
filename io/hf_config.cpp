// config.json: loading and typed getters whose errors name the field and the file.
#include "io/hf_config.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace moekit::io {
namespace {

[[noreturn]] void fail(const fs::path& source, const std::string& message) {
    throw Error("config", source.string() + ": " + message);
}

std::string describe(const nlohmann::ordered_json& value) {
    std::string text = value.dump(-1, ' ', true, nlohmann::ordered_json::error_handler_t::replace);
    if (text.size() > 40) text = text.substr(0, 37) + "...";
    return std::string(value.type_name()) + " " + text;
}

}  // namespace

HfConfig HfConfig::load(const fs::path& file) {
    std::error_code ec;
    if (fs::is_directory(file, ec)) fail(file, "is a directory, expected a JSON file");
    std::ifstream in(file, std::ios::binary);
    if (!in) fail(file, "cannot read (missing or unreadable)");
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) fail(file, "read error");
    nlohmann::ordered_json json;
    try {
        json = nlohmann::ordered_json::parse(text.str());
    } catch (const nlohmann::ordered_json::exception& e) {
        fail(file, std::string("invalid JSON: ") + e.what());
    }
    return from_json(std::move(json), file);
}

HfConfig HfConfig::from_json(nlohmann::ordered_json json, fs::path source) {
    if (!json.is_object()) fail(source, std::string("expected a JSON object, got ") + json.type_name());
    HfConfig config;
    config.json_ = std::move(json);
    config.source_ = std::move(source);
    return config;
}

bool HfConfig::has(std::string_view key) const {
    const auto it = json_.find(key);
    return it != json_.end() && !it->is_null();
}

std::optional<int64_t> HfConfig::get_int_opt(std::string_view key) const {
    const auto it = json_.find(key);
    if (it == json_.end() || it->is_null()) return std::nullopt;
    const auto& value = *it;
    const std::string field(key);
    if (value.is_number_unsigned()) {
        const uint64_t v = value.get<uint64_t>();
        if (v > uint64_t(INT64_MAX)) fail(source_, "field '" + field + "' is too large: " + value.dump());
        return int64_t(v);
    }
    if (value.is_number_integer()) return value.get<int64_t>();
    if (value.is_number_float()) {
        // Some exporters write 4096.0; accept a float only when it is exactly an integer.
        const double v = value.get<double>();
        if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9.0e18) return int64_t(v);
    }
    fail(source_, "field '" + field + "' must be an integer, got " + describe(value));
}

int64_t HfConfig::get_int(std::string_view key) const {
    const auto value = get_int_opt(key);
    if (!value) fail(source_, "missing required field '" + std::string(key) + "'");
    return *value;
}

int64_t HfConfig::get_int_or(std::string_view key, int64_t fallback) const {
    return get_int_opt(key).value_or(fallback);
}

double HfConfig::get_double_or(std::string_view key, double fallback) const {
    const auto it = json_.find(key);
    if (it == json_.end() || it->is_null()) return fallback;
    if (!it->is_number()) fail(source_, "field '" + std::string(key) + "' must be a number, got " + describe(*it));
    return it->get<double>();
}

bool HfConfig::get_bool_or(std::string_view key, bool fallback) const {
    const auto it = json_.find(key);
    if (it == json_.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) fail(source_, "field '" + std::string(key) + "' must be a boolean, got " + describe(*it));
    return it->get<bool>();
}

std::string HfConfig::get_string(std::string_view key) const {
    const auto it = json_.find(key);
    if (it == json_.end() || it->is_null()) fail(source_, "missing required field '" + std::string(key) + "'");
    if (!it->is_string()) fail(source_, "field '" + std::string(key) + "' must be a string, got " + describe(*it));
    return it->get<std::string>();
}

std::string HfConfig::get_string_or(std::string_view key, std::string fallback) const {
    const auto it = json_.find(key);
    if (it == json_.end() || it->is_null()) return fallback;
    if (!it->is_string()) fail(source_, "field '" + std::string(key) + "' must be a string, got " + describe(*it));
    return it->get<std::string>();
}

}  // namespace moekit::io
