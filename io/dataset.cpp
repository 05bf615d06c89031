// Evaluation / calibration data files (io/dataset.h).
#include "io/dataset.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/tokenizer.h"

namespace moekit::io {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const fs::path& path, const std::string& message) {
    throw Error("data", "'" + path.string() + "': " + message);
}

std::string read_file(const fs::path& path) {
    std::error_code ec;
    if (!fs::exists(path, ec)) throw Error("data", "data file '" + path.string() + "' does not exist");
    if (fs::is_directory(path, ec)) fail(path, "is a directory, expected a data file");
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path, "cannot be opened for reading");
    std::ostringstream buffer;
    buffer << in.rdbuf();
    if (in.bad()) fail(path, "read error");
    std::string bytes = std::move(buffer).str();
    if (bytes.empty()) fail(path, "is empty");
    return bytes;
}

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// Python's str.isspace() code points (the ones str.strip() removes).
bool is_python_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

bool is_blank(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        uint32_t cp = c;
        size_t n = 1;
        if (c >= 0xF0) { cp = c & 0x07u; n = 4; }
        else if (c >= 0xE0) { cp = c & 0x0Fu; n = 3; }
        else if (c >= 0xC0) { cp = c & 0x1Fu; n = 2; }
        else if (c >= 0x80) return false;  // stray continuation byte: not whitespace
        if (i + n > s.size()) return false;
        for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3Fu);
        if (!is_python_space(cp)) return false;
        i += n;
    }
    return true;
}

// ---------------------------------------------------------------------------- JSONL
RawDocuments read_jsonl(const fs::path& path, const std::string& bytes) {
    RawDocuments raw;
    raw.path = path;
    raw.format = DataFormat::jsonl;
    raw.doc_begin.push_back(0);
    enum class Kind { unknown, text, ids } kind = Kind::unknown;
    size_t pos = 0;
    int64_t line_no = 0;
    while (pos < bytes.size()) {
        size_t end = bytes.find('\n', pos);
        if (end == std::string::npos) end = bytes.size();
        std::string_view line(bytes.data() + pos, end - pos);
        pos = end + 1;
        ++line_no;
        if (is_blank(line)) continue;
        const std::string where = "line " + std::to_string(line_no) + ": ";
        nlohmann::json doc;
        try {
            doc = nlohmann::json::parse(line);
        } catch (const nlohmann::json::parse_error& e) {
            fail(path, where + "invalid JSON (" + std::string(e.what()) + ")");
        }
        if (!doc.is_object()) fail(path, where + "expected a JSON object with a \"text\" or \"input_ids\" field");
        if (kind == Kind::unknown) {
            if (doc.contains("text")) kind = Kind::text;
            else if (doc.contains("input_ids")) kind = Kind::ids;
            else fail(path, where + "no \"text\" or \"input_ids\" field");
        }
        if (kind == Kind::text) {
            auto it = doc.find("text");
            if (it == doc.end()) fail(path, where + "missing field \"text\" (the first record has one)");
            if (!it->is_string()) fail(path, where + "field \"text\" is not a string");
            std::string text = it->get<std::string>();
            if (!is_blank(text)) raw.texts.push_back(std::move(text));
        } else {
            auto it = doc.find("input_ids");
            if (it == doc.end()) fail(path, where + "missing field \"input_ids\" (the first record has one)");
            if (!it->is_array()) fail(path, where + "field \"input_ids\" is not an array");
            if (it->empty()) continue;
            for (size_t k = 0; k < it->size(); ++k) {
                const auto& v = (*it)[k];
                if (!v.is_number_integer())
                    fail(path, where + "input_ids[" + std::to_string(k) + "] is not an integer");
                const auto id = v.is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(v.get<uint64_t>(), uint64_t(1) << 62))
                                                       : v.get<int64_t>();
                if (id < 0 || id > std::numeric_limits<int32_t>::max())
                    fail(path, where + "input_ids[" + std::to_string(k) + "] = " + std::to_string(id) +
                                   " is outside the vocabulary (negative or beyond int32)");
                raw.ids.push_back(static_cast<int32_t>(id));
            }
            raw.doc_begin.push_back(static_cast<int64_t>(raw.ids.size()));
        }
    }
    if (kind == Kind::unknown) fail(path, "no JSON records (only blank lines)");
    raw.pretokenized = kind == Kind::ids;
    raw.detail = raw.pretokenized ? "jsonl input_ids" : "jsonl text";
    if (!raw.pretokenized) raw.doc_begin.clear();
    if (raw.n_documents() == 0) fail(path, "no documents (every record is empty)");
    return raw;
}

