// `moekit run RECIPE`: a pipeline of subcommands from a YAML/JSON recipe (pipeline/pipeline.h).
// Each step's options are parsed by the subcommand's own CLI11 flags (so a recipe takes exactly
// what the command line takes) and turned into the library options by the same <kind>_options()
// the subcommand uses; this file is the StepRunner that connects the two.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "analysis/profile.h"
#include "cli/commands.h"
#include "core/error.h"
#include "merge/merge.h"
#include "model/eval.h"
#include "pipeline/pipeline.h"
#include "prune/prune.h"
#include "quantize/quantize.h"
#include "svd/svd.h"

namespace moekit::cli {

namespace {

using Json = nlohmann::ordered_json;

std::string strip_module(const std::string& what) {
    const size_t close = what.find("] ");
    return what.rfind('[', 0) == 0 && close != std::string::npos ? what.substr(close + 2) : what;
}

// Parses the step's arguments with the subcommand's flags into `command`.
template <class Command, class Add>
void parse_step(const pipeline::PlannedStep& step, const std::string& recipe, Add add, Command& command) {
    CLI::App root{"moekit"};
    add(root, command);
    std::vector<std::string> reversed(step.args.rbegin(), step.args.rend());
    reversed.push_back(step.kind);
    try {
        root.parse(reversed);
    } catch (const CLI::ParseError& e) {
        throw Error("recipe", recipe + ":" + std::to_string(step.line_for(e.what())) + ": step '" + step.name + "': " + e.what());
    }
}

// Runs `f`, turning a user error into a recipe error at the step's line (validation only: once
// a step runs, its errors are its own and keep their module).
template <class F>
auto at_step(const pipeline::PlannedStep& step, const std::string& recipe, F f) {
    try {
        return f();
    } catch (const Error& e) {
        const std::string message = strip_module(e.what());
        throw Error("recipe", recipe + ":" + std::to_string(step.line_for(message)) + ": step '" + step.name + "': " + message);
    }
}


using Sinks = std::vector<std::unique_ptr<model::CalibrationSink>>;
using NoCalibration = std::optional<pipeline::StepCalibration>;

// What a step of one kind calibrates on: its corpus, batching and its single sink.
template <class MakeSink>
NoCalibration calibration_of(const model::CorpusOptions& corpus, int64_t batch_tokens, MakeSink make) {
    return pipeline::StepCalibration{corpus, batch_tokens, [make](const model::ModelConfig& mc, const model::Corpus& c) {
                                         Sinks v;
                                         v.push_back(make(mc, c));
                                         return v;
                                     }};
}

// One step of one kind: parse its flags into Command, build the library options; validate mode
// returns what it calibrates on (`calibration(options)`), execute mode runs `exec(command, options)`.
template <class Command, class Add, class ToOptions, class Calibration, class Exec>
pipeline::StepOutcome step_kind(const pipeline::PlannedStep& step, pipeline::RunMode mode, const std::string& recipe, Add add,
                                ToOptions to_options, Calibration calibration, Exec exec) {
    Command command;
    parse_step(step, recipe, add, command);
    auto options = at_step(step, recipe, [&] { return to_options(command); });
    if (mode == pipeline::RunMode::validate) return {{}, calibration(options)};
    use_device(options, apply_common_options(command.common));
    options.progress = tty_progress(step.name);
    Json report = exec(command, options);
    clear_tty_progress();
    return {std::move(report), std::nullopt};
}

pipeline::StepOutcome run_step(const pipeline::PlannedStep& step, pipeline::RunMode mode, model::CalibrationCache* cache,
                               const std::string& recipe) {
    const auto none = [](const auto&) { return NoCalibration(); };
    if (step.kind == "prune")
        return step_kind<PruneCommand>(
            step, mode, recipe, add_prune, prune_options,
            [](const prune::PruneOptions& o) {
                return calibration_of(o.calib, o.batch_tokens, [o](const model::ModelConfig& mc, const model::Corpus&) {
                    return prune::calibration_sink(mc, o);
                });
            },
            [&](const PruneCommand&, prune::PruneOptions& o) {
                o.calib_cache = cache;
                return prune::to_json(prune::prune(o));
            });
    if (step.kind == "merge")
        return step_kind<MergeCommand>(
            step, mode, recipe, add_merge, merge_options,
            [](const merge::MergeOptions& o) {
                return calibration_of(o.calib, o.batch_tokens, [o](const model::ModelConfig& mc, const model::Corpus& corpus) {
                    return merge::calibration_sink(mc, corpus, o);
                });
            },
            [&](const MergeCommand&, merge::MergeOptions& o) {
                o.calib_cache = cache;
                return merge::to_json(merge::merge(o));
            });
    if (step.kind == "profile")
        return step_kind<ProfileCommand>(
            step, mode, recipe, add_profile, profile_options,
            [](const analysis::ProfileOptions& o) {
                if (!o.traces.empty()) return NoCalibration();
                return calibration_of(o.corpus, o.batch_tokens, [o](const model::ModelConfig& mc, const model::Corpus& corpus) {
                    return analysis::calibration_sink(mc, corpus, o);
                });
            },
            [&](const ProfileCommand& c, analysis::ProfileOptions& o) {
                o.calib_cache = cache;
                analysis::ProfileResult r = analysis::profile(o);
                analysis::write_profile_report(r.doc, c.output, /*force=*/true);
                return r.doc;
            });
    if (step.kind == "svd")
        return step_kind<SvdCommand>(step, mode, recipe, add_svd, svd_options, none,
                                     [](const SvdCommand&, svd::SvdOptions& o) { return svd::to_json(svd::svd(o)); });
    if (step.kind == "quantize")
        return step_kind<QuantizeCommand>(step, mode, recipe, add_quantize, quantize_options, none,
                                          [](const QuantizeCommand&, quantize::QuantizeOptions& o) {
                                              return quantize::to_json(quantize::quantize(o));
                                          });
    if (step.kind == "eval")
        return step_kind<EvalCommand>(step, mode, recipe, add_eval, eval_options, none,
                                      [](const EvalCommand&, model::EvalOptions& o) { return model::to_json(model::evaluate(o)); });
    throw InternalError("run", "no runner for step kind '" + step.kind + "'");
}

std::string seconds_text(double s) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.1f s", s);
    return buf;
}

}  // namespace

