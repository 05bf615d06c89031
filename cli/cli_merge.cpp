// `moekit merge MODEL_DIR --method m-smoe --experts 8 --calib calib.txt -o OUT_DIR`: expert
// merging into a smaller checkpoint (merge/merge.h).
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "core/error.h"
#include "merge/merge.h"

namespace moekit::cli {

CLI::App* add_merge(CLI::App& app, MergeCommand& command) {
    CLI::App* sub = app.add_subcommand("merge", "Merge routed experts into fewer: a smaller checkpoint transformers and moekit load");
    sub->description(
        "Groups every MoE layer's routed experts into N groups on calibration data, merges each group into one\n"
        "expert and writes a Hugging Face checkpoint with N experts per layer: merged gate/up/down weights,\n"
        "a router with N rows (refit or averaged), expert count in config.json updated, shared experts and\n"
        "everything else copied byte-for-byte. OUT_DIR/moekit.json records the groups, member weights, routing\n"
        "agreement with the original and the parameters, and an expert_map (used by `moekit eval --ref`).\n\n"
        "Grouping (--method; exact definitions in moekit.json params.conventions):\n"
        "  m-smoe   the N most frequent experts are dominant; the others join the dominant expert whose\n"
        "           router-logit column is most similar (cosine over the calibration tokens)\n"
        "  hc-smoe  average-linkage clustering of the experts' mean outputs (runs every expert on a sample of\n"
        "           --sample-tokens calibration tokens)\n"
        "  sub-moe  k-means on cosine distances between expert outputs (same sample; --seed), merged by a joint\n"
        "           SVD with shared U (--svd-rank R keeps the top R singular values; 0 = full rank)\n\n"
        "Members are merged by frequency-weighted averaging after their intermediate neurons are permuted to\n"
        "the group's most frequent member (optimal linear assignment; --no-align turns it off).\n"
        "--router refit (default) fits each group's router row by least squares to the logsumexp of its\n"
        "members' logits (the group keeps its members' routing mass); --router mean averages the rows.\n"
        "--experts: a count (8) or a ratio of the experts (0.5); at least top-k and fewer than all. DeepSeek\n"
        "group-limited routing needs a multiple of n_group (each routing group merges within itself).\n\n"
        "Calibration data (--calib): same formats and tokenization as `moekit eval --data`.\n\n"
        "Examples:\n"
        "  moekit merge assets/demo-moe --method m-smoe --experts 8 --calib assets/corpus/train/en.txt -o merged/\n"
        "  moekit merge MODEL --method hc-smoe --experts 0.75 --calib c.jsonl --router mean --dry-run");
    sub->add_option("MODEL_DIR", command.model_dir, "Checkpoint directory to merge")->required();
    sub->add_option("-o,--output", command.output, "Output directory (must not exist unless --force)");
    sub->add_option("--method", command.method, "m-smoe, hc-smoe or sub-moe (default m-smoe)");
    sub->add_option("--experts", command.experts, "Experts per layer after merging: a count (8) or a ratio (0.5)")->required();
    sub->add_option("--calib", command.calib, "Calibration data: FILE[,FILE...] or DOMAIN=FILE[,...]")->required();
    sub->add_option("--router", command.router, "refit (least squares to the members' logsumexp, default) or mean");
    sub->add_flag("--align,!--no-align", command.align, "Permute neurons to the group's reference before merging (default on)");
    sub->add_option("--svd-rank", command.svd_rank, "sub-moe: rank of the joint SVD (default 0 = full rank)");
    sub->add_option("--sample-tokens", command.sample_tokens, "hc-smoe/sub-moe: tokens every expert runs on (default 2048)");
    sub->add_option("--seed", command.seed, "Seed of sub-moe's k-means (default 0)");
    sub->add_flag("--dry-run", command.dry_run, "Print the groups without writing anything");
    sub->add_flag("--force", command.force, "Replace an existing output directory");
    add_corpus_options(*sub, command.corpus);
    add_common_options(*sub, command.common);
    return sub;
}

merge::MergeOptions merge_options(const MergeCommand& command) {
    merge::MergeOptions options;
    options.model_dir = command.model_dir;
    options.out_dir = command.output;
    options.method = command.method;
    options.experts = command.experts;
    options.router = command.router;
    options.align = command.align;
    options.svd_rank = command.svd_rank;
    options.sample_tokens = command.sample_tokens;
    options.dry_run = command.dry_run;
    options.force = command.force;
    options.seed = command.seed;
    options.calib = corpus_options(command.corpus, command.calib, "--calib");
    options.batch_tokens = command.corpus.batch_tokens;
    options.threads = command.common.threads;
    options.tool_version = MOEKIT_VERSION;
    options.progress = tty_progress("merge");
    return options;
}

int run_merge(const MergeCommand& command) {
    const std::string device = apply_common_options(command.common);
    require_directory(command.model_dir, "MODEL_DIR");

    merge::MergeOptions options = merge_options(command);
    use_device(options, device);
    const merge::MergeResult result = merge::merge(options);
    clear_tty_progress();
    if (command.common.json)
        std::cout << merge::to_json(result).dump(2) << "\n";
    else
        std::cout << merge::to_text(result);
    return 0;
}

}  // namespace moekit::cli
