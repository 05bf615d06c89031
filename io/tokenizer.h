// Hugging Face tokenizer.json reader and encoder. encode() returns exactly the ids of the
// `tokenizers` library's Tokenizer.encode(text, add_special_tokens).ids for the pipelines
// MoE checkpoints use (BPE model; NFC/NFKC/Prepend/Replace/... normalizers; ByteLevel, Split,
// Digits, Metaspace pre-tokenizers; added tokens; TemplateProcessing), and decode() returns
// Tokenizer.decode(ids, skip_special_tokens). Unsupported components are rejected at load time
// with a moekit::Error naming the file and the component.
//
// Thread safety: a loaded Tokenizer is immutable apart from an internal, locked BPE word
// cache; encode/decode may be called concurrently.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace moekit::io {

struct AddedTokenInfo {
    int32_t id = -1;
    std::string content;
    bool special = false;
    bool single_word = false;
    bool lstrip = false;
    bool rstrip = false;
    bool normalized = true;
};

class Tokenizer {
public:
    // Reads MODEL_DIR/tokenizer.json and, when present, MODEL_DIR/tokenizer_config.json
    // (bos_token, eos_token, add_bos_token, add_eos_token).
    static Tokenizer load(const std::filesystem::path& model_dir);
    // `source` names the file in error messages.
    static Tokenizer from_json(const nlohmann::json& tokenizer_json, const nlohmann::json& tokenizer_config = {},
                               const std::string& source = "tokenizer.json");

    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;
    ~Tokenizer();

    // Exactly tokenizers' Tokenizer.encode(text, add_special_tokens=...).ids. Invalid UTF-8 in
    // `text` is replaced by U+FFFD first (as Python's errors="replace" would).
    std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const;
    // Exactly tokenizers' Tokenizer.decode(ids, skip_special_tokens=...). Unknown ids are skipped.
    std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

    int64_t vocab_size() const;  // including added tokens (max id + 1)
    std::optional<int32_t> bos_id() const;
    std::optional<int32_t> eos_id() const;
    // tokenizer_config.json's add_bos_token / add_eos_token when given. encode() does not apply
    // them (tokenizers does not either; transformers' slow/fast wrappers rebuild the template).
    std::optional<bool> add_bos_token() const;
    std::optional<bool> add_eos_token() const;
    std::optional<int32_t> token_to_id(std::string_view token) const;
    std::optional<std::string> id_to_token(int32_t id) const;
    bool is_special(int32_t id) const;
    const std::vector<AddedTokenInfo>& added_tokens() const;
    // Special tokens the post-processor puts around a single sequence (add_special_tokens).
    const std::vector<int32_t>& prefix_special_ids() const;
    const std::vector<int32_t>& suffix_special_ids() const;

private:
    struct Impl;
    explicit Tokenizer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace moekit::io
