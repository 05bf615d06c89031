// Regexes of tokenizer.json run by PCRE2, and the span/split logic built on them.
//
// `tokenizers` compiles its patterns with Oniguruma (Ruby syntax, UTF-8). PCRE2 with UTF + UCP
// agrees on the constructs real tokenizers use (\p{L}, \p{N}, (?i:...), lookaheads,
// possessive-free backtracking, leftmost-first alternation) once a few Oniguruma meanings are
// translated: \s is exactly White_Space (PCRE2 adds U+180E), \w is Alphabetic|M|Nd|Pc (PCRE2:
// L|N|_), \h is a hex digit, ^/$ are line anchors, and
// the (?m) flag means "dot matches newline".
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"
#include "io/tokenizer_impl.h"

namespace moekit::io::tok {

namespace {

constexpr std::string_view kSpaceClass =
    "\\x{9}-\\x{d}\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}"
    "\\x{205f}\\x{3000}";
// Oniguruma's Unicode \w: Alphabetic | M | Nd | Pc, plus the Latin-1 digits-like ¹²³¼½¾ of
// its ISO-8859-1 ctype table (checked code point by code point against tokenizers).
constexpr std::string_view kWordClass = "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{b2}\\x{b3}\\x{b9}\\x{bc}-\\x{be}";
constexpr std::string_view kHexClass = "0-9a-fA-F";

struct JitStack {
    pcre2_jit_stack* stack = pcre2_jit_stack_create(64 * 1024, 8 * 1024 * 1024, nullptr);
    ~JitStack() { pcre2_jit_stack_free(stack); }
};

pcre2_jit_stack* thread_jit_stack(void*) {
    thread_local JitStack holder;
    return holder.stack;
}

}  // namespace

struct Regex::Impl {
    pcre2_code* code = nullptr;
    pcre2_match_context* mctx = nullptr;
    bool jit = false;
    std::string where;
    ~Impl() {
        if (mctx != nullptr) pcre2_match_context_free(mctx);
        if (code != nullptr) pcre2_code_free(code);
    }
};

std::string Regex::translate(std::string_view p, const std::string& where) {
    std::string out;
    out.reserve(p.size() + 64);
    int depth = 0;  // inside a character class
    for (size_t i = 0; i < p.size(); ++i) {
        char c = p[i];
        if (c == '\\' && i + 1 < p.size()) {
            char e = p[i + 1];
            ++i;
            std::string_view cls;
            bool neg = false;
            switch (e) {
                case 's': cls = kSpaceClass; break;
                case 'S': cls = kSpaceClass; neg = true; break;
                case 'w': cls = kWordClass; break;
                case 'W': cls = kWordClass; neg = true; break;
                case 'h': cls = kHexClass; break;
                case 'H': cls = kHexClass; neg = true; break;
                default: break;
            }
            if (cls.empty()) {
                out += '\\';
                out += e;
                continue;
            }
            if (depth == 0) {
                out += neg ? "[^" : "[";
                out += cls;
                out += ']';
            } else if (!neg) {
                out += cls;
            } else {
                // A negated class inside a class has no PCRE2 spelling; keep PCRE2's own
                // meaning (differs from Oniguruma only for U+180E / marks).
                out += '\\';
                out += e;
            }
            continue;
        }
        if (depth > 0) {
            if (c == '[') {
                if (i + 1 < p.size() && p[i + 1] == ':') {  // POSIX class [:alpha:]
                    size_t close = p.find(":]", i + 2);
                    if (close == std::string_view::npos) {
                        throw Error("tokenizer", where + ": unterminated POSIX class in regex");
                    }
                    out.append(p.substr(i, close + 2 - i));
                    i = close + 1;
                    continue;
                }
                throw Error("tokenizer", where + ": nested character classes ([a[b]], &&) in regex '" +
                                             std::string(p) + "' are not supported");
            }
            if (c == '&' && i + 1 < p.size() && p[i + 1] == '&') {
                throw Error("tokenizer", where + ": character class intersection (&&) in regex '" +
                                             std::string(p) + "' is not supported");
            }
            if (c == ']') --depth;
            out += c;
            continue;
        }
        if (c == '[') {
            ++depth;
            out += c;
            // A ']' right after '[' or '[^' is a literal in both engines.
            if (i + 1 < p.size() && p[i + 1] == '^') {
                out += '^';
                ++i;
            }
            if (i + 1 < p.size() && p[i + 1] == ']') {
                out += "\\]";
                ++i;
            }
            continue;
        }
        if (c == '(' && i + 1 < p.size() && p[i + 1] == '?') {
            // Inline flags: Ruby's (?m) is PCRE2's (?s).
            size_t j = i + 2;
            std::string flags;
            while (j < p.size() && (std::isalpha(static_cast<unsigned char>(p[j])) || p[j] == '-')) {
                flags += p[j] == 'm' ? 's' : p[j];
                ++j;
            }
            if (!flags.empty() && j < p.size() && (p[j] == ':' || p[j] == ')')) {
                out += "(?" + flags;
                i = j - 1;
                continue;
            }
        }
        out += c;
    }
    return out;
}

Regex::Regex(std::string_view onig_pattern, const std::string& where) : impl_(std::make_unique<Impl>()) {
    impl_->where = where;
    std::string pat = translate(onig_pattern, where);
    pcre2_compile_context* cctx = pcre2_compile_context_create(nullptr);
    pcre2_set_newline(cctx, PCRE2_NEWLINE_LF);
    int err = 0;
    PCRE2_SIZE err_off = 0;
    impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pat.data()), pat.size(),
                                PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &err, &err_off, cctx);
    pcre2_compile_context_free(cctx);
    if (impl_->code == nullptr) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof(msg));
        throw Error("tokenizer", where + ": regex '" + std::string(onig_pattern) +
                                     "' does not compile: " + reinterpret_cast<char*>(msg) +
                                     " (at offset " + std::to_string(err_off) + ")");
    }
    impl_->jit = pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0;
    impl_->mctx = pcre2_match_context_create(nullptr);
    if (impl_->jit) pcre2_jit_stack_assign(impl_->mctx, thread_jit_stack, nullptr);
}

