// MoE block: routing, batched expert GEMMs, shared experts, observer calls (see moe.h).
//
// Experts are processed in ascending order in chunks of at most max(4, 2 x threads) experts (more
// while their fp32 weights stay under 256 MB) whose gathered rows stay within max(T, 4096), so the temporaries are a small multiple of the layer's
// activations and only one chunk of experts' weights is resident at a time (a DeepSeek-V3 layer
// holds 45 GB of fp32 expert weights; a chunk of 32 of its experts holds 5.6 GB). Within a chunk the work is split into
// (expert, block of rows) tasks run in parallel: each task gathers its rows of the normed input
// and does one GEMM for gate+up (fused) and one for down. The gated outputs are then added to
// the routed output in ascending expert order (the order transformers' index_add_ uses), and the
// expert observers are called on the calling thread, expert by expert.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "model/engine_linalg.h"
#include "model/moe.h"

namespace moekit::model::detail {

namespace {

constexpr int64_t kMinChunkRows = 4096;
constexpr uint64_t kChunkWeightBytes = uint64_t(256) << 20;

void gather(const Matrix& x, const std::vector<int64_t>& rows, Matrix& out) {
    out.resize(static_cast<Eigen::Index>(rows.size()), x.cols());
    for (size_t i = 0; i < rows.size(); ++i) out.row(static_cast<Eigen::Index>(i)) = x.row(rows[i]);
}

}  // namespace

void moe_block(const Matrix& residual, const Matrix& x, LayerWeights& lw, const ModelConfig& mc, const MoeContext& ctx,
               Matrix& out) {
    const int nt = ctx.n_threads;
    const int64_t T = x.rows(), d = x.cols(), E = mc.n_expert_at(ctx.layer), k = mc.n_expert_used;
    const ObserverSets& obs = ctx.observers;

    RoutingResult r;
    linear(x, lw.router, nullptr, r.logits, nt);
    route(mc, lw.router_bias, r, nt);
    for (Observer* o : obs.router)
        o->on_router(RouterEvent{ctx.layer, ctx.tokens, r.logits, r.scores, r.selected, r.gates});

    // Token rows (ascending) and gates per expert.
    std::vector<std::vector<int64_t>> rows(static_cast<size_t>(E));
    std::vector<std::vector<float>> gates(static_cast<size_t>(E));
    {
        std::vector<int64_t> count(static_cast<size_t>(E), 0);
        for (int64_t t = 0; t < T; ++t)
            for (int64_t j = 0; j < k; ++j) ++count[static_cast<size_t>(r.selected(t, j))];
        for (int64_t e = 0; e < E; ++e) {
            rows[static_cast<size_t>(e)].reserve(static_cast<size_t>(count[static_cast<size_t>(e)]));
            gates[static_cast<size_t>(e)].reserve(static_cast<size_t>(count[static_cast<size_t>(e)]));
        }
        for (int64_t t = 0; t < T; ++t)
            for (int64_t j = 0; j < k; ++j) {
                const auto e = static_cast<size_t>(r.selected(t, j));
                rows[e].push_back(t);
                gates[e].push_back(r.gates(t, j));
            }
    }

    const bool all = !obs.all_experts.empty();
    std::vector<int64_t> todo;
    for (int64_t e = 0; e < E; ++e)
        if (all || !rows[static_cast<size_t>(e)].empty()) todo.push_back(e);
    std::vector<int64_t> all_rows;
    if (all) {
        all_rows.resize(static_cast<size_t>(T));
        std::iota(all_rows.begin(), all_rows.end(), 0);
    }
    auto n_rows = [&](int64_t e) { return all ? T : static_cast<int64_t>(rows[static_cast<size_t>(e)].size()); };

    Matrix routed = Matrix::Zero(T, d);
    const int64_t budget = std::max(T, kMinChunkRows);
    // At least 2 experts per thread, more while their fp32 weights stay under kChunkWeightBytes:
    // small experts (the demo's are 196 KB) then run in one parallel region per layer instead of
    // one per few experts; large ones (DeepSeek-V3's 176 MB) keep the chunk, and memory, small.
    const uint64_t expert_bytes = uint64_t(3) * uint64_t(d) * uint64_t(std::max<int64_t>(1, mc.d_ff_expert)) * sizeof(float);
    const size_t max_chunk_experts =
        std::max(static_cast<size_t>(std::max(4, 2 * nt)), static_cast<size_t>(kChunkWeightBytes / expert_bytes));
    size_t next = 0;
    while (next < todo.size()) {
        std::vector<int64_t> chunk;
        int64_t chunk_rows = 0;
        while (next < todo.size() &&
               (chunk.empty() || (chunk_rows + n_rows(todo[next]) <= budget && chunk.size() < max_chunk_experts))) {
            chunk_rows += n_rows(todo[next]);
            chunk.push_back(todo[next++]);
        }
        ctx.loader.load_experts(lw, chunk, nt);

        std::vector<Matrix> X(chunk.size()), Y(chunk.size());
        struct Task {
            size_t c;
            int64_t r0, nr;
        };
        std::vector<Task> tasks;
        const int64_t rb = row_block(chunk_rows, nt, 32, 2);
        for (size_t c = 0; c < chunk.size(); ++c) {
            const int64_t n = n_rows(chunk[c]);
            if (!all) X[c].resize(n, d);
            Y[c].resize(n, d);
            for (int64_t r0 = 0; r0 < n; r0 += rb) tasks.push_back({c, r0, std::min(rb, n - r0)});
        }
        const auto n_tasks = static_cast<std::ptrdiff_t>(tasks.size());
#pragma omp parallel num_threads(nt) if (n_tasks > 1)
        {
            Matrix scratch;
#pragma omp for schedule(dynamic, 1)
            for (std::ptrdiff_t it = 0; it < n_tasks; ++it) {
                const Task& task = tasks[static_cast<size_t>(it)];
                const int64_t e = chunk[task.c];
                if (!all) {
                    const auto& re = rows[static_cast<size_t>(e)];
                    for (int64_t i = task.r0; i < task.r0 + task.nr; ++i)
                        X[task.c].row(i) = x.row(re[static_cast<size_t>(i)]);
                }
                const Matrix& in = all ? x : X[task.c];
                mlp_rows(in.middleRows(task.r0, task.nr), lw.experts[static_cast<size_t>(e)], scratch,
                         Y[task.c].middleRows(task.r0, task.nr));
            }
        }

        for (size_t c = 0; c < chunk.size(); ++c) {
            const int64_t e = chunk[c];
            const auto& re = rows[static_cast<size_t>(e)];
            const auto& ge = gates[static_cast<size_t>(e)];
            const auto n = static_cast<int64_t>(re.size());
            // Distinct rows within one expert: no races.
#pragma omp parallel for schedule(static) num_threads(nt) if (n * d > 65536)
            for (int64_t i = 0; i < n; ++i) {
                const int64_t t = re[static_cast<size_t>(i)];
                routed.row(t) += ge[static_cast<size_t>(i)] * Y[c].row(all ? t : i);
            }
            if (!obs.expert.empty() && n > 0) {
                if (all) {
                    Matrix xr, yr;
                    gather(x, re, xr);
                    gather(Y[c], re, yr);
                    for (Observer* o : obs.expert) o->on_expert(ExpertEvent{ctx.layer, e, re, xr, yr, ge});
                } else {
                    for (Observer* o : obs.expert) o->on_expert(ExpertEvent{ctx.layer, e, re, X[c], Y[c], ge});
                }
            }
            if (all) {
                std::vector<float> g_all(static_cast<size_t>(T), 0.0f);
                for (int64_t i = 0; i < n; ++i) g_all[static_cast<size_t>(re[static_cast<size_t>(i)])] = ge[static_cast<size_t>(i)];
                for (Observer* o : obs.all_experts) o->on_expert(ExpertEvent{ctx.layer, e, all_rows, x, Y[c], g_all});
            }
            WeightLoader::release_expert(lw, e);
            X[c] = Matrix();
            Y[c] = Matrix();
        }
    }

    out = routed;
    if (!lw.shared.empty()) {
        Matrix shared;
        mlp(x, lw.shared, shared, nt);
        if (!lw.shared_gate.empty()) {
            const auto w = lw.shared_gate.vec();
            for (int64_t t = 0; t < T; ++t) {
                const float z = x.row(t).dot(w);
                shared.row(t) *= 1.0f / (1.0f + std::exp(-z));
            }
        }
        out += shared;
    }
    for (Observer* o : obs.moe_block) o->on_moe_block(MoeBlockEvent{ctx.layer, ctx.tokens, residual, x, routed, out});
}

}  // namespace moekit::model::detail
