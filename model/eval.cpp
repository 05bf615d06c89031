// `moekit eval` (model/eval.h): windows, batched forward passes, chunked scoring.
#include "model/eval.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/tokenizer.h"
#include "model/corpus.h"
#include "model/engine.h"
#include "model/eval_exp.h"

namespace moekit::model {

namespace fs = std::filesystem;

namespace {


// Routed experts of every decoder layer (they differ after non-uniform pruning).
std::vector<int64_t> experts_per_layer(const ModelConfig& mc) {
    std::vector<int64_t> out;
    for (int64_t il = 0; il < mc.n_layer; ++il) out.push_back(mc.n_expert_at(il));
    return out;
}

// Keeps the selected experts of every MoE layer of the last forward pass.
class RouterCapture : public Observer {
public:
    explicit RouterCapture(int64_t n_layer) : selected(static_cast<size_t>(n_layer)) {}
    uint32_t sites() const override { return kSiteRouter; }
    void on_router(const RouterEvent& e) override { selected[static_cast<size_t>(e.layer)] = e.selected; }
    std::vector<IndexMatrix> selected;
};

class LayerProgress : public Observer {
public:
    explicit LayerProgress(std::function<void(int64_t)> f) : f_(std::move(f)) {}
    uint32_t sites() const override { return kSiteLayer; }
    void on_layer(const LayerEvent& e) override { f_(e.layer); }

private:
    std::function<void(int64_t)> f_;
};

// Per scored row: what the chunk loop computes, accumulated afterwards in row order.
struct RowScore {
    double nll = 0, ref_nll = 0, kl = 0;
    bool top1_agree = false;
};

// Sum of e[0, n) in float64. Eight float64 partial sums (two SSE2 pairs x 4, or plain scalars
// elsewhere) added pairwise at the end, instead of one serial chain of n dependent additions: the
// chain was a quarter of the scoring time. The partial sums change the float64 rounding of the
// sum by ~1e-16 relative, i.e. the log-sum-exp by ~1e-16 absolute (bench: ppl identical to 1e-13).
double sum_f64(const float* e, int64_t n) {
    int64_t v = 0;
    double tail = 0.0;
#if defined(__SSE2__)
    __m128d a0 = _mm_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    for (; v + 8 <= n; v += 8) {
        const __m128 x0 = _mm_loadu_ps(e + v), x1 = _mm_loadu_ps(e + v + 4);
        a0 = _mm_add_pd(a0, _mm_cvtps_pd(x0));
        a1 = _mm_add_pd(a1, _mm_cvtps_pd(_mm_movehl_ps(x0, x0)));
        a2 = _mm_add_pd(a2, _mm_cvtps_pd(x1));
        a3 = _mm_add_pd(a3, _mm_cvtps_pd(_mm_movehl_ps(x1, x1)));
    }
    const __m128d s = _mm_add_pd(_mm_add_pd(a0, a1), _mm_add_pd(a2, a3));
    tail = _mm_cvtsd_f64(s) + _mm_cvtsd_f64(_mm_unpackhi_pd(s, s));
#else
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (; v + 8 <= n; v += 8)
        for (int j = 0; j < 8; ++j) a[j] += static_cast<double>(e[v + j]);
    tail = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
#endif
    for (; v < n; ++v) tail += static_cast<double>(e[v]);
    return tail;
}

// One logits row: max (and, when asked, argmax: first index on ties), e = exp(x - max) in fp32
// (vectorized), and log-sum-exp = max + log(sum e) with the sum in float64 (sum_f64).
struct RowSoftmax {
    int64_t argmax = 0;
    double lse = 0;
    double sum = 0;
    void compute(const float* x, int64_t n, Eigen::ArrayXf& e, bool want_argmax) {
        const Eigen::Map<const Eigen::ArrayXf> xs(x, n);
        float mx;
        if (want_argmax) {
            mx = x[0];
            argmax = 0;
            for (int64_t v = 1; v < n; ++v)
                if (x[v] > mx) { mx = x[v]; argmax = v; }
        } else {
            mx = xs.maxCoeff();  // vectorized; the same value as the scan above
        }
        e.resize(n);
        detail::exp_shifted(x, n, mx, e.data());
        sum = sum_f64(e.data(), n);
        lse = static_cast<double>(mx) + std::log(sum);
    }
};

double percentile(std::vector<float> values, double q) {
    if (values.empty()) return 0.0;
    std::sort(values.begin(), values.end());
    const double pos = q * static_cast<double>(values.size() - 1);
    const auto lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, values.size() - 1);
    return values[lo] + (pos - static_cast<double>(lo)) * (static_cast<double>(values[hi]) - values[lo]);
}


}  // namespace

