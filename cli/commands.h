// Every subcommand: a plain options struct filled by CLI11, a function that declares its
// flags, and run_<name>(options) that calls exactly one library entry point and prints.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "cli/common.h"

namespace moekit::cli {

struct InspectCommand {
    CommonOptions common;
    std::string model_dir;
};
CLI::App* add_inspect(CLI::App& app, InspectCommand& command);
int run_inspect(const InspectCommand& command);

}  // namespace moekit::cli
