// Calibration sums and captures for merging (merge/calib.h).
#include "merge/calib.h"

#include <cstring>

#include "core/error.h"
#include "model/calib_cache.h"

namespace moekit::merge {

LayerCalib::LayerCalib(int64_t layer_, int64_t n_expert_, int64_t d_model_)
    : layer(layer_),
      n_expert(n_expert_),
      d_model(d_model_),
      load(static_cast<size_t>(n_expert_), 0),
      logit_gram(Eigen::MatrixXd::Zero(n_expert_, n_expert_)),
      output_sum(Eigen::MatrixXd::Zero(n_expert_, d_model_)),
      output_gram(Eigen::MatrixXd::Zero(n_expert_, n_expert_)),
      x(0, d_model_),
      logits(0, n_expert_) {}

void LayerCalib::merge(const LayerCalib& o) {
    if (o.layer != layer || o.n_expert != n_expert || o.d_model != d_model)
        throw InternalError("merge", "merging calibration sums of different layers");
    n_tokens += o.n_tokens;
    for (size_t e = 0; e < load.size(); ++e) load[e] += o.load[e];
    logit_gram += o.logit_gram;
    sample_tokens += o.sample_tokens;
    output_sum += o.output_sum;
    output_gram += o.output_gram;
    model::Matrix nx(x.rows() + o.x.rows(), d_model), nl(logits.rows() + o.logits.rows(), n_expert);
    nx << x, o.x;
    nl << logits, o.logits;
    x = std::move(nx);
    logits = std::move(nl);
}

RouterObserver::RouterObserver(const model::ModelConfig& mc, int64_t stride)
    : index_(static_cast<size_t>(mc.n_layer), -1), stride_(std::max<int64_t>(1, stride)) {
    for (int64_t il = 0; il < mc.n_layer; ++il) {
        if (!mc.is_moe_layer[static_cast<size_t>(il)]) continue;
        index_[static_cast<size_t>(il)] = static_cast<int64_t>(layers_.size());
        layers_.emplace_back(il, mc.n_expert_at(il), mc.d_model);
        seen_.push_back(0);
    }
}

void RouterObserver::on_router(const model::RouterEvent& ev) {
    LayerCalib& lc = layers_[static_cast<size_t>(index_[static_cast<size_t>(ev.layer)])];
    const int64_t T = ev.logits.rows();
    lc.n_tokens += T;
    for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j < ev.selected.cols(); ++j) ++lc.load[static_cast<size_t>(ev.selected(t, j))];
    const Eigen::MatrixXd z = ev.logits.cast<double>();
    lc.logit_gram.noalias() += z.transpose() * z;
    // Capture the logits of the rows on_moe_block will capture the inputs of.
    const int64_t before = seen_[static_cast<size_t>(index_[static_cast<size_t>(ev.layer)])];
    std::vector<int64_t> rows;
    for (int64_t t = 0; t < T; ++t)
        if ((before + t) % stride_ == 0) rows.push_back(t);
    const int64_t old = lc.logits.rows();
    lc.logits.conservativeResize(old + static_cast<int64_t>(rows.size()), Eigen::NoChange);
    for (size_t i = 0; i < rows.size(); ++i) lc.logits.row(old + static_cast<int64_t>(i)) = ev.logits.row(rows[i]);
}

void RouterObserver::on_moe_block(const model::MoeBlockEvent& ev) {
    const auto li = static_cast<size_t>(index_[static_cast<size_t>(ev.layer)]);
    LayerCalib& lc = layers_[li];
    const int64_t T = ev.input.rows(), before = seen_[li];
    std::vector<int64_t> rows;
    for (int64_t t = 0; t < T; ++t)
        if ((before + t) % stride_ == 0) rows.push_back(t);
    seen_[li] += T;
    if (rows.empty()) return;
    const int64_t old = lc.x.rows();
    lc.x.conservativeResize(old + static_cast<int64_t>(rows.size()), Eigen::NoChange);
    for (size_t i = 0; i < rows.size(); ++i) lc.x.row(old + static_cast<int64_t>(i)) = ev.input.row(rows[i]);
}

OutputObserver::OutputObserver(std::vector<LayerCalib>& layers, int64_t n_layer) : layers_(layers), index_(static_cast<size_t>(n_layer), -1) {
    for (size_t i = 0; i < layers_.size(); ++i) index_[static_cast<size_t>(layers_[i].layer)] = static_cast<int64_t>(i);
}

void OutputObserver::on_expert(const model::ExpertEvent& ev) {
    const LayerCalib& lc = layers_[static_cast<size_t>(index_[static_cast<size_t>(ev.layer)])];
    if (outputs_.size() != static_cast<size_t>(lc.n_expert)) outputs_.assign(static_cast<size_t>(lc.n_expert), model::Matrix());
    outputs_[static_cast<size_t>(ev.expert)] = ev.output;
}