double DomainResult::ppl() const { return std::exp(mean_nll()); }
double EvalReport::tokens_per_s() const { return eval_s > 0 ? static_cast<double>(total.tokens) / eval_s : 0.0; }

EvalReport evaluate(const EvalOptions& options) {
    const auto t_start = std::chrono::steady_clock::now();
    if (options.batch_tokens < 1 || options.chunk_rows < 1) throw Error("eval", "--batch-tokens must be positive");

    EvalReport report;
    report.options = options;
    report.options.progress = nullptr;
    report.threads = options.threads > 0 ? options.threads : std::max(1, omp_get_max_threads());

    const io::Checkpoint ckpt = io::Checkpoint::open(options.model_dir);
    EngineOptions engine_options{report.threads};
    engine_options.compute = options.compute;
    engine_options.device = options.device;
    const Engine engine(ckpt, engine_options);
    const ModelConfig& mc = engine.config();
    report.model_type = mc.model_type;
    report.display_name = std::string(engine.arch().display_name());
    report.vocab_size = mc.vocab_size;
    report.n_layer = mc.n_layer;
    report.n_expert = mc.n_expert;
    report.n_expert_used = mc.n_expert_used;

    // Reference model.
    std::optional<io::Checkpoint> ref_ckpt;
    std::unique_ptr<Engine> ref_engine;
    std::optional<ExpertMap> expert_map;
    if (options.ref_dir) {
        ref_ckpt.emplace(io::Checkpoint::open(*options.ref_dir));
        EngineOptions ref_options;  // always fp32, on the same device
        ref_options.threads = report.threads;
        ref_options.device = options.device;
        ref_engine = std::make_unique<Engine>(*ref_ckpt, ref_options);
        const ModelConfig& rc = ref_engine->config();
        if (rc.vocab_size != mc.vocab_size)
            throw Error("eval", "vocabulary mismatch: MODEL_DIR '" + options.model_dir.string() + "' has vocab_size " +
                                    std::to_string(mc.vocab_size) + ", the reference '" + options.ref_dir->string() + "' " +
                                    std::to_string(rc.vocab_size) + "; KL needs the same vocabulary");
        report.has_ref = true;
        report.ref_n_expert = rc.n_expert;
        if (rc.n_layer != mc.n_layer || rc.is_moe_layer != mc.is_moe_layer) {
            report.routing_note = "unavailable: the two models have different layer structures (" + std::to_string(mc.n_layer) +
                                  " vs " + std::to_string(rc.n_layer) + " layers, or different MoE layers)";
        } else if ((expert_map = read_expert_map(options.model_dir, mc.n_layer, mc.is_moe_layer, experts_per_layer(mc),
                                                 rc.n_expert))) {
            report.routing_available = true;
            report.routing_note = "MODEL_DIR experts mapped to reference experts by moekit.json expert_map";
        } else if (rc.n_expert == mc.n_expert && mc.n_expert_layer == rc.n_expert_layer) {
            report.routing_available = true;
            report.routing_note = "same expert count; experts compared by index";
        } else {
            report.routing_note = "unavailable: MODEL_DIR has " + std::to_string(mc.n_expert) + " experts per MoE layer, the reference " +
                                  std::to_string(rc.n_expert) + ", and MODEL_DIR/moekit.json has no expert_map";
        }
    }

    // Data: read and validate every file before any heavy work.
    const Corpus corpus = load_corpus(ckpt, mc.vocab_size, options.corpus);
    report.options.corpus.seq_len = corpus.seq_len;
    report.has_text = corpus.has_text;
    report.bos_id = corpus.bos_id;
    report.eos_id = corpus.eos_id;
    report.tokenization = corpus.tokenization;
    for (const CorpusDomain& cd : corpus.domains) {
        DomainResult dr;
        dr.domain = cd.name;
        dr.path = cd.path;
        dr.format = cd.format;
        dr.documents = cd.documents;
        dr.documents_used = cd.documents_used;
        dr.tokens = cd.tokens;
        dr.tokens_available = cd.tokens_available;
        dr.windows = cd.windows;
        report.domains.push_back(std::move(dr));
    }
    const auto& streams = corpus.streams;
    const auto& windows = corpus.windows;
    const auto batches = batch_windows(windows, options.batch_tokens);

    const auto t_eval = std::chrono::steady_clock::now();
    const size_t n_domains = report.domains.size();
    std::vector<std::vector<float>> kl_values(n_domains);
    std::vector<int64_t> moe_layers;
    for (int64_t il = 0; il < mc.n_layer; ++il)
        if (mc.is_moe_layer[static_cast<size_t>(il)]) moe_layers.push_back(il);
    if (report.routing_available)
        for (auto& dr : report.domains)
            for (int64_t il : moe_layers) dr.routing.push_back({il, 0.0, 0});

    const int n_passes = ref_engine ? 2 : 1;
    const int64_t V = mc.vocab_size;
    for (size_t b = 0; b < batches.size(); ++b) {
        std::vector<std::vector<int32_t>> seqs;
        std::vector<int32_t> target;     // per row: next id, -1 when not scored
        std::vector<uint32_t> row_domain;
        for (size_t w = batches[b].first; w < batches[b].second; ++w) {
            const CorpusWindow& win = windows[w];
            const auto& ids = streams[win.domain];
            seqs.emplace_back(ids.begin() + win.begin, ids.begin() + win.begin + win.len);
            for (int64_t i = 0; i < win.len; ++i) {
                target.push_back(i + 1 < win.len ? ids[static_cast<size_t>(win.begin + i + 1)] : -1);
                row_domain.push_back(static_cast<uint32_t>(win.domain));
            }
        }
        int pass = 0;
        auto progress_observer = std::make_unique<LayerProgress>([&](int64_t il) {
            if (options.progress)
                options.progress((static_cast<double>(b) + (pass + static_cast<double>(il + 1) / static_cast<double>(mc.n_layer)) / n_passes) /
                                     static_cast<double>(batches.size()),
                                 "batch " + std::to_string(b + 1) + "/" + std::to_string(batches.size()) +
                                     (pass ? ", reference" : "") + ", layer " + std::to_string(il + 1) + "/" + std::to_string(mc.n_layer));
        });
        RouterCapture route_m(mc.n_layer), route_r(mc.n_layer);
        std::vector<Observer*> obs_m, obs_r;
        if (options.progress) obs_m.push_back(progress_observer.get()), obs_r.push_back(progress_observer.get());
        if (report.routing_available) obs_m.push_back(&route_m), obs_r.push_back(&route_r);

        const Matrix hidden = engine.forward_hidden(seqs, obs_m);
        Matrix ref_hidden;
        if (ref_engine) {
            pass = 1;
            ref_hidden = ref_engine->forward_hidden(seqs, obs_r);
        }
        const auto T = static_cast<int64_t>(target.size());
        std::vector<RowScore> scores(static_cast<size_t>(T));
        for (int64_t r0 = 0; r0 < T; r0 += options.chunk_rows) {
            const int64_t n = std::min(options.chunk_rows, T - r0);
            if (options.device) {
                // Scored where the logits are: only 4 numbers per row come back.
                backend::DeviceOps& ops = *options.device;
                const backend::DeviceIndex targets = ops.upload_index(target.data() + r0, n);
                const backend::DeviceMatrix dm = engine.device_logits(hidden, r0, n);
                backend::DeviceMatrix dr;
                if (ref_engine) dr = ref_engine->device_logits(ref_hidden, r0, n);
                backend::DeviceMatrix out = ops.alloc(n, 4);
                ops.score_rows(dm, ref_engine ? &dr : nullptr, targets, out);
                std::vector<float> row(static_cast<size_t>(4 * n));
                ops.download(out, row.data());
                for (int64_t i = 0; i < n; ++i) {
                    if (target[static_cast<size_t>(r0 + i)] < 0) continue;
                    RowScore& s = scores[static_cast<size_t>(r0 + i)];
                    const float* o = row.data() + 4 * i;
                    s.nll = o[0];
                    s.ref_nll = o[1];
                    s.kl = o[2];
                    s.top1_agree = o[3] != 0.0f;
                }
                continue;
            }
            const Matrix lm = engine.logits(hidden, r0, n);
            Matrix lr;
            if (ref_engine) lr = ref_engine->logits(ref_hidden, r0, n);
#pragma omp parallel num_threads(report.threads)
            {
                Eigen::ArrayXf em, er;
#pragma omp for schedule(static)
                for (int64_t i = 0; i < n; ++i) {
                    const int32_t t = target[static_cast<size_t>(r0 + i)];
                    if (t < 0) continue;
                    RowScore& s = scores[static_cast<size_t>(r0 + i)];
                    const float* xm = lm.row(i).data();
                    RowSoftmax sm, sr;
                    sm.compute(xm, V, em, ref_engine != nullptr);
                    s.nll = sm.lse - xm[t];
                    if (!ref_engine) continue;
                    const float* xr = lr.row(i).data();
                    sr.compute(xr, V, er, true);
                    s.ref_nll = sr.lse - xr[t];
                    // KL = sum_v p_ref(v) ((xr_v - xm_v) - (lse_r - lse_m)), p_ref = e_r / sum_r
                    const double c = sr.lse - sm.lse;
                    const auto diff = (Eigen::Map<const Eigen::ArrayXf>(xr, V) - Eigen::Map<const Eigen::ArrayXf>(xm, V)).cast<double>();
                    const double kl = (er.cast<double>() * (diff - c)).sum() / sr.sum;
                    s.kl = std::max(kl, 0.0);
                    s.top1_agree = sm.argmax == sr.argmax;
                }
            }
        }
        for (int64_t r = 0; r < T; ++r) {
            if (target[static_cast<size_t>(r)] < 0) continue;
            const RowScore& s = scores[static_cast<size_t>(r)];
            DomainResult& dr = report.domains[row_domain[static_cast<size_t>(r)]];
            ++dr.scored;
            dr.nll_sum += s.nll;
            if (!ref_engine) continue;
            dr.ref_nll_sum += s.ref_nll;
            dr.kl_sum += s.kl;
            dr.top1_agree += s.top1_agree ? 1 : 0;
            kl_values[row_domain[static_cast<size_t>(r)]].push_back(static_cast<float>(s.kl));
        }
        if (report.routing_available) {
            for (size_t m = 0; m < moe_layers.size(); ++m) {
                const auto il = static_cast<size_t>(moe_layers[m]);
                const IndexMatrix& sm = route_m.selected[il];
                const IndexMatrix& sr = route_r.selected[il];
                if (sm.rows() != T || sr.rows() != T) throw InternalError("eval", "router selections missing for a MoE layer");
                const double k_ref = static_cast<double>(sr.cols());
                for (int64_t r = 0; r < T; ++r) {
                    int matched = 0;
                    for (int64_t j = 0; j < sr.cols(); ++j) {
                        const int32_t e_ref = sr(r, j);
                        bool hit = false;
                        for (int64_t q = 0; q < sm.cols() && !hit; ++q) {
                            const int32_t e = sm(r, q);
                            if (!expert_map) hit = e == e_ref;
                            else
                                for (int32_t orig : (*expert_map)[il][static_cast<size_t>(e)]) hit = hit || orig == e_ref;
                        }
                        matched += hit ? 1 : 0;
                    }
                    RoutingAgreement& ra = report.domains[row_domain[static_cast<size_t>(r)]].routing[m];
                    ra.sum += matched / k_ref;
                    ++ra.tokens;
                }
            }
        }
    }
    if (options.progress) options.progress(1.0, "done");

    // Totals and percentiles.
    DomainResult& total = report.total;
    total.domain = "total";
    std::vector<float> all_kl;
    if (report.routing_available)
        for (int64_t il : moe_layers) total.routing.push_back({il, 0.0, 0});
    for (size_t d = 0; d < n_domains; ++d) {
        DomainResult& dr = report.domains[d];
        total.documents += dr.documents;
        total.documents_used += dr.documents_used;
        total.tokens += dr.tokens;
        total.tokens_available += dr.tokens_available;
        total.windows += dr.windows;
        total.scored += dr.scored;
        total.nll_sum += dr.nll_sum;
        total.ref_nll_sum += dr.ref_nll_sum;
        total.kl_sum += dr.kl_sum;
        total.top1_agree += dr.top1_agree;
        for (size_t m = 0; m < dr.routing.size(); ++m) {
            total.routing[m].sum += dr.routing[m].sum;
            total.routing[m].tokens += dr.routing[m].tokens;
        }
        dr.kl_p99 = percentile(kl_values[d], 0.99);
        all_kl.insert(all_kl.end(), kl_values[d].begin(), kl_values[d].end());
    }
    total.kl_p99 = percentile(std::move(all_kl), 0.99);

    const auto t_end = std::chrono::steady_clock::now();
    report.eval_s = std::chrono::duration<double>(t_end - t_eval).count();
    report.wall_s = std::chrono::duration<double>(t_end - t_start).count();
    return report;
}

}  // namespace moekit::model
