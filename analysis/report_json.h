// Read-only accessors over the profile JSON document (docs/PROFILE.md) shared by the CSV and HTML
// renderers. The renderers must accept any document of that shape, including ones with parts
// missing or null (no domains, a last layer without affinity, undefined statistics), so every
// accessor here returns "absent" instead of throwing when a key is missing, null or of the wrong
// type.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace moekit::analysis::report {

using Json = nlohmann::ordered_json;

// j[key], or nullptr when j is not an object, the key is missing or the value is null.
const Json* get(const Json* j, std::string_view key);
const Json* get(const Json& j, std::string_view key);
// Nested lookup: get(get(get(j, a), b), c).
const Json* get(const Json& j, std::initializer_list<std::string_view> path);
const Json* get(const Json* j, std::initializer_list<std::string_view> path);
// j[i], or nullptr when j is not an array, i is out of range or the item is null.
const Json* item(const Json* j, size_t i);
// Items of an array (nullptr entries for null items); empty when j is not an array.
std::vector<const Json*> items(const Json* j);
size_t size(const Json* j);  // array size, 0 otherwise

// A number, or the "value" of an interval object {"value", "ci95"}; nullopt otherwise.
std::optional<double> number(const Json* j);
std::optional<int64_t> integer(const Json* j);  // integral numbers only

// {"value": v, "ci95": [lo, hi]} or a bare number (lo/hi absent then).
struct Interval {
    std::optional<double> value, lo, hi;
};
Interval interval(const Json* j);

// Strings as they are, numbers via format_number, booleans "true"/"false", "" otherwise.
std::string text(const Json* j);

// Shortest decimal text that parses back to the same double ('.' decimal point, no locale);
// integral values within 2^53 print without exponent or fraction. Non-finite values give "".
std::string format_number(double value);

// Domain names from data.domains[].name (a domain without a name is called "domain <i>").
std::vector<std::string> domain_names(const Json& profile);
// model.n_expert, or the longest layers[].load.counts when the model block lacks it.
int64_t n_expert(const Json& profile);
// The MoE layer objects of profile.layers (null entries dropped).
std::vector<const Json*> layers(const Json& profile);
// A layer's decoder index ("layer"), falling back to its position.
int64_t layer_index(const Json* layer, size_t position);

// Keys of an object in document order ("4", "16", ... for srp), optionally united over several
// objects (first appearance wins the order).
std::vector<std::string> keys(const Json* j);
void add_keys(const Json* j, std::vector<std::string>& into);

}  // namespace moekit::analysis::report