void OutputObserver::on_moe_block(const model::MoeBlockEvent& ev) {
    LayerCalib& lc = layers_[static_cast<size_t>(index_[static_cast<size_t>(ev.layer)])];
    const int64_t E = lc.n_expert, T = ev.input.rows();
    if (static_cast<int64_t>(outputs_.size()) != E) throw InternalError("merge", "all-experts outputs missing");
    const int64_t d = lc.d_model;
    Eigen::MatrixXd flat(E, T * d);  // row e: expert e's outputs on all tokens, concatenated
    for (int64_t i = 0; i < E; ++i) {
        const model::Matrix& oi = outputs_[static_cast<size_t>(i)];
        if (oi.rows() != T || oi.cols() != d) throw InternalError("merge", "all-experts output has the wrong shape");
        lc.output_sum.row(i) += oi.colwise().sum().cast<double>();
        flat.row(i) = Eigen::Map<const Eigen::RowVectorXf>(oi.data(), T * d).cast<double>();
    }
    lc.output_gram.noalias() += flat * flat.transpose();
    lc.sample_tokens += T;
    outputs_.clear();
}

namespace {

template <class M>
io::TensorSource matrix_tensor(std::string name, core::DType dtype, const M& m) {
    using T = typename M::Scalar;
    io::TensorSource t;
    t.name = std::move(name);
    t.dtype = dtype;
    t.shape = {static_cast<int64_t>(m.rows()), static_cast<int64_t>(m.cols())};
    t.nbytes = static_cast<uint64_t>(m.size()) * sizeof(T);
    t.fill = [&m](std::byte* dst) {
        if (m.size() > 0) std::memcpy(dst, m.data(), static_cast<size_t>(m.size()) * sizeof(T));
    };
    return t;
}

template <class M>
void read_matrix(const io::SafetensorsFile& file, const std::string& name, core::DType dtype, M& m) {
    using T = typename M::Scalar;
    const io::TensorInfo* info = file.find(name);
    if (info == nullptr || info->dtype != dtype || info->shape.size() != 2)
        throw Error("calibration", file.path().string() + ": missing or malformed tensor '" + name + "'");
    m.resize(info->shape[0], info->shape[1]);
    const auto bytes = file.bytes(*info);
    if (bytes.size() != static_cast<size_t>(m.size()) * sizeof(T))
        throw Error("calibration", file.path().string() + ": tensor '" + name + "' has the wrong size");
    if (m.size() > 0) std::memcpy(m.data(), bytes.data(), bytes.size());
}

}  // namespace

std::vector<io::TensorSource> layer_calib_tensors(const std::vector<LayerCalib>& layers, bool outputs) {
    std::vector<io::TensorSource> out;
    for (const LayerCalib& lc : layers) {
        const std::string p = "layer." + std::to_string(lc.layer) + ".";
        if (outputs) {
            out.push_back(model::i64_tensor(p + "sample_tokens", {lc.sample_tokens}));
            out.push_back(matrix_tensor(p + "output_sum", core::DType::F64, lc.output_sum));
            out.push_back(matrix_tensor(p + "output_gram", core::DType::F64, lc.output_gram));
        } else {
            out.push_back(model::i64_tensor(p + "n_tokens", {lc.n_tokens}));
            out.push_back(model::i64_tensor(p + "load", lc.load));
            out.push_back(matrix_tensor(p + "logit_gram", core::DType::F64, lc.logit_gram));
            out.push_back(matrix_tensor(p + "x", core::DType::F32, lc.x));
            out.push_back(matrix_tensor(p + "logits", core::DType::F32, lc.logits));
        }
    }
    return out;
}

std::vector<LayerCalib> load_layer_calib(const io::SafetensorsFile& file, const model::ModelConfig& mc) {
    std::vector<LayerCalib> out;
    for (int64_t il = 0; il < mc.n_layer; ++il) {
        if (!mc.is_moe_layer[static_cast<size_t>(il)]) continue;
        LayerCalib lc(il, mc.n_expert, mc.d_model);
        const std::string p = "layer." + std::to_string(il) + ".";
        lc.n_tokens = model::read_i64(file, p + "n_tokens", 1).front();
        lc.load = model::read_i64(file, p + "load", mc.n_expert);
        read_matrix(file, p + "logit_gram", core::DType::F64, lc.logit_gram);
        read_matrix(file, p + "x", core::DType::F32, lc.x);
        read_matrix(file, p + "logits", core::DType::F32, lc.logits);
        if (lc.logit_gram.rows() != mc.n_expert || lc.x.cols() != mc.d_model || lc.logits.cols() != mc.n_expert ||
            lc.x.rows() != lc.logits.rows())
            throw Error("calibration", file.path().string() + ": layer " + std::to_string(il) + " does not fit this model");
        out.push_back(std::move(lc));
    }
    if (file.tensors().size() != out.size() * 5)
        throw Error("calibration", file.path().string() + " holds statistics of other layers than this model's");
    return out;
}

void load_output_stats(const io::SafetensorsFile& file, std::vector<LayerCalib>& layers) {
    for (LayerCalib& lc : layers) {
        const std::string p = "layer." + std::to_string(lc.layer) + ".";
        lc.sample_tokens = model::read_i64(file, p + "sample_tokens", 1).front();
        read_matrix(file, p + "output_sum", core::DType::F64, lc.output_sum);
        read_matrix(file, p + "output_gram", core::DType::F64, lc.output_gram);
        if (lc.output_sum.rows() != lc.n_expert || lc.output_sum.cols() != lc.d_model || lc.output_gram.rows() != lc.n_expert)
            throw Error("calibration", file.path().string() + ": layer " + std::to_string(lc.layer) + " does not fit this model");
    }
}

}  // namespace moekit::merge
