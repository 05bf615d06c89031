// Options every subcommand shares (--json, --threads, --device) and the helpers that apply
// them. Only cli/ includes CLI11.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

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

// A reader-side existence check that names the flag ("MODEL_DIR 'x' does not exist").
void require_directory(const std::string& path, const std::string& what);

}  // namespace moekit::cli
