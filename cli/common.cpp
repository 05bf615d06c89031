// Shared subcommand options.
#include "cli/common.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include <omp.h>

#include "core/error.h"
#include "cuda/backend.h"
#include "cuda/device_ops.h"

namespace moekit::cli {

void add_common_options(CLI::App& command, CommonOptions& options) {
    command.add_flag("--json", options.json, "Print the result as a JSON document on stdout");
    command.add_option("--threads", options.threads, "CPU threads (default: all cores)")->check(CLI::NonNegativeNumber);
    command.add_option("--device", options.device, "Where to compute: cpu, cuda or auto (GPU when one is usable)")
        ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
}

std::string apply_common_options(const CommonOptions& options) {
    if (options.threads > 0) omp_set_num_threads(options.threads);
    if (options.device == "cpu") return "cpu";
    const bool gpu_usable = !backend::cuda_devices().empty();
    if (options.device == "cuda" && !gpu_usable)
        throw Error("cli", "--device cuda requested but no GPU is usable: " + backend::cuda_unavailable_reason());
    return gpu_usable ? "cuda" : "cpu";
}

std::shared_ptr<backend::DeviceOps> device_ops(const std::string& resolved_device) {
    return resolved_device == "cuda" ? backend::make_cuda_ops(0) : nullptr;
}

std::function<void(double, const std::string&)> tty_progress(const std::string& name) {
    if (isatty(fileno(stderr)) == 0) return nullptr;
    return [name](double fraction, const std::string& what) {
        std::fprintf(stderr, "\r\033[K[%s] %5.1f%%  %s", name.c_str(), 100.0 * fraction, what.c_str());
        if (fraction >= 1.0) std::fprintf(stderr, "\r\033[K");
        std::fflush(stderr);
    };
}

void clear_tty_progress() {
    if (isatty(fileno(stderr)) != 0) {
        std::fprintf(stderr, "\r\033[K");
        std::fflush(stderr);
    }
}

void require_directory(const std::string& path, const std::string& what) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) throw Error("cli", what + " '" + path + "' does not exist");
    if (!std::filesystem::is_directory(path, ec)) throw Error("cli", what + " '" + path + "' is not a directory");
}

void add_corpus_options(CLI::App& command, CorpusFlags& flags) {
    command.add_option("--format", flags.format, "Data format for every file: auto (by extension), text, jsonl, bin, npy")
        ->check(CLI::IsMember({"auto", "text", "jsonl", "bin", "npy"}));
    command.add_option("--seq-len", flags.seq_len, "Window length in tokens (default: min(512, max_position_embeddings))");
    command.add_option("--max-tokens", flags.max_tokens, "Use only the first N tokens of each domain (default: all)");
    command.add_flag("--no-eos", flags.no_eos, "Do not append EOS after each text document");
    command.add_option("--bos", flags.bos, "Prepend BOS to each text document: auto (tokenizer_config add_bos_token), yes, no")
        ->check(CLI::IsMember({"auto", "yes", "no"}));
    command.add_option("--batch-tokens", flags.batch_tokens, "Tokens per forward pass (memory vs. weight reloads; default 16384)");
}

void check_corpus_options(const CorpusFlags& flags) {
    if (flags.seq_len != -1 && flags.seq_len < 2)
        throw Error("cli", "--seq-len must be at least 2 (got " + std::to_string(flags.seq_len) + ")");
    if (flags.max_tokens < 0) throw Error("cli", "--max-tokens must not be negative (got " + std::to_string(flags.max_tokens) + ")");
    if (flags.batch_tokens < 1) throw Error("cli", "--batch-tokens must be positive (got " + std::to_string(flags.batch_tokens) + ")");
}

model::CorpusOptions corpus_options(const CorpusFlags& flags, const std::string& sources, const std::string& flag) {
    check_corpus_options(flags);
    model::CorpusOptions out;
    out.data = io::parse_data_sources(sources);
    out.format = io::parse_data_format(flags.format);
    out.seq_len = flags.seq_len == -1 ? 0 : flags.seq_len;
    out.max_tokens = flags.max_tokens;
    out.add_eos = !flags.no_eos;
    if (flags.bos != "auto") out.add_bos = flags.bos == "yes";
    out.flag = flag;
    return out;
}

}  // namespace moekit::cli
