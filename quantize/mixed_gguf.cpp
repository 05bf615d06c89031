// Mixed precision for GGUF output (declared in mixed_precision.h). In GGUF all experts of one
// projection of one layer live in one tensor with one ggml type, so the unit of allocation is the
// layer-projection (gate/up/down of layer l), not the expert. Its error at a candidate type t is
// the MC-MoE-weighted sum over the layer's experts of the mean squared output error on their
// routed tokens when only that projection is fake-quantized to t (the type after llama-quantize's
// row-length fallback, whose real bits per weight are the ones counted):
//   L_{l,p,t} = sum_e phi_e^alpha w_e^beta MSE_e(p -> t).
// The exact DP of allocate_exact runs in units of 1/16 bit (every ggml type's bits per weight is a
// multiple of 1/16) under avg_bits over the routed-expert weights (all projections have the same
// size).
#include <cmath>
#include <map>

#include <Eigen/Core>

#include "core/error.h"
#include "model/arch.h"
#include "model/engine.h"
#include "quantize/mixed_precision.h"

namespace moekit::quantize {
namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

RowMatrix load_fake(const io::Checkpoint& ck, const std::string& name, std::optional<GgmlType> type) {
    const auto& info = *ck.at(name).info;
    std::vector<float> v = ck.read_f32(name);
    if (type)
        for (int64_t r = 0; r < info.shape[0]; ++r) {
            const auto y = fake_quantize_row(*type, v.data() + r * info.shape[1], info.shape[1]);
            std::copy(y.begin(), y.end(), v.begin() + r * info.shape[1]);
        }
    return Eigen::Map<RowMatrix>(v.data(), info.shape[0], info.shape[1]);
}

RowMatrix swiglu_expert(const RowMatrix& g, const RowMatrix& u, const RowMatrix& d, const model::Matrix& x) {
    RowMatrix a = x * g.transpose(), b = x * u.transpose();
    for (int64_t i = 0; i < a.size(); ++i) a.data()[i] = a.data()[i] / (1.0f + std::exp(-a.data()[i])) * b.data()[i];
    return a * d.transpose();
}

class ProjectionObserver : public model::Observer {
public:
    ProjectionObserver(const io::Checkpoint& ck, const model::ArchSpec& arch, const std::vector<GgmlType>& cands,
                       std::map<int64_t, ProjectionStats>& stats)
        : ck_(ck), arch_(arch), cands_(cands), stats_(stats) {}
    uint32_t sites() const override { return model::kSiteExpert | model::kSiteRouter; }
    void on_router(const model::RouterEvent& ev) override {
        stats_[ev.layer].tokens += ev.tokens.n_tokens();
        if (layer_ != ev.layer) {
            cache_.clear();
            layer_ = ev.layer;
        }
    }
    void on_expert(const model::ExpertEvent& ev) override {
        auto& st = stats_[ev.layer];
        auto& e = st.experts[ev.expert];
        e.tokens += ev.input.rows();
        for (float g : ev.gates) e.gate_sum += g;
        auto& c = cache_[ev.expert];
        const auto names = arch_.expert_tensors(ev.layer, ev.expert);
        if (c.orig.empty()) {
            c.orig = {load_fake(ck_, names.gate, std::nullopt), load_fake(ck_, names.up, std::nullopt),
                      load_fake(ck_, names.down, std::nullopt)};
            for (int p = 0; p < 3; ++p)
                for (auto t : cands_) {
                    const std::string& n = p == 0 ? names.gate : p == 1 ? names.up : names.down;
                    c.fake[p].push_back(load_fake(ck_, n, ggml_fallback_type(t, ck_.at(n).info->shape[1])));
                }
        }
        if (e.error.empty()) e.error.assign(3, std::vector<double>(cands_.size(), 0.0));
        for (int p = 0; p < 3; ++p)
            for (std::size_t k = 0; k < cands_.size(); ++k) {
                const RowMatrix y = swiglu_expert(p == 0 ? c.fake[0][k] : c.orig[0], p == 1 ? c.fake[1][k] : c.orig[1],
                                                  p == 2 ? c.fake[2][k] : c.orig[2], ev.input);
                e.error[p][k] += (y - ev.output).squaredNorm();
            }
    }

private:
    struct Cached {
        std::vector<RowMatrix> orig;
        std::vector<RowMatrix> fake[3];
    };
    const io::Checkpoint& ck_;
    const model::ArchSpec& arch_;
    const std::vector<GgmlType>& cands_;
    std::map<int64_t, ProjectionStats>& stats_;
    int64_t layer_ = -1;
    std::map<int64_t, Cached> cache_;
};

}  // namespace

