// Corpus: the --data / --calib files of a command turned into token windows, the way every
// command that runs the model cuts them (eval, profile, prune, ...): each domain's token stream
// (io/dataset.h) is cut into non-overlapping windows of seq_len ids; a final partial window is
// kept when it has at least 2 ids. Windows are then grouped into batches of whole windows for
// Engine::forward_hidden.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "io/checkpoint.h"
#include "io/dataset.h"

namespace moekit::model {

struct CorpusOptions {
    std::vector<io::DataSource> data;
    io::DataFormat format = io::DataFormat::automatic;
    int64_t seq_len = 0;                  // 0: min(512, config max_position_embeddings)
    int64_t max_tokens = 0;               // per domain; 0: the whole stream
    bool add_eos = true;                  // EOS after every text document (when the tokenizer has one)
    std::optional<bool> add_bos;          // nullopt: tokenizer_config.json add_bos_token
    std::string flag = "--data";          // how the command calls its data flag (for messages)
};

struct CorpusDomain {
    std::string name;
    std::filesystem::path path;
    std::string format;                   // e.g. "text", "bin int32"
    int64_t documents = 0;
    int64_t documents_used = 0;
    int64_t tokens = 0;                   // ids used (after max_tokens)
    int64_t tokens_available = 0;         // stream length before truncation (lower bound if cut early)
    int64_t windows = 0;
};

struct CorpusWindow {
    size_t domain;
    int64_t begin;                        // offset in the domain's stream
    int64_t len;
};

struct Corpus {
    int64_t seq_len = 0;                  // resolved
    std::vector<CorpusDomain> domains;
    std::vector<std::vector<int32_t>> streams;  // one per domain
    std::vector<CorpusWindow> windows;    // domain order, then stream order
    bool has_text = false;
    std::string tokenization;             // TokenizeRule::describe(), or "pre-tokenized ids used as given"
    std::optional<int32_t> bos_id, eos_id;

    std::vector<int32_t> window_ids(size_t w) const;
};

// Resolves seq_len 0 to min(512, max_position_embeddings).
int64_t resolve_seq_len(const io::Checkpoint& checkpoint, int64_t seq_len);

// Reads, validates and tokenizes every file before any heavy work. Throws Error("data") naming
// the file for unreadable/empty data, ids outside [0, vocab_size), a domain with fewer than 2
// ids, text data without MODEL_DIR/tokenizer.json; Error(<options.flag>) for a bad seq_len or
// max_tokens.
Corpus load_corpus(const io::Checkpoint& checkpoint, int64_t vocab_size, const CorpusOptions& options);

// Consecutive windows grouped so that each batch holds at most batch_tokens ids (and at least
// one window): [first window, end) pairs.
std::vector<std::pair<size_t, size_t>> batch_windows(const std::vector<CorpusWindow>& windows, int64_t batch_tokens);

// Evenly spaced windows holding at most max_tokens ids in all (at least one window, cut to
// max_tokens): the token sample of the methods that run every expert on every token (NAEE,
// HC-SMoE, Sub-MoE).
std::vector<std::vector<int32_t>> sample_windows(const Corpus& corpus, int64_t max_tokens);

}  // namespace moekit::model
