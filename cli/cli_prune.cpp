// `moekit prune MODEL_DIR --method reap --keep 0.5 --calib calib.txt -o OUT_DIR`: expert pruning
// into a smaller checkpoint (prune/prune.h).
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "core/error.h"
#include "prune/prune.h"

namespace moekit::cli {

CLI::App* add_prune(CLI::App& app, PruneCommand& command) {
    CLI::App* sub = app.add_subcommand("prune", "Remove routed experts: a smaller checkpoint transformers and moekit load");
    sub->description(
        "Scores every routed expert on calibration data, removes the lowest-scoring ones in every MoE layer and\n"
        "writes a smaller Hugging Face checkpoint: experts renumbered, router rows (and biases /\n"
        "e_score_correction_bias) sliced, expert count in config.json updated, untouched tensors copied\n"
        "byte-for-byte. OUT_DIR/moekit.json records what was removed per layer, every expert's score, the\n"
        "parameters and an expert_map (used by `moekit eval --ref`); README.md says how the model was made.\n\n"
        "Methods (lower score is pruned first; exact definitions in moekit.json params.conventions):\n"
        "  frequency           tokens routed to the expert\n"
        "  weighted-frequency  sum of its gate weights\n"
        "  ean                 mean norm of its output over routed tokens\n"
        "  reap                mean of gate (renormalized over the top-k) x output norm over routed tokens\n"
        "  tcess               PreMoe: mean over tokens of its router logit when selected\n"
        "  easy-ep             gate x output norm x how much the MoE block turns the hidden state\n"
        "  naee                subset minimizing the MoE output error (exhaustive when small, greedy otherwise)\n"
        "  random              seeded baseline (--seed)\n\n"
        "--keep: a ratio of each layer's experts (0.5) or a count (8); it must keep at least top-k and fewer\n"
        "than all experts. DeepSeek group-limited routing needs a multiple of n_group (refused otherwise).\n"
        "--budget uniform keeps the same count in every layer (loadable by transformers); global keeps the same\n"
        "total but lets layers differ (one threshold on per-layer normalized scores, --min-keep per layer):\n"
        "such checkpoints carry config field moekit_experts_per_layer, which moekit reads and transformers\n"
        "cannot load. Super experts (rare huge activations) are never removed unless --no-protect-super-experts.\n\n"
        "Calibration data (--calib): same formats and tokenization as `moekit eval --data`.\n\n"
        "Examples:\n"
        "  moekit prune assets/demo-moe --method reap --keep 0.5 --calib assets/corpus/train/en.txt -o pruned/\n"
        "  moekit prune MODEL --method frequency --keep 48 --budget global --calib c.jsonl --dry-run");
    sub->add_option("MODEL_DIR", command.model_dir, "Checkpoint directory to prune")->required();
    sub->add_option("-o,--output", command.output, "Output directory (must not exist unless --force)");
    sub->add_option("--method", command.method, "frequency, weighted-frequency, ean, reap, tcess, easy-ep, naee or random (default reap)");
    sub->add_option("--keep", command.keep, "Experts to keep per layer: a ratio (0.5) or a count (8)")->required();
    sub->add_option("--calib", command.calib, "Calibration data: FILE[,FILE...] or DOMAIN=FILE[,...]")->required();
    sub->add_option("--budget", command.budget, "uniform (same count per layer, default) or global (one threshold, counts differ)");
    sub->add_option("--min-keep", command.min_keep, "Global budget: experts every layer keeps at least (default max(top-k, target/2))");
    sub->add_flag("--protect-super-experts,!--no-protect-super-experts", command.protect_super_experts,
                  "Never remove super experts (default on)");
    sub->add_flag("--dry-run", command.dry_run, "Print the plan without writing anything");
    sub->add_flag("--force", command.force, "Replace an existing output directory");
    sub->add_option("--seed", command.seed, "Seed of the random method (default 0)");
    add_corpus_options(*sub, command.corpus);
    sub->add_option("--naee-max-tokens", command.naee_max_tokens, "NAEE: calibration tokens every expert runs on (default 2048)");
    sub->add_option("--naee-max-subsets", command.naee_max_subsets, "NAEE: exhaustive search up to this many drop sets (default 5000)");
    add_common_options(*sub, command.common);
    return sub;
}

prune::PruneOptions prune_options(const PruneCommand& command) {
    prune::PruneOptions options;
    options.model_dir = command.model_dir;
    options.out_dir = command.output;
    options.method = command.method;
    options.keep = command.keep;
    options.budget = command.budget;
    options.min_keep = command.min_keep;
    options.protect_super_experts = command.protect_super_experts;
    options.dry_run = command.dry_run;
    options.force = command.force;
    options.seed = command.seed;
    options.calib = corpus_options(command.corpus, command.calib, "--calib");
    options.batch_tokens = command.corpus.batch_tokens;
    options.naee_max_tokens = command.naee_max_tokens;
    options.naee_max_subsets = command.naee_max_subsets;
    options.threads = command.common.threads;
    options.tool_version = MOEKIT_VERSION;
    options.progress = tty_progress("prune");
    return options;
}

int run_prune(const PruneCommand& command) {
    const std::string device = apply_common_options(command.common);
    require_directory(command.model_dir, "MODEL_DIR");

    prune::PruneOptions options = prune_options(command);
    use_device(options, device);
    const prune::PruneResult result = prune::prune(options);
    clear_tty_progress();
    if (command.common.json)
        std::cout << prune::to_json(result).dump(2) << "\n";
    else
        std::cout << prune::to_text(result);
    return 0;
}

}  // namespace moekit::cli
