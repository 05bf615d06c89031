// Normalizers of tokenizer.json. Only the normalized text matters for ids, so no alignment
// tracking is kept.
#include "core/error.h"
#include "io/tokenizer_impl.h"

namespace moekit::io::tok {

namespace {

class Sequence final : public Normalizer {
public:
    std::vector<std::unique_ptr<Normalizer>> items;
    void normalize(std::string& s) const override {
        for (const auto& n : items) n->normalize(s);
    }
};

class UnicodeForm final : public Normalizer {
public:
    explicit UnicodeForm(std::string form) : form_(std::move(form)) {}
    void normalize(std::string& s) const override { unicode_normalize(s, form_); }

private:
    std::string form_;
};

class Lowercase final : public Normalizer {
public:
    void normalize(std::string& s) const override { lowercase(s); }
};

class Prepend final : public Normalizer {
public:
    explicit Prepend(std::string p) : prepend_(std::move(p)) {}
    void normalize(std::string& s) const override {
        if (!s.empty()) s.insert(0, prepend_);
    }

private:
    std::string prepend_;
};

class Replace final : public Normalizer {
public:
    Replace(std::unique_ptr<Regex> re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
    void normalize(std::string& s) const override {
        thread_local std::vector<std::pair<size_t, size_t>> m;
        m.clear();
        re_->find_all(s, m);
        if (m.empty()) return;
        std::string out;
        out.reserve(s.size() + m.size() * content_.size());
        size_t prev = 0;
        for (auto [a, b] : m) {
            out.append(s, prev, a - prev);
            out += content_;
            prev = b;
        }
        out.append(s, prev, std::string::npos);
        s = std::move(out);
    }

private:
    std::unique_ptr<Regex> re_;
    std::string content_;
};

class Strip final : public Normalizer {
public:
    Strip(bool left, bool right) : left_(left), right_(right) {}
    void normalize(std::string& s) const override {
        size_t b = 0, e = s.size();
        if (left_) {
            while (b < e) {
                size_t i = b;
                if (!is_whitespace(next_cp(s, i))) break;
                b = i;
            }
        }
        if (right_) {
            while (e > b) {
                char32_t c = prev_cp(s, e);
                if (!is_whitespace(c)) break;
                size_t n = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
                e -= n;
            }
        }
        s = s.substr(b, e - b);
    }

private:
    bool left_, right_;
};

class StripAccents final : public Normalizer {
public:
    void normalize(std::string& s) const override {
        std::string out;
        out.reserve(s.size());
        size_t i = 0;
        while (i < s.size()) {
            size_t b = i;
            char32_t c = next_cp(s, i);
            if (!is_combining_mark(c)) out.append(s, b, i - b);
        }
        s = std::move(out);
    }
};

class ByteLevelNorm final : public Normalizer {
public:
    void normalize(std::string& s) const override {
        std::string out;
        out.reserve(s.size() * 2);
        for (char ch : s) out += byte_to_char_utf8(static_cast<unsigned char>(ch));
        s = std::move(out);
    }
};

std::string get_string(const Json& j, const char* key, const std::string& where) {
    if (!j.contains(key) || !j[key].is_string()) {
        throw Error("tokenizer", where + ": missing or non-string field '" + key + "'");
    }
    return j[key].get<std::string>();
}

}  // namespace

std::unique_ptr<Regex> make_pattern(const Json& pattern, const std::string& where) {
    if (pattern.is_object() && pattern.contains("String") && pattern["String"].is_string()) {
        return std::make_unique<Regex>(escape_regex(pattern["String"].get<std::string>()), where);
    }
    if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string()) {
        return std::make_unique<Regex>(pattern["Regex"].get<std::string>(), where);
    }
    throw Error("tokenizer", where + ": pattern " + pattern.dump() + " is neither {\"String\": ...} nor {\"Regex\": ...}");
}

std::unique_ptr<Normalizer> make_normalizer(const Json& j, const std::string& file) {
    if (j.is_null()) return nullptr;
    const std::string type = component_type(j, file, "normalizer");
    std::string where = file + ": normalizer " + type;
    if (type == "Sequence") {
        auto seq = std::make_unique<Sequence>();
        if (!j.contains("normalizers") || !j["normalizers"].is_array()) {
            throw Error("tokenizer", where + ": missing \"normalizers\" array");
        }
        for (const Json& item : j["normalizers"]) {
            if (auto n = make_normalizer(item, file)) seq->items.push_back(std::move(n));
        }
        return seq;
    }
    if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") return std::make_unique<UnicodeForm>(type);
    if (type == "Lowercase") return std::make_unique<Lowercase>();
    if (type == "Prepend") return std::make_unique<Prepend>(get_string(j, "prepend", where));
    if (type == "Replace") {
        if (!j.contains("pattern")) throw Error("tokenizer", where + ": missing \"pattern\"");
        return std::make_unique<Replace>(make_pattern(j["pattern"], where), get_string(j, "content", where));
    }
    if (type == "Strip") {
        return std::make_unique<Strip>(j.value("strip_left", true), j.value("strip_right", true));
    }
    if (type == "StripAccents") return std::make_unique<StripAccents>();
    if (type == "ByteLevel") return std::make_unique<ByteLevelNorm>();
    throw Error("tokenizer", file + ": normalizer type '" + type +
                                 "' is not supported (supported: NFC, NFD, NFKC, NFKD, Lowercase, Prepend, "
                                 "Replace, Strip, StripAccents, ByteLevel, Sequence)");
}

}  // namespace moekit::io::tok
