// UTF-8 helpers and Unicode character properties / normalization for the tokenizer.
// Properties follow Rust's char methods (what `tokenizers` calls); data comes from ICU.
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/ustring.h>

#include "core/error.h"
#include "io/tokenizer_impl.h"

namespace moekit::io::tok {

char32_t next_cp(std::string_view s, size_t& i) {
    auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) {
        ++i;
        return b0;
    }
    size_t n = utf8_len(b0);
    char32_t cp = n == 2 ? (b0 & 0x1F) : n == 3 ? (b0 & 0x0F) : (b0 & 0x07);
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    i += n;
    return cp;
}

char32_t prev_cp(std::string_view s, size_t end) {
    size_t b = end - 1;
    while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
    size_t i = b;
    return next_cp(s, i);
}

void append_utf8(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

// Length of the valid sequence at s[i], or 0 when invalid (maximal-subpart rules of
// Unicode §3.9, which Python's "replace" error handler also follows).
static size_t valid_seq_len(std::string_view s, size_t i, size_t* bad_len) {
    auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
    unsigned char b0 = b(0);
    *bad_len = 1;
    if (b0 < 0x80) return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) n = 2;
    else if (b0 >= 0xE0 && b0 <= 0xEF) {
        n = 3;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        n = 4;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    for (size_t k = 1; k < n; ++k) {
        if (i + k >= s.size()) {
            *bad_len = k;
            return 0;
        }
        unsigned char c = b(k);
        unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (c < l || c > h) {
            *bad_len = k;
            return 0;
        }
    }
    return n;
}

bool is_valid_utf8(std::string_view s) {
    size_t i = 0, bad;
    while (i < s.size()) {
        if (static_cast<unsigned char>(s[i]) < 0x80) {
            ++i;
            continue;
        }
        size_t n = valid_seq_len(s, i, &bad);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

std::string sanitize_utf8(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 8);
    size_t i = 0, bad;
    while (i < s.size()) {
        size_t n = valid_seq_len(s, i, &bad);
        if (n == 0) {
            out += "\xEF\xBF\xBD";
            i += bad;
        } else {
            out.append(s.substr(i, n));
            i += n;
        }
    }
    return out;
}

bool is_whitespace(char32_t c) {
    if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
    return u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_WHITE_SPACE);
}

bool is_numeric(char32_t c) {
    if (c < 0x80) return c >= '0' && c <= '9';
    int8_t t = u_charType(static_cast<UChar32>(c));
    return t == U_DECIMAL_DIGIT_NUMBER || t == U_LETTER_NUMBER || t == U_OTHER_NUMBER;
}

bool is_alphanumeric(char32_t c) {
    if (c < 0x80) return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
    return u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_ALPHABETIC) || is_numeric(c);
}

bool is_punctuation(char32_t c) {
    if (c < 0x80) {
        return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
               (c >= 0x7B && c <= 0x7E);
    }
    int8_t t = u_charType(static_cast<UChar32>(c));
    return t == U_CONNECTOR_PUNCTUATION || t == U_DASH_PUNCTUATION || t == U_START_PUNCTUATION ||
           t == U_END_PUNCTUATION || t == U_INITIAL_PUNCTUATION || t == U_FINAL_PUNCTUATION ||
           t == U_OTHER_PUNCTUATION;
}

bool is_combining_mark(char32_t c) {
    int8_t t = u_charType(static_cast<UChar32>(c));
    return t == U_NON_SPACING_MARK || t == U_COMBINING_SPACING_MARK || t == U_ENCLOSING_MARK;
}

bool is_word_char(char32_t c) {
    if (c < 0x80) return c == '_' || is_alphanumeric(c);
    auto u = static_cast<UChar32>(c);
    int8_t t = u_charType(u);
    return u_hasBinaryProperty(u, UCHAR_ALPHABETIC) || is_combining_mark(c) ||
           t == U_DECIMAL_DIGIT_NUMBER || t == U_CONNECTOR_PUNCTUATION ||
           u_hasBinaryProperty(u, UCHAR_JOIN_CONTROL);
}

void unicode_normalize(std::string& s, std::string_view form) {
    bool ascii = true;
    for (char ch : s) {
        if (static_cast<unsigned char>(ch) >= 0x80) {
            ascii = false;
            break;
        }
    }
    if (ascii) return;  // ASCII is invariant under all four forms
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* norm = nullptr;
    if (form == "NFC") norm = icu::Normalizer2::getNFCInstance(status);
    else if (form == "NFD") norm = icu::Normalizer2::getNFDInstance(status);
    else if (form == "NFKC") norm = icu::Normalizer2::getNFKCInstance(status);
    else if (form == "NFKD") norm = icu::Normalizer2::getNFKDInstance(status);
    if (norm == nullptr || U_FAILURE(status)) {
        throw InternalError("tokenizer", "ICU normalizer " + std::string(form) + " unavailable: " +
                                             u_errorName(status));
    }
    icu::UnicodeString in = icu::UnicodeString::fromUTF8(icu::StringPiece(s.data(), static_cast<int32_t>(s.size())));
    if (norm->isNormalized(in, status) && U_SUCCESS(status)) return;
    status = U_ZERO_ERROR;
    icu::UnicodeString out = norm->normalize(in, status);
    if (U_FAILURE(status)) {
        throw InternalError("tokenizer", std::string("ICU normalization failed: ") + u_errorName(status));
    }
    s.clear();
    out.toUTF8String(s);
}

void lowercase(std::string& s) {
    std::string out;
    out.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
        auto b = static_cast<unsigned char>(s[i]);
        if (b < 0x80) {
            out.push_back(static_cast<char>(b >= 'A' && b <= 'Z' ? b + 32 : b));
            ++i;
            continue;
        }
        char32_t c = next_cp(s, i);
        UChar src[2];
        int32_t src_len = 0;
        U16_APPEND_UNSAFE(src, src_len, static_cast<UChar32>(c));
        UChar dst[8];
        UErrorCode status = U_ZERO_ERROR;
        int32_t n = u_strToLower(dst, 8, src, src_len, "", &status);
        if (U_FAILURE(status)) {
            append_utf8(out, c);
            continue;
        }
        for (int32_t k = 0; k < n;) {
            UChar32 lc;
            U16_NEXT(dst, k, n, lc);
            append_utf8(out, static_cast<char32_t>(lc));
        }
    }
    s = std::move(out);
}

}  // namespace moekit::io::tok
