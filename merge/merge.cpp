// `moekit merge` driver (merge/merge.h): validate, calibrate, group, align, fit routers, write.
#include "merge/merge.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <fstream>
#include <iterator>

#include "core/clock.h"
#include "core/error.h"
#include "io/checkpoint.h"
#include "merge/combine.h"
#include "model/engine.h"

namespace moekit::merge {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kCaptureMaxBytes = uint64_t(2) << 30;
constexpr uint64_t kSampleMaxBytes = uint64_t(4) << 30;

void check_output(const MergeOptions& o) {
    if (o.dry_run) return;
    if (o.out_dir.empty()) throw Error("merge", "no output directory given (-o OUT_DIR); --dry-run prints the groups without writing");
    io::check_output_location(o.model_dir, o.out_dir, o.force);
}

double distance(const ExpertWeights& a, const ExpertWeights& b) {
    return std::sqrt(static_cast<double>((a.gate - b.gate).squaredNorm() + (a.up - b.up).squaredNorm() + (a.down - b.down).squaredNorm()));
}

}  // namespace

int64_t parse_experts(const std::string& text, int64_t E) {
    auto bad = [&] { return Error("merge", "--experts '" + text + "' is neither a count (8) nor a ratio of the experts (0.5)"); };
    if (text.empty()) throw Error("merge", "no target expert count given (--experts N)");
    size_t used = 0;
    double v = 0;
    try {
        v = std::stod(text, &used);
    } catch (const std::exception&) {
        throw bad();
    }
    if (used != text.size() || !std::isfinite(v) || v <= 0) throw bad();
    const bool is_count = text.find_first_not_of("0123456789") == std::string::npos;
    if (is_count) return static_cast<int64_t>(v);
    if (v >= 1.0) throw Error("merge", "--experts " + text + ": a ratio must be below 1 (" + std::to_string(E) + " experts would stay " + std::to_string(E) + "); nothing would be merged");
    return static_cast<int64_t>(std::llround(v * static_cast<double>(E)));
}

void check_experts(const model::ModelConfig& mc, int64_t n, const std::string& text) {
    const int64_t E = mc.n_expert, k = mc.n_expert_used;
    const std::string what = "--experts " + text + " gives " + std::to_string(n) + " of " + std::to_string(E) + " experts per layer";
    if (n >= E) throw Error("merge", what + ": nothing would be merged (ask for fewer than all experts)");
    if (n < k) throw Error("merge", what + ", fewer than the " + std::to_string(k) + " experts every token uses (num_experts_per_tok)");
    const int64_t g = mc.routing.n_group > 1 ? mc.routing.n_group : 1;
    if (g > 1) {
        if (n % g != 0)
            throw Error("merge", what + ", which " + mc.model_type + "'s group-limited routing cannot use: n_group = " + std::to_string(g) +
                                     " needs a multiple of " + std::to_string(g) + " (each routing group is merged within itself)");
        if (std::min(mc.routing.topk_group, g) * (n / g) < k)
            throw Error("merge", what + ": with n_group = " + std::to_string(g) + " and topk_group = " + std::to_string(mc.routing.topk_group) +
                                     " a token could reach only " + std::to_string(std::min(mc.routing.topk_group, g) * (n / g)) +
                                     " experts, fewer than top-" + std::to_string(k));
    }
}

namespace {

nlohmann::json router_params(const MergeOptions& options, int64_t capture_stride) {
    return {{"batch_tokens", options.batch_tokens}, {"capture_stride", capture_stride}, {"version", 1}};
}

class RouterSink : public model::CalibrationSink {
public:
    RouterSink(const model::ModelConfig& config, const MergeOptions& options, int64_t capture_stride)
        : observer_(config, capture_stride), params_(router_params(options, capture_stride)), batch_tokens_(options.batch_tokens) {}
    std::string_view kind() const override { return kRouterStatsKind; }
    nlohmann::json params() const override { return params_; }
    int64_t batch_tokens() const override { return batch_tokens_; }
    model::Observer& observer() override { return observer_; }
    void save(model::CalibrationCache& cache, const std::string& key) override {
        cache.save(kRouterStatsKind, key, layer_calib_tensors(observer_.layers(), false));
    }
    std::vector<LayerCalib> take_layers() { return std::move(observer_.layers()); }

private:
    RouterObserver observer_;
    nlohmann::json params_;
    int64_t batch_tokens_;
};

}  // namespace

