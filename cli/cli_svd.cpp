// `moekit svd MODEL_DIR --ratio 0.5 --calib calib.txt -o OUT_DIR`: low-rank compression of the
// routed experts (svd/svd.h).
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "core/error.h"
#include "cuda/linalg.h"
#include "svd/svd.h"

namespace moekit::cli {

CLI::App* add_svd(CLI::App& app, SvdCommand& command) {
    CLI::App* sub = app.add_subcommand("svd", "Compress routed experts to low rank (SVD-LLM, D2-MoE)");
    sub->description(
        "Replaces every routed expert's gate/up/down projection W [m, n] by a low-rank approximation A B,\n"
        "keeping a fraction --ratio of the experts' parameters: rank r = floor(m n ratio / (m + n)).\n"
        "Shared experts, attention, router and embeddings are untouched. OUT_DIR/moekit.json records the\n"
        "ranks, routed calibration tokens per expert, fallbacks and truncation energy; README.md says how.\n\n"
        "Methods:\n"
        "  svd-llm  whitened SVD: minimizes the error on the expert's own routed calibration inputs\n"
        "           (H = mean x x^T; S = chol(H); svd(W S); B = S_r^1/2 V_r^T S^-1). Default.\n"
        "  d2-moe   one shared base per layer and projection (frequency-weighted mean of the experts) plus\n"
        "           each expert's delta by whitened SVD; the base counts against the ratio:\n"
        "           r = floor((ratio E - 1) m n / (E (m + n))), refused when that is below 1.\n"
        "  svd      plain truncated SVD, no calibration (the baseline).\n"
        "Experts that received no calibration token fall back to plain SVD (listed in moekit.json).\n\n"
        "Formats:\n"
        "  dense     reconstructed weights in the original names, layout and dtype: any loader (transformers)\n"
        "            runs it; same size as the input.\n"
        "  factored  the factors themselves, <proj>.lowrank_a [m, r] and <proj>.lowrank_b [r, n] (d2-moe: plus\n"
        "            ...experts.base.<proj>.weight per layer), config field moekit_lowrank: moekit's engine runs\n"
        "            each projection as two thin GEMMs, so the memory saving is real; transformers cannot load it.\n\n"
        "Calibration data (--calib): same formats and tokenization as `moekit eval --data`; its data format\n"
        "flag is --calib-format here (--format is the output format).\n\n"
        "Examples:\n"
        "  moekit svd assets/demo-moe --ratio 0.5 --calib assets/corpus/train/en.txt -o svd-dense/\n"
        "  moekit svd MODEL --method d2-moe --ratio 0.5 --format factored --calib c.txt --max-tokens 65536 -o out/\n"
        "  moekit svd MODEL --method svd --ratio 0.75 -o plain/");
    sub->add_option("MODEL_DIR", command.model_dir, "Checkpoint directory to compress")->required();
    sub->add_option("-o,--output", command.output, "Output directory (must not exist unless --force)");
    sub->add_option("--ratio", command.ratio, "Kept fraction of the routed experts' parameters, in (0, 1)")->required();
    sub->add_option("--method", command.method, "svd-llm (default), d2-moe or svd");
    sub->add_option("--calib", command.calib, "Calibration data: FILE[,FILE...] or DOMAIN=FILE[,...] (svd-llm, d2-moe)");
    sub->add_flag("--dry-run", command.dry_run, "Calibrate and factorize, report, write nothing");
    sub->add_flag("--force", command.force, "Replace an existing output directory");
    command.corpus.batch_tokens = svd::kDefaultBatchTokens;
    add_corpus_options(*sub, command.corpus);
    sub->get_option("--batch-tokens")
        ->description("Tokens per calibration pass (default 131072). When the calibration fits in one pass, "
                      "each layer is factorized as soon as it is calibrated and only one layer's statistics "
                      "(n_expert x (d_model^2 + d_ff^2) x 8 bytes) are held; otherwise every MoE layer's are");
    // --format names the output format here (the brief's `--format dense|factored`); the
    // calibration data format that --format means elsewhere is --calib-format.
    sub->remove_option(sub->get_option("--format"));
    sub->add_option("--calib-format", command.corpus.format, "Calibration data format: auto (by extension), text, jsonl, bin, npy")
        ->check(CLI::IsMember({"auto", "text", "jsonl", "bin", "npy"}));
    sub->add_option("--format", command.format, "Output: dense (default; any loader) or factored (moekit's engine)");
    add_common_options(*sub, command.common);
    return sub;
}

svd::SvdOptions svd_options(const SvdCommand& command) {
    svd::SvdOptions options;
    options.model_dir = command.model_dir;
    options.out_dir = command.output;
    options.method = command.method;
    options.ratio = command.ratio;
    options.format = command.format;
    options.dry_run = command.dry_run;
    options.force = command.force;
    if (!command.calib.empty()) options.calib = corpus_options(command.corpus, command.calib, "--calib");
    else check_corpus_options(command.corpus);
    options.batch_tokens = command.corpus.batch_tokens;
    options.threads = command.common.threads;
    options.tool_version = MOEKIT_VERSION;
    options.progress = tty_progress("svd");
    return options;
}

void use_device(svd::SvdOptions& options, const std::string& resolved_device) {
    options.device = device_ops(resolved_device);
    if (options.device)  // the truncated SVDs on GPU 0 too
        options.svd_fn = [](const svd::MatrixD& m) { return backend::cuda_svd(0, m); };
}

int run_svd(const SvdCommand& command) {
    const std::string device = apply_common_options(command.common);
    require_directory(command.model_dir, "MODEL_DIR");

    svd::SvdOptions options = svd_options(command);
    use_device(options, device);
    const svd::SvdResult result = svd::svd(options);
    clear_tty_progress();
    if (command.common.json)
        std::cout << svd::to_json(result).dump(2) << "\n";
    else
        std::cout << svd::to_text(result);
    return 0;
}

}  // namespace moekit::cli
