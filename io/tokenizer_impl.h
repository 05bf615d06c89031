// Internal building blocks of io::Tokenizer (not part of the public API): UTF-8 and Unicode
// helpers, the regex engine adapter, and the pipeline components (normalizers,
// pre-tokenizers, the BPE model, decoders, post-processors). Each mirrors the component of
// the same name in Hugging Face `tokenizers`; the comments say where behaviour is subtle.
// Text is UTF-8 in std::string; offsets are byte offsets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace moekit::io::tok {

using Json = nlohmann::json;

// ---- UTF-8 ------------------------------------------------------------------------------
// Length of the sequence starting with `lead` (1 for continuation/invalid bytes).
inline size_t utf8_len(unsigned char lead) {
    if (lead < 0x80) return 1;
    if ((lead >> 5) == 0x6) return 2;
    if ((lead >> 4) == 0xE) return 3;
    if ((lead >> 3) == 0x1E) return 4;
    return 1;
}
// Decodes the code point at s[i] (s must be valid UTF-8) and advances i.
char32_t next_cp(std::string_view s, size_t& i);
// Code point ending at byte `end` (exclusive); s valid UTF-8, end > 0.
char32_t prev_cp(std::string_view s, size_t end);
void append_utf8(std::string& out, char32_t cp);
// True when s is valid UTF-8 (no surrogates, no overlongs).
bool is_valid_utf8(std::string_view s);
// Invalid sequences replaced by U+FFFD, the way Python's bytes.decode(errors="replace") does.
std::string sanitize_utf8(std::string_view s);

// ---- Unicode properties, with the semantics of Rust's char methods ---------------------------
bool is_whitespace(char32_t c);    // char::is_whitespace (White_Space)
bool is_numeric(char32_t c);       // char::is_numeric (Nd | Nl | No)
bool is_alphanumeric(char32_t c);  // char::is_alphanumeric (Alphabetic | numeric)
bool is_punctuation(char32_t c);   // ASCII punctuation or a P* category
bool is_word_char(char32_t c);     // regex crate \w (Alphabetic | M | Nd | Pc | Join_Control)
bool is_combining_mark(char32_t c);  // Mn | Mc | Me
// Unicode normalization forms; `form` is "NFC", "NFD", "NFKC" or "NFKD".
void unicode_normalize(std::string& s, std::string_view form);
// Per-character full lowercase mapping (Rust char::to_lowercase, no final-sigma context).
void lowercase(std::string& s);

// ---- Regex (Oniguruma syntax as tokenizers uses it, run by PCRE2) ---------------------------
class Regex {
public:
    // `where` names the file/component in error messages.
    Regex(std::string_view onig_pattern, const std::string& where);
    ~Regex();
    Regex(const Regex&) = delete;
    Regex& operator=(const Regex&) = delete;
    // Non-overlapping matches, left to right, with the onig crate's find_iter rules for
    // empty matches. Appends (start, end) byte offsets.
    void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;
    // Translation of an Oniguruma pattern to PCRE2 syntax (exposed for tests).
    static std::string translate(std::string_view onig_pattern, const std::string& where);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};
std::string escape_regex(std::string_view literal);
// A {"String": s} or {"Regex": r} pattern of Replace/Split, compiled.
std::unique_ptr<Regex> make_pattern(const Json& pattern, const std::string& where);

// The "type" string of a pipeline component object (`kind`: "decoder", "normalizer", ...);
// throws naming the file when the object has none.
std::string component_type(const Json& j, const std::string& file, std::string_view kind);

