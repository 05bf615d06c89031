// The decoder layer on a compute device (model/engine_device.h). Mirrors engine.cpp's
// forward_layer, attention.cpp and moe.cpp step for step; comments here only say where the
// device path differs.
#include "model/engine_device.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "model/attention.h"

namespace moekit::model::detail {

using backend::DeviceIndex;
using backend::DeviceMatrix;
using backend::DeviceWeight;

namespace {

uint64_t bytes_of(const DeviceWeight& w) { return w.empty() ? 0 : uint64_t(w.rows * w.cols) * (w.bf16 ? 2 : 4); }
uint64_t bytes_of(const DeviceMatrix& m) { return m.empty() ? 0 : uint64_t(m.rows * m.cols) * 4; }

}  // namespace

struct DeviceForward::Mlp {
    DeviceWeight gate_up, down;
    DeviceMatrix gate_up_bias, down_bias;
    // low-rank (MlpWeights::factored)
    DeviceWeight gate_up_b, gate_a, up_a, down_b, down_a;
    int64_t rank_gate = 0, d_ff = 0;
    std::shared_ptr<const Mlp> base;  // low-rank d2-moe: the layer's shared base (counted there)
    bool factored() const { return !gate_a.empty(); }
    uint64_t bytes() const {
        uint64_t b = bytes_of(gate_up_bias) + bytes_of(down_bias);
        for (const DeviceWeight* w : {&gate_up, &down, &gate_up_b, &gate_a, &up_a, &down_b, &down_a}) b += bytes_of(*w);
        return b;
    }
};

// One decoder layer's weights on the device. Routed experts are uploaded after routing, only
// those with tokens; `experts[e]` is null until then (and again after the pass when the layer is
// not kept).
struct DeviceForward::Layer {
    DeviceMatrix input_norm, post_norm;
    // attention (GQA; MLA)
    DeviceWeight q, k, v, o, q_a, q_b, kv_a, kv_b;
    DeviceMatrix q_bias, k_bias, v_bias, o_bias, q_norm, k_norm, q_a_bias, q_a_norm, kv_a_bias, kv_a_norm;
    Mlp dense, shared;
    DeviceWeight router, shared_gate;  // fp32 in bf16 mode too (as on the CPU)
    Weight router_bias;                // host copy: routing is decided on the host
    std::shared_ptr<const Mlp> expert_base;
    std::vector<std::shared_ptr<const Mlp>> experts;
    uint64_t bytes = 0;                // device bytes of the weights above
    bool kept = false;                 // in the cache (experts join it as they are uploaded)
};

DeviceForward::DeviceForward(std::shared_ptr<backend::DeviceOps> ops, const ModelConfig& mc, const EngineExtras& extras,
                             const WeightLoader& loader, float eps, bool bf16, int n_threads, uint64_t weight_budget)
    : ops_(std::move(ops)), mc_(mc), extras_(extras), loader_(loader), eps_(eps), bf16_(bf16), n_threads_(n_threads) {
    if (!ops_) throw InternalError("engine", "DeviceForward without device ops");
    if (weight_budget == kAutoBudget) {
        // Leave room for the activations: a quarter of the free memory, at least 4 GiB.
        const uint64_t free_bytes = ops_->free_memory();
        const uint64_t reserve = std::max<uint64_t>(free_bytes / 4, uint64_t(4) << 30);
        budget_ = free_bytes > reserve ? (free_bytes - reserve) / 20 * 17 : 0;
    } else {
        budget_ = weight_budget;
    }
    cache_.resize(static_cast<size_t>(mc_.n_layer));
}

DeviceForward::~DeviceForward() = default;

bool DeviceForward::keep(uint64_t bytes) const {
    if (cached_bytes_ + bytes > budget_) return false;
    cached_bytes_ += bytes;
    return true;
}

std::shared_ptr<DeviceForward::Layer> DeviceForward::layer(int64_t il) const {
    if (auto kept = cache_[static_cast<size_t>(il)]) return kept;
    const PhaseTimer timer(EngineProfile::kLoadLayer);  // host conversion + upload
    LayerWeights lw = loader_.load_layer(il);
    auto L = std::make_shared<Layer>();
    L->input_norm = upload_vec(lw.input_norm);
    L->post_norm = upload_vec(lw.post_norm);
    const AttentionWeights& a = lw.attn;
    L->q = upload_gemm(a.q), L->k = upload_gemm(a.k), L->v = upload_gemm(a.v), L->o = upload_gemm(a.o);
    L->q_a = upload_gemm(a.q_a), L->q_b = upload_gemm(a.q_b), L->kv_a = upload_gemm(a.kv_a), L->kv_b = upload_gemm(a.kv_b);
    L->q_bias = upload_vec(a.q_bias), L->k_bias = upload_vec(a.k_bias), L->v_bias = upload_vec(a.v_bias);
    L->o_bias = upload_vec(a.o_bias), L->q_norm = upload_vec(a.q_norm), L->k_norm = upload_vec(a.k_norm);
    L->q_a_bias = upload_vec(a.q_a_bias), L->q_a_norm = upload_vec(a.q_a_norm);
    L->kv_a_bias = upload_vec(a.kv_a_bias), L->kv_a_norm = upload_vec(a.kv_a_norm);
    if (!lw.dense.empty()) L->dense = upload_mlp(lw.dense);
    if (!lw.shared.empty()) L->shared = upload_mlp(lw.shared);
    if (!lw.router.empty()) L->router = ops_->upload_weight(lw.router.data.data(), lw.router.rows, lw.router.cols, false);
    if (!lw.shared_gate.empty()) L->shared_gate = ops_->upload_weight(lw.shared_gate.data.data(), 1, mc_.d_model, false);
    L->router_bias = std::move(lw.router_bias);
    if (!lw.expert_base.empty()) L->expert_base = std::make_shared<const Mlp>(upload_mlp(lw.expert_base));
    L->experts.resize(lw.experts.size());
    uint64_t b = 0;
    for (const DeviceWeight* w : {&L->q, &L->k, &L->v, &L->o, &L->q_a, &L->q_b, &L->kv_a, &L->kv_b, &L->router, &L->shared_gate})
        b += bytes_of(*w);
    for (const DeviceMatrix* m : {&L->input_norm, &L->post_norm, &L->q_bias, &L->k_bias, &L->v_bias, &L->o_bias, &L->q_norm,
                                  &L->k_norm, &L->q_a_bias, &L->q_a_norm, &L->kv_a_bias, &L->kv_a_norm})
        b += bytes_of(*m);
    for (const Mlp* m : {static_cast<const Mlp*>(&L->dense), static_cast<const Mlp*>(&L->shared), L->expert_base.get()})
        if (m) b += m->bytes();
    L->bytes = b;
    read_host_ = true;
    if (keep(b)) {
        L->kept = true;
        cache_[static_cast<size_t>(il)] = L;
    }
    return L;
}

DeviceMatrix DeviceForward::upload_vec(const Weight& w) const {
    if (w.empty()) return {};
    return ops_->upload(w.data.data(), 1, static_cast<int64_t>(w.data.size()));
}

DeviceWeight DeviceForward::upload_gemm(const Weight& w) const {
    if (w.empty()) return {};
    if (w.is_packed()) throw InternalError("engine", "device path given a bf16-packed host weight");
    return ops_->upload_weight(w.data.data(), w.rows, w.cols, bf16_);
}

DeviceForward::Mlp DeviceForward::upload_mlp(const MlpWeights& w) const {
    Mlp m;
    m.d_ff = w.d_ff();
    if (w.factored()) {
        m.gate_up_b = upload_gemm(w.gate_up_b);
        m.gate_a = upload_gemm(w.gate_a);
        m.up_a = upload_gemm(w.up_a);
        m.down_b = upload_gemm(w.down_b);
        m.down_a = upload_gemm(w.down_a);
        m.rank_gate = w.rank_gate;
    } else {
        m.gate_up = upload_gemm(w.gate_up);
        m.down = upload_gemm(w.down);
        m.gate_up_bias = upload_vec(w.gate_up_bias);
        m.down_bias = upload_vec(w.down_bias);
    }
    return m;
}

// y [n, d] = down(silu(gate x) * up x) (+ biases; low-rank: the factored form plus the base).
void DeviceForward::run_mlp(const Mlp& w, const DeviceMatrix& x, DeviceMatrix& y) const {
    backend::DeviceOps& o = *ops_;
    const int64_t n = x.rows, f = w.d_ff;
    DeviceMatrix gu = o.alloc(n, 2 * f), act = o.alloc(n, f);
    if (!w.factored()) {
        o.linear(x, w.gate_up, w.gate_up_bias.empty() ? nullptr : &w.gate_up_bias, gu);
        o.silu_mul(gu, act);
        o.linear(act, w.down, w.down_bias.empty() ? nullptr : &w.down_bias, y);
        return;
    }
    const int64_t rg = w.rank_gate, ru = w.gate_up_b.rows - rg;
    DeviceMatrix t = o.alloc(n, rg + ru);
    o.linear(x, w.gate_up_b, nullptr, t);
    DeviceMatrix g = gu.cols_view(0, f), u = gu.cols_view(f, f);
    o.linear(t.cols_view(0, rg), w.gate_a, nullptr, g);
    o.linear(t.cols_view(rg, ru), w.up_a, nullptr, u);
    if (w.base) {
        DeviceMatrix b = o.alloc(n, 2 * f);
        o.linear(x, w.base->gate_up, nullptr, b);
        o.add(gu, b);
    }
    o.silu_mul(gu, act);
    DeviceMatrix low = o.alloc(n, w.down_b.rows);
    o.linear(act, w.down_b, nullptr, low);
    o.linear(low, w.down_a, nullptr, y);
    if (w.base) {
        DeviceMatrix b = o.alloc(n, y.cols);
        o.linear(act, w.base->down, nullptr, b);
        o.add(y, b);
    }
}

DeviceBatch DeviceForward::prepare(const TokenLayout& tokens, std::span<const int64_t> positions,
                                   const RopeTable& rope) const {
    DeviceBatch b;
    b.tokens = &tokens;
    std::vector<int32_t> pos(positions.begin(), positions.end());
    b.positions = ops_->upload_index(pos.data(), static_cast<int64_t>(pos.size()));
    if (rope.dim() > 0)
        b.rope = ops_->upload_rope(rope.cos_data(), rope.sin_data(), rope.n_pos(), rope.dim(),
                                   rope.style() == RopeStyle::half ? backend::RotaryStyle::half
                                                                   : backend::RotaryStyle::interleaved);
    return b;
}

Matrix DeviceForward::download(const DeviceMatrix& m) const {
    Matrix out(m.rows, m.cols);
    ops_->download(m, out.data());
    return out;
}

void DeviceForward::attention(const DeviceBatch& batch, int64_t il, const Layer& aw, const DeviceMatrix& x,
                              DeviceMatrix& out) const {
    backend::DeviceOps& o = *ops_;
    const int64_t T = x.rows, H = mc_.n_head;
    const int64_t window = extras_.sliding_window[static_cast<size_t>(il)];
    const auto& seq = batch.tokens->seq_begin;
    auto bias = [](const DeviceMatrix& b) { return b.empty() ? nullptr : &b; };

    if (mc_.mla.kv_lora_rank > 0) {
        const MlaSpec& m = mc_.mla;
        const int64_t dn = m.qk_nope_head_dim, dr = m.qk_rope_head_dim, dv = m.v_head_dim, dqk = dn + dr;
        const int64_t r = m.kv_lora_rank;
        DeviceMatrix q = o.alloc(T, H * dqk);
        if (!aw.q_a.empty()) {
            DeviceMatrix qa = o.alloc(T, aw.q_a.rows);
            o.linear(x, aw.q_a, bias(aw.q_a_bias), qa);
            o.rms_norm(qa, aw.q_a_norm, kMlaLatentEps, qa.cols, qa);
            o.linear(qa, aw.q_b, nullptr, q);
        } else {
            o.linear(x, aw.q, nullptr, q);
        }
        const DeviceWeight& kv_a = aw.kv_a;
        const DeviceWeight& kv_b = aw.kv_b;
        if (kv_a.rows != r + dr || q.cols != H * dqk) throw Error("engine", "MLA projection sizes do not match the config");
        DeviceMatrix ckv = o.alloc(T, r + dr);
        o.linear(x, kv_a, bias(aw.kv_a_bias), ckv);
        DeviceMatrix latent = ckv.cols_view(0, r), k_pe = ckv.cols_view(r, dr);
        o.rms_norm(latent, aw.kv_a_norm, kMlaLatentEps, r, latent);  // in place on the view
        DeviceMatrix kv = o.alloc(T, kv_b.rows);
        o.linear(latent, kv_b, nullptr, kv);
        o.rope(q, H, dqk, dn, batch.rope, batch.positions);
        o.rope(k_pe, 1, dr, 0, batch.rope, batch.positions);
        // Per-head keys [k_nope_h, k_pe] and values, laid out like q.
        DeviceMatrix k = o.alloc(T, H * dqk), v = o.alloc(T, H * dv);
        DeviceMatrix k_nope_dst = k.cols_view(0, dn), k_pe_dst = k.cols_view(dn, dr), v_dst = v.cols_view(0, dv);
        o.copy_heads(kv.cols_view(0, dn), dn + dv, k_nope_dst, dqk, H);
        o.copy_heads(k_pe, 0, k_pe_dst, dqk, H);
        o.copy_heads(kv.cols_view(dn, dv), dn + dv, v_dst, dv, H);
        DeviceMatrix attn = o.alloc(T, H * dv);
        const float scale = static_cast<float>(extras_.rope.mla_mscale2 / std::sqrt(static_cast<double>(dqk)));
        o.attention(q, k, v, H, H, dqk, dv, scale, window, seq.data(), static_cast<int64_t>(seq.size()) - 1, attn);
        o.linear(attn, aw.o, bias(aw.o_bias), out);
        return;
    }

    const int64_t hd = mc_.head_dim, Hkv = mc_.n_head_kv;
    const DeviceWeight &wq = aw.q, &wk = aw.k, &wv = aw.v, &wo = aw.o;
    const DeviceMatrix &bq = aw.q_bias, &bk = aw.k_bias, &bv = aw.v_bias, &bo = aw.o_bias;
    if (wq.rows != H * hd || wk.rows != Hkv * hd || wv.rows != Hkv * hd)
        throw Error("engine", "q/k/v projection sizes do not match heads x head_dim");
    DeviceMatrix q = o.alloc(T, wq.rows), k = o.alloc(T, wk.rows), v = o.alloc(T, wv.rows);
    o.linear(x, wq, bias(bq), q);
    o.linear(x, wk, bias(bk), k);
    o.linear(x, wv, bias(bv), v);
    if (mc_.qk_norm == "per_head" || mc_.qk_norm == "full") {
        const DeviceMatrix &qn = aw.q_norm, &kn = aw.k_norm;
        const bool per_head = mc_.qk_norm == "per_head";
        o.rms_norm(q, qn, eps_, per_head ? hd : q.cols, q);
        o.rms_norm(k, kn, eps_, per_head ? hd : k.cols, k);
    }
    if (extras_.clip_qkv > 0.0) {
        const auto c = static_cast<float>(extras_.clip_qkv);
        o.clamp(q, c);
        o.clamp(k, c);
        o.clamp(v, c);
    }
    o.rope(q, H, hd, 0, batch.rope, batch.positions);
    o.rope(k, Hkv, hd, 0, batch.rope, batch.positions);
    DeviceMatrix attn = o.alloc(T, H * hd);
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
    o.attention(q, k, v, H, Hkv, hd, hd, scale, window, seq.data(), static_cast<int64_t>(seq.size()) - 1, attn);
    o.linear(attn, wo, bias(bo), out);
}

void DeviceForward::moe_block(const DeviceBatch& batch, int64_t il, Layer& lw, const DeviceMatrix& residual,
                              const DeviceMatrix& x, const ObserverSets& obs, DeviceMatrix& out) const {
    backend::DeviceOps& o = *ops_;
    const int64_t T = x.rows, d = x.cols, E = mc_.n_expert_at(il), k = mc_.n_expert_used;
    const TokenLayout& tokens = *batch.tokens;

    // Router logits on the device; selection on the host with the CPU engine's route().
    RoutingResult r;
    {
        DeviceMatrix logits = o.alloc(T, E);
        o.linear(x, lw.router, nullptr, logits);
        r.logits = download(logits);
    }
    route(mc_, lw.router_bias, r, n_threads_);
    for (Observer* ob : obs.router) ob->on_router(RouterEvent{il, tokens, r.logits, r.scores, r.selected, r.gates});

    std::vector<std::vector<int32_t>> rows(static_cast<size_t>(E));
    std::vector<std::vector<float>> gates(static_cast<size_t>(E));
    for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j < k; ++j) {
            const auto e = static_cast<size_t>(r.selected(t, j));
            rows[e].push_back(static_cast<int32_t>(t));
            gates[e].push_back(r.gates(t, j));
        }
    const bool all = !obs.all_experts.empty();
    std::vector<int64_t> todo;
    for (int64_t e = 0; e < E; ++e)
        if (all || !rows[static_cast<size_t>(e)].empty()) todo.push_back(e);
    // Every expert's rows and gates in one upload each; the experts use views of them.
    std::vector<int64_t> offset(static_cast<size_t>(E) + 1, 0);
    std::vector<int32_t> flat_rows;
    std::vector<float> flat_gates;
    flat_rows.reserve(static_cast<size_t>(T * k));
    flat_gates.reserve(static_cast<size_t>(T * k));
    for (int64_t e = 0; e < E; ++e) {
        flat_rows.insert(flat_rows.end(), rows[static_cast<size_t>(e)].begin(), rows[static_cast<size_t>(e)].end());
        flat_gates.insert(flat_gates.end(), gates[static_cast<size_t>(e)].begin(), gates[static_cast<size_t>(e)].end());
        offset[static_cast<size_t>(e) + 1] = static_cast<int64_t>(flat_rows.size());
    }
    const DeviceIndex rows_d = o.upload_index(flat_rows.data(), static_cast<int64_t>(flat_rows.size()));
    const DeviceMatrix gates_d = o.upload(flat_gates.data(), static_cast<int64_t>(flat_gates.size()), 1);
    std::vector<int64_t> all_rows;
    if (all) {
        all_rows.resize(static_cast<size_t>(T));
        std::iota(all_rows.begin(), all_rows.end(), 0);
    }

