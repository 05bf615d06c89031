// Pre-tokenizers of tokenizer.json: ByteLevel, Split, Digits, Metaspace, Whitespace,
// WhitespaceSplit, Punctuation, CharDelimiterSplit, BertPreTokenizer, Sequence.
#include "core/error.h"
#include "io/tokenizer_impl.h"

namespace moekit::io::tok {

namespace {

constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct ByteTable {
    std::string to_char[256];
    std::unordered_map<char32_t, int> from_char;
    ByteTable() {
        std::vector<int> bs;
        for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
        for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
        for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
        std::vector<bool> direct(256, false);
        for (int b : bs) direct[b] = true;
        int n = 0;
        for (int b = 0; b < 256; ++b) {
            char32_t cp = direct[b] ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
            append_utf8(to_char[b], cp);
            from_char[cp] = b;
        }
    }
};

const ByteTable& byte_table() {
    static const ByteTable table;
    return table;
}

// Runs `fn(piece, out)` on every piece that is not an added token.
template <class Fn>
void for_each_split(std::vector<Piece>& pieces, Fn&& fn) {
    std::vector<Piece> out;
    out.reserve(pieces.size() * 2);
    for (Piece& p : pieces) {
        if (p.id >= 0) out.push_back(std::move(p));
        else fn(p, out);
    }
    pieces = std::move(out);
}

void emit_ranges(const Piece& p, const std::vector<std::pair<size_t, size_t>>& ranges, std::vector<Piece>& out) {
    for (auto [s, e] : ranges) out.push_back(Piece{p.text.substr(s, e - s), -1, p.origin > s ? p.origin - s : 0});
}

// Splits by spans computed by `spans_of(text, spans)`, then applies behavior (+ invert).
template <class SpansOf>
void split_pieces(std::vector<Piece>& pieces, SpansOf&& spans_of, SplitBehavior behavior, bool invert) {
    std::vector<Span> spans;
    std::vector<std::pair<size_t, size_t>> ranges;
    for_each_split(pieces, [&](Piece& p, std::vector<Piece>& out) {
        spans_of(std::string_view(p.text), spans);
        if (invert) {
            for (Span& s : spans) s.is_match = !s.is_match;
        }
        ranges.clear();
        apply_behavior(spans, behavior, ranges);
        if (ranges.size() == 1 && ranges[0].first == 0 && ranges[0].second == p.text.size()) {
            out.push_back(std::move(p));
            return;
        }
        emit_ranges(p, ranges, out);
    });
}

class Sequence final : public PreTokenizer {
public:
    std::vector<std::unique_ptr<PreTokenizer>> items;
    void pre_tokenize(std::vector<Piece>& pieces) const override {
        for (const auto& it : items) it->pre_tokenize(pieces);
    }
};

class ByteLevel final : public PreTokenizer {
public:
    ByteLevel(bool add_prefix_space, bool use_regex, const std::string& where)
        : add_prefix_space_(add_prefix_space), re_(use_regex ? std::make_unique<Regex>(kGpt2Pattern, where) : nullptr) {}
    void pre_tokenize(std::vector<Piece>& pieces) const override {
        if (add_prefix_space_) {
            for (Piece& p : pieces) {
                if (p.id < 0 && !p.text.empty() && p.text[0] != ' ') {
                    p.text.insert(0, 1, ' ');
                    if (p.origin > 0) ++p.origin;
                }
            }
        }
        if (re_) split_pieces(pieces, [&](std::string_view t, std::vector<Span>& s) { regex_spans(*re_, t, s); },
                              SplitBehavior::Isolated, false);
        const ByteTable& table = byte_table();
        std::string mapped;
        for (Piece& p : pieces) {
            if (p.id >= 0) continue;
            mapped.clear();
            size_t origin = 0;
            for (size_t i = 0; i < p.text.size(); ++i) {
                mapped += table.to_char[static_cast<unsigned char>(p.text[i])];
                if (i + 1 == p.origin) origin = mapped.size();
            }
            p.text.swap(mapped);
            p.origin = origin;
        }
    }

private:
    bool add_prefix_space_;
    std::unique_ptr<Regex> re_;
};

class SplitPre final : public PreTokenizer {
public:
    SplitPre(std::unique_ptr<Regex> re, SplitBehavior b, bool invert) : re_(std::move(re)), behavior_(b), invert_(invert) {}
    void pre_tokenize(std::vector<Piece>& pieces) const override {
        split_pieces(pieces, [&](std::string_view t, std::vector<Span>& s) { regex_spans(*re_, t, s); }, behavior_,
                     invert_);
    }

private:
    std::unique_ptr<Regex> re_;
    SplitBehavior behavior_;
    bool invert_;
};

template <class Pred>
class CharSplit final : public PreTokenizer {
public:
    CharSplit(Pred pred, SplitBehavior b) : pred_(pred), behavior_(b) {}
    void pre_tokenize(std::vector<Piece>& pieces) const override {
        split_pieces(pieces, [&](std::string_view t, std::vector<Span>& s) { char_spans(pred_, t, s); }, behavior_,
                     false);
    }

private:
    Pred pred_;
    SplitBehavior behavior_;
};
template <class Pred>
std::unique_ptr<PreTokenizer> char_split(Pred pred, SplitBehavior b) {
    return std::make_unique<CharSplit<Pred>>(pred, b);
}

enum class Prepend { Always, First, Never };

class Metaspace final : public PreTokenizer {
public:
    Metaspace(char32_t replacement, Prepend scheme, bool split) : replacement_(replacement), scheme_(scheme), split_(split) {
        append_utf8(rep_, replacement);
    }
    void pre_tokenize(std::vector<Piece>& pieces) const override {
        for (Piece& p : pieces) {
            if (p.id >= 0) continue;
            if (p.text.find(' ') != std::string::npos) {
                std::string out;
                out.reserve(p.text.size() + 8);
                size_t origin = 0;
                for (size_t i = 0; i < p.text.size(); ++i) {
                    if (p.text[i] == ' ') out += rep_;
                    else out += p.text[i];
                    if (i + 1 == p.origin) origin = out.size();
                }
                p.text.swap(out);
                p.origin = origin;
            }
            bool starts = p.text.compare(0, rep_.size(), rep_) == 0;
            if (!starts && (scheme_ == Prepend::Always || (scheme_ == Prepend::First && p.origin > 0))) {
                p.text.insert(0, rep_);
                if (p.origin > 0) p.origin += rep_.size();
            }
        }
        if (split_) {
            char32_t r = replacement_;
            split_pieces(pieces, [r](std::string_view t, std::vector<Span>& s) {
                char_spans([r](char32_t c) { return c == r; }, t, s);
            }, SplitBehavior::MergedWithNext, false);
        }
    }

private:
    char32_t replacement_;
    std::string rep_;
    Prepend scheme_;
    bool split_;
};

// tokenizers' Whitespace uses the regex crate's \w+|[^\w\s]+, whose \w differs from Oniguruma's.
constexpr std::string_view kWhitespacePattern =
    R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]+|[^\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}\s]+)";

