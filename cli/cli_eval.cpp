// `moekit eval MODEL_DIR --data FILE[,FILE...] [--ref ORIG_DIR]`: perplexity per domain, and KL /
// top-1 / routing agreement against a reference model.
#include <unistd.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "core/error.h"
#include "model/eval.h"

namespace moekit::cli {

CLI::App* add_eval(CLI::App& app, EvalCommand& command) {
    CLI::App* sub = app.add_subcommand("eval", "Perplexity per data domain; KL, top-1 and routing agreement vs a reference");
    sub->description(
        "Perplexity of a checkpoint on one or more data domains and, with --ref, how far its next-token\n"
        "distributions and routing are from a reference (e.g. the original of a pruned/merged model).\n\n"
        "Data (--data): FILE[,FILE...] (domain = file stem) or DOMAIN=FILE[,DOMAIN=FILE...]. Formats by\n"
        "extension (or --format): text (anything else: documents separated by blank lines), .jsonl/.json\n"
        "(one object per line with a \"text\" string or an \"input_ids\" list), .bin (raw int32 little-endian\n"
        "ids), .npy (int32/int64/uint16/uint32, 1-D, or 2-D with one document per row).\n\n"
        "Tokenization: each text document is encoded with MODEL_DIR's tokenizer without special tokens;\n"
        "BOS is prepended when tokenizer_config.json says add_bos_token (Llama/Mixtral style; --bos\n"
        "overrides) and EOS is appended when the tokenizer has one (--no-eos disables); the documents are\n"
        "concatenated in file order. Pre-tokenized ids are used exactly as given.\n\n"
        "Scoring: each domain's stream (first --max-tokens ids) is cut into non-overlapping windows of\n"
        "--seq-len ids (a final partial window of >= 2 ids is kept); each window is an independent forward\n"
        "pass; positions 0..n-2 predict 1..n-1; ppl = exp(mean NLL over scored tokens), per domain and\n"
        "pooled. With --ref: mean KL(ref || model) and its p99 over scored tokens, top-1 agreement, and per\n"
        "MoE layer the routing agreement |S_ref & S_model| / k averaged over tokens (experts mapped through\n"
        "MODEL_DIR/moekit.json \"expert_map\" when the expert counts differ).\n\n"
        "Precision (--compute): fp32 (default) is exact (parity with transformers in fp32). bf16 runs the\n"
        "attention projections, the expert/shared/dense MLPs and the lm_head as bf16 x bf16 GEMMs with fp32\n"
        "accumulation (oneDNN; on AVX512_BF16 / AMX CPUs 1.6-2.0x the fp32 tokens/s of an OLMoE-shaped model);\n"
        "norms, RoPE, attention scores, the router, softmax and the NLL stay fp32. The --ref model always\n"
        "runs in fp32, so\n"
        "`--compute bf16 --ref MODEL_DIR` measures what bf16 changes (KL, top-1, routing agreement).\n\n"
        "Device (--device): cuda runs the decoder layers and the lm_head on GPU 0 (cuBLAS; weights uploaded\n"
        "layer by layer, hidden states kept on the GPU; with --compute bf16 the GEMM weights are bf16 there);\n"
        "auto picks the GPU when one is usable; routing decisions and the NLL are computed on the host.\n\n"
        "Examples:\n"
        "  moekit eval assets/demo-moe --data assets/corpus/eval/en.txt,assets/corpus/eval/code-py.txt\n"
        "  moekit eval pruned/ --data en=eval.txt,code=code.jsonl --ref original/ --json\n"
        "  moekit eval assets/demo-moe --data assets/corpus/eval/en.txt --compute bf16 --ref assets/demo-moe");
    sub->add_option("MODEL_DIR", command.model_dir, "Checkpoint directory to evaluate")->required();
    sub->add_option("--data", command.data, "FILE[,FILE...] or DOMAIN=FILE[,...]")->required();
    sub->add_option("--ref", command.ref_dir, "Reference checkpoint (same vocabulary) for KL / top-1 / routing agreement");
    sub->add_option("--compute", command.compute, "Matmul precision of MODEL_DIR: fp32 (default, exact) or bf16 (fp32 accumulation)")
        ->check(CLI::IsMember({"fp32", "bf16"}));
    add_corpus_options(*sub, command.corpus);
    add_common_options(*sub, command.common);
    return sub;
}

model::EvalOptions eval_options(const EvalCommand& command) {
    model::EvalOptions options;
    options.model_dir = command.model_dir;
    if (!command.ref_dir.empty()) options.ref_dir = command.ref_dir;
    options.corpus = corpus_options(command.corpus, command.data, "--data");
    options.batch_tokens = command.corpus.batch_tokens;
    options.threads = command.common.threads;
    options.compute = model::parse_compute(command.compute);
    options.progress = tty_progress("eval");
    return options;
}

namespace {

// The engine allocates and frees per-layer activations (a few MB each) many times per batch.
// glibc serves blocks above its mmap threshold with fresh mmaps, and trims the heap top on free,
// so every such matrix was faulted in (and zeroed by the kernel) again: ~15 % of `eval` on the
// demo model (perf: clear_page / page faults / memset). Keep freed memory for reuse instead; the
// peak footprint is unchanged (it is the peak of what is live), blocks over 32 MiB are still mmapped.
void keep_freed_heap() {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
#endif
}

}  // namespace

int run_eval(const EvalCommand& command) {
    keep_freed_heap();
    const std::string device = apply_common_options(command.common);
    require_directory(command.model_dir, "MODEL_DIR");
    if (!command.ref_dir.empty()) require_directory(command.ref_dir, "--ref");

    model::EvalOptions options = eval_options(command);
    use_device(options, device);
    const model::EvalReport report = model::evaluate(options);
    if (command.common.json)
        std::cout << model::to_json(report).dump(2) << "\n";
    else
        std::cout << model::to_text(report);
    return 0;
}

}  // namespace moekit::cli