// ---- Splitting (NormalizedString::split) ---------------------------------------------------
struct Span {
    size_t start, end;
    bool is_match;
};
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };
SplitBehavior parse_split_behavior(const Json& j, const std::string& where);
// Covering list of match/non-match spans (tokenizers' Pattern::find_matches).
void regex_spans(const Regex& re, std::string_view text, std::vector<Span>& out);
template <class Pred>
void char_spans(Pred pred, std::string_view text, std::vector<Span>& out) {
    out.clear();
    if (text.empty()) {
        out.push_back({0, 0, false});
        return;
    }
    size_t last = 0, i = 0;
    while (i < text.size()) {
        size_t b = i;
        char32_t c = next_cp(text, i);
        if (pred(c)) {
            if (last < b) out.push_back({last, b, false});
            out.push_back({b, i, true});
            last = i;
        }
    }
    if (last < text.size()) out.push_back({last, text.size(), false});
}
// Applies `behavior` to spans and appends the kept, non-empty (start, end) pieces.
void apply_behavior(std::vector<Span>& spans, SplitBehavior behavior,
                    std::vector<std::pair<size_t, size_t>>& out);

// A unit of text moving through the pipeline. id >= 0: an added token, already final.
struct Piece {
    std::string text;
    int32_t id = -1;
    // Leading bytes of `text` that align with offset 0 of the original input (a prepended "▁"
    // aligns with the character it precedes). > 0 means the piece starts at the origin, which
    // is what Metaspace's prepend_scheme "first" tests (offsets_original().0 == 0).
    size_t origin = 0;
};

// ---- Components -----------------------------------------------------------------------------
class Normalizer {
public:
    virtual ~Normalizer() = default;
    virtual void normalize(std::string& s) const = 0;
};
// nullptr for a JSON null. `file` names the source in errors.
std::unique_ptr<Normalizer> make_normalizer(const Json& j, const std::string& file);

class PreTokenizer {
public:
    virtual ~PreTokenizer() = default;
    // Splits every piece with id < 0; pieces with id >= 0 pass through unchanged.
    virtual void pre_tokenize(std::vector<Piece>& pieces) const = 0;
};
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const Json& j, const std::string& file);

// The byte <-> printable-char table of GPT-2's byte-level BPE.
const std::string& byte_to_char_utf8(unsigned char b);
int byte_from_char(char32_t c);  // -1 if c is not one of the 256 chars

class BpeModel {
public:
    BpeModel(const Json& j, const std::string& file);
    // Appends the ids of one pre-tokenized word.
    void tokenize(std::string_view word, std::vector<int32_t>& out) const;
    std::optional<int32_t> token_to_id(std::string_view token) const;
    const std::string* id_to_token(int32_t id) const;  // nullptr if absent
    int64_t max_id() const { return max_id_; }
    size_t vocab_count() const { return vocab_.size(); }

private:
    struct SvHash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };
    struct SvEq {
        using is_transparent = void;
        bool operator()(std::string_view a, std::string_view b) const { return a == b; }
    };
    void merge_word(std::string_view word, std::vector<int32_t>& out) const;
    std::optional<int32_t> vocab_get(std::string_view s) const;

    std::unordered_map<std::string, int32_t, SvHash, SvEq> vocab_;
    std::vector<std::string> id_to_token_;
    std::vector<bool> has_id_;
    std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (a,b) -> (rank, new id)
    std::optional<std::string> unk_token_;
    std::string prefix_, suffix_;
    bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
    int32_t byte_ids_[256];  // <0xNN> token ids, -1 when absent
    int64_t max_id_ = -1;

    static constexpr size_t kMaxCacheEntries = 200000;
    static constexpr size_t kMaxCachedWordBytes = 256;
    mutable std::shared_mutex cache_mutex_;
    mutable std::unordered_map<std::string, std::vector<int32_t>, SvHash, SvEq> cache_;
};

class Decoder {
public:
    virtual ~Decoder() = default;
    virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};
std::unique_ptr<Decoder> make_decoder(const Json& j, const std::string& file);

// For a single sequence every supported post-processor reduces to prefix + ids + suffix.
struct PostProcessor {
    std::vector<int32_t> prefix, suffix;
};
PostProcessor make_post_processor(const Json& j, const std::string& file);

}  // namespace moekit::io::tok