// ---------------------------------------------------------------------------- .bin
RawDocuments read_bin(const fs::path& path, const std::string& bytes) {
    if (bytes.size() % 4 != 0)
        fail(path, "size " + std::to_string(bytes.size()) + " bytes is not a multiple of 4 (raw int32 little-endian ids)");
    RawDocuments raw;
    raw.path = path;
    raw.format = DataFormat::bin;
    raw.pretokenized = true;
    raw.detail = "bin int32";
    raw.ids.resize(bytes.size() / 4);
    std::memcpy(raw.ids.data(), bytes.data(), bytes.size());  // little-endian host (CMake checks)
    for (size_t i = 0; i < raw.ids.size(); ++i)
        if (raw.ids[i] < 0) fail(path, "id " + std::to_string(raw.ids[i]) + " at position " + std::to_string(i) + " is negative");
    raw.doc_begin = {0, static_cast<int64_t>(raw.ids.size())};
    return raw;
}

// ---------------------------------------------------------------------------- .npy
// The value that follows 'key': in a NumPy header dict literal (text after the colon, trimmed).
std::string npy_field(const fs::path& path, const std::string& header, const std::string& key) {
    const std::string quoted[2] = {"'" + key + "'", "\"" + key + "\""};
    size_t at = std::string::npos;
    for (const auto& q : quoted)
        if ((at = header.find(q)) != std::string::npos) { at += q.size(); break; }
    if (at == std::string::npos) fail(path, "bad .npy header: no '" + key + "' entry");
    at = header.find(':', at);
    if (at == std::string::npos) fail(path, "bad .npy header: no value for '" + key + "'");
    ++at;
    while (at < header.size() && header[at] == ' ') ++at;
    size_t end = at;
    if (at < header.size() && header[at] == '(') {
        end = header.find(')', at);
        if (end == std::string::npos) fail(path, "bad .npy header: unterminated shape");
        return header.substr(at + 1, end - at - 1);
    }
    while (end < header.size() && header[end] != ',' && header[end] != '}') ++end;
    std::string value = header.substr(at, end - at);
    while (!value.empty() && value.back() == ' ') value.pop_back();
    if (value.size() >= 2 && (value.front() == '\'' || value.front() == '"')) value = value.substr(1, value.size() - 2);
    return value;
}

