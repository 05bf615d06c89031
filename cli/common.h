// Options every subcommand shares (--json, --threads, --device) and the helpers that apply
// them. Only cli/ includes CLI11.
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

#include "io/dataset.h"

namespace moekit::cli {

struct CommonOptions {
    bool json = false;           // machine-readable result on stdout
    int threads = 0;             // 0: all cores
    std::string device = "auto"; // cpu | cuda | auto
};

void add_common_options(CLI::App& command, CommonOptions& options);

// Applies --threads and resolves --device to "cpu" or "cuda"; a request for cuda without a
// usable GPU is a user error naming the reason.
std::string apply_common_options(const CommonOptions& options);

// How data files become token windows; the same flags for every command that runs the model
// over data (eval --data, profile --data, prune --calib).
struct CorpusFlags {
    std::string format = "auto";
    int64_t seq_len = -1;             // -1: min(512, max_position_embeddings)
    int64_t max_tokens = 0;           // per domain; 0: all
    bool no_eos = false;
    std::string bos = "auto";         // auto | yes | no
    int64_t batch_tokens = 16384;
};
void add_corpus_options(CLI::App& command, CorpusFlags& flags);
// Errors ("cli") for out-of-range values, naming the flag.
void check_corpus_options(const CorpusFlags& flags);
// Copies the checked flags into a library options struct with the usual field names (format,
// seq_len with 0 = default, max_tokens, add_eos, add_bos, batch_tokens).
template <class LibraryOptions>
void apply_corpus_options(const CorpusFlags& flags, LibraryOptions& options) {
    check_corpus_options(flags);
    options.format = io::parse_data_format(flags.format);
    options.seq_len = flags.seq_len == -1 ? 0 : flags.seq_len;
    options.max_tokens = flags.max_tokens;
    options.add_eos = !flags.no_eos;
    if (flags.bos != "auto") options.add_bos = flags.bos == "yes";
    options.batch_tokens = flags.batch_tokens;
}

// A reader-side existence check that names the flag ("MODEL_DIR 'x' does not exist").
void require_directory(const std::string& path, const std::string& what);

}  // namespace moekit::cli