    DeviceMatrix routed = o.alloc(T, d);
    o.fill_zero(routed);
    // Experts in ascending order (the order their outputs are added, as on the CPU). Those not on
    // the device yet are loaded on the host a chunk at a time and freed there once uploaded.
    Matrix x_host;  // the all-experts site's input, downloaded once
    LayerWeights host;
    host.layer = il;
    host.experts.resize(lw.experts.size());
    const size_t chunk_experts = static_cast<size_t>(std::max(4, 2 * n_threads_));
    for (size_t c0 = 0; c0 < todo.size(); c0 += chunk_experts) {
        const std::vector<int64_t> chunk(todo.begin() + static_cast<std::ptrdiff_t>(c0),
                                         todo.begin() + static_cast<std::ptrdiff_t>(std::min(todo.size(), c0 + chunk_experts)));
        std::vector<int64_t> missing;
        for (const int64_t e : chunk)
            if (!lw.experts[static_cast<size_t>(e)]) missing.push_back(e);
        if (!missing.empty()) {
            loader_.load_experts(host, missing, n_threads_);
            read_host_ = true;
        }
        for (const int64_t e : chunk) {
            std::shared_ptr<const Mlp> wp = lw.experts[static_cast<size_t>(e)];
            if (!wp) {
                const PhaseTimer timer(EngineProfile::kLoadExperts);
                auto up = std::make_shared<Mlp>(upload_mlp(host.experts[static_cast<size_t>(e)]));
                up->base = lw.expert_base;
                WeightLoader::release_expert(host, e);  // uploads copy their source before returning
                if (lw.kept && keep(up->bytes())) lw.experts[static_cast<size_t>(e)] = up;
                wp = std::move(up);
            }
            const Mlp& w = *wp;
            const auto& re = rows[static_cast<size_t>(e)];
            const auto& ge = gates[static_cast<size_t>(e)];
            const auto n = static_cast<int64_t>(re.size());
            DeviceMatrix X, Y, Yr;
            const int64_t off = offset[static_cast<size_t>(e)];
            const DeviceIndex idx{rows_d.mem, rows_d.ptr + off, n};
            if (all) {
                Y = o.alloc(T, d);
                run_mlp(w, x, Y);
                if (n > 0) {
                    Yr = o.alloc(n, d);
                    o.gather_rows(Y, idx, Yr);
                }
            } else {
                X = o.alloc(n, d);
                o.gather_rows(x, idx, X);
                Yr = o.alloc(n, d);
                run_mlp(w, X, Yr);
            }
            if (n > 0) {
                const DeviceMatrix g = gates_d.rows_view(off, n);
                o.scatter_add_rows(Yr, idx, g, routed);
            }
            if (!obs.expert.empty() && n > 0) {
                std::vector<int64_t> re64(re.begin(), re.end());
                Matrix xr(n, d), yr = download(Yr);
                if (all) {
                    DeviceMatrix Xg = o.alloc(n, d);
                    o.gather_rows(x, idx, Xg);
                    xr = download(Xg);
                } else {
                    xr = download(X);
                }
                for (Observer* ob : obs.expert) ob->on_expert(ExpertEvent{il, e, re64, xr, yr, ge});
            }
            if (all) {
                std::vector<float> g_all(static_cast<size_t>(T), 0.0f);
                for (int64_t i = 0; i < n; ++i) g_all[static_cast<size_t>(re[static_cast<size_t>(i)])] = ge[static_cast<size_t>(i)];
                if (x_host.size() == 0) x_host = download(x);  // once per layer
                const Matrix ya = download(Y);
                for (Observer* ob : obs.all_experts) ob->on_expert(ExpertEvent{il, e, all_rows, x_host, ya, g_all});
            }
        }
    }

