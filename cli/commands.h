// Every subcommand: a plain options struct filled by CLI11, a function that declares its
// flags, and run_<name>(options) that calls exactly one library entry point and prints.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/common.h"

namespace moekit::cli {

struct InspectCommand {
    CommonOptions common;
    std::string model_dir;
};
CLI::App* add_inspect(CLI::App& app, InspectCommand& command);
int run_inspect(const InspectCommand& command);

struct EvalCommand {
    CommonOptions common;
    std::string model_dir;
    std::string data;                 // FILE[,FILE...] or DOMAIN=FILE[,...]
    std::string ref_dir;              // empty: no reference
    std::string format = "auto";
    int64_t seq_len = -1;             // -1: min(512, max_position_embeddings)
    int64_t max_tokens = 0;
    bool no_eos = false;
    std::string bos = "auto";         // auto | yes | no
    int64_t batch_tokens = 16384;
};
CLI::App* add_eval(CLI::App& app, EvalCommand& command);
int run_eval(const EvalCommand& command);

struct PruneCommand {
    CommonOptions common;
    std::string model_dir;
    std::string output;
    std::string method = "reap";
    std::string keep;                 // ratio (0.5) or count (8)
    std::string calib;                // FILE[,FILE...] or DOMAIN=FILE[,...]
    std::string budget = "uniform";
    int64_t min_keep = 0;
    bool protect_super_experts = true;
    bool dry_run = false;
    bool force = false;
    uint64_t seed = 0;
    std::string format = "auto";
    int64_t seq_len = -1;
    int64_t max_tokens = 0;
    bool no_eos = false;
    std::string bos = "auto";
    int64_t batch_tokens = 16384;
    int64_t naee_max_tokens = 2048;
    int64_t naee_max_subsets = 5000;
};
CLI::App* add_prune(CLI::App& app, PruneCommand& command);
int run_prune(const PruneCommand& command);

}  // namespace moekit::cli
