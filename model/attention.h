// Causal self-attention of one decoder layer over the whole token set (every sequence of the
// batch, rows concatenated as in TokenLayout): ordinary multi-head / grouped-query attention
// with the architectures' variants (q/k/v biases, Qwen3 per-head q/k RMSNorm, OLMoE q/k RMSNorm
// over the full projection and clip_qkv, sliding window), and DeepSeek's multi-head latent
// attention (MLA). Eager-attention semantics of transformers: softmax((q k^T) * scale + mask) v
// in fp32, scale = head_dim^-0.5 (MLA: qk_head_dim^-0.5 * yarn mscale^2).
#pragma once

#include <cstdint>
#include <span>

#include "model/engine.h"
#include "model/engine_weights.h"
#include "model/rope.h"

namespace moekit::model::detail {

struct AttentionContext {
    const TokenLayout& tokens;
    std::span<const int64_t> positions;  // position of each token row within its sequence
    const RopeTable& rope;
    int64_t sliding_window = 0;          // > 0: key j visible from query i iff i - window < j <= i
    double clip_qkv = 0.0;               // > 0: clamp q, k, v to [-clip, clip] (OLMoE)
    float rms_norm_eps = 1e-6f;
    int n_threads = 1;
};

// MLA's q_a_layernorm / kv_a_layernorm use RMSNorm's default eps, not the config's.
inline constexpr float kMlaLatentEps = 1e-6f;

// x: normed layer input [T, d]; out: attention output after o_proj [T, d].
void gqa_attention(const Matrix& x, const AttentionWeights& w, const ModelConfig& mc, const AttentionContext& ctx,
                   Matrix& out);
void mla_attention(const Matrix& x, const AttentionWeights& w, const ModelConfig& mc, double mscale2,
                   const AttentionContext& ctx, Matrix& out);

// softmax(q_h k_g^T * scale + causal mask) v_g for every sequence and head h (g = h / (n_head /
// n_head_kv)); q [T, n_head*d_qk], k [T, n_head_kv*d_qk], v [T, n_head_kv*d_v] -> out [T, n_head*d_v].
// Parallel over (sequence, head, block of query rows).
void attention_core(const Matrix& q, const Matrix& k, const Matrix& v, int64_t n_head, int64_t n_head_kv,
                    int64_t d_qk, int64_t d_v, float scale, const AttentionContext& ctx, Matrix& out);

}  // namespace moekit::model::detail