RawDocuments read_npy(const fs::path& path, const std::string& bytes) {
    static const char kMagic[] = "\x93NUMPY";
    if (bytes.size() < 10 || std::memcmp(bytes.data(), kMagic, 6) != 0) fail(path, "bad .npy header: missing \\x93NUMPY magic");
    const auto major = static_cast<unsigned char>(bytes[6]);
    size_t header_len = 0, header_at = 0;
    if (major == 1) {
        header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8);
        header_at = 10;
    } else if (major == 2 || major == 3) {
        if (bytes.size() < 12) fail(path, "bad .npy header: truncated");
        for (int k = 3; k >= 0; --k) header_len = (header_len << 8) | static_cast<unsigned char>(bytes[8 + k]);
        header_at = 12;
    } else {
        fail(path, "bad .npy header: unsupported format version " + std::to_string(major));
    }
    if (header_at + header_len > bytes.size()) fail(path, "bad .npy header: header length beyond the end of the file");
    const std::string header = bytes.substr(header_at, header_len);
    const std::string descr = npy_field(path, header, "descr");
    const std::string fortran = npy_field(path, header, "fortran_order");
    const std::string shape_text = npy_field(path, header, "shape");
    if (fortran != "False") fail(path, "unsupported .npy: fortran_order must be False (C order)");
    size_t item = 0;
    bool is_signed = true;
    if (descr.size() == 3 && (descr[0] == '<' || descr[0] == '|' || descr[0] == '=')) {
        const std::string t = descr.substr(1);
        if (t == "i4") item = 4;
        else if (t == "i8") item = 8;
        else if (t == "u2") { item = 2; is_signed = false; }
        else if (t == "u4") { item = 4; is_signed = false; }
    }
    if (item == 0)
        fail(path, "unsupported .npy dtype '" + descr + "' (expected little-endian int32, int64, uint16 or uint32: <i4 <i8 <u2 <u4)");
    std::vector<int64_t> shape;
    std::stringstream ss(shape_text);
    std::string dim;
    while (std::getline(ss, dim, ',')) {
        dim.erase(std::remove(dim.begin(), dim.end(), ' '), dim.end());
        if (dim.empty()) continue;
        if (dim.back() == 'L') dim.pop_back();
        if (dim.empty() || !std::all_of(dim.begin(), dim.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }) ||
            dim.size() > 15)
            fail(path, "bad .npy header: shape (" + shape_text + ")");
        shape.push_back(std::stoll(dim));
    }
    if (shape.empty() || shape.size() > 2)
        fail(path, "unsupported .npy shape (" + shape_text + "): expected 1-D (one document) or 2-D (one document per row)");
    const int64_t rows = shape.size() == 2 ? shape[0] : 1, cols = shape.back();
    const uint64_t n = static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols);
    const size_t data_at = header_at + header_len;
    if (n * item != bytes.size() - data_at)
        fail(path, "bad .npy: shape (" + shape_text + ") of " + descr + " needs " + std::to_string(n * item) + " data bytes, file has " +
                       std::to_string(bytes.size() - data_at));
    if (n == 0) fail(path, "is empty (the array has no elements)");

    RawDocuments raw;
    raw.path = path;
    raw.format = DataFormat::npy;
    raw.pretokenized = true;
    raw.detail = "npy " + descr + " (" + shape_text + ")";
    raw.ids.resize(n);
    const char* p = bytes.data() + data_at;
    for (uint64_t i = 0; i < n; ++i, p += item) {
        int64_t v = 0;
        if (item == 8) { std::memcpy(&v, p, 8); }
        else if (item == 4 && is_signed) { int32_t x; std::memcpy(&x, p, 4); v = x; }
        else if (item == 4) { uint32_t x; std::memcpy(&x, p, 4); v = x; }
        else { uint16_t x; std::memcpy(&x, p, 2); v = x; }
        if (v < 0 || v > std::numeric_limits<int32_t>::max())
            fail(path, "id " + std::to_string(v) + " at flat index " + std::to_string(i) + " is outside the vocabulary (negative or beyond int32)");
        raw.ids[i] = static_cast<int32_t>(v);
    }
    for (int64_t r = 0; r <= rows; ++r) raw.doc_begin.push_back(r * cols);
    return raw;
}

DataFormat detect_format(const fs::path& path) {
    const std::string ext = lower(path.extension().string());
    if (ext == ".jsonl" || ext == ".json" || ext == ".ndjson") return DataFormat::jsonl;
    if (ext == ".bin") return DataFormat::bin;
    if (ext == ".npy") return DataFormat::npy;
    return DataFormat::text;
}

bool valid_domain(std::string_view name) {
    return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' || c == '+';
    });
}

}  // namespace

std::string_view format_name(DataFormat format) {
    switch (format) {
        case DataFormat::automatic: return "auto";
        case DataFormat::text: return "text";
        case DataFormat::jsonl: return "jsonl";
        case DataFormat::bin: return "bin";
        case DataFormat::npy: return "npy";
    }
    return "?";
}

