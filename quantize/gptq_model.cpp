// Sequential, expert-aware GPTQ over a MoE model (see gptq_model.h).
#include "quantize/gptq_model.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>

#include "core/error.h"
#include "io/checkpoint_edit.h"
#include "model/arch.h"
#include "model/engine.h"

namespace moekit::quantize {
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

// Collects one layer's routed-expert inputs and gates (and, for the layer-wide Hessian, every
// token's MoE-block input).
class LayerInputs : public model::Observer {
public:
    LayerInputs(int64_t layer, int64_t n_expert, int64_t d, bool all_tokens)
        : layer_(layer), d_(d), all_tokens_(all_tokens), x_(static_cast<std::size_t>(n_expert)),
          g_(static_cast<std::size_t>(n_expert)) {}
    uint32_t sites() const override { return model::kSiteExpert | (all_tokens_ ? model::kSiteMoeBlock : 0u); }
    void on_expert(const model::ExpertEvent& ev) override {
        if (ev.layer != layer_) return;
        auto& x = x_[static_cast<std::size_t>(ev.expert)];
        const float* p = ev.input.data();
        x.insert(x.end(), p, p + ev.input.rows() * d_);
        auto& g = g_[static_cast<std::size_t>(ev.expert)];
        g.insert(g.end(), ev.gates.begin(), ev.gates.end());
    }
    void on_moe_block(const model::MoeBlockEvent& ev) override {
        if (ev.layer != layer_) return;
        all_.insert(all_.end(), ev.input.data(), ev.input.data() + ev.input.rows() * d_);
    }
    int64_t layer_, d_;
    bool all_tokens_;
    std::vector<std::vector<float>> x_, g_;
    std::vector<float> all_;
};

using RowMatrixF = RowMatrix;
using MapF = Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

// H = (2/n) sum_t w_t x_t x_t^T (w_t = 1 unless weights are given).
core::MatrixC<double> gram(const float* x, int64_t n, int64_t d, const std::vector<float>* weights) {
    Eigen::MatrixXd xd = MapF(x, n, d).cast<double>();
    if (weights)
        for (int64_t t = 0; t < n; ++t) xd.row(t) *= std::sqrt(std::max(0.0f, (*weights)[static_cast<std::size_t>(t)]));
    core::MatrixC<double> h = (2.0 / static_cast<double>(std::max<int64_t>(n, 1))) * (xd.transpose() * xd);
    return h;
}

RowMatrixF to_matrix(const std::vector<float>& v, int64_t rows, int64_t cols) {
    return Eigen::Map<const RowMatrixF>(v.data(), rows, cols);
}
std::vector<float> to_vector(const RowMatrixF& m) { return {m.data(), m.data() + m.size()}; }

bool in_layer(const std::string& name, int64_t il) { return name.rfind("model.layers." + std::to_string(il) + ".", 0) == 0; }

}  // namespace

