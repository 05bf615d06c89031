// `moekit profile MODEL_DIR --data ... -o report/` and `moekit profile --trace FILE ... -o report/`:
// routing statistics with bootstrap intervals (analysis/profile.h).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "analysis/profile.h"
#include "cli/commands.h"
#include "core/error.h"
#include "dist/comm.h"

namespace moekit::cli {

namespace {
std::string seconds(double s) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f s", s);
    return buf;
}

std::vector<int64_t> parse_int_list(const std::string& text, const std::string& flag) {
    std::vector<int64_t> out;
    size_t pos = 0;
    while (pos <= text.size()) {
        const size_t comma = text.find(',', pos);
        const std::string item = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        try {
            size_t used = 0;
            const long long v = std::stoll(item, &used);
            if (used != item.size()) throw std::invalid_argument(item);
            out.push_back(v);
        } catch (const std::exception&) {
            throw Error("cli", flag + " expects comma-separated integers, got '" + text + "'");
        }
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    return out;
}
}  // namespace

CLI::App* add_profile(CLI::App& app, ProfileCommand& command) {
    CLI::App* sub = app.add_subcommand("profile", "Routing statistics: load balance, consistency, congestion, specialization");
    sub->description(
        "How a checkpoint's routers behave on some data, with 95% bootstrap intervals (METHODS.md §1-4):\n"
        "load balance (MaxVio, CV, entropy, Gini, Jain, dead experts, router entropy, HF aux loss), local\n"
        "routing consistency (SRP at segment lengths m, SCH/LRU/LFU cache hit rates at cache ratios rho),\n"
        "congestion gamma_eff (single-type temperature fit and multi-type fixed-point fit), and\n"
        "specialization (per-domain expert rates, vocabulary specialization, domain divergence,\n"
        "co-activation, inter-layer affinity, super experts).\n\n"
        "The model runs over --data exactly as `moekit eval` cuts it (windows of --seq-len ids) while a\n"
        "routing trace is recorded; every statistic is computed from that trace. --save-trace keeps it;\n"
        "--trace FILE (repeatable; several traces are merged) recomputes the report without the model.\n"
        "Data-parallel: `mpirun -n N moekit profile ...` splits the batches of windows (--batch-tokens\n"
        "each) over N ranks; rank 0 merges the partial traces and writes the same report as one process.\n\n"
        "Output: a summary on the terminal; with -o DIR also DIR/profile.json, DIR/*.csv and\n"
        "DIR/index.html (self-contained, offline); --json prints profile.json on stdout.\n"
        "Formats and conventions: docs/PROFILE.md.\n\n"
        "Examples:\n"
        "  moekit profile assets/demo-moe --data en=assets/corpus/eval/en.txt,code=assets/corpus/eval/code-py.txt -o report/\n"
        "  moekit profile MODEL --data calib.jsonl --save-trace run1.trace --json > profile.json\n"
        "  moekit profile --trace run1.trace --trace run2.trace -o merged-report/");
    sub->add_option("MODEL_DIR", command.model_dir, "Checkpoint directory (not with --trace)");
    sub->add_option("--data", command.data, "FILE[,FILE...] or DOMAIN=FILE[,...] (formats as in eval)");
    sub->add_option("--trace", command.traces, "Recompute from a saved trace instead of running the model (repeatable: merged)");
    sub->add_option("-o,--output", command.output, "Write profile.json, *.csv and index.html into this directory");
    sub->add_flag("--force", command.force, "Replace an existing output directory / trace file");
    sub->add_option("--save-trace", command.save_trace, "Save the routing trace to this file (safetensors)");
    add_corpus_options(*sub, command.corpus);
    sub->add_option("--segment-lengths", command.segment_lengths, "SRP segment lengths m (default 4,16,64,256)");
    sub->add_option("--cache-ratios", command.cache_ratios, "SCH/LRU/LFU cache ratios rho, capacity rho*k (default 1,2,3,4)");
    sub->add_option("--bootstrap-batches", command.bootstrap_batches, "Batches of sequences for the bootstrap (default 50)");
    sub->add_option("--bootstrap-resamples", command.bootstrap_resamples, "Bootstrap resamples; 0 = no intervals (default 1000)");
    sub->add_option("--seed", command.seed, "Bootstrap seed (default 0)");
    sub->add_option("--vocab-min-count", command.vocab_min_count, "Token ids seen fewer times are left out of vocabulary specialization (default 20)");
    sub->add_option("--logit-sample-stride", command.logit_sample_stride,
                    "Keep the router logits of every N-th position of each sequence for the multi-type congestion fit "
                    "(default 0 = auto: 8, raised to keep about 8192 rows per layer, at most seq-len/4)");
    add_common_options(*sub, command.common);
    return sub;
}

analysis::ProfileOptions profile_options(const ProfileCommand& command) {
    analysis::ProfileOptions options;
    if (!command.traces.empty()) {
        if (!command.model_dir.empty() || !command.data.empty())
            throw Error("cli", "--trace recomputes a saved trace: do not also give MODEL_DIR or --data");
        for (const auto& t : command.traces) options.traces.emplace_back(t);
    } else {
        if (command.model_dir.empty()) throw Error("cli", "give MODEL_DIR and --data (or --trace FILE); see moekit profile --help");
        require_directory(command.model_dir, "MODEL_DIR");
        if (command.data.empty()) throw Error("cli", "--data is required with MODEL_DIR");
        options.model_dir = command.model_dir;
        options.corpus = corpus_options(command.corpus, command.data, "--data");
    }
    check_corpus_options(command.corpus);
    options.batch_tokens = command.corpus.batch_tokens;
    options.logit_sample_stride = command.logit_sample_stride;
    options.params.segment_lengths = parse_int_list(command.segment_lengths, "--segment-lengths");
    options.params.cache_ratios = parse_int_list(command.cache_ratios, "--cache-ratios");
    const auto& m = options.params.segment_lengths;
    options.params.default_segment_length = std::find(m.begin(), m.end(), 16) != m.end() ? 16 : m.front();
    const auto& r = options.params.cache_ratios;
    options.params.default_cache_ratio = std::find(r.begin(), r.end(), 2) != r.end() ? 2 : r.front();
    options.params.bootstrap.batches = command.bootstrap_batches;
    options.params.bootstrap.resamples = command.bootstrap_resamples;
    options.params.bootstrap.seed = command.seed;
    options.params.vocab_min_count = command.vocab_min_count;
    options.params.threads = command.common.threads;
    // Check the outputs before the heavy work.
    if (!command.output.empty() && std::filesystem::exists(command.output) && !command.force)
        throw Error("cli", "output '" + command.output + "' exists; pass --force to replace it");
    if (!command.save_trace.empty()) {
        if (std::filesystem::exists(command.save_trace) && !command.force)
            throw Error("cli", "trace file '" + command.save_trace + "' exists; pass --force to replace it");
        const auto parent = std::filesystem::absolute(command.save_trace).parent_path();
        if (!std::filesystem::is_directory(parent))
            throw Error("cli", "--save-trace: directory '" + parent.string() + "' does not exist");
        options.save_trace = command.save_trace;
    }
    if (dist::rank() == 0) options.progress = tty_progress("profile");
    return options;
}

int run_profile(const ProfileCommand& command) {
    const std::string device = apply_common_options(command.common);
    analysis::ProfileOptions options = profile_options(command);
    use_device(options, device);
    analysis::ProfileResult result = analysis::profile(options);
    if (!result.is_root) return 0;
    std::vector<std::string> files;
    if (!command.output.empty()) files = analysis::write_profile_report(result.doc, command.output, command.force);
    if (command.common.json) {
        std::cout << result.doc.dump(2) << "\n";
        return 0;
    }
    std::cout << analysis::profile_summary_text(result.doc);
    if (!command.output.empty()) {
        std::cout << "\nReport: " << command.output << "/ (";
        for (size_t i = 0; i < files.size(); ++i) std::cout << (i ? ", " : "") << files[i];
        std::cout << ")\n";
    }
    if (options.save_trace) std::cout << "Trace: " << options.save_trace->string() << "\n";
    std::cout << "Time: " << seconds(result.record_s) << " " << (options.traces.empty() ? "forward passes" : "loading traces")
              << ", " << seconds(result.stats_s) << " statistics\n";
    return 0;
}

}  // namespace moekit::cli
