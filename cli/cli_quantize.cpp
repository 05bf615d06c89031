// `moekit quantize MODEL_DIR --bits 4 --format gguf -o OUT.gguf`: weight quantization into a
// llama.cpp GGUF or a dequantized ("fake-quantized") Hugging Face checkpoint (quantize/quantize.h).
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "core/error.h"
#include "quantize/quantize.h"

namespace moekit::cli {

CLI::App* add_quantize(CLI::App& app, QuantizeCommand& command) {
    CLI::App* sub = app.add_subcommand("quantize", "Quantize weights: a llama.cpp GGUF, or a dequantized HF checkpoint to evaluate");
    sub->description(
        "Quantizes every 2-D weight except norms and routers (llama-quantize's rule) and writes either\n"
        "  --format gguf     one GGUF v3 file llama.cpp loads: llama.cpp's tensor names and metadata, the\n"
        "                    tokenizer from tokenizer.json, routed experts stacked into one tensor per\n"
        "                    projection (so all experts of a projection share one type), blocks bit-exact\n"
        "                    with ggml's reference quantizers; OUT.moekit.json next to it; or\n"
        "  --format hf-fake  a Hugging Face checkpoint in the original layout holding the dequantized values\n"
        "                    (float32 by default), so `moekit eval --ref ORIGINAL` and transformers measure\n"
        "                    the quantization error; OUT_DIR/moekit.json.\n"
        "Types: --type q4_0 | q4_K | q5_0 | q6_K | q8_0 | f16 | bf16 | f32, or --bits 4 (q4_K), 5 (q5_0),\n"
        "6 (q6_K), 8 (q8_0). A tensor whose rows are not a multiple of the type's block (256 for the _K\n"
        "types, 32 otherwise) falls back exactly as llama-quantize does: q4_K -> q5_0, q6_K -> q8_0, else f16;\n"
        "the report lists every fallback. hf-fake without --type uses an integer grid instead: --bits 2..8,\n"
        "--group-size (default 128 along the input dimension; 0 = per row), symmetric unless --asym.\n"
        "Methods: rtn (round to nearest); gptq (hf-fake, integer grid): layers in order, each calibrated on\n"
        "the outputs of the already-quantized layers; the routed experts' projections get GPTQ (damping\n"
        "--damp, lazy blocks of 128, groups, --act-order) with --hessian layer (one H from every token),\n"
        "expert (each expert's routed tokens only, default) or agq (routed tokens weighted by their gate);\n"
        "experts with fewer than --min-expert-tokens routed tokens (default d_model) fall back to RTN and are\n"
        "listed; attention, shared experts, embedding and head use RTN. GPTQ into GGUF blocks and\n"
        "--format gptq (packed safetensors) are not implemented yet.\n"
        "--mixed-precision (hf-fake, needs --calib): each routed expert gets a width from --candidate-bits, chosen\n"
        "to minimize sum frequency^a * gate_mass^b * measured output error under --avg-bits (exact DP); the rest\n"
        "keeps --bits. In GGUF all experts of a projection share one tensor type, so there the allocation is per\n"
        "layer-projection: each expert gate/up/down tensor gets a type from --candidate-types (default\n"
        "q4_0,q5_0,q8_0) minimizing the frequency/gate-weighted output error of its experts under --avg-bits\n"
        "(real bits per weight incl. block scales, after fallbacks).\n"
        "The report gives, per tensor, the SNR in dB, the relative RMSE and the largest absolute error\n"
        "(fp32 source vs dequantized), and the average bits per quantized weight.\n\n"
        "Examples:\n"
        "  moekit quantize assets/demo-moe --type q4_0 --format gguf -o demo-q4_0.gguf\n"
        "  moekit quantize assets/demo-moe --bits 4 --format hf-fake -o demo-int4/ && \\\n"
        "    moekit eval demo-int4 --data assets/corpus/eval/en.txt --ref assets/demo-moe");
    sub->add_option("MODEL_DIR", command.model_dir, "Checkpoint directory to quantize")->required();
    sub->add_option("-o,--output", command.output, "OUT.gguf (gguf) or OUT_DIR (hf-fake); must not exist unless --force");
    sub->add_option("--format", command.format, "gguf (default), hf-fake, or gptq (not implemented yet)");
    sub->add_option("--method", command.method, "rtn (default) or gptq (hf-fake: sequential GPTQ of the routed experts; needs --calib)");
    sub->add_option("--bits", command.bits, "4 (default), 5, 6 or 8 for GGUF; 2..8 for the hf-fake integer grid");
    sub->add_option("--type", command.type, "ggml type: q4_0, q4_K, q5_0, q6_K, q8_0, f16, bf16, f32 (overrides --bits)");
    sub->add_option("--group-size", command.group_size, "hf-fake integer grid: weights per scale along a row (default 128; 0: whole row)");
    sub->add_flag("--asym", command.asym, "hf-fake integer grid: asymmetric (scale + zero point) instead of symmetric");
    sub->add_flag("--keep-embeddings", command.keep_embeddings, "Leave the token embedding and output head unquantized");
    sub->add_option("--fake-dtype", command.fake_dtype, "hf-fake: f32 (exact, default) or source (round to the source dtype)");
    sub->add_option("--calib", command.calib, "Calibration data for gptq and --mixed-precision: FILE[,FILE...] or DOMAIN=FILE[,...]");
    sub->add_option("--calib-format", command.corpus.format, "Calibration data format: auto (by extension), text, jsonl, bin, npy")
        ->check(CLI::IsMember({"auto", "text", "jsonl", "bin", "npy"}));
    sub->add_option("--seq-len", command.corpus.seq_len, "Calibration window length in tokens (default: min(512, max_position_embeddings))");
    sub->add_option("--max-tokens", command.corpus.max_tokens, "Use only the first N calibration tokens of each domain");
    sub->add_option("--hessian", command.hessian, "gptq: layer, expert (default) or agq (gate-weighted)");
    sub->add_option("--damp", command.damp, "gptq: damping as a fraction of mean(diag H) (default 0.01)");
    sub->add_flag("--act-order", command.act_order, "gptq: quantize columns in order of decreasing H_ii");
    sub->add_option("--min-expert-tokens", command.min_expert_tokens, "gptq: routed tokens below which an expert falls back to RTN (default d_model)");
    sub->add_flag("--mixed-precision", command.mixed_precision,
                  "Bits per routed expert (hf-fake) or per layer-projection (gguf): MC-MoE, exact DP under --avg-bits");
    sub->add_option("--avg-bits", command.avg_bits, "Mixed precision: average bits over the routed experts (default 3.5)");
    sub->add_option("--candidate-bits", command.candidate_bits, "Mixed precision: widths to choose from (default 2,3,4,8)")->delimiter(',');
    sub->add_option("--candidate-types", command.candidate_types, "Mixed precision in GGUF: ggml types to choose from (default q4_0,q5_0,q8_0)")->delimiter(',');
    sub->add_option("--mp-alpha", command.mp_alpha, "Mixed precision: exponent of the frequency (default 1)");
    sub->add_option("--mp-beta", command.mp_beta, "Mixed precision: exponent of the gate mass (default 1)");
    sub->add_flag("--dry-run", command.dry_run, "Print the plan (types, fallbacks, sizes) without writing anything");
    sub->add_flag("--force", command.force, "Replace an existing output");
    add_common_options(*sub, command.common);
    return sub;
}

quantize::QuantizeOptions quantize_options(const QuantizeCommand& command) {
    quantize::QuantizeOptions options;
    options.model_dir = command.model_dir;
    options.out = command.output;
    options.format = command.format;
    options.method = command.method;
    options.bits = command.bits;
    options.type = command.type;
    options.group_size = command.group_size;
    options.symmetric = !command.asym;
    options.keep_embeddings = command.keep_embeddings;
    options.fake_dtype = command.fake_dtype;
    options.dry_run = command.dry_run;
    options.force = command.force;
    if (!command.calib.empty()) options.calib = corpus_options(command.corpus, command.calib, "--calib");
    options.mixed_precision = command.mixed_precision;
    options.avg_bits = command.avg_bits;
    options.candidate_bits = command.candidate_bits;
    options.candidate_types = command.candidate_types;
    options.mp_alpha = command.mp_alpha;
    options.mp_beta = command.mp_beta;
    options.hessian = command.hessian;
    options.damp = command.damp;
    options.act_order = command.act_order;
    options.min_expert_tokens = command.min_expert_tokens;
    options.batch_tokens = command.corpus.batch_tokens;
    options.threads = command.common.threads;
    options.tool_version = MOEKIT_VERSION;
    options.progress = tty_progress("quantize");
    return options;
}

int run_quantize(const QuantizeCommand& command) {
    const std::string device = apply_common_options(command.common);
    require_directory(command.model_dir, "MODEL_DIR");
    quantize::QuantizeOptions options = quantize_options(command);
    use_device(options, device);
    const quantize::QuantizeResult result = quantize::quantize(options);
    clear_tty_progress();
    if (command.common.json)
        std::cout << quantize::to_json(result).dump(2) << "\n";
    else
        std::cout << quantize::to_text(result);
    return 0;
}

}  // namespace moekit::cli
