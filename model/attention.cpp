#include "model/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/sgemm.h"
#include "model/engine_linalg.h"
#include "model/eval_exp.h"
#include "model/norm.h"

namespace moekit::model::detail {

namespace {

constexpr int64_t kQueryBlock = 128;

// Rotates the rotary slice [offset, offset + rope.dim()) of every head of every row.
void apply_rope(Matrix& x, int64_t n_head, int64_t head_width, int64_t offset, const AttentionContext& ctx) {
    const int64_t n = x.rows();
#pragma omp parallel for schedule(static) num_threads(ctx.n_threads) if (n * n_head > 4096)
    for (int64_t t = 0; t < n; ++t)
        for (int64_t h = 0; h < n_head; ++h)
            ctx.rope.apply(x.row(t).data() + h * head_width + offset, ctx.positions[static_cast<size_t>(t)]);
}

void clamp(Matrix& x, double clip) {
    const float c = static_cast<float>(clip);
    x = x.cwiseMax(-c).cwiseMin(c);
}

}  // namespace

void attention_core(const Matrix& q, const Matrix& k, const Matrix& v, int64_t n_head, int64_t n_head_kv,
                    int64_t d_qk, int64_t d_v, float scale, const AttentionContext& ctx, Matrix& out) {
    const int64_t T = q.rows();
    out.resize(T, n_head * d_v);
    const int64_t group = n_head / n_head_kv;
    struct Task {
        int64_t seq_begin, q0, nq;  // query rows [q0, q0 + nq) local to the sequence
        int64_t head;
    };
    std::vector<Task> tasks;
    const auto& sb = ctx.tokens.seq_begin;
    for (size_t s = 0; s + 1 < sb.size(); ++s) {
        const int64_t len = sb[s + 1] - sb[s];
        for (int64_t q0 = 0; q0 < len; q0 += kQueryBlock)
            for (int64_t h = 0; h < n_head; ++h) tasks.push_back({sb[s], q0, std::min(kQueryBlock, len - q0), h});
    }
    const int64_t window = ctx.sliding_window;
    const auto n_tasks = static_cast<std::ptrdiff_t>(tasks.size());
#pragma omp parallel num_threads(ctx.n_threads) if (n_tasks > 1)
    {
        Matrix scores;
#pragma omp for schedule(dynamic, 1)
        for (std::ptrdiff_t it = 0; it < n_tasks; ++it) {
            const Task& task = tasks[static_cast<size_t>(it)];
            const int64_t hk = task.head / group;
            const int64_t last = task.q0 + task.nq;  // keys [k0, last)
            const int64_t k0 = window > 0 ? std::max<int64_t>(0, task.q0 - window + 1) : 0;
            const int64_t nk = last - k0;
            const auto Q = q.block(task.seq_begin + task.q0, task.head * d_qk, task.nq, d_qk);
            const auto K = k.block(task.seq_begin + k0, hk * d_qk, nk, d_qk);
            const auto V = v.block(task.seq_begin + k0, hk * d_v, nk, d_v);
            scores.resize(task.nq, nk);
            core::sgemm(true, task.nq, nk, d_qk, Q.data(), q.outerStride(), K.data(), k.outerStride(), scores.data(), nk);
            for (int64_t r = 0; r < task.nq; ++r) {
                const int64_t i = task.q0 + r;  // query position
                const int64_t lo = window > 0 ? std::max<int64_t>(0, i - window + 1) : 0;
                float* row = scores.row(r).data();
                const int64_t a = lo - k0, b = i - k0 + 1;  // visible keys [a, b) of this block
                Eigen::Map<Eigen::ArrayXf> vis(row + a, b - a);
                vis *= scale;
                exp_shifted(row + a, b - a, vis.maxCoeff(), row + a);  // in place
                vis *= 1.0f / vis.sum();
                std::fill(row, row + a, 0.0f);
                std::fill(row + b, row + nk, 0.0f);
            }
            core::sgemm(false, task.nq, d_v, nk, scores.data(), nk, V.data(), v.outerStride(),
                        out.data() + (task.seq_begin + task.q0) * out.outerStride() + task.head * d_v, out.outerStride());
        }
    }
}

void gqa_attention(const Matrix& x, const AttentionWeights& w, const ModelConfig& mc, const AttentionContext& ctx,
                   Matrix& out) {
    const int nt = ctx.n_threads;
    const int64_t hd = mc.head_dim;
    Matrix q, k, v;
    linear(x, w.q, &w.q_bias, q, nt);
    linear(x, w.k, &w.k_bias, k, nt);
    linear(x, w.v, &w.v_bias, v, nt);
    if (q.cols() != mc.n_head * hd || k.cols() != mc.n_head_kv * hd || v.cols() != mc.n_head_kv * hd)
        throw Error("engine", "q/k/v projection sizes do not match heads x head_dim");
    if (mc.qk_norm == "per_head") {
        rms_norm_segments(q, 0, mc.n_head, hd, w.q_norm, ctx.rms_norm_eps, nt);
        rms_norm_segments(k, 0, mc.n_head_kv, hd, w.k_norm, ctx.rms_norm_eps, nt);
    } else if (mc.qk_norm == "full") {
        rms_norm(q, w.q_norm, ctx.rms_norm_eps, q, nt);
        rms_norm(k, w.k_norm, ctx.rms_norm_eps, k, nt);
    }
    if (ctx.clip_qkv > 0.0) {
        clamp(q, ctx.clip_qkv);
        clamp(k, ctx.clip_qkv);
        clamp(v, ctx.clip_qkv);
    }
    apply_rope(q, mc.n_head, hd, 0, ctx);
    apply_rope(k, mc.n_head_kv, hd, 0, ctx);
    Matrix attn;
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
    attention_core(q, k, v, mc.n_head, mc.n_head_kv, hd, hd, scale, ctx, attn);
    linear(attn, w.o, &w.o_bias, out, nt);
}

void mla_attention(const Matrix& x, const AttentionWeights& w, const ModelConfig& mc, double mscale2,
                   const AttentionContext& ctx, Matrix& out) {
    const int nt = ctx.n_threads;
    const MlaSpec& m = mc.mla;
    const int64_t H = mc.n_head, dn = m.qk_nope_head_dim, dr = m.qk_rope_head_dim, dv = m.v_head_dim;
    const int64_t dqk = dn + dr, r = m.kv_lora_rank;
    const int64_t T = x.rows();

    Matrix q;
    if (!w.q_a.empty()) {
        Matrix qa;
        linear(x, w.q_a, &w.q_a_bias, qa, nt);
        rms_norm(qa, w.q_a_norm, kMlaLatentEps, qa, nt);
        linear(qa, w.q_b, nullptr, q, nt);
    } else {
        linear(x, w.q, nullptr, q, nt);
    }
    Matrix ckv;
    linear(x, w.kv_a, &w.kv_a_bias, ckv, nt);
    if (q.cols() != H * dqk || ckv.cols() != r + dr) throw Error("engine", "MLA projection sizes do not match the config");
    Matrix latent = ckv.leftCols(r);
    rms_norm(latent, w.kv_a_norm, kMlaLatentEps, latent, nt);
    Matrix k_pe = ckv.rightCols(dr);
    ckv.resize(0, 0);
    Matrix kv;
    linear(latent, w.kv_b, nullptr, kv, nt);
    latent.resize(0, 0);

    apply_rope(q, H, dqk, dn, ctx);
    apply_rope(k_pe, 1, dr, 0, ctx);

    // Per-head keys [k_nope_h, k_pe] and values, laid out like q.
    Matrix k(T, H * dqk), v(T, H * dv);
#pragma omp parallel for schedule(static) num_threads(nt) if (T * H > 4096)
    for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < H; ++h) {
            k.row(t).segment(h * dqk, dn) = kv.row(t).segment(h * (dn + dv), dn);
            k.row(t).segment(h * dqk + dn, dr) = k_pe.row(t);
            v.row(t).segment(h * dv, dv) = kv.row(t).segment(h * (dn + dv) + dn, dv);
        }
    kv.resize(0, 0);
    Matrix attn;
    const float scale = static_cast<float>(mscale2 / std::sqrt(static_cast<double>(dqk)));
    attention_core(q, k, v, H, H, dqk, dv, scale, ctx, attn);
    linear(attn, w.o, &w.o_bias, out, nt);
}

}  // namespace moekit::model::detail
