// How a Hugging Face MoE checkpoint maps onto llama.cpp's GGUF layout, per architecture: the
// llama.cpp architecture name and hyperparameter keys, the tensor names (blk.N.attn_q.weight,
// blk.N.ffn_gate_exps.weight, ...), routed experts stacked into one 3-D tensor per projection
// (ne = {d_model, d_ff, n_expert} for gate/up, {d_ff, d_model, n_expert} for down), the
// Q/K row permutation llama.cpp's converter applies to Mixtral (converted as "llama"), and which
// tensors stay F32 (1-D tensors, norms, biases, routers: what convert_hf_to_gguf.py and
// llama-quantize leave unquantized). DeepSeek-V2/V3 ("deepseek2", gguf_deepseek.cpp): MLA
// tensors, kv_b_proj split per head into attn_k_b (transposed) and attn_v_b, leading dense
// layers, shared experts, V3's exp_probs_b. Mirrors convert_hf_to_gguf.py; the interop test
// compares both on every fixture. Layouts llama.cpp cannot run are refused by name (Qwen2-MoE
// with dense layers: llama.cpp has none; per-layer expert counts).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/gguf.h"
#include "model/arch.h"

namespace moekit::quantize {

enum class TensorRole { embedding, output, attention, norm, router, expert_gate, expert_up, expert_down,
                        shared_expert, other };

// How the source rows become GGUF rows.
enum class TensorLayout {
    plain,    // sources concatenated (experts stacked), optionally Q/K-permuted
    mla_k_b,  // kv_b_proj [n_head*(nope+v), r] -> per head the nope rows, transposed: ne {nope, r, n_head}
    mla_v_b,  // kv_b_proj -> per head the v rows: ne {r, v, n_head}
};

// One GGUF tensor and the checkpoint tensors it is built from.
struct GgufTensorPlan {
    std::string name;                  // GGUF name
    std::vector<int64_t> ne;           // ggml order (ne[0] = row length)
    std::vector<std::string> sources;  // HF tensors; several = routed experts stacked in order
    TensorRole role = TensorRole::other;
    int64_t layer = -1;
    int64_t permute_heads = 0;         // > 0: llama.cpp's Q/K row permutation with this many heads
    bool quantizable = false;          // false: always written as F32
    TensorLayout layout = TensorLayout::plain;
    int64_t mla_heads = 0, mla_nope = 0, mla_v = 0;  // mla_* layouts: the kv_b_proj split
    int64_t rows() const;              // ne[1] * ne[2] ...
};

struct GgufModelPlan {
    std::string arch;                  // llama.cpp architecture ("olmoe", "qwen3moe", "llama", "deepseek2")
    std::vector<GgufTensorPlan> tensors;
    std::vector<std::string> notes;    // what the user should know (printed and in moekit.json)
};

// Throws Error("quantize") for architectures or layouts GGUF output does not support.
GgufModelPlan plan_gguf_model(const io::Checkpoint& checkpoint, const model::ArchSpec& arch,
                              const model::ModelConfig& config);

// Architecture hyperparameters and general.* keys (no tokenizer, no file_type).
void add_gguf_hparams(io::GgufWriter& writer, const GgufModelPlan& plan, const io::Checkpoint& checkpoint,
                      const model::ModelConfig& config);

// tokenizer.ggml.* from tokenizer.json / tokenizer_config.json / config.json, as
// convert_hf_to_gguf.py writes them: "gpt2" vocabularies (ByteLevel BPE) with tokens, token
// types, merges and the special token ids; "llama" (SentencePiece-style BPE with byte fallback)
// with tokens, scores and token types. Throws Error naming the file for what it cannot express.
void add_gguf_tokenizer(io::GgufWriter& writer, const std::filesystem::path& model_dir, const io::HfConfig& config);

// Reads the fp32 data of a planned tensor in GGUF row order (experts stacked, Q/K permuted,
// kv_b_proj split).
std::vector<float> read_gguf_tensor(const io::Checkpoint& checkpoint, const GgufTensorPlan& t);

}  // namespace moekit::quantize
