#include "model/engine_linalg.h"

#include <algorithm>

#include "core/gemm_bf16.h"
#include "core/sgemm.h"
#include "model/eval_exp.h"

namespace moekit::model::detail {

int64_t row_block(int64_t n, int n_threads, int64_t min_rows, int tasks_per_thread) {
    const int64_t tasks = std::max<int64_t>(1, int64_t(n_threads) * tasks_per_thread);
    return std::max<int64_t>(min_rows, (n + tasks - 1) / tasks);
}

void gemm_rows(const ConstRef& x, const Weight& w, MutRef out) {
    if (w.is_packed())
        core::bf16::gemm(x.data(), x.rows(), x.outerStride(), w.packed.data(), w.rows, w.cols, out.data(),
                         out.outerStride());
    else
        core::sgemm(true, x.rows(), w.rows, w.cols, x.data(), x.outerStride(), w.data.data(), w.cols, out.data(),
                    out.outerStride());
}

void linear(const ConstRef& x, const Weight& w, const Weight* bias, Matrix& out, int n_threads) {
    const int64_t n = x.rows();
    const int64_t n_out = w.rows;
    out.resize(n, n_out);
    if (w.is_packed()) {
        // A packed weight cannot be sliced by output columns: always split rows.
        const bool has_bias = bias && !bias->empty();
        const int64_t rb = row_block(n, n_threads, 16);
        const auto n_blocks = static_cast<std::ptrdiff_t>((n + rb - 1) / rb);
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_blocks > 1)
        for (std::ptrdiff_t b = 0; b < n_blocks; ++b) {
            const int64_t r0 = b * rb, nr = std::min(rb, n - r0);
            gemm_rows(x.middleRows(r0, nr), w, out.middleRows(r0, nr));
            if (has_bias) out.middleRows(r0, nr).rowwise() += bias->vec();
        }
        return;
    }
    const bool has_bias = bias && !bias->empty();
    if (n >= 32 * int64_t(n_threads) || n_out < 64) {
        const int64_t rb = row_block(n, n_threads, 16);
        const auto n_blocks = static_cast<std::ptrdiff_t>((n + rb - 1) / rb);
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_blocks > 1)
        for (std::ptrdiff_t b = 0; b < n_blocks; ++b) {
            const int64_t r0 = b * rb, nr = std::min(rb, n - r0);
            core::sgemm(true, nr, n_out, w.cols, x.data() + r0 * x.outerStride(), x.outerStride(), w.data.data(), w.cols,
                        out.data() + r0 * out.outerStride(), out.outerStride());
            if (has_bias) out.middleRows(r0, nr).rowwise() += bias->vec();
        }
    } else {
        // Few rows: split the output columns (weight rows) so each thread streams a slice of W.
        const int64_t cb = ((row_block(n_out, n_threads, 64) + 15) / 16) * 16;
        const auto n_blocks = static_cast<std::ptrdiff_t>((n_out + cb - 1) / cb);
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_blocks > 1)
        for (std::ptrdiff_t b = 0; b < n_blocks; ++b) {
            const int64_t c0 = b * cb, nc = std::min(cb, n_out - c0);
            core::sgemm(true, n, nc, w.cols, x.data(), x.outerStride(), w.data.data() + c0 * w.cols, w.cols, out.data() + c0,
                        out.outerStride());
            if (has_bias) out.middleCols(c0, nc).rowwise() += bias->vec().segment(c0, nc);
        }
    }
}

namespace {

// scratch [n, 2F]: its left half becomes silu(gate) * up (the right half).
void silu_rows(Matrix& scratch, int64_t f) {
    for (Eigen::Index r = 0; r < scratch.rows(); ++r) silu_mul(scratch.row(r).data(), scratch.row(r).data() + f, f);
}

// The low-rank expert (MlpWeights::factored): every projection as x Bᵀ then Aᵀ (+ the base).
void mlp_rows_lowrank(const ConstRef& x, const MlpWeights& w, Matrix& scratch, MutRef y) {
    const int64_t f = w.d_ff(), rg = w.rank_gate, ru = w.gate_up_b.rows - rg;
    const Matrix t = x * w.gate_up_b.mat().transpose();  // [n, rg + ru]
    scratch.resize(x.rows(), 2 * f);
    scratch.leftCols(f).noalias() = t.leftCols(rg) * w.gate_a.mat().transpose();
    scratch.rightCols(f).noalias() = t.rightCols(ru) * w.up_a.mat().transpose();
    if (w.base) scratch.noalias() += x * w.base->gate_up.mat().transpose();
    silu_rows(scratch, f);
    const Matrix u = scratch.leftCols(f) * w.down_b.mat().transpose();  // [n, r_down]
    y.noalias() = u * w.down_a.mat().transpose();
    if (w.base) y.noalias() += scratch.leftCols(f) * w.base->down.mat().transpose();
}

}  // namespace

void mlp_rows(const ConstRef& x, const MlpWeights& w, Matrix& scratch, MutRef y) {
    if (w.factored()) return mlp_rows_lowrank(x, w, scratch, y);
    const int64_t f = w.d_ff();
    scratch.resize(x.rows(), 2 * f);
    gemm_rows(x, w.gate_up, scratch);
    if (!w.gate_up_bias.empty()) scratch.rowwise() += w.gate_up_bias.vec();
    silu_rows(scratch, f);
    gemm_rows(scratch.leftCols(f), w.down, y);
    if (!w.down_bias.empty()) y.rowwise() += w.down_bias.vec();
}

void mlp(const Matrix& x, const MlpWeights& w, Matrix& y, int n_threads) {
    const int64_t n = x.rows();
    y.resize(n, w.down.rows);
    const int64_t rb = row_block(n, n_threads, 32);
    const auto n_blocks = static_cast<std::ptrdiff_t>((n + rb - 1) / rb);
#pragma omp parallel num_threads(n_threads) if (n_blocks > 1)
    {
        Matrix scratch;
#pragma omp for schedule(static)
        for (std::ptrdiff_t b = 0; b < n_blocks; ++b) {
            const int64_t r0 = b * rb, nr = std::min(rb, n - r0);
            mlp_rows(x.middleRows(r0, nr), w, scratch, y.middleRows(r0, nr));
        }
    }
}

}  // namespace moekit::model::detail