std::vector<ProjectionProfile> mixed_precision_gguf_plan(const io::Checkpoint& ck, const std::vector<GgmlType>& cands,
                                                         const MixedPrecisionOptions& o) {
    if (cands.empty()) throw Error("quantize", "--candidate-types is empty");
    if (o.calib.data.empty()) throw Error("quantize", "--mixed-precision needs calibration data (--calib FILE[,FILE...])");
    const auto resolved = model::resolve_config(ck.config());
    const model::ModelConfig& c = resolved.config;
    model::CorpusOptions co = o.calib;
    co.flag = "--calib";
    const model::Corpus corpus = model::load_corpus(ck, c.vocab_size, co);
    const auto batches = model::batch_windows(corpus.windows, o.batch_tokens);
    std::map<int64_t, ProjectionStats> stats;
    ProjectionObserver obs(ck, *resolved.arch, cands, stats);
    const model::Engine engine(ck, model::EngineOptions{.threads = o.threads, .device = o.device});
    model::Observer* list[] = {&obs};
    for (std::size_t b = 0; b < batches.size(); ++b) {
        if (o.progress) o.progress(static_cast<double>(b) / batches.size(), "mixed precision: profiling batch " + std::to_string(b + 1));
        std::vector<std::vector<int32_t>> seqs;
        for (std::size_t w = batches[b].first; w < batches[b].second; ++w) seqs.push_back(corpus.window_ids(w));
        engine.forward_hidden(seqs, list);
    }
    std::vector<ProjectionProfile> out;
    std::vector<std::vector<double>> cost;
    std::vector<std::vector<int>> units;  // 1/16 bits per weight of each candidate after fallback
    for (int64_t il = 0; il < c.n_layer; ++il) {
        if (!c.is_moe_layer[static_cast<std::size_t>(il)]) continue;
        const auto& st = stats[il];
        for (int p = 0; p < 3; ++p) {
            ProjectionProfile pp;
            pp.layer = il;
            pp.projection = p;
            pp.error.assign(cands.size(), 0.0);
            const auto names = resolved.arch->expert_tensors(il, 0);
            const int64_t row = ck.at(p == 0 ? names.gate : p == 1 ? names.up : names.down).info->shape[1];
            std::vector<int> u;
            for (auto t : cands) {
                const GgmlType real = ggml_fallback_type(t, row);
                pp.types.push_back(real);
                u.push_back(static_cast<int>(std::lround(ggml_bits_per_weight(real) * 16)));
            }
            for (const auto& [ie, e] : st.experts) {
                if (e.tokens == 0) continue;
                const double phi = st.tokens > 0 ? static_cast<double>(e.tokens) / static_cast<double>(st.tokens) : 0.0;
                const double w = e.gate_sum / static_cast<double>(e.tokens);
                for (std::size_t k = 0; k < cands.size(); ++k)
                    pp.error[k] += std::pow(phi, o.alpha) * std::pow(w, o.beta) * e.error[p][k] / static_cast<double>(e.tokens);
            }
            cost.push_back(pp.error);
            units.push_back(u);
            out.push_back(std::move(pp));
        }
    }
    // Per-unit width lists: fallbacks can differ between gate/up (rows of d_model) and down (d_ff).
    const int64_t budget = static_cast<int64_t>(std::floor(o.avg_bits * 16 * static_cast<double>(out.size()) + 1e-9));
    const std::vector<int> pick = allocate_exact_units(cost, units, budget);
    for (std::size_t i = 0; i < out.size(); ++i) {
        out[i].choice = pick[i];
        out[i].type = out[i].types[static_cast<std::size_t>(pick[i])];
    }
    return out;
}

}  // namespace moekit::quantize
