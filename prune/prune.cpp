// `moekit prune` driver (prune/prune.h): validate, calibrate, score, plan, write.
#include "prune/prune.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iterator>

#include "core/clock.h"
#include "core/error.h"
#include "io/checkpoint.h"
#include "model/corpus.h"
#include "model/engine.h"

namespace moekit::prune {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kNaeeMaxBytes = uint64_t(4) << 30;

// The output checks write_checkpoint makes, done before the calibration so a mistake costs nothing.
void check_output(const PruneOptions& o) {
    if (o.dry_run) return;
    if (o.out_dir.empty()) throw Error("prune", "no output directory given (-o OUT_DIR); --dry-run prints the plan without writing");
    io::check_output_location(o.model_dir, o.out_dir, o.force);
}

nlohmann::json score_params(int64_t batch_tokens) { return {{"batch_tokens", batch_tokens}, {"version", 1}}; }

class ScoreSink : public model::CalibrationSink {
public:
    ScoreSink(const model::ModelConfig& config, int64_t batch_tokens) : observer_(config), batch_tokens_(batch_tokens) {}
    std::string_view kind() const override { return kScoreStatsKind; }
    nlohmann::json params() const override { return score_params(batch_tokens_); }
    int64_t batch_tokens() const override { return batch_tokens_; }
    model::Observer& observer() override { return observer_; }
    void save(model::CalibrationCache& cache, const std::string& key) override {
        cache.save(kScoreStatsKind, key, layer_stats_tensors(observer_.layers()));
    }
    std::vector<LayerStats> layers() const { return observer_.layers(); }

private:
    ScoreObserver observer_;
    int64_t batch_tokens_;
};

}  // namespace

std::unique_ptr<model::CalibrationSink> calibration_sink(const model::ModelConfig& config, const PruneOptions& options) {
    return std::make_unique<ScoreSink>(config, options.batch_tokens);
}