CLI::App* add_run(CLI::App& app, RunCommand& command) {
    CLI::App* sub = app.add_subcommand("run", "Run a pipeline of moekit commands from a YAML or JSON recipe (batch jobs, CI)");
    sub->description(
        "Runs named steps (profile, prune, merge, svd, quantize, eval) in order, each with the same options as the\n"
        "subcommand of that name, and checks assertions on the metrics they report. A step reads the latest\n"
        "checkpoint an earlier step wrote (or 'input: <step>|model|PATH'); eval compares with the original model\n"
        "(or 'ref: <step>|model|PATH|none'). Calibration statistics are computed once per model and corpus: steps\n"
        "that calibrate on the same checkpoint with the same corpus share one forward pass (prune scores, merge\n"
        "router statistics, profile traces; svd and gptq recompute theirs), and --reuse-calibration also reuses\n"
        "those of an earlier run.\n\n"
        "Outputs: RUNS_DIR/<name>/<step>[.gguf], steps/<step>.json (each step's full report), calibration/,\n"
        "summary.json and summary.md (parameters, timings, peak memory, sizes, metrics, assertions).\n"
        "Paths in the recipe are relative to the recipe file.\n\n"
        "Recipe:\n"
        "  name: demo-small\n"
        "  model: assets/demo-moe\n"
        "  calib: assets/corpus/train/en.txt       # --calib of prune/merge/svd/gptq, --data of profile\n"
        "  data: assets/corpus/eval/en.txt         # --data of eval\n"
        "  corpus: {seq_len: 128}                  # corpus flags for every step that runs the model\n"
        "  steps:\n"
        "    - profile: {}\n"
        "    - prune: {method: reap, keep: 0.75}\n"
        "    - merge: {method: hc-smoe, experts: 8}\n"
        "    - quantize: {type: q4_K}\n"
        "    - eval: {input: merge, assert: [ppl_ratio <= 1.5]}\n"
        "  assert:\n"
        "    - profile.srp_m16 >= 10               # <step>.<metric>, or a path in the step's report\n\n"
        "Options are the subcommand's long flags without dashes (keep, method, dry_run: true, align: false);\n"
        "lists become comma lists. Assertions: \"<metric> <op> <number>\", op one of <= < >= > == !=; metrics are\n"
        "the step's summary metrics (eval: ppl, ref_ppl, ppl_ratio, kl_mean, kl_p99, top1_agreement,\n"
        "routing_agreement; profile: srp_m16, sch_r2, max_vio_mean, dead_experts, ...; every calibrating step:\n"
        "calibration_forward_tokens) or any numeric path of its report (prune.result.experts_kept).\n\n"
        "Exit codes: 0 all assertions hold, 3 an assertion failed (later steps are skipped), 1 bad recipe or input\n"
        "(the message names FILE:LINE and the key), 2 internal error.\n\n"
        "Examples:\n"
        "  moekit run docs/examples/demo-pipeline.yaml\n"
        "  moekit run recipe.yaml --dry-run            # validate every step's options and print the plan\n"
        "  moekit run recipe.yaml --reuse-calibration  # re-run without running the model for calibration");
    sub->add_option("RECIPE", command.recipe, "Recipe file (.yaml, .yml or .json)")->required();
    sub->add_option("--runs-dir", command.runs_dir, "Where run directories go (default runs)");
    sub->add_flag("--dry-run", command.dry_run, "Validate the recipe and print the plan without running anything");
    sub->add_flag("--reuse-calibration", command.reuse_calibration,
                  "Reuse calibration statistics saved by an earlier run of this recipe (RUNS_DIR/<name>/calibration)");
    add_common_options(*sub, command.common);
    return sub;
}

