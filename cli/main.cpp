// moekit's entry point: declares the subcommands, dispatches to the one parsed, and is the one
// place that maps errors to exit codes (0 ok, 1 user error, 2 internal error).
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "cuda/backend.h"
#include "dist/comm.h"

namespace {

std::string version_text() {
    std::string text = std::string("moekit ") + MOEKIT_VERSION + "\nMPI: " +
                       (moekit::dist::mpi_compiled() ? "built (mpirun -n N moekit profile ...)" : "not built") + "\nCUDA backend: ";
    if (!moekit::backend::cuda_compiled()) return text + "not built\n";
    const auto gpus = moekit::backend::cuda_devices();
    if (gpus.empty()) return text + "built; no usable GPU (" + moekit::backend::cuda_unavailable_reason() + ")\n";
    text += "built\n";
    for (const auto& gpu : gpus) text += "  GPU " + std::to_string(gpu.index) + ": " + gpu.name + "\n";
    return text;
}

int run(int argc, char** argv) {
    using namespace moekit::cli;
    CLI::App app{
        "moekit: profile, evaluate and compress Mixture-of-Experts checkpoints.\n\n"
        "Works on Hugging Face checkpoint directories (config.json + safetensors) of Mixtral,\n"
        "Qwen2-MoE, Qwen3-MoE, OLMoE, DeepSeek-V2 and DeepSeek-V3. Run 'moekit COMMAND --help'\n"
        "for a command's options and examples.\n\n"
        "Exit codes: 0 ok, 1 bad input (the message says what and where), 2 internal error,\n"
        "3 an assertion of `moekit run` failed.",
        "moekit"};
    app.require_subcommand(1);
    bool show_version = false;
    app.add_flag("--version", show_version, "Print the version and the compute backends, then exit");
    app.footer("Start with:  moekit inspect MODEL_DIR");

    InspectCommand inspect;
    CLI::App* inspect_app = add_inspect(app, inspect);
    EvalCommand eval;
    CLI::App* eval_app = add_eval(app, eval);
    ProfileCommand profile;
    CLI::App* profile_app = add_profile(app, profile);
    PruneCommand prune;
    CLI::App* prune_app = add_prune(app, prune);
    MergeCommand merge;
    CLI::App* merge_app = add_merge(app, merge);
    SvdCommand svd;
    CLI::App* svd_app = add_svd(app, svd);
    QuantizeCommand quantize;
    CLI::App* quantize_app = add_quantize(app, quantize);
    RunCommand run_command;
    CLI::App* run_app = add_run(app, run_command);

    if (argc == 1) {
        std::cout << app.help();
        return 0;
    }
    // --version must work without a subcommand.
    for (int i = 1; i < argc; ++i)
        if (std::string(argv[i]) == "--version") {
            std::cout << version_text();
            return 0;
        }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int code = app.exit(e);  // prints help or the parse error
        return code == 0 ? 0 : 1;
    }
    if (inspect_app->parsed()) return run_inspect(inspect);
    if (eval_app->parsed()) return run_eval(eval);
    if (profile_app->parsed()) return run_profile(profile);
    if (prune_app->parsed()) return run_prune(prune);
    if (merge_app->parsed()) return run_merge(merge);
    if (svd_app->parsed()) return run_svd(svd);
    if (quantize_app->parsed()) return run_quantize(quantize);
    if (run_app->parsed()) return run_run(run_command);
    return 1;
}

}  // namespace

// With --json, a failure is also reported as a JSON document on stdout so scripts always get
// something to parse.
static void report_json_error(int argc, char** argv, const std::string& kind, const std::string& message) {
    for (int i = 1; i < argc; ++i)
        if (std::string(argv[i]) == "--json") {
            const nlohmann::ordered_json doc = {{"schema_version", 1}, {"ok", false}, {"error", {{"kind", kind}, {"message", message}}}};
            std::cout << doc.dump(2) << "\n";
            return;
        }
}

// Under MPI a failing rank ends the whole job (the others would wait for it forever).
static int finish(int code) {
    if (code != 0) moekit::dist::abort_all(code);
    moekit::dist::finalize();
    return code;
}

int main(int argc, char** argv) {
    try {
        moekit::dist::init(&argc, &argv);
        return finish(run(argc, argv));
    } catch (const moekit::Error& e) {
        std::cerr << "moekit: error: " << e.what() << "\n";
        report_json_error(argc, argv, "user", e.what());
        return finish(1);
    } catch (const std::exception& e) {
        std::cerr << "moekit: internal error: " << e.what() << "\n(please report this with the command line)\n";
        report_json_error(argc, argv, "internal", e.what());
        return finish(2);
    } catch (...) {
        std::cerr << "moekit: internal error: unknown exception\n";
        return finish(2);
    }
}