    o.copy_heads(routed, 0, out, 0, 1);
    if (!lw.shared.gate_up.empty() || !lw.shared.gate_a.empty()) {
        DeviceMatrix shared = o.alloc(T, d);
        run_mlp(lw.shared, x, shared);
        if (!lw.shared_gate.empty()) {
            DeviceMatrix z = o.alloc(T, 1);
            o.linear(x, lw.shared_gate, nullptr, z);
            o.scale_rows_sigmoid(shared, z);
        }
        o.add(out, shared);
    }
    if (!obs.moe_block.empty()) {
        const Matrix hr = download(residual), xr = download(x), rr = download(routed), orr = download(out);
        for (Observer* ob : obs.moe_block) ob->on_moe_block(MoeBlockEvent{il, tokens, hr, xr, rr, orr});
    }
}

void DeviceForward::forward_layer(const DeviceBatch& batch, int64_t il, DeviceMatrix& h, const ObserverSets& obs) const {
    backend::DeviceOps& o = *ops_;
    const int64_t T = h.rows, d = h.cols;
    read_host_ = false;
    const std::shared_ptr<Layer> lw = layer(il);
    Matrix h_in;
    if (!obs.layer.empty()) h_in = download(h);

    DeviceMatrix x = o.alloc(T, d), branch = o.alloc(T, d);
    o.rms_norm(h, lw->input_norm, eps_, d, x);
    attention(batch, il, *lw, x, branch);
    o.add(h, branch);

    o.rms_norm(h, lw->post_norm, eps_, d, x);
    if (mc_.is_moe_layer[static_cast<size_t>(il)])
        moe_block(batch, il, *lw, h, x, obs, branch);
    else
        run_mlp(lw->dense, x, branch);
    o.add(h, branch);
    if (!obs.layer.empty()) {
        const Matrix h_out = download(h);
        for (Observer* ob : obs.layer) ob->on_layer(LayerEvent{il, *batch.tokens, h_in, h_out});
    }
    if (read_host_) loader_.release_layer(il);  // as the CPU engine: drop the pages this layer mapped
}

void DeviceForward::final_norm(DeviceMatrix& h) const {
    const Weight norm = loader_.load("model.norm.weight");
    const DeviceMatrix w = upload_vec(norm);
    ops_->rms_norm(h, w, eps_, h.cols, h);
}

DeviceMatrix DeviceForward::logits(const Matrix& hidden_rows, int64_t vocab, const std::function<void(float*)>& read_head) const {
    const int64_t d = hidden_rows.cols();
    if (head_.empty()) {
        std::vector<float> w(static_cast<size_t>(vocab * d));
        read_head(w.data());
        head_ = ops_->upload_weight(w.data(), vocab, d, bf16_);
    }
    const DeviceMatrix x = ops_->upload(hidden_rows.data(), hidden_rows.rows(), d);
    DeviceMatrix out = ops_->alloc(hidden_rows.rows(), vocab);
    ops_->linear(x, head_, nullptr, out);
    return out;
}

}  // namespace moekit::model::detail