int run_run(const RunCommand& command) {
    const std::string device = apply_common_options(command.common);
    pipeline::RunOptions options;
    // An explicit --device (or a GPU that auto chose) is passed on to every step.
    options.device = command.common.device == "auto" && device == "cpu" ? "auto" : device;
    options.device_ops = device_ops(device);
    options.recipe = command.recipe;
    options.runs_dir = command.runs_dir;
    options.dry_run = command.dry_run;
    options.reuse_calibration = command.reuse_calibration;
    options.threads = command.common.threads;
    options.tool_version = MOEKIT_VERSION;
    options.progress = [](const std::string& line) { std::cerr << "moekit run: " << line << "\n"; };
    options.pass_progress = tty_progress("calibration");
    const std::string recipe = command.recipe;
    const pipeline::RunResult result = pipeline::run(options, [&](const pipeline::PlannedStep& step, pipeline::RunMode mode,
                                                                 model::CalibrationCache* cache) -> pipeline::StepOutcome {
        return run_step(step, mode, cache, recipe);
    });
    if (command.common.json) {
        std::cout << result.summary.dump(2) << "\n";
        return result.exit_code();
    }
    if (command.dry_run) {
        std::cout << "Recipe " << command.recipe << " is valid. Plan (run directory " << result.run_dir.string() << "):\n";
        for (const auto& s : result.summary["steps"]) {
            std::cout << "  " << s["name"].get<std::string>() << ": moekit " << s["kind"].get<std::string>();
            for (const auto& a : s["args"]) std::cout << " " << a.get<std::string>();
            std::cout << "\n";
        }
        return 0;
    }
    std::cout << result.markdown << "\nSummary: " << (result.run_dir / "summary.json").string() << ", "
              << (result.run_dir / "summary.md").string() << " (" << seconds_text(result.summary["timing"]["wall_s"].get<double>())
              << ")\n";
    return result.exit_code();
}

}  // namespace moekit::cli