int64_t capture_stride(const model::ModelConfig& mc, int64_t calib_tokens) {
    const uint64_t per_token = static_cast<uint64_t>(mc.n_moe_layer()) * static_cast<uint64_t>(mc.d_model + mc.n_expert) * sizeof(float);
    return std::max<int64_t>(1, static_cast<int64_t>((static_cast<uint64_t>(calib_tokens) * per_token + kCaptureMaxBytes - 1) / kCaptureMaxBytes));
}

std::unique_ptr<model::CalibrationSink> calibration_sink(const model::ModelConfig& config, const model::Corpus& corpus,
                                                         const MergeOptions& options) {
    int64_t tokens = 0;
    for (const auto& d : corpus.domains) tokens += d.tokens;
    return std::make_unique<RouterSink>(config, options, capture_stride(config, tokens));
}

MergeResult merge(const MergeOptions& options) {
    const auto t_start = std::chrono::steady_clock::now();
    auto progress = [&](double f, const std::string& what) {
        if (options.progress) options.progress(f, what);
    };
    MergeResult res;
    res.options = options;
    res.options.progress = nullptr;
    res.method = parse_method(options.method);
    if (options.router != "refit" && options.router != "mean")
        throw Error("merge", "unknown --router '" + options.router + "' (expected refit or mean)");
    if (options.svd_rank < 0) throw Error("merge", "--svd-rank must not be negative");
    if (options.svd_rank > 0 && res.method != Method::sub_moe) throw Error("merge", "--svd-rank applies to --method sub-moe only");
    if (options.batch_tokens < 1) throw Error("merge", "--batch-tokens must be positive");
    if (options.sample_tokens < 2) throw Error("merge", "--sample-tokens must be at least 2");
    if (options.calib.data.empty()) throw Error("merge", "no calibration data given (--calib FILE[,FILE...])");
    res.threads = options.threads > 0 ? options.threads : std::max(1, omp_get_max_threads());

    const io::Checkpoint ckpt = io::Checkpoint::open(options.model_dir);
    model::EngineOptions engine_options;
    engine_options.threads = res.threads;
    engine_options.device = options.device;
    if (options.device) res.device = options.device->describe();
    const model::Engine engine(ckpt, engine_options);
    const model::ModelConfig& mc = engine.config();
    const model::ArchSpec& arch = engine.arch();
    res.model_type = mc.model_type;
    res.display_name = std::string(arch.display_name());
    res.n_layer = mc.n_layer;
    res.n_expert = mc.n_expert;
    res.n_expert_used = mc.n_expert_used;
    res.n_group = mc.routing.n_group > 1 ? mc.routing.n_group : 1;
    if (mc.n_moe_layer() == 0) throw Error("merge", options.model_dir.string() + " has no MoE layers to merge");
    if (!mc.n_expert_layer.empty())
        throw Error("merge", options.model_dir.string() + " has per-layer expert counts (" + std::string(model::kExpertsPerLayerKey) +
                                 "); merging such checkpoints is not supported");
    res.n_new = parse_experts(options.experts, mc.n_expert);
    check_experts(mc, res.n_new, options.experts);
    check_output(options);

    // Calibration pass: router statistics and captured router inputs.
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
    res.capture_stride = capture_stride(mc, res.calib_tokens);
    std::vector<LayerCalib> calib;
    RouterSink sink(mc, options, res.capture_stride);
    res.calibration = model::calibrate(options.calib_cache, ckpt, engine, corpus, sink,
                                       [&](const io::SafetensorsFile& saved) { calib = load_layer_calib(saved, mc); }, progress);
    if (res.calibration.source != "reused") calib = sink.take_layers();
    res.captured_tokens = calib.front().x.rows();
    res.calib_s = core::seconds_since(t);

    if (needs_all_experts(res.method)) {
        t = std::chrono::steady_clock::now();
        const uint64_t per = static_cast<uint64_t>(mc.n_expert) * static_cast<uint64_t>(mc.d_model) * 12;
        const int64_t cap = std::max<int64_t>(2, std::min<int64_t>(options.sample_tokens, static_cast<int64_t>(kSampleMaxBytes / per)));
        const auto sample = model::sample_windows(corpus, cap);
        res.sample_calibration.kind = kOutputStatsKind;
        std::string sample_key;
        if (options.calib_cache != nullptr) {
            sample_key = options.calib_cache->key(ckpt, corpus, kOutputStatsKind, {{"sample_tokens", cap}, {"version", 1}});
            if (const auto saved = options.calib_cache->find(kOutputStatsKind, sample_key)) {
                load_output_stats(*saved, calib);
                res.sample_calibration.source = "reused";
                res.sample_calibration.file = saved->path().string();
            }
        }
        if (res.sample_calibration.source != "reused") {
            OutputObserver out_obs(calib, mc.n_layer);
            model::Observer* const observers[] = {&out_obs};
            progress(1.0, "every expert on " + std::to_string(cap) + " sampled tokens");
            engine.forward_hidden(sample, observers);
            for (const auto& w : sample) res.sample_calibration.forward_tokens += static_cast<int64_t>(w.size());
            if (options.calib_cache != nullptr) {
                res.sample_calibration.file =
                    options.calib_cache->save(kOutputStatsKind, sample_key, layer_calib_tensors(calib, true)).string();
                res.sample_calibration.source = "computed+saved";
            }
        }
        res.sample_tokens = calib.front().sample_tokens;
        res.sample_s = core::seconds_since(t);
    }

    // Per layer: groups, weights, alignment, router.
    t = std::chrono::steady_clock::now();
    const int64_t n_group = res.n_group;
    for (size_t li = 0; li < calib.size(); ++li) {
        const auto tl = std::chrono::steady_clock::now();
        const LayerCalib& lc = calib[li];
        const int64_t il = lc.layer, E = lc.n_expert;
        progress(static_cast<double>(li) / static_cast<double>(calib.size()), "merging layer " + std::to_string(il));
        LayerMerge lm;
        lm.layer = il;
        lm.n_expert = E;
        std::vector<double> freq(lc.load.begin(), lc.load.end());
        const Eigen::MatrixXd logit_cos = cosine_from_gram(lc.logit_gram);
        const Eigen::MatrixXd output_cos = cosine_from_gram(lc.output_gram);
        Eigen::MatrixXd mean_out = lc.output_sum;
        if (lc.sample_tokens > 0) mean_out /= static_cast<double>(lc.sample_tokens);
        const int64_t size = E / n_group, per_group = res.n_new / n_group;
        for (int64_t g = 0; g < n_group; ++g) {
            std::vector<int64_t> cand;
            for (int64_t e = g * size; e < (g + 1) * size; ++e) cand.push_back(e);
            Groups part;
            switch (res.method) {
                case Method::m_smoe: part = group_m_smoe(cand, per_group, freq, logit_cos); break;
                case Method::hc_smoe: part = group_hc_smoe(cand, per_group, mean_out); break;
                case Method::sub_moe:
                    part = group_sub_moe(cand, per_group, output_cos, options.seed + 0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(il));
                    break;
            }
            lm.groups.insert(lm.groups.end(), part.begin(), part.end());
        }
        normalize_groups(lm.groups);
        LayerReport rep;
        rep.layer = il;
        rep.load = lc.load;
        for (const auto& grp : lm.groups) {
            std::vector<double> f;
            for (int64_t e : grp) f.push_back(freq[static_cast<size_t>(e)]);
            lm.weights.push_back(normalized_weights(f));
            int64_t ref = grp[0];
            for (int64_t e : grp)
                if (freq[static_cast<size_t>(e)] > freq[static_cast<size_t>(ref)]) ref = e;
            lm.reference.push_back(ref);
            lm.perms.emplace_back(grp.size());
        }
        // Alignment: one linear assignment per non-reference member, in parallel over members.
        std::vector<std::pair<size_t, size_t>> tasks;  // (group, member)
        if (options.align)
            for (size_t g = 0; g < lm.groups.size(); ++g)
                for (size_t i = 0; i < lm.groups[g].size(); ++i)
                    if (lm.groups[g].size() > 1 && lm.groups[g][i] != lm.reference[g]) tasks.emplace_back(g, i);
        std::vector<double> before(lm.groups.size(), 0.0), after(lm.groups.size(), 0.0);
        std::vector<double> task_before(tasks.size()), task_after(tasks.size());
        std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic) num_threads(res.threads)
        for (size_t ti = 0; ti < tasks.size(); ++ti) {
            try {
                const auto [g, i] = tasks[ti];
                const ExpertWeights rw = read_expert(ckpt, arch, il, lm.reference[g]);
                const ExpertWeights mw = read_expert(ckpt, arch, il, lm.groups[g][i]);
                lm.perms[g][i] = align_permutation(rw, mw);
                task_before[ti] = distance(rw, mw);
                task_after[ti] = distance(rw, permute_neurons(mw, lm.perms[g][i]));
            } catch (...) {
#pragma omp critical(merge_align_failure)
                if (!failure) failure = std::current_exception();
            }
        }
        if (failure) std::rethrow_exception(failure);
        for (size_t ti = 0; ti < tasks.size(); ++ti) {
            before[tasks[ti].first] += task_before[ti];
            after[tasks[ti].first] += task_after[ti];
        }
        for (size_t g = 0; g < lm.groups.size(); ++g) rep.align_gain.push_back(before[g] > 0 ? after[g] / before[g] : 1.0);
        lm.joint_svd = res.method == Method::sub_moe;
        lm.svd_rank = options.svd_rank;
        // Router.
        const std::string router_name = arch.router_weight(il);
        const std::string base = router_name.substr(0, router_name.size() - std::string("weight").size());
        const std::vector<float> rv = ckpt.read_f32(router_name);
        const model::Matrix router = Eigen::Map<const model::Matrix>(rv.data(), E, mc.d_model);
        const model::Matrix mean = mean_router(router, lm.groups, lm.weights);
        std::vector<float> corr;
        if (ckpt.find(base + "e_score_correction_bias")) corr = ckpt.read_f32(base + "e_score_correction_bias");
        if (ckpt.find(base + "bias")) lm.router_bias = mean_vector(ckpt.read_f32(base + "bias"), lm.groups, lm.weights);
        lm.correction_bias = mean_vector(corr, lm.groups, lm.weights);
        lm.router = options.router == "refit" ? refit_router(lc.x, lc.logits, lm.groups, router, mean) : mean;
        rep.agreement = routing_agreement(mc, lc.x, lc.logits, corr, lm.router, lm.correction_bias, lm.groups);
        rep.agreement_mean = options.router == "mean" ? rep.agreement
                                                      : routing_agreement(mc, lc.x, lc.logits, corr, mean, lm.correction_bias, lm.groups);
        res.layers.push_back(std::move(lm));
        res.reports.push_back(std::move(rep));
        res.layer_merge_s.push_back(core::seconds_since(tl));
    }
    io::CheckpointEdit edit = make_edit(ckpt, arch, mc, res.layers, &res.edit);
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

}  // namespace moekit::merge
