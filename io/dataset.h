// Evaluation / calibration data: reading the files a user passes with --data and turning them
// into one token stream per domain.
//
// Formats (chosen by extension unless a format is forced):
//   text   anything not listed below (.txt, .md, .py, ...): UTF-8 text, documents separated by
//          blank lines: CRLF/CR become LF (as Python's text mode does), leading/trailing LFs are
//          stripped, the text is split on "\n\n", whitespace-only documents are dropped.
//   jsonl  .jsonl / .json / .ndjson: one JSON object per non-blank line; the first object decides
//          between a "text" field (string, one document per line) and an "input_ids" field
//          (array of integers, one pre-tokenized document per line).
//   bin    .bin: raw int32 little-endian ids, one pre-tokenized document.
//   npy    .npy: NumPy array, C order, dtype int32/int64/uint16/uint32 (little-endian), 1-D (one
//          document) or 2-D (one document per row).
// Pre-tokenized ids are used exactly as given (no BOS/EOS added). Text documents are encoded with
// the model's tokenizer (see TokenizeOptions).
//
// Every problem is a moekit::Error("data", ...) naming the file (and line for JSONL).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moekit::io {

class Tokenizer;

enum class DataFormat { automatic, text, jsonl, bin, npy };
std::string_view format_name(DataFormat format);
// "auto" | "text" | "jsonl" | "bin" | "npy"; throws Error("data") naming the accepted values.
DataFormat parse_data_format(std::string_view name);

// One --data entry: a domain name and the file holding its documents.
struct DataSource {
    std::string domain;
    std::filesystem::path path;
};

// Parses "a.txt,b.txt" (domain = file stem) or "en=a.txt,code=b.py" (mixing is allowed).
// Domain names: letters, digits and "_-.+"; unique. Throws Error("data") for an empty entry,
// an empty domain or path, a bad or duplicate domain name.
std::vector<DataSource> parse_data_sources(std::string_view spec);

// The documents of one file, before tokenization.
struct RawDocuments {
    std::filesystem::path path;
    DataFormat format = DataFormat::text;  // resolved (never automatic)
    bool pretokenized = false;             // ids (bin, npy, jsonl input_ids) rather than text
    std::string detail;                    // e.g. "jsonl text", "npy <i8 (4, 256)"
    std::vector<std::string> texts;        // text documents (when !pretokenized)
    std::vector<int32_t> ids;              // pre-tokenized documents, concatenated
    std::vector<int64_t> doc_begin;        // offsets into ids, size n_documents + 1
    int64_t n_documents() const {
        return pretokenized ? static_cast<int64_t>(doc_begin.size()) - 1 : static_cast<int64_t>(texts.size());
    }
};

// Reads and validates a file. Throws Error("data") naming the file for: missing/unreadable
// file, empty file or no documents, invalid JSON line (line number), missing/mistyped field,
// negative ids or ids beyond int32, bad .bin size, bad .npy header/dtype/shape/size.
RawDocuments read_documents(const std::filesystem::path& path, DataFormat format = DataFormat::automatic);

// Splits text into documents exactly as Python's [d for d in text.strip("\n").split("\n\n")
// if d.strip()] after universal-newline translation.
std::vector<std::string> split_documents(std::string_view text);

struct TokenizeOptions {
    bool add_eos = true;                 // append the tokenizer's EOS (when it has one) to each document
    std::optional<bool> add_bos;         // prepend BOS to each document; nullopt: tokenizer_config's
                                         // add_bos_token (false when absent); ignored without a BOS token
    int64_t max_tokens = 0;              // truncate the stream to this many ids; 0: no limit
};

// What was actually applied (for reports).
struct TokenizeRule {
    std::optional<int32_t> bos_id;       // set when BOS is prepended
    std::optional<int32_t> eos_id;       // set when EOS is appended
    std::string describe() const;        // "encode(doc, add_special_tokens=False) + [EOS=0]"
};
TokenizeRule tokenize_rule(const Tokenizer* tokenizer, const TokenizeOptions& options);

// One domain's token stream.
struct TokenStream {
    std::vector<int32_t> ids;
    int64_t n_documents = 0;             // documents in the file
    int64_t n_documents_used = 0;        // documents that contributed at least one id to `ids`
    int64_t n_tokens_total = 0;          // stream length before max_tokens truncation (or a lower
                                         // bound when tokenization stopped early at max_tokens)
    bool truncated = false;
};

// Text documents are encoded with `tokenizer` (required for text; may be null for pre-tokenized
// data) following `options`; pre-tokenized documents are concatenated as they are. Tokenization
// runs in parallel and stops once max_tokens ids are available.
TokenStream make_token_stream(const RawDocuments& documents, const Tokenizer* tokenizer, const TokenizeOptions& options);

// Throws Error("data") naming the file, the id and its position when an id is outside [0, vocab_size).
void check_vocabulary(const std::vector<int32_t>& ids, int64_t vocab_size, const std::filesystem::path& path,
                      const std::string& vocabulary_name);

}  // namespace moekit::io