char32_t single_char(const Json& j, const char* key, const std::string& where) {
    std::string s = j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
    size_t i = 0;
    if (s.empty()) throw Error("tokenizer", where + ": missing field '" + key + "'");
    char32_t c = next_cp(s, i);
    if (i != s.size()) throw Error("tokenizer", where + ": field '" + key + "' must be a single character");
    return c;
}

}  // namespace

const std::string& byte_to_char_utf8(unsigned char b) { return byte_table().to_char[b]; }

int byte_from_char(char32_t c) {
    const auto& m = byte_table().from_char;
    auto it = m.find(c);
    return it == m.end() ? -1 : it->second;
}

std::string component_type(const Json& j, const std::string& file, std::string_view kind) {
    if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
        throw Error("tokenizer", file + ": " + std::string(kind) + " without a \"type\"");
    return j["type"].get<std::string>();
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const Json& j, const std::string& file) {
    if (j.is_null()) return nullptr;
    const std::string type = component_type(j, file, "pre_tokenizer");
    std::string where = file + ": pre_tokenizer " + type;
    if (type == "Sequence") {
        auto seq = std::make_unique<Sequence>();
        if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array()) {
            throw Error("tokenizer", where + ": missing \"pretokenizers\" array");
        }
        for (const Json& item : j["pretokenizers"]) {
            if (auto p = make_pre_tokenizer(item, file)) seq->items.push_back(std::move(p));
        }
        return seq;
    }
    if (type == "ByteLevel") return std::make_unique<ByteLevel>(j.value("add_prefix_space", true), j.value("use_regex", true), where);
    if (type == "Split") {
        if (!j.contains("pattern")) throw Error("tokenizer", where + ": missing \"pattern\"");
        return std::make_unique<SplitPre>(make_pattern(j["pattern"], where),
                                          parse_split_behavior(j.value("behavior", Json("Removed")), where),
                                          j.value("invert", false));
    }
    if (type == "Digits") {
        return char_split([](char32_t c) { return is_numeric(c); },
                          j.value("individual_digits", false) ? SplitBehavior::Isolated : SplitBehavior::Contiguous);
    }
    if (type == "Metaspace") {
        char32_t rep = single_char(j, "replacement", where);
        Prepend scheme = Prepend::Always;
        if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
            std::string s = j["prepend_scheme"].get<std::string>();
            if (s == "always") scheme = Prepend::Always;
            else if (s == "first") scheme = Prepend::First;
            else if (s == "never") scheme = Prepend::Never;
            else throw Error("tokenizer", where + ": prepend_scheme '" + s + "' is not supported (always, first, never)");
        } else if (j.contains("add_prefix_space")) {
            scheme = j.value("add_prefix_space", true) ? Prepend::Always : Prepend::Never;
        }
        return std::make_unique<Metaspace>(rep, scheme, j.value("split", true));
    }
    if (type == "Whitespace") {
        return std::make_unique<SplitPre>(std::make_unique<Regex>(kWhitespacePattern, where), SplitBehavior::Removed, true);
    }
    if (type == "WhitespaceSplit") return char_split([](char32_t c) { return is_whitespace(c); }, SplitBehavior::Removed);
    if (type == "Punctuation") {
        return char_split([](char32_t c) { return is_punctuation(c); },
                          parse_split_behavior(j.value("behavior", Json("Isolated")), where));
    }
    if (type == "CharDelimiterSplit") {
        char32_t d = single_char(j, "delimiter", where);
        return char_split([d](char32_t c) { return c == d; }, SplitBehavior::Removed);
    }
    if (type == "BertPreTokenizer") {
        auto seq = std::make_unique<Sequence>();
        seq->items.push_back(char_split([](char32_t c) { return is_whitespace(c); }, SplitBehavior::Removed));
        seq->items.push_back(char_split([](char32_t c) { return is_punctuation(c); }, SplitBehavior::Isolated));
        return seq;
    }
    throw Error("tokenizer", file + ": pre_tokenizer type '" + type +
                                 "' is not supported (supported: ByteLevel, Split, Digits, Metaspace, Whitespace, "
                                 "WhitespaceSplit, Punctuation, CharDelimiterSplit, BertPreTokenizer, Sequence)");
}

}  // namespace moekit::io::tok