DataFormat parse_data_format(std::string_view name) {
    for (DataFormat f : {DataFormat::automatic, DataFormat::text, DataFormat::jsonl, DataFormat::bin, DataFormat::npy})
        if (name == format_name(f)) return f;
    throw Error("data", "unknown data format '" + std::string(name) + "' (expected auto, text, jsonl, bin or npy)");
}

std::vector<DataSource> parse_data_sources(std::string_view spec) {
    std::vector<DataSource> out;
    std::set<std::string> seen;
    if (spec.empty()) throw Error("data", "--data is empty: expected FILE[,FILE...] or DOMAIN=FILE[,DOMAIN=FILE...]");
    size_t pos = 0;
    while (pos <= spec.size()) {
        size_t end = spec.find(',', pos);
        if (end == std::string_view::npos) end = spec.size();
        const std::string item(spec.substr(pos, end - pos));
        pos = end + 1;
        if (item.empty())
            throw Error("data", "--data '" + std::string(spec) + "' has an empty entry (expected FILE[,FILE...] or DOMAIN=FILE[,...])");
        DataSource source;
        const size_t eq = item.find('=');
        if (eq != std::string::npos) {
            source.domain = item.substr(0, eq);
            source.path = item.substr(eq + 1);
            if (source.path.empty()) throw Error("data", "--data entry '" + item + "' names no file after '='");
            if (!valid_domain(source.domain))
                throw Error("data", "--data entry '" + item + "': bad domain name '" + source.domain +
                                        "' (use letters, digits and _-.+, as in en=a.txt)");
        } else {
            source.path = item;
            source.domain = source.path.stem().string();
            if (!valid_domain(source.domain))
                throw Error("data", "--data entry '" + item + "': cannot use the file stem '" + source.domain +
                                        "' as a domain name; name it explicitly (DOMAIN=FILE)");
        }
        if (!seen.insert(source.domain).second)
            throw Error("data", "--data: domain '" + source.domain + "' is given twice; name domains explicitly (DOMAIN=FILE)");
        out.push_back(std::move(source));
        if (end == spec.size()) break;
    }
    return out;
}

std::vector<std::string> split_documents(std::string_view input) {
    std::string text;
    text.reserve(input.size());
    for (size_t i = 0; i < input.size(); ++i) {  // universal newlines
        if (input[i] == '\r') {
            text.push_back('\n');
            if (i + 1 < input.size() && input[i + 1] == '\n') ++i;
        } else {
            text.push_back(input[i]);
        }
    }
    size_t b = 0, e = text.size();
    while (b < e && text[b] == '\n') ++b;
    while (e > b && text[e - 1] == '\n') --e;
    std::vector<std::string> docs;
    size_t pos = b;
    while (pos <= e) {
        size_t cut = text.find("\n\n", pos);
        if (cut == std::string::npos || cut > e) cut = e;
        // Python's split: a run of 2n newlines yields empty pieces, a run of 2n+1 a piece starting with '\n'.
        std::string_view piece(text.data() + pos, cut - pos);
        if (!is_blank(piece)) docs.emplace_back(piece);
        if (cut == e) break;
        pos = cut + 2;
    }
    return docs;
}

RawDocuments read_documents(const fs::path& path, DataFormat format) {
    const std::string bytes = read_file(path);
    if (format == DataFormat::automatic) format = detect_format(path);
    switch (format) {
        case DataFormat::jsonl: return read_jsonl(path, bytes);
        case DataFormat::bin: return read_bin(path, bytes);
        case DataFormat::npy: return read_npy(path, bytes);
        default: break;
    }
    RawDocuments raw;
    raw.path = path;
    raw.format = DataFormat::text;
    raw.detail = "text";
    raw.texts = split_documents(bytes);
    if (raw.texts.empty()) fail(path, "no documents (only whitespace)");
    return raw;
}

// ---------------------------------------------------------------------------- tokenization
std::string TokenizeRule::describe() const {
    std::string out = "ids = ";
    if (bos_id) out += "[BOS=" + std::to_string(*bos_id) + "] + ";
    out += "encode(document, add_special_tokens=False)";
    if (eos_id) out += " + [EOS=" + std::to_string(*eos_id) + "]";
    return out + " per document; documents concatenated in file order";
}

