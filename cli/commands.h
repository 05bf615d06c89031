// Every subcommand: a plain options struct filled by CLI11, a function that declares its
// flags, and run_<name>(options) that calls exactly one library entry point and prints.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/common.h"

namespace moekit::prune { struct PruneOptions; }
namespace moekit::merge { struct MergeOptions; }
namespace moekit::svd { struct SvdOptions; }
namespace moekit::quantize { struct QuantizeOptions; }
namespace moekit::model { struct EvalOptions; }
namespace moekit::analysis { struct ProfileOptions; }

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
    std::string compute = "fp32";     // fp32 | bf16 (model::EngineOptions::compute)
    CorpusFlags corpus;
};
CLI::App* add_eval(CLI::App& app, EvalCommand& command);
int run_eval(const EvalCommand& command);
// The library options the flags describe (checks flag values; `moekit run` steps use it too).
model::EvalOptions eval_options(const EvalCommand& command);

struct ProfileCommand {
    CommonOptions common;
    std::string model_dir;
    std::string data;
    std::vector<std::string> traces;
    std::string output;
    bool force = false;
    std::string save_trace;
    CorpusFlags corpus;
    std::string segment_lengths = "4,16,64,256";
    std::string cache_ratios = "1,2,3,4";
    int64_t bootstrap_batches = 50;
    int64_t bootstrap_resamples = 1000;
    uint64_t seed = 0;
    int64_t vocab_min_count = 20;
    int64_t logit_sample_stride = 0;
};
CLI::App* add_profile(CLI::App& app, ProfileCommand& command);
int run_profile(const ProfileCommand& command);
// The library options the flags describe (checks flag values; `moekit run` steps use it too).
analysis::ProfileOptions profile_options(const ProfileCommand& command);
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
    CorpusFlags corpus;               // how the --calib files become windows
    int64_t naee_max_tokens = 2048;
    int64_t naee_max_subsets = 5000;
};
CLI::App* add_prune(CLI::App& app, PruneCommand& command);
int run_prune(const PruneCommand& command);
// The library options the flags describe (checks flag values; `moekit run` steps use it too).
prune::PruneOptions prune_options(const PruneCommand& command);

struct MergeCommand {
    CommonOptions common;
    std::string model_dir;
    std::string output;
    std::string method = "m-smoe";
    std::string experts;              // count (8) or ratio (0.5)
    std::string calib;                // FILE[,FILE...] or DOMAIN=FILE[,...]
    std::string router = "refit";
    bool align = true;
    int64_t svd_rank = 0;
    int64_t sample_tokens = 2048;
    uint64_t seed = 0;
    bool dry_run = false;
    bool force = false;
    CorpusFlags corpus;
};
CLI::App* add_merge(CLI::App& app, MergeCommand& command);
int run_merge(const MergeCommand& command);
// The library options the flags describe (checks flag values; `moekit run` steps use it too).
merge::MergeOptions merge_options(const MergeCommand& command);

struct SvdCommand {
    CommonOptions common;
    std::string model_dir;
    std::string output;
    std::string method = "svd-llm";
    double ratio = 0.0;
    std::string format = "dense";
    std::string calib;                // FILE[,FILE...] or DOMAIN=FILE[,...]
    bool dry_run = false;
    bool force = false;
    CorpusFlags corpus;
};
CLI::App* add_svd(CLI::App& app, SvdCommand& command);
int run_svd(const SvdCommand& command);
// The library options the flags describe (checks flag values; `moekit run` steps use it too).
svd::SvdOptions svd_options(const SvdCommand& command);
void use_device(svd::SvdOptions& options, const std::string& resolved_device);

struct QuantizeCommand {
    CommonOptions common;
    std::string model_dir;
    std::string output;
    std::string format = "gguf";
    std::string method = "rtn";
    int bits = 4;
    std::string type;                 // ggml type; empty: from --bits
    int64_t group_size = 128;
    bool asym = false;
    bool keep_embeddings = false;
    std::string fake_dtype = "f32";
    std::string calib;
    std::string hessian = "expert";
    double damp = 0.01;
    bool act_order = false;
    int64_t min_expert_tokens = 0;
    bool mixed_precision = false;
    double avg_bits = 3.5;
    std::vector<int> candidate_bits = {2, 3, 4, 8};
    std::vector<std::string> candidate_types = {"q4_0", "q5_0", "q8_0"};
    double mp_alpha = 1.0, mp_beta = 1.0;
    bool dry_run = false;
    bool force = false;
    CorpusFlags corpus;
};
CLI::App* add_quantize(CLI::App& app, QuantizeCommand& command);
int run_quantize(const QuantizeCommand& command);
// The library options the flags describe (checks flag values; `moekit run` steps use it too).
quantize::QuantizeOptions quantize_options(const QuantizeCommand& command);

struct RunCommand {
    CommonOptions common;
    std::string recipe;
    std::string runs_dir = "runs";
    bool dry_run = false;
    bool reuse_calibration = false;
};
CLI::App* add_run(CLI::App& app, RunCommand& command);
// 0 when every assertion holds, 3 when one fails.
int run_run(const RunCommand& command);

}  // namespace moekit::cli
