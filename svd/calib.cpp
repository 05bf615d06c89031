// Accumulating the whitening statistics on the engine's routed expert inputs (svd/calib.h).
#include "svd/calib.h"

#include "core/error.h"

namespace moekit::svd {

CalibObserver::CalibObserver(const io::Checkpoint& checkpoint, const model::ArchSpec& arch,
                             const model::ModelConfig& mc)
    : ckpt_(checkpoint), arch_(arch), slot_(static_cast<size_t>(mc.n_layer), -1) {
    for (int64_t il = 0; il < mc.n_layer; ++il) {
        if (!mc.is_moe_layer[static_cast<size_t>(il)]) continue;
        slot_[static_cast<size_t>(il)] = static_cast<int64_t>(layers_.size());
        LayerCalib lc;
        lc.layer = il;
        lc.experts.resize(static_cast<size_t>(mc.n_expert_at(il)));
        layers_.push_back(std::move(lc));
    }
}

model::Matrix intermediate(const model::Matrix& x, const float* w_gate, const float* w_up, int64_t f) {
    using ConstMap = Eigen::Map<const model::Matrix>;
    const ConstMap g(w_gate, f, x.cols()), u(w_up, f, x.cols());
    model::Matrix gx = x * g.transpose();
    const model::Matrix ux = x * u.transpose();
    gx.array() = gx.array() / (1.0f + (-gx.array()).exp()) * ux.array();
    return gx;
}

void CalibObserver::on_expert(const model::ExpertEvent& ev) {
    const int64_t slot = slot_.at(static_cast<size_t>(ev.layer));
    if (slot < 0) return;
    ExpertStats& st = layers_[static_cast<size_t>(slot)].experts.at(static_cast<size_t>(ev.expert));
    const auto n = static_cast<int64_t>(ev.rows.size());
    if (n == 0) return;
    const model::ExpertTensorNames names = arch_.expert_tensors(ev.layer, ev.expert);
    const std::vector<float> wg = ckpt_.read_f32(names.gate), wu = ckpt_.read_f32(names.up);
    const int64_t d = ev.input.cols();
    const int64_t f = static_cast<int64_t>(wg.size()) / d;
    const Eigen::MatrixXd x = ev.input.cast<double>();
    const Eigen::MatrixXd a = intermediate(ev.input, wg.data(), wu.data(), f).cast<double>();
    if (st.tokens == 0) {
        st.h_in = MatrixD::Zero(d, d);
        st.h_mid = MatrixD::Zero(f, f);
    }
    // Full products (BLAS dgemm) rather than Eigen's own rank update: several times faster here.
    st.h_in.noalias() += x.transpose() * x;
    st.h_mid.noalias() += a.transpose() * a;
    st.tokens += n;
}

void CalibObserver::on_layer(const model::LayerEvent& ev) {
    if (!consumer_) return;
    const int64_t slot = slot_.at(static_cast<size_t>(ev.layer));
    if (slot < 0) return;
    LayerCalib& lc = layers_[static_cast<size_t>(slot)];
    consumer_(lc);
    for (ExpertStats& st : lc.experts) st = ExpertStats{};
}

}  // namespace moekit::svd
