// GPTQ for one linear layer (see gptq.h).
#include "quantize/gptq.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include "core/error.h"

namespace moekit::quantize {

GptqStats gptq_quantize(RowMatrix& w_in, const core::MatrixC<double>& h_in, const GptqOptions& o, const std::string& what) {
    const int64_t rows = w_in.rows(), cols = w_in.cols();
    if (h_in.rows() != cols || h_in.cols() != cols)
        throw InternalError("gptq", what + ": Hessian is " + std::to_string(h_in.rows()) + "x" +
                                        std::to_string(h_in.cols()) + ", weight has " + std::to_string(cols) + " columns");
    GptqStats st;
    core::MatrixC<double> h = h_in;
    Eigen::MatrixXd w = w_in.cast<double>();  // column-major: columns are contiguous
    for (int64_t j = 0; j < cols; ++j)
        if (h(j, j) == 0.0) {
            h(j, j) = 1.0;
            w.col(j).setZero();
            ++st.dead_columns;
        }
    std::vector<int64_t> perm(static_cast<std::size_t>(cols));
    std::iota(perm.begin(), perm.end(), 0);
    if (o.act_order) {
        std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return h(a, a) > h(b, b); });
        core::MatrixC<double> hp(cols, cols);
        Eigen::MatrixXd wp(rows, cols);
        for (int64_t a = 0; a < cols; ++a) {
            wp.col(a) = w.col(perm[a]);
            for (int64_t b = 0; b < cols; ++b) hp(a, b) = h(perm[a], perm[b]);
        }
        h.swap(hp);
        w.swap(wp);
    }
    // Hinv = upper Cholesky factor of H^-1.
    const double mean_diag = h.diagonal().mean();
    core::MatrixC<double> hinv;
    double damp = o.damp;
    bool ok = false;
    for (int attempt = 0; attempt < 4 && !ok; ++attempt, damp *= 10) {
        core::MatrixC<double> l = h;
        l.diagonal().array() += damp * mean_diag;
        if (!core::cholesky_lower(l)) continue;
        core::invert_triangular(l, true);               // L^-1
        hinv = l.transpose() * l;                        // H^-1 = L^-T L^-1
        ok = core::cholesky_upper(hinv);
        st.damp_used = damp;
    }
    if (!ok) throw Error("gptq", what + ": the calibration Hessian is not positive definite even with damping " +
                                     std::to_string(damp / 10));

    const int64_t g = o.grid.group_size > 0 ? o.grid.group_size : cols;
    const int64_t bs = std::max<int64_t>(g, (o.block_size + g - 1) / g * g);
    std::vector<GroupParams> params(static_cast<std::size_t>(rows));
    Eigen::MatrixXd q(rows, cols);
    std::vector<float> buf;
    for (int64_t i1 = 0; i1 < cols; i1 += bs) {
        const int64_t i2 = std::min(i1 + bs, cols), count = i2 - i1;
        Eigen::MatrixXd w1 = w.middleCols(i1, count);
        Eigen::MatrixXd err1(rows, count);
        for (int64_t i = 0; i < count; ++i) {
            const int64_t col = i1 + i;
            if (col % g == 0) {
                const int64_t len = std::min(g, cols - col);
                buf.resize(static_cast<std::size_t>(len));
                for (int64_t r = 0; r < rows; ++r) {
                    for (int64_t k = 0; k < len; ++k) buf[k] = static_cast<float>(w1(r, i + k));
                    params[r] = group_params(o.grid, buf.data(), len);
                }
            }
            const double d = hinv(col, col);
            for (int64_t r = 0; r < rows; ++r) {
                const double wv = w1(r, i);
                const double qv = quantize_value(params[r], o.grid.maxq(), static_cast<float>(wv));
                q(r, col) = qv;
                const double e = (wv - qv) / d;
                st.proxy_loss += (wv - qv) * (wv - qv) / (d * d) / 2;
                err1(r, i) = e;
            }
            // Update the rest of the block: W1[:, i+1:] -= err ⊗ Hinv[col, col+1 : i2]
            if (i + 1 < count)
                w1.rightCols(count - i - 1).noalias() -=
                    err1.col(i) * hinv.block(col, col + 1, 1, count - i - 1);
        }
        if (i2 < cols) w.rightCols(cols - i2).noalias() -= err1 * hinv.block(i1, i2, count, cols - i2);
    }
    for (int64_t a = 0; a < cols; ++a) w_in.col(perm[a]) = q.col(a).cast<float>();
    return st;
}

}  // namespace moekit::quantize
