// Sequential, expert-aware GPTQ over a MoE model (see gptq_model.h).
#include "quantize/gptq_model.h"

#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>

#include "core/error.h"

namespace moekit::quantize {

namespace {

using Clock = std::chrono::steady_clock;

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

GptqLayerInputs::GptqLayerInputs(int64_t layer_, int64_t n_expert, int64_t d, bool all)
    : layer(layer_), d_model(d), all_tokens(all), x(static_cast<std::size_t>(n_expert)), g(static_cast<std::size_t>(n_expert)) {}

uint32_t GptqLayerInputs::sites() const { return model::kSiteExpert | (all_tokens ? model::kSiteMoeBlock : 0u); }

void GptqLayerInputs::on_expert(const model::ExpertEvent& ev) {
    if (ev.layer != layer) return;
    auto& xs = x[static_cast<std::size_t>(ev.expert)];
    const float* p = ev.input.data();
    xs.insert(xs.end(), p, p + ev.input.rows() * d_model);
    auto& gs = g[static_cast<std::size_t>(ev.expert)];
    gs.insert(gs.end(), ev.gates.begin(), ev.gates.end());
}

void GptqLayerInputs::on_moe_block(const model::MoeBlockEvent& ev) {
    if (ev.layer != layer || !all_tokens) return;
    all.insert(all.end(), ev.input.data(), ev.input.data() + ev.input.rows() * d_model);
}

std::vector<GptqExpertReport> gptq_moe_layer(const io::Checkpoint& ck, const model::ArchSpec& arch,
                                             const model::ModelConfig& c, int64_t il, const GptqLayerInputs& obs,
                                             const GptqModelOptions& o, std::map<std::string, std::vector<float>>& weights) {
    const int64_t n_expert = c.n_expert_at(il);
    const int64_t min_tokens = o.min_expert_tokens > 0 ? o.min_expert_tokens : c.d_model;
    std::optional<core::MatrixC<double>> h_layer;
    const int64_t n_all = static_cast<int64_t>(obs.all.size()) / c.d_model;
    if (o.hessian == "layer") h_layer = gram(obs.all.data(), n_all, c.d_model, nullptr);
    std::vector<GptqExpertReport> reps(static_cast<std::size_t>(n_expert));
    std::vector<std::array<std::vector<float>, 3>> outs(static_cast<std::size_t>(n_expert));
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(n_expert));
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t ie = 0; ie < n_expert; ++ie) try {
        const auto names = arch.expert_tensors(il, ie);
        auto& rep = reps[static_cast<std::size_t>(ie)];
        rep.layer = il;
        rep.expert = ie;
        const auto& xs = obs.x[static_cast<std::size_t>(ie)];
        const auto& gs = obs.g[static_cast<std::size_t>(ie)];
        rep.tokens = static_cast<int64_t>(gs.size());
        std::vector<float> wg = ck.read_f32(names.gate), wu = ck.read_f32(names.up), wd = ck.read_f32(names.down);
        for (const auto* n : {&names.gate, &names.up, &names.down}) ck.release(*n);  // keep RSS flat in depth
        const int64_t d_ff = static_cast<int64_t>(wg.size()) / c.d_model;
        GptqOptions go = o.gptq;
        if (auto eb = o.expert_bits.find({il, ie}); eb != o.expert_bits.end()) go.grid.bits = eb->second;
        const bool starved = o.hessian != "layer" && rep.tokens < min_tokens;
        rep.starved = starved;
        if (starved) {
            for (auto* v : {&wg, &wu, &wd}) {
                const int64_t cols = v == &wd ? d_ff : c.d_model;
                for (int64_t r = 0; r < static_cast<int64_t>(v->size()) / cols; ++r) rtn_row(go.grid, v->data() + r * cols, cols);
            }
        } else {
            const std::vector<float>* gate_w = o.hessian == "agq" ? &gs : nullptr;
            const float* x = o.hessian == "layer" ? obs.all.data() : xs.data();
            const int64_t n = o.hessian == "layer" ? n_all : rep.tokens;
            const core::MatrixC<double> h = h_layer ? *h_layer : gram(x, n, c.d_model, gate_w);
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
            const core::MatrixC<double> hd = gram(a.data(), n, d_ff, gate_w);
            RowMatrixF md = to_matrix(wd, c.d_model, d_ff);
            rep.loss_down = gptq_quantize(md, hd, go, what + " down").proxy_loss;
            wg = to_vector(mg);
            wu = to_vector(mu);
            wd = to_vector(md);
        }
        outs[static_cast<std::size_t>(ie)] = {std::move(wg), std::move(wu), std::move(wd)};
    } catch (...) {
        errors[static_cast<std::size_t>(ie)] = std::current_exception();
    }
    for (auto& e : errors)
        if (e) std::rethrow_exception(e);
    for (int64_t ie = 0; ie < n_expert; ++ie) {
        const auto names = arch.expert_tensors(il, ie);
        auto& o3 = outs[static_cast<std::size_t>(ie)];
        weights[names.gate] = std::move(o3[0]);
        weights[names.up] = std::move(o3[1]);
        weights[names.down] = std::move(o3[2]);
    }
    return reps;
}

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
    const auto windows = model::batch_windows(corpus.windows, o.batch_tokens);

    // The quantized values the engine runs with: those of the layer being propagated (and, for
    // the embedding, of the tensors outside the decoder layers); handed on and dropped after use.
    model::TensorMapOverrides quantized;
    auto hand_on = [&](std::map<std::string, std::vector<float>, std::less<>>& from) {
        for (auto& [name, v] : from) {
            if (o.sink)
                o.sink(name, std::move(v));
            else
                res.weights[name] = std::move(v);
        }
        from.clear();
    };
    auto apply_rtn = [&](auto pred) {
        for (const auto& name : rtn_names)
            if (pred(name) && !quantized.tensors.count(name)) {
                std::vector<float> v = ck.read_f32(name);
                ck.release(name);
                o.rtn(name, v);
                quantized.tensors[name] = std::move(v);
            }
    };
    const model::Engine engine(ck, model::EngineOptions{.threads = o.threads, .overrides = &quantized, .device = o.device});

    // Tensors outside decoder layers (embedding, head) first: layer 0 sees the quantized embedding.
    apply_rtn([&](const std::string& n) { return n.rfind("model.layers.", 0) != 0; });
    // The calibration set's hidden states, one matrix per batch of windows (the batches the
    // re-forward implementation ran, so every layer sees exactly the same row blocks).
    std::vector<model::ForwardBatch> batches;
    std::vector<model::Matrix> hidden;
    for (const auto& [w0, w1] : windows) {
        std::vector<std::vector<int32_t>> seqs;
        for (std::size_t w = w0; w < w1; ++w) seqs.push_back(corpus.window_ids(w));
        batches.push_back(engine.prepare(seqs));
        hidden.push_back(engine.embed(batches.back()));
    }
    hand_on(quantized.tensors);

    int64_t last_moe = -1;
    for (int64_t il = 0; il < c.n_layer; ++il)
        if (c.is_moe_layer[static_cast<std::size_t>(il)]) last_moe = il;
    const double n_layer = static_cast<double>(std::max<int64_t>(last_moe + 1, 1));
    auto progress = [&](int64_t il, double frac, const std::string& what) {
        if (o.progress) o.progress(std::min(1.0, (static_cast<double>(il) + frac) / n_layer), "layer " + std::to_string(il) + ": " + what);
    };
    for (int64_t il = 0; il < c.n_layer; ++il) {
        const bool moe = c.is_moe_layer[static_cast<std::size_t>(il)];
        const auto tw = Clock::now();
        if (moe) {
            // Calibration: layer il with its original weights on the already-quantized prefix's output.
            GptqLayerInputs obs(il, c.n_expert_at(il), c.d_model, o.hessian == "layer");
            model::Observer* list[] = {&obs};
            for (std::size_t b = 0; b < batches.size(); ++b) {
                progress(il, 0.5 * static_cast<double>(b) / static_cast<double>(batches.size()),
                         "calibration batch " + std::to_string(b + 1) + "/" + std::to_string(batches.size()));
                model::Matrix h = hidden[b];
                engine.forward_layer(batches[b], il, h, list);
            }
            ++res.passes;
            const auto tl = Clock::now();
            progress(il, 0.5, "GPTQ");
            std::map<std::string, std::vector<float>> experts;
            const auto reps = gptq_moe_layer(ck, arch, c, il, obs, o, experts);
            res.experts.insert(res.experts.end(), reps.begin(), reps.end());
            for (auto& [name, v] : experts) quantized.tensors[name] = std::move(v);
            apply_rtn([&](const std::string& n) { return in_layer(n, il); });
            res.layer_seconds.push_back(std::chrono::duration<double>(Clock::now() - tl).count());
        } else {
            apply_rtn([&](const std::string& n) { return in_layer(n, il); });
        }
        // Propagation: layer il with its quantized weights gives layer il + 1's input.
        if (il < last_moe) {
            for (std::size_t b = 0; b < batches.size(); ++b) {
                progress(il, 0.75, "forward batch " + std::to_string(b + 1) + "/" + std::to_string(batches.size()));
                engine.forward_layer(batches[b], il, hidden[b]);
            }
            ++res.passes;
        }
        hand_on(quantized.tensors);
        if (moe) res.layer_wall_seconds.push_back(std::chrono::duration<double>(Clock::now() - tw).count());
    }
    res.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return res;
}

}  // namespace moekit::quantize