PruneResult prune(const PruneOptions& options) {
    const auto t_start = std::chrono::steady_clock::now();
    auto progress = [&](double f, const std::string& what) {
        if (options.progress) options.progress(f, what);
    };
    PruneResult res;
    res.options = options;
    res.options.progress = nullptr;
    res.method = parse_method(options.method);
    res.plan_options.keep = parse_keep(options.keep);
    res.plan_options.budget = parse_budget(options.budget);
    res.plan_options.min_keep = options.min_keep;
    if (options.min_keep < 0) throw Error("prune", "--min-keep must not be negative");
    if (options.batch_tokens < 1) throw Error("prune", "--batch-tokens must be positive");
    if (options.naee_max_tokens < 2 || options.naee_max_subsets < 1)
        throw Error("prune", "--naee-max-tokens must be at least 2 and --naee-max-subsets positive");
    if (res.method == Method::naee && res.plan_options.budget == Budget::global)
        throw Error("prune", "NAEE chooses a subset per layer and has no global score scale; use --budget uniform");
    if (options.calib.data.empty()) throw Error("prune", "no calibration data given (--calib FILE[,FILE...])");
    res.threads = options.threads > 0 ? options.threads : std::max(1, omp_get_max_threads());

    const io::Checkpoint ckpt = io::Checkpoint::open(options.model_dir);
    model::EngineOptions engine_options;
    engine_options.threads = res.threads;
    engine_options.device = options.device;
    if (options.device) res.device = options.device->describe();
    const model::Engine engine(ckpt, engine_options);
    const model::ModelConfig& mc = engine.config();
    res.model_type = mc.model_type;
    res.display_name = std::string(engine.arch().display_name());
    res.n_layer = mc.n_layer;
    res.n_expert = mc.n_expert;
    res.n_expert_used = mc.n_expert_used;
    if (mc.n_moe_layer() == 0) throw Error("prune", options.model_dir.string() + " has no MoE layers to prune");
    check_keep(mc, res.plan_options);
    check_output(options);

    // Calibration: every window once, routed tokens only.
    auto t = std::chrono::steady_clock::now();
    model::CorpusOptions co = options.calib;
    co.flag = "--calib";
    const model::Corpus corpus = model::load_corpus(ckpt, mc.vocab_size, co);
    res.seq_len = corpus.seq_len;
    res.tokenization = corpus.tokenization;
    res.calib_windows = static_cast<int64_t>(corpus.windows.size());
    for (const auto& d : corpus.domains) {
        res.calib_tokens += d.tokens;
        res.calib_files.push_back({{"domain", d.name}, {"path", d.path.string()}, {"format", d.format},
                                   {"documents", d.documents}, {"tokens", d.tokens}, {"windows", d.windows}});
    }
    ScoreSink sink(mc, options.batch_tokens);
    res.calibration = model::calibrate(options.calib_cache, ckpt, engine, corpus, sink,
                                       [&](const io::SafetensorsFile& saved) { res.stats = load_layer_stats(saved, mc); }, progress);
    if (res.calibration.source != "reused") res.stats = sink.layers();
    if (options.protect_super_experts) res.super_experts = find_super_experts(res.stats, mc.n_layer, &res.super_rule);
    else find_super_experts(res.stats, mc.n_layer, &res.super_rule);
    res.calib_s = core::seconds_since(t);

    std::vector<LayerPlan> layers;
    for (const LayerStats& s : res.stats) {
        LayerPlan lp;
        lp.layer = s.layer;
        lp.n_expert = s.n_expert;
        lp.protect.assign(static_cast<size_t>(s.n_expert), false);
        for (const SuperExpert& se : res.super_experts)
            if (se.layer == s.layer) lp.protect[static_cast<size_t>(se.expert)] = true;
        if (res.method != Method::naee) lp.scores = method_scores(res.method, s, options.seed);
        layers.push_back(std::move(lp));
    }

    if (res.method == Method::naee) {
        t = std::chrono::steady_clock::now();
        const uint64_t per_token = static_cast<uint64_t>(mc.n_moe_layer()) * static_cast<uint64_t>(mc.n_expert) *
                                   static_cast<uint64_t>(mc.d_model) * sizeof(float);
        const int64_t cap = std::max<int64_t>(2, std::min<int64_t>(options.naee_max_tokens, static_cast<int64_t>(kNaeeMaxBytes / per_token)));
        const auto sample = model::sample_windows(corpus, cap);
        NaeeObserver naee(mc);
        model::Observer* const naee_obs[] = {&naee};
        progress(1.0, "NAEE: every expert on " + std::to_string(cap) + " tokens");
        engine.forward_hidden(sample, naee_obs);
        for (auto& cap_layer : naee.captures()) {
            if (mc.routing.correction_bias) {
                const std::string router = engine.arch().router_weight(cap_layer.layer);
                cap_layer.correction_bias = ckpt.read_f32(router.substr(0, router.size() - 6) + "e_score_correction_bias");
            }
        }
        res.naee_tokens = naee.captures().front().n_tokens();
        NaeeOptions no{options.naee_max_subsets, res.threads};
        for (size_t i = 0; i < layers.size(); ++i) {
            LayerPlan& lp = layers[i];
            progress(static_cast<double>(i) / static_cast<double>(layers.size()), "NAEE search, layer " + std::to_string(lp.layer));
            NaeeLayerResult r = naee_search(mc, naee.captures()[i], keep_count(res.plan_options.keep, lp.n_expert), lp.protect, no);
            lp.scores = r.single_drop_error;
            lp.kept = r.kept;
            res.naee.push_back(std::move(r));
        }
        res.naee_s = core::seconds_since(t);
    }

    t = std::chrono::steady_clock::now();
    res.plan = res.method == Method::naee ? plan_from_subsets(mc, std::move(layers))
                                          : make_plan(mc, std::move(layers), res.plan_options);
    io::CheckpointEdit edit = make_edit(ckpt, engine.arch(), mc, res.plan, &res.edit);
    res.input_tensor_bytes = ckpt.total_tensor_bytes();
    res.output_tensor_bytes = io::planned_tensor_bytes(ckpt, edit);
    res.moekit_json = make_moekit_json(res);
    res.plan_s = core::seconds_since(t);

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

}  // namespace moekit::prune