Regex::~Regex() = default;

void Regex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const {
    pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
    auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t last_end = 0;
    bool have_last_match = false;
    size_t last_match_end = 0;
    while (last_end <= text.size()) {
        int rc = impl_->jit ? pcre2_jit_match(impl_->code, subject, text.size(), last_end, 0, md, impl_->mctx)
                            : pcre2_match(impl_->code, subject, text.size(), last_end, PCRE2_NO_UTF_CHECK, md,
                                          impl_->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            pcre2_match_data_free(md);
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof(msg));
            throw Error("tokenizer", impl_->where + ": regex matching failed: " + reinterpret_cast<char*>(msg));
        }
        PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        size_t s = ov[0], e = ov[1];
        // onig's find_iter: an empty match right where the previous match ended is skipped.
        if (s == e && have_last_match && last_end == last_match_end) {
            last_end += last_end < text.size() ? utf8_len(static_cast<unsigned char>(text[last_end])) : 1;
            continue;
        }
        last_end = e;
        have_last_match = true;
        last_match_end = e;
        out.emplace_back(s, e);
        if (s == e && e >= text.size()) break;
    }
    pcre2_match_data_free(md);
}

std::string escape_regex(std::string_view literal) {
    std::string out;
    for (char c : literal) {
        if (std::string_view("\\.+*?()|[]{}^$#&-~ ").find(c) != std::string_view::npos) out += '\\';
        out += c;
    }
    return out;
}

SplitBehavior parse_split_behavior(const Json& j, const std::string& where) {
    std::string b = j.is_string() ? j.get<std::string>() : "";
    if (b == "Removed") return SplitBehavior::Removed;
    if (b == "Isolated") return SplitBehavior::Isolated;
    if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
    if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
    if (b == "Contiguous") return SplitBehavior::Contiguous;
    throw Error("tokenizer", where + ": split behavior '" + (j.is_string() ? b : j.dump()) +
                                 "' is not supported (supported: Removed, Isolated, MergedWithPrevious, "
                                 "MergedWithNext, Contiguous)");
}

void regex_spans(const Regex& re, std::string_view text, std::vector<Span>& out) {
    out.clear();
    if (text.empty()) {
        out.push_back({0, 0, false});
        return;
    }
    thread_local std::vector<std::pair<size_t, size_t>> matches;
    matches.clear();
    re.find_all(text, matches);
    size_t prev = 0;
    for (auto [s, e] : matches) {
        if (prev != s) out.push_back({prev, s, false});
        out.push_back({s, e, true});
        prev = e;
    }
    if (prev != text.size()) out.push_back({prev, text.size(), false});
}

void apply_behavior(std::vector<Span>& spans, SplitBehavior behavior,
                    std::vector<std::pair<size_t, size_t>>& out) {
    auto emit = [&](size_t s, size_t e) {
        if (s != e) out.emplace_back(s, e);
    };
    switch (behavior) {
        case SplitBehavior::Isolated:
            for (const Span& sp : spans) emit(sp.start, sp.end);
            return;
        case SplitBehavior::Removed:
            for (const Span& sp : spans) {
                if (!sp.is_match) emit(sp.start, sp.end);
            }
            return;
        case SplitBehavior::MergedWithPrevious:
        case SplitBehavior::Contiguous: {
            // Both fold left to right, extending the last piece when a condition holds.
            std::vector<std::pair<size_t, size_t>> acc;
            bool previous_match = false;
            for (const Span& sp : spans) {
                bool extend = behavior == SplitBehavior::MergedWithPrevious ? (sp.is_match && !previous_match)
                                                                            : (sp.is_match == previous_match);
                if (extend && !acc.empty()) acc.back().second = sp.end;
                else acc.emplace_back(sp.start, sp.end);
                previous_match = sp.is_match;
            }
            for (auto [s, e] : acc) emit(s, e);
            return;
        }
        case SplitBehavior::MergedWithNext: {
            std::vector<std::pair<size_t, size_t>> acc;
            bool previous_match = false;
            for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
                if (it->is_match && !previous_match && !acc.empty()) acc.back().first = it->start;
                else acc.emplace_back(it->start, it->end);
                previous_match = it->is_match;
            }
            for (auto it = acc.rbegin(); it != acc.rend(); ++it) emit(it->first, it->second);
            return;
        }
    }
}

}  // namespace moekit::io::tok
