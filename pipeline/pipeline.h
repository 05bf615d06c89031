// `moekit run`: plans a recipe (pipeline/recipe.h) into concrete steps, runs them in order with
// one calibration cache shared by every step, checks the assertions and writes
// runs/<name>/summary.json and summary.md.
//
// Layout of runs/<name>/ (owned by moekit run; marked by a .moekit-run file):
//   <step>/ or <step>.gguf     a step's output (checkpoints, profile reports); replaced on re-run
//   steps/<step>.json          the step's full JSON report (what `moekit <kind> --json` prints)
//   calibration/               saved calibration statistics (model/calib_cache.h); cleared at the
//                              start of a run unless --reuse-calibration
//   summary.json, summary.md   parameters, timings, peak memory, sizes, metrics, assertions
//
// Running a step (parsing its options with the subcommand's own flags and calling the library)
// is the caller's: cli/cli_run.cpp supplies a StepRunner, so this module knows no CLI parser.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cuda/device_ops.h"
#include "model/calib_cache.h"
#include "pipeline/recipe.h"

namespace moekit::pipeline {

struct PlannedStep {
    const Step* step = nullptr;
    std::string kind, name;
    std::filesystem::path input;               // the checkpoint the step reads
    std::optional<std::filesystem::path> ref;  // eval: the reference checkpoint
    std::filesystem::path output;              // empty: the step writes nothing
    bool output_is_model = false;              // a checkpoint directory later steps can read
    std::vector<std::string> args;             // the subcommand's arguments after its name
    std::vector<int> arg_lines;                // recipe line of each argument (0: set by moekit run)

    // The recipe line an error message points at: the line of the option it names, else the step's.
    int line_for(const std::string& message) const;
};

struct RunOptions {
    std::filesystem::path recipe;
    std::filesystem::path runs_dir = "runs";
    bool dry_run = false;
    bool reuse_calibration = false;
    int threads = 0;                           // 0: all cores
    // Where the model runs: "cpu" or "cuda" is passed to every step as --device (unless the step
    // sets --device; "auto": nothing passed, the steps choose as the run did) and the shared
    // calibration passes run on device_ops (nullptr: the CPU).
    std::string device = "auto";
    std::shared_ptr<backend::DeviceOps> device_ops = nullptr;
    std::string tool_version;
    // A line of progress per step start (stderr in the CLI).
    std::function<void(const std::string&)> progress;
    // Fraction done of a shared calibration pass (a terminal progress bar in the CLI).
    std::function<void(double, const std::string&)> pass_progress;
};

enum class RunMode { validate, execute };

// What a step calibrates on, so that the statistics of several steps reading the same model with
// the same corpus come from one shared pass (model::run_shared_pass) before the first of them runs.
struct StepCalibration {
    model::CorpusOptions corpus;
    int64_t batch_tokens = 0;
    // The step's sinks, built as the step itself would build its observers.
    std::function<std::vector<std::unique_ptr<model::CalibrationSink>>(const model::ModelConfig&, const model::Corpus&)> sinks;
};

struct StepOutcome {
    nlohmann::ordered_json report;                // execute mode: the step's JSON report
    std::optional<StepCalibration> calibration;   // validate mode: set for steps with shareable statistics
};

// Parses `step.args` with the subcommand's flags; validate mode checks them (and says what the
// step calibrates on), execute mode runs the step with `cache`. Throws
// Error("recipe", "<file>:<line>: ...") for options the subcommand refuses.
using StepRunner = std::function<StepOutcome(const PlannedStep& step, RunMode mode, model::CalibrationCache* cache)>;

struct RunResult {
    nlohmann::ordered_json summary;
    std::string markdown;
    std::filesystem::path run_dir;
    bool asserts_hold = true;
    int exit_code() const { return asserts_hold ? 0 : 3; }
};

// Plans without touching the file system beyond reading the recipe.
std::vector<PlannedStep> plan(const Recipe& recipe, const RunOptions& options);

// Validates every step first (bad options fail before any heavy work), then runs them; a failed
// step assertion stops the run (later steps are reported as skipped). Recipe assertions are
// checked at the end. Dry run: validate and return the plan without writing anything.
// Before the first of two or more steps that calibrate on the same model with the same corpus
// and batching, one shared pass computes all their statistics (summary "shared_passes"); the
// steps then find them saved.
RunResult run(const RunOptions& options, const StepRunner& runner);

// The value of "<path>" in a step record: its "metrics" first, then its report (dotted path,
// array indices as numbers). nullopt when absent or not a number/boolean.
std::optional<double> lookup_metric(const nlohmann::ordered_json& step_record, const std::string& path);

}  // namespace moekit::pipeline
