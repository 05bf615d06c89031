// Factorizing every routed expert: svd-llm, d2-moe and plain SVD (svd/compress.h).
#include "svd/compress.h"

#include <algorithm>
#include <cmath>
#include <exception>

#include "core/error.h"

namespace moekit::svd {

Method parse_method(const std::string& name) {
    if (name == "svd-llm") return Method::svd_llm;
    if (name == "d2-moe") return Method::d2_moe;
    if (name == "svd") return Method::plain;
    throw Error("svd", "unknown method '" + name + "' (svd-llm, d2-moe or svd)");
}

std::string method_name(Method method) {
    switch (method) {
        case Method::svd_llm: return "svd-llm";
        case Method::d2_moe: return "d2-moe";
        case Method::plain: return "svd";
    }
    return "?";
}

int64_t method_rank(Method method, int64_t m, int64_t n, int64_t n_expert, double ratio) {
    if (method != Method::d2_moe) return rank_for_ratio(m, n, ratio);
    const double e = static_cast<double>(n_expert);
    const double budget = (ratio * e - 1.0) * static_cast<double>(m) * static_cast<double>(n);
    const auto r = static_cast<int64_t>(std::floor(budget / (e * static_cast<double>(m + n))));
    if (r < 1)
        throw Error("svd", "--ratio " + std::to_string(ratio) + " is too small for d2-moe with " + std::to_string(n_expert) +
                               " experts of [" + std::to_string(m) + ", " + std::to_string(n) +
                               "]: the shared base alone keeps 1/" + std::to_string(n_expert) +
                               " of the parameters, leaving no rank for the deltas");
    return std::min(r, std::min(m, n));
}

namespace {

MatrixD read_matrix(const io::Checkpoint& ckpt, const std::string& name) {
    const auto& shape = ckpt.at(name).info->shape;
    if (shape.size() != 2) throw Error("svd", "tensor '" + name + "' is not 2-D");
    const std::vector<float> v = ckpt.read_f32(name);
    using RowMap = Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
    return RowMap(v.data(), shape[0], shape[1]).cast<double>();
}

std::vector<float> to_row_major(const MatrixD& m) {
    std::vector<float> out(static_cast<size_t>(m.size()));
    Eigen::Map<Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(out.data(), m.rows(), m.cols()) =
        m.cast<float>();
    return out;
}

MatrixD from_row_major(const std::vector<float>& v, int64_t m, int64_t n) {
    using RowMap = Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
    return RowMap(v.data(), m, n).cast<double>();
}

std::string proj_tensor(const model::ExpertTensorNames& names, int p) {
    return p == 0 ? names.gate : p == 1 ? names.up : names.down;
}

}  // namespace

LayerFactors compress_layer(const io::Checkpoint& ckpt, const model::ArchSpec& arch, const model::ModelConfig& mc,
                            Method method, double ratio, int64_t il, const LayerCalib* calib, int n_threads,
                            const SvdFn& svd_fn) {
    if (method != Method::plain && !calib) throw InternalError("svd", "whitened methods need calibration statistics");
    const int64_t E = mc.n_expert_at(il);
    LayerFactors lf;
    lf.layer = il;
    lf.tokens.assign(static_cast<size_t>(E), 0);
    lf.experts.resize(static_cast<size_t>(E));
    const LayerCalib* lc = calib;
    if (lc && (lc->layer != il || static_cast<int64_t>(lc->experts.size()) != E))
        throw InternalError("svd", "calibration statistics do not match layer " + std::to_string(il));
    int64_t total = 0;
    for (int64_t ie = 0; ie < E; ++ie) {
        lf.tokens[static_cast<size_t>(ie)] = lc ? lc->experts[static_cast<size_t>(ie)].tokens : 0;
        total += lf.tokens[static_cast<size_t>(ie)];
    }
    if (method == Method::d2_moe) {
        lf.alpha.resize(static_cast<size_t>(E));
        for (int64_t ie = 0; ie < E; ++ie)
            lf.alpha[static_cast<size_t>(ie)] = total > 0 ? static_cast<double>(lf.tokens[static_cast<size_t>(ie)]) / static_cast<double>(total)
                                                          : 1.0 / static_cast<double>(E);
        for (int p = 0; p < 3; ++p) {
            MatrixD base;
            for (int64_t ie = 0; ie < E; ++ie) {
                const MatrixD w = read_matrix(ckpt, proj_tensor(arch.expert_tensors(il, ie), p));
                if (ie == 0) base = MatrixD::Zero(w.rows(), w.cols());
                base += lf.alpha[static_cast<size_t>(ie)] * w;
            }
            lf.base[p] = to_row_major(base);
        }
    }

    std::vector<std::exception_ptr> errors(static_cast<size_t>(E));
    std::vector<double> tails(static_cast<size_t>(E * 3), 0.0);
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads) if (E > 1)
    for (int64_t ie = 0; ie < E; ++ie) {
        try {
            ExpertFactors& ef = lf.experts[static_cast<size_t>(ie)];
            const model::ExpertTensorNames names = arch.expert_tensors(il, ie);
            const ExpertStats* st = lc ? &lc->experts[static_cast<size_t>(ie)] : nullptr;
            const bool whiten = method != Method::plain && st && st->tokens > 0;
            ef.fallback = method != Method::plain && !whiten;
            Whitening wh_in, wh_mid;  // gate and up share the expert input's whitening
            if (whiten) {
                MatrixD h = st->h_in.selfadjointView<Eigen::Lower>();
                h /= static_cast<double>(st->tokens);
                wh_in = whitening(h);
                h = st->h_mid.selfadjointView<Eigen::Lower>();
                h /= static_cast<double>(st->tokens);
                wh_mid = whitening(h);
            }
            for (int p = 0; p < 3; ++p) {
                MatrixD w = read_matrix(ckpt, proj_tensor(names, p));
                if (method == Method::d2_moe) w -= from_row_major(lf.base[p], w.rows(), w.cols());
                const int64_t r = method_rank(method, w.rows(), w.cols(), E, ratio);
                const LowRank lr = factorize_with(w, whiten ? (p == 2 ? &wh_mid : &wh_in) : nullptr, r, svd_fn);
                ef.shift = std::max(ef.shift, lr.shift);
                tails[static_cast<size_t>(ie * 3 + p)] = lr.tail_energy;
                Factors& f = ef.proj[p];
                f.m = w.rows();
                f.n = w.cols();
                f.r = lr.a.cols();
                f.a = to_row_major(lr.a);
                f.b = to_row_major(lr.b);
                for (float v : f.a)
                    if (!std::isfinite(v)) throw InternalError("svd", "non-finite factor for '" + proj_tensor(names, p) + "'");
                for (float v : f.b)
                    if (!std::isfinite(v)) throw InternalError("svd", "non-finite factor for '" + proj_tensor(names, p) + "'");
            }
        } catch (...) {
            errors[static_cast<size_t>(ie)] = std::current_exception();
        }
    }
    for (auto& e : errors)
        if (e) std::rethrow_exception(e);
    for (int p = 0; p < 3; ++p) {
        double s = 0;
        for (int64_t ie = 0; ie < E; ++ie) s += tails[static_cast<size_t>(ie * 3 + p)];
        lf.tail_energy[p] = s / static_cast<double>(E);
    }
    return lf;
}

std::vector<LayerFactors> compress(const io::Checkpoint& ckpt, const model::ArchSpec& arch, const model::ModelConfig& mc,
                                   Method method, double ratio, const std::vector<LayerCalib>* calib, int n_threads,
                                   const std::function<void(double, const std::string&)>& progress, const SvdFn& svd_fn) {
    if (method != Method::plain && !calib) throw InternalError("svd", "whitened methods need calibration statistics");
    std::vector<LayerFactors> out;
    std::vector<int64_t> moe_layers;
    for (int64_t il = 0; il < mc.n_layer; ++il)
        if (mc.is_moe_layer[static_cast<size_t>(il)]) moe_layers.push_back(il);
    for (size_t li = 0; li < moe_layers.size(); ++li) {
        if (progress)
            progress(static_cast<double>(li) / static_cast<double>(moe_layers.size()),
                     "factorizing layer " + std::to_string(moe_layers[li]));
        out.push_back(compress_layer(ckpt, arch, mc, method, ratio, moe_layers[li], calib ? &calib->at(li) : nullptr,
                                     n_threads, svd_fn));
    }
    return out;
}

}  // namespace moekit::svd
