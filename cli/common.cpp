// Shared subcommand options.
#include "cli/common.h"

#include <filesystem>

#include <omp.h>

#include "core/error.h"
#include "cuda/backend.h"

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

void require_directory(const std::string& path, const std::string& what) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) throw Error("cli", what + " '" + path + "' does not exist");
    if (!std::filesystem::is_directory(path, ec)) throw Error("cli", what + " '" + path + "' is not a directory");
}

}  // namespace moekit::cli