TokenizeRule tokenize_rule(const Tokenizer* tokenizer, const TokenizeOptions& options) {
    TokenizeRule rule;
    if (!tokenizer) return rule;
    const bool bos = options.add_bos.value_or(tokenizer->add_bos_token().value_or(false));
    if (bos) rule.bos_id = tokenizer->bos_id();
    if (options.add_eos) rule.eos_id = tokenizer->eos_id();
    return rule;
}

TokenStream make_token_stream(const RawDocuments& raw, const Tokenizer* tokenizer, const TokenizeOptions& options) {
    TokenStream out;
    out.n_documents = raw.n_documents();
    const auto limit = options.max_tokens > 0 ? static_cast<size_t>(options.max_tokens) : std::numeric_limits<size_t>::max();
    if (raw.pretokenized) {
        for (int64_t d = 0; d < out.n_documents && out.ids.size() < limit; ++d) {
            const auto b = static_cast<size_t>(raw.doc_begin[static_cast<size_t>(d)]);
            const auto e = static_cast<size_t>(raw.doc_begin[static_cast<size_t>(d) + 1]);
            if (b == e) continue;
            out.ids.insert(out.ids.end(), raw.ids.begin() + static_cast<std::ptrdiff_t>(b), raw.ids.begin() + static_cast<std::ptrdiff_t>(e));
            ++out.n_documents_used;
        }
        out.n_tokens_total = static_cast<int64_t>(raw.ids.size());
    } else {
        if (!tokenizer) throw Error("data", "'" + raw.path.string() + "' is text but the model has no tokenizer (tokenizer.json)");
        const TokenizeRule rule = tokenize_rule(tokenizer, options);
        // Blocks of documents are encoded in parallel and appended in order, until the limit.
        const auto n_docs = static_cast<std::ptrdiff_t>(raw.texts.size());
        constexpr std::ptrdiff_t kBlock = 256;
        std::vector<std::vector<int32_t>> encoded(static_cast<size_t>(std::min(kBlock, n_docs)));
        for (std::ptrdiff_t b0 = 0; b0 < n_docs && out.ids.size() < limit; b0 += kBlock) {
            const std::ptrdiff_t nb = std::min(kBlock, n_docs - b0);
#pragma omp parallel for schedule(dynamic, 1)
            for (std::ptrdiff_t k = 0; k < nb; ++k)
                encoded[static_cast<size_t>(k)] = tokenizer->encode(raw.texts[static_cast<size_t>(b0 + k)], false);
            for (std::ptrdiff_t k = 0; k < nb; ++k) {
                const auto& piece = encoded[static_cast<size_t>(k)];
                const size_t n = piece.size() + (rule.bos_id ? 1 : 0) + (rule.eos_id ? 1 : 0);
                out.n_tokens_total += static_cast<int64_t>(n);
                if (n == 0 || out.ids.size() >= limit) continue;
                if (rule.bos_id) out.ids.push_back(*rule.bos_id);
                out.ids.insert(out.ids.end(), piece.begin(), piece.end());
                if (rule.eos_id) out.ids.push_back(*rule.eos_id);
                ++out.n_documents_used;
            }
        }
    }
    if (out.ids.size() > limit) out.ids.resize(limit);
    out.truncated = static_cast<int64_t>(out.ids.size()) < out.n_tokens_total;
    if (out.ids.empty()) throw Error("data", "'" + raw.path.string() + "': no tokens (every document encodes to nothing)");
    return out;
}

void check_vocabulary(const std::vector<int32_t>& ids, int64_t vocab_size, const fs::path& path, const std::string& vocabulary_name) {
    for (size_t i = 0; i < ids.size(); ++i)
        if (ids[i] < 0 || ids[i] >= vocab_size)
            fail(path, "token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) + " of the stream is outside " +
                           vocabulary_name + " [0, " + std::to_string(vocab_size) + ")");
}

}  // namespace moekit::io
