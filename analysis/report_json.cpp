// Tolerant accessors over the profile JSON document (analysis/report_json.h).
#include "analysis/report_json.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace moekit::analysis::report {

const Json* get(const Json* j, std::string_view key) {
    if (j == nullptr || !j->is_object()) return nullptr;
    const auto it = j->find(std::string(key));
    if (it == j->end() || it->is_null()) return nullptr;
    return &*it;
}

const Json* get(const Json& j, std::string_view key) { return get(&j, key); }

const Json* get(const Json& j, std::initializer_list<std::string_view> path) { return get(&j, path); }

const Json* get(const Json* j, std::initializer_list<std::string_view> path) {
    const Json* cur = j;
    for (const auto key : path) {
        cur = get(cur, key);
        if (cur == nullptr) return nullptr;
    }
    return cur;
}

const Json* item(const Json* j, size_t i) {
    if (j == nullptr || !j->is_array() || i >= j->size()) return nullptr;
    const Json& v = (*j)[i];
    return v.is_null() ? nullptr : &v;
}

std::vector<const Json*> items(const Json* j) {
    std::vector<const Json*> out;
    if (j == nullptr || !j->is_array()) return out;
    out.reserve(j->size());
    for (const auto& v : *j) out.push_back(v.is_null() ? nullptr : &v);
    return out;
}

size_t size(const Json* j) { return j != nullptr && j->is_array() ? j->size() : 0; }

std::optional<double> number(const Json* j) {
    if (j == nullptr) return std::nullopt;
    if (j->is_number()) {
        const double v = j->get<double>();
        return std::isfinite(v) ? std::optional<double>(v) : std::nullopt;
    }
    if (j->is_object()) return number(get(j, "value"));
    return std::nullopt;
}

std::optional<int64_t> integer(const Json* j) {
    if (j == nullptr) return std::nullopt;
    if (j->is_number_integer()) return j->get<int64_t>();
    if (j->is_number_float()) {
        const double v = j->get<double>();
        if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9.0e15) return static_cast<int64_t>(v);
    }
    return std::nullopt;
}

Interval interval(const Json* j) {
    Interval out;
    out.value = number(j);
    const Json* ci = get(j, "ci95");
    if (size(ci) == 2) {
        out.lo = number(item(ci, 0));
        out.hi = number(item(ci, 1));
    }
    return out;
}

std::string format_number(double value) {
    if (!std::isfinite(value)) return "";
    if (value == std::floor(value) && std::fabs(value) <= 9007199254740992.0) {
        char buf[32];
        const auto r = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(value));
        return std::string(buf, r.ptr);
    }
    char buf[64];
    // std::to_chars without a format is the shortest representation that round-trips.
    const auto r = std::to_chars(buf, buf + sizeof buf, value);
    return std::string(buf, r.ptr);
}

std::string text(const Json* j) {
    if (j == nullptr) return "";
    if (j->is_string()) return j->get<std::string>();
    if (j->is_boolean()) return j->get<bool>() ? "true" : "false";
    if (j->is_number_integer()) return std::to_string(j->get<int64_t>());
    if (j->is_number_unsigned()) return std::to_string(j->get<uint64_t>());
    if (j->is_number_float()) return format_number(j->get<double>());
    return "";
}

std::vector<std::string> domain_names(const Json& profile) {
    std::vector<std::string> out;
    const auto list = items(get(profile, {"data", "domains"}));
    for (size_t i = 0; i < list.size(); ++i) {
        std::string name = text(get(list[i], "name"));
        if (name.empty()) name = "domain " + std::to_string(i);
        out.push_back(std::move(name));
    }
    return out;
}

std::vector<const Json*> layers(const Json& profile) {
    std::vector<const Json*> out;
    for (const Json* l : items(get(profile, "layers")))
        if (l != nullptr && l->is_object()) out.push_back(l);
    return out;
}

int64_t n_expert(const Json& profile) {
    if (const auto e = integer(get(profile, {"model", "n_expert"})); e && *e > 0) return *e;
    size_t e = 0;
    for (const Json* l : layers(profile)) e = std::max(e, size(get(get(l, "load"), "counts")));
    return static_cast<int64_t>(e);
}

int64_t layer_index(const Json* layer, size_t position) {
    if (const auto il = integer(get(layer, "layer"))) return *il;
    return static_cast<int64_t>(position);
}

void add_keys(const Json* j, std::vector<std::string>& into) {
    if (j == nullptr || !j->is_object()) return;
    for (auto it = j->begin(); it != j->end(); ++it)
        if (std::find(into.begin(), into.end(), it.key()) == into.end()) into.push_back(it.key());
}

std::vector<std::string> keys(const Json* j) {
    std::vector<std::string> out;
    add_keys(j, out);
    return out;
}

}  // namespace moekit::analysis::report
