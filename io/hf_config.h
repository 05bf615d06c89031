// config.json of a Hugging Face checkpoint. Kept as an order-preserving JSON document so that
// a rewritten config keeps every field it had; typed getters name the missing or mistyped
// field in their errors.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace moekit::io {

namespace fs = std::filesystem;

class HfConfig {
public:
    static HfConfig load(const fs::path& file);
    static HfConfig from_json(nlohmann::ordered_json json, fs::path source = "config.json");

    const nlohmann::ordered_json& json() const { return json_; }
    const fs::path& source() const { return source_; }

    bool has(std::string_view key) const;  // present and not null
    int64_t get_int(std::string_view key) const;   // required
    std::optional<int64_t> get_int_opt(std::string_view key) const;
    int64_t get_int_or(std::string_view key, int64_t fallback) const;
    double get_double_or(std::string_view key, double fallback) const;
    bool get_bool_or(std::string_view key, bool fallback) const;
    std::string get_string(std::string_view key) const;  // required
    std::string get_string_or(std::string_view key, std::string fallback) const;

private:
    nlohmann::ordered_json json_;
    fs::path source_;
};

}  // namespace moekit::io
