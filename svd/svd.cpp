// `moekit svd` driver (svd/svd.h): validate, calibrate, factorize, write.
#include "svd/svd.h"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iterator>

#include "core/clock.h"
#include "core/error.h"
#include "io/checkpoint.h"
#include "model/corpus.h"
#include "model/engine.h"
#include "svd/calib.h"

namespace moekit::svd {

namespace fs = std::filesystem;

namespace {

// The output checks write_checkpoint makes, done before the calibration so a mistake costs nothing.
void check_output(const SvdOptions& o) {
    if (o.dry_run) return;
    if (o.out_dir.empty()) throw Error("svd", "no output directory given (-o OUT_DIR); --dry-run reports without writing");
    io::check_output_location(o.model_dir, o.out_dir, o.force);
}

}  // namespace

SvdResult svd(const SvdOptions& options) {
    const auto t_start = std::chrono::steady_clock::now();
    auto progress = [&](double f, const std::string& what) {
        if (options.progress) options.progress(f, what);
    };
    SvdResult res;
    res.options = options;
    res.options.progress = nullptr;
    res.method = parse_method(options.method);
    res.format = parse_format(options.format);
    if (!(options.ratio > 0.0 && options.ratio < 1.0))
        throw Error("svd", "--ratio must be in (0, 1) (the kept fraction of the experts' parameters), got " +
                               std::to_string(options.ratio));
    if (options.batch_tokens < 1) throw Error("svd", "--batch-tokens must be positive");
    const bool whitened = res.method != Method::plain;
    if (whitened && options.calib.data.empty())
        throw Error("svd", "no calibration data given (--calib FILE[,FILE...]); " + method_name(res.method) +
                               " whitens with the experts' routed inputs (--method svd needs none)");
    res.threads = options.threads > 0 ? options.threads : std::max(1, omp_get_max_threads());

    const io::Checkpoint ckpt = io::Checkpoint::open(options.model_dir);
    model::EngineOptions engine_options;
    engine_options.threads = res.threads;
    engine_options.device = options.device;  // the calibration forward
    if (options.device) res.device = options.device->describe();
    const model::Engine engine(ckpt, engine_options);
    const model::ModelConfig& mc = engine.config();
    const model::ArchSpec& arch = engine.arch();
    res.model_type = mc.model_type;
    res.display_name = std::string(arch.display_name());
    res.n_layer = mc.n_layer;
    res.n_expert = mc.n_expert;
    res.d_model = mc.d_model;
    res.d_ff_expert = mc.d_ff_expert;
    if (mc.n_moe_layer() == 0) throw Error("svd", options.model_dir.string() + " has no MoE layers to compress");
    if (mc.lowrank_factored)
        throw Error("svd", options.model_dir.string() + " is already factored (config field " + std::string(model::kLowRankKey) + ")");
    check_expert_dtypes(ckpt, arch, mc);
    const int64_t f = mc.d_ff_expert, d = mc.d_model;
    res.rank[0] = res.rank[1] = method_rank(res.method, f, d, mc.n_expert, options.ratio);
    res.rank[2] = method_rank(res.method, d, f, mc.n_expert, options.ratio);
    check_output(options);

    // Whitened methods: the factorization runs inside the calibration's last engine pass, layer by
    // layer as each layer's statistics complete (CalibObserver::set_last_pass), so only one layer's
    // statistics are held when the calibration fits in one pass (--batch-tokens).
    double factor_s = 0;
    if (whitened) {
        const auto t = core::Clock::now();
        model::CorpusOptions co = options.calib;
        co.flag = "--calib";
        const model::Corpus corpus = model::load_corpus(ckpt, mc.vocab_size, co);
        res.seq_len = corpus.seq_len;
        res.tokenization = corpus.tokenization;
        res.calib_windows = static_cast<int64_t>(corpus.windows.size());
        for (const auto& dm : corpus.domains) {
            res.calib_tokens += dm.tokens;
            res.calib_files.push_back({{"domain", dm.name}, {"path", dm.path.string()}, {"format", dm.format},
                                       {"documents", dm.documents}, {"tokens", dm.tokens}, {"windows", dm.windows}});
        }
        CalibObserver observer(ckpt, arch, mc);
        model::Observer* const observers[] = {&observer};
        const auto batches = model::batch_windows(corpus.windows, options.batch_tokens);
        res.calib_passes = static_cast<int64_t>(batches.size());
        const int64_t n_moe = mc.n_moe_layer();
        for (size_t b = 0; b < batches.size(); ++b) {
            progress(static_cast<double>(b) / static_cast<double>(batches.size()),
                     "calibration batch " + std::to_string(b + 1) + "/" + std::to_string(batches.size()));
            if (b + 1 == batches.size())
                observer.set_last_pass([&](LayerCalib& lc) {
                    const auto tf = core::Clock::now();
                    progress(static_cast<double>(res.layers.size()) / static_cast<double>(n_moe),
                             "factorizing layer " + std::to_string(lc.layer));
                    res.layers.push_back(compress_layer(ckpt, arch, mc, res.method, options.ratio, lc.layer, &lc, res.threads,
                                                        options.svd_fn));
                    factor_s += core::seconds_since(tf);
                });
            std::vector<std::vector<int32_t>> seqs;
            for (size_t w = batches[b].first; w < batches[b].second; ++w) seqs.push_back(corpus.window_ids(w));
            engine.forward_hidden(seqs, observers);
        }
        res.calib_s = core::seconds_since(t) - factor_s;
    }

    auto t = std::chrono::steady_clock::now();
    if (!whitened) res.layers = compress(ckpt, arch, mc, res.method, options.ratio, nullptr, res.threads, progress, options.svd_fn);
    for (const LayerFactors& lf : res.layers) {
        for (const ExpertFactors& ef : lf.experts)
            for (const Factors& fp : ef.proj) {
                res.expert_params += fp.m * fp.n;
                res.kept_params += fp.r * (fp.m + fp.n);
            }
        for (const auto& b : lf.base) res.kept_params += static_cast<int64_t>(b.size());
    }
    io::CheckpointEdit edit = make_edit(ckpt, arch, res.layers, res.format, res.method, options.ratio);
    res.input_tensor_bytes = ckpt.total_tensor_bytes();
    res.output_tensor_bytes = io::planned_tensor_bytes(ckpt, edit);
    res.moekit_json = make_moekit_json(res);
    res.factor_s = factor_s + core::seconds_since(t);

    if (!options.dry_run) {
        t = std::chrono::steady_clock::now();
        progress(1.0, "writing " + options.out_dir.string());
        io::add_record_files(edit, options.model_dir, res.moekit_json, readme_note(res));
        res.written = io::write_checkpoint(ckpt, edit, options.out_dir, io::WriteOptions{options.force, options.max_shard_bytes});
        res.output_tensor_bytes = res.written->tensor_bytes;
        res.write_s = core::seconds_since(t);
    }
    res.wall_s = core::seconds_since(t_start);
    return res;
}

}  // namespace moekit::svd
