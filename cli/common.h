// Options every subcommand shares (--json, --threads, --device) and the helpers that apply
// them. Only cli/ includes CLI11.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "cuda/device_ops.h"
#include "model/corpus.h"

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

// The compute device for a resolved --device: GPU 0's backend::DeviceOps for "cuda", nullptr
// (the CPU) for "cpu". Library options take it as `device`.
std::shared_ptr<backend::DeviceOps> device_ops(const std::string& resolved_device);
// Sets a command's library options to compute on that device (svd: cli_svd.cpp's overload, which
// also sends its SVDs to the GPU).
template <class Options>
void use_device(Options& options, const std::string& resolved_device) {
    options.device = device_ops(resolved_device);
}

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
// The checked flags and the parsed data sources as the library's corpus options; `flag` names
// the data flag in messages ("--data", "--calib").
model::CorpusOptions corpus_options(const CorpusFlags& flags, const std::string& sources, const std::string& flag);

// A progress callback drawing "[name]  42.0%  what" on one terminal line of stderr (cleared at
// 100%), or nullptr when stderr is not a terminal (progress goes to terminals only).
std::function<void(double, const std::string&)> tty_progress(const std::string& name);
// Clears the progress line when stderr is a terminal.
void clear_tty_progress();

// A reader-side existence check that names the flag ("MODEL_DIR 'x' does not exist").
void require_directory(const std::string& path, const std::string& what);

}  // namespace moekit::cli