GptqModelResult gptq_model(const io::Checkpoint& ck, const std::vector<std::string>& rtn_names, const GptqModelOptions& o) {
    const auto t0 = Clock::now();
    if (o.hessian != "layer" && o.hessian != "expert" && o.hessian != "agq")
        throw Error("quantize", "--hessian must be layer, expert or agq (got '" + o.hessian + "')");
    if (o.calib.data.empty()) throw Error("quantize", "--method gptq needs calibration data (--calib FILE[,FILE...])");
    const auto resolved = model::resolve_config(ck.config());
    const model::ArchSpec& arch = *resolved.arch;
    const model::ModelConfig& c = resolved.config;
    model::CorpusOptions co = o.calib;
    co.flag = "--calib";
    const model::Corpus corpus = model::load_corpus(ck, c.vocab_size, co);
    if (corpus.windows.empty()) throw Error("quantize", "--calib: the calibration data gives no token windows");
    GptqModelResult res;
    res.calib_windows = static_cast<int64_t>(corpus.windows.size());
    for (const auto& d : corpus.domains) res.calib_tokens += d.tokens;
    const auto batches = model::batch_windows(corpus.windows, o.batch_tokens);
    const int64_t min_tokens = o.min_expert_tokens > 0 ? o.min_expert_tokens : c.d_model;

    auto apply_rtn = [&](auto pred) {
        for (const auto& name : rtn_names)
            if (pred(name) && !res.weights.count(name)) {
                std::vector<float> v = ck.read_f32(name);
                o.rtn(name, v);
                res.weights[name] = std::move(v);
            }
    };
    // Tensors outside decoder layers (embedding, head) first: layer 0 sees the quantized embedding.
    apply_rtn([&](const std::string& n) { return n.rfind("model.layers.", 0) != 0; });

    std::optional<io::Checkpoint> current;
    fs::path current_dir;
    auto cleanup = [&] {
        current.reset();
        if (!current_dir.empty()) {
            std::error_code ec;
            fs::remove_all(current_dir, ec);
        }
    };
    try {
        for (int64_t il = 0; il < c.n_layer; ++il) {
            if (!c.is_moe_layer[static_cast<std::size_t>(il)]) {
                apply_rtn([&](const std::string& n) { return in_layer(n, il); });
                continue;
            }
            // A checkpoint holding every tensor quantized so far (layers < il and the embedding).
            if (!res.weights.empty()) {
                io::CheckpointEdit edit;
                for (const auto& [name, v] : res.weights) {
                    const auto& info = *ck.at(name).info;
                    io::TensorSource s;
                    s.name = name;
                    s.dtype = core::DType::F32;
                    s.shape = info.shape;
                    s.nbytes = v.size() * 4;
                    const std::vector<float>* data = &v;
                    s.fill = [data](std::byte* dst) { std::memcpy(dst, data->data(), data->size() * 4); };
                    edit.put.push_back(std::move(s));
                }
                const fs::path dir = o.scratch_dir / (".moekit-gptq-" + std::to_string(::getpid()) + "-" + std::to_string(il));
                io::write_checkpoint(ck, edit, dir, io::WriteOptions{true});
                cleanup();
                current_dir = dir;
                current.emplace(io::Checkpoint::open(dir));
            }
            const io::Checkpoint& src = current ? *current : ck;
            const int64_t n_expert = c.n_expert_at(il);
            LayerInputs obs(il, n_expert, c.d_model, o.hessian == "layer");
            {
                const model::Engine engine(src, model::EngineOptions{o.threads});
                model::Observer* list[] = {&obs};
                for (std::size_t b = 0; b < batches.size(); ++b) {
                    if (o.progress)
                        o.progress((static_cast<double>(il) + static_cast<double>(b) / batches.size()) / c.n_layer,
                                   "layer " + std::to_string(il) + ": calibration batch " + std::to_string(b + 1) + "/" +
                                       std::to_string(batches.size()));
                    std::vector<std::vector<int32_t>> seqs;
                    for (std::size_t w = batches[b].first; w < batches[b].second; ++w) seqs.push_back(corpus.window_ids(w));
                    engine.forward_hidden(seqs, list);
                }
                ++res.passes;
            }
            const auto tl = Clock::now();
            if (o.progress) o.progress((il + 0.99) / c.n_layer, "layer " + std::to_string(il) + ": GPTQ");
            std::optional<core::MatrixC<double>> h_layer;
            const int64_t n_all = static_cast<int64_t>(obs.all_.size()) / c.d_model;
            if (o.hessian == "layer") h_layer = gram(obs.all_.data(), n_all, c.d_model, nullptr);
            std::vector<GptqExpertReport> reps(static_cast<std::size_t>(n_expert));
            std::vector<std::array<std::vector<float>, 3>> outs(static_cast<std::size_t>(n_expert));
#pragma omp parallel for schedule(dynamic, 1)
            for (int64_t ie = 0; ie < n_expert; ++ie) {
                const auto names = arch.expert_tensors(il, ie);
                auto& rep = reps[static_cast<std::size_t>(ie)];
                rep.layer = il;
                rep.expert = ie;
                const auto& xs = obs.x_[static_cast<std::size_t>(ie)];
                const auto& gs = obs.g_[static_cast<std::size_t>(ie)];
                rep.tokens = static_cast<int64_t>(gs.size());
                std::vector<float> wg = ck.read_f32(names.gate), wu = ck.read_f32(names.up), wd = ck.read_f32(names.down);
                const int64_t d_ff = static_cast<int64_t>(wg.size()) / c.d_model;
                GptqOptions go = o.gptq;
                if (auto eb = o.expert_bits.find({il, ie}); eb != o.expert_bits.end()) go.grid.bits = eb->second;
                const bool starved = o.hessian != "layer" && rep.tokens < min_tokens;
                rep.starved = starved;
                if (starved) {
                    for (auto* v : {&wg, &wu, &wd}) {
                        const int64_t cols = v == &wd ? d_ff : c.d_model;
                        for (int64_t r = 0; r < static_cast<int64_t>(v->size()) / cols; ++r)
                            rtn_row(go.grid, v->data() + r * cols, cols);
                    }
                } else {
                    const std::vector<float>* weights = o.hessian == "agq" ? &gs : nullptr;
                    const float* x = o.hessian == "layer" ? obs.all_.data() : xs.data();
                    const int64_t n = o.hessian == "layer" ? n_all : rep.tokens;
                    const core::MatrixC<double> h = h_layer ? *h_layer : gram(x, n, c.d_model, weights);
                    const std::string what = "layer " + std::to_string(il) + " expert " + std::to_string(ie);
                    RowMatrixF mg = to_matrix(wg, d_ff, c.d_model), mu = to_matrix(wu, d_ff, c.d_model);
                    rep.loss_gate = gptq_quantize(mg, h, go, what + " gate").proxy_loss;
                    rep.loss_up = gptq_quantize(mu, h, go, what + " up").proxy_loss;
                    // down_proj input from the quantized gate/up: silu(x Wg^T) * (x Wu^T).
                    const RowMatrixF xm = MapF(x, n, c.d_model);
                    RowMatrixF a = xm * mg.transpose(), b = xm * mu.transpose();
                    for (int64_t i = 0; i < a.size(); ++i) {
                        const float v = a.data()[i];
                        a.data()[i] = v / (1.0f + std::exp(-v)) * b.data()[i];
                    }
                    const core::MatrixC<double> hd = gram(a.data(), n, d_ff, weights);
                    RowMatrixF md = to_matrix(wd, c.d_model, d_ff);
                    rep.loss_down = gptq_quantize(md, hd, go, what + " down").proxy_loss;
                    wg = to_vector(mg);
                    wu = to_vector(mu);
                    wd = to_vector(md);
                }
                outs[static_cast<std::size_t>(ie)] = {std::move(wg), std::move(wu), std::move(wd)};
            }
            for (int64_t ie = 0; ie < n_expert; ++ie) {
                const auto names = arch.expert_tensors(il, ie);
                auto& o3 = outs[static_cast<std::size_t>(ie)];
                res.weights[names.gate] = std::move(o3[0]);
                res.weights[names.up] = std::move(o3[1]);
                res.weights[names.down] = std::move(o3[2]);
            }
            res.experts.insert(res.experts.end(), reps.begin(), reps.end());
            apply_rtn([&](const std::string& n) { return in_layer(n, il); });
            res.layer_seconds.push_back(std::chrono::duration<double>(Clock::now() - tl).count());
        }
        cleanup();
    } catch (...) {
        cleanup();
        throw;
    }
    res.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return res;
}

}  // namespace moekit::quantize
