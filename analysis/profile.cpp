// `moekit profile` (analysis/profile.h): record or load a trace, compute every statistic, write
// the report.
#include "analysis/profile.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iterator>
#include <set>

#include "analysis/congestion.h"
#include "analysis/consistency_stats.h"
#include "analysis/load_stats.h"
#include "analysis/report_csv.h"
#include "analysis/report_html.h"
#include "analysis/specialization.h"
#include "core/clock.h"
#include "core/error.h"
#include "dist/comm.h"
#include "io/checkpoint.h"
#include "model/corpus.h"
#include "model/engine.h"

namespace moekit::analysis {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

namespace {

void check_params(const ProfileParams& p) {
    auto positive_list = [](const std::vector<int64_t>& v, const char* flag) {
        if (v.empty()) throw Error("profile", std::string(flag) + " needs at least one value");
        for (int64_t x : v)
            if (x < 1) throw Error("profile", std::string(flag) + " values must be at least 1 (got " + std::to_string(x) + ")");
        if (std::set<int64_t>(v.begin(), v.end()).size() != v.size()) throw Error("profile", std::string(flag) + " has a repeated value");
    };
    positive_list(p.segment_lengths, "--segment-lengths");
    positive_list(p.cache_ratios, "--cache-ratios");
    if (p.bootstrap.batches < 1) throw Error("profile", "--bootstrap-batches must be at least 1");
    if (p.bootstrap.resamples < 0) throw Error("profile", "--bootstrap-resamples must not be negative");
    if (p.vocab_min_count < 1) throw Error("profile", "--vocab-min-count must be at least 1");
}

// Bytes of a trace, for MPI gathering (the trace file format through a temporary file).
std::string trace_bytes(const RoutingTrace& trace) {
    const fs::path tmp = fs::temp_directory_path() / ("moekit-trace-" + std::to_string(::getpid()) + "-" + std::to_string(dist::rank()));
    save_trace(trace, tmp);
    std::ifstream in(tmp, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    fs::remove(tmp);
    return bytes;
}

RoutingTrace trace_from_bytes(const std::string& bytes, int rank) {
    const fs::path tmp = fs::temp_directory_path() / ("moekit-trace-" + std::to_string(::getpid()) + "-from-" + std::to_string(rank));
    {
        std::ofstream out(tmp, std::ios::binary);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        if (!out) throw Error("profile", "cannot write a temporary file in " + fs::temp_directory_path().string());
    }
    RoutingTrace t = load_trace(tmp);
    fs::remove(tmp);
    return t;
}

int64_t corpus_tokens(const model::Corpus& corpus) {
    int64_t n = 0;
    for (const auto& d : corpus.domains) n += d.tokens;
    return n;
}

// Records the trace of this rank's share of the windows.
struct Recorded {
    RoutingTrace trace;
    ordered_json source;
    ordered_json extra_params;
    model::CalibrationUse calibration;
};

void check_profilable(const model::ModelConfig& mc, const ProfileOptions& options) {
    if (mc.n_moe_layer() == 0) throw Error("profile", "'" + options.model_dir.string() + "' has no MoE layers to profile");
    // A trace holds one expert count for all layers; non-uniformly pruned models differ per layer.
    if (!mc.n_expert_layer.empty())
        throw Error("profile", "'" + options.model_dir.string() + "' has different expert counts per layer (config field " +
                                   std::string(model::kExpertsPerLayerKey) + "); profile supports uniform models only for now");
}

// An empty trace of `mc` over `corpus` with the facts record() and the shared-pass sink fill in.
RoutingTrace new_trace(const model::ModelConfig& mc, const ProfileOptions& options, const model::Corpus& corpus) {
    RoutingTrace t;
    t.model_type = mc.model_type;
    t.model_name = fs::absolute(options.model_dir).lexically_normal().filename().string();
    if (t.model_name.empty()) t.model_name = fs::absolute(options.model_dir).lexically_normal().parent_path().filename().string();
    t.n_layer = mc.n_layer;
    t.n_expert = mc.n_expert;
    t.n_expert_used = mc.n_expert_used;
    t.scoring = mc.routing.scoring == model::Scoring::sigmoid ? "sigmoid" : "softmax";
    t.logit_sample_stride = options.logit_sample_stride > 0
                                ? options.logit_sample_stride
                                : auto_logit_sample_stride(corpus_tokens(corpus), corpus.seq_len);
    for (const auto& d : corpus.domains) t.domains.push_back(d.name);
    for (int64_t il = 0; il < mc.n_layer; ++il)
        if (mc.is_moe_layer[static_cast<size_t>(il)]) {
            TraceLayer layer;
            layer.layer = il;
            t.layers.push_back(std::move(layer));
        }
    return t;
}

nlohmann::json trace_params(const ProfileOptions& options, int64_t logit_sample_stride) {
    return {{"batch_tokens", options.batch_tokens}, {"logit_sample_stride", logit_sample_stride}, {"version", 1}};
}

class TraceSink : public model::CalibrationSink {
public:
    TraceSink(const model::ModelConfig& mc, const ProfileOptions& options, const model::Corpus& corpus)
        : trace_(new_trace(mc, options, corpus)), recorder_(trace_), batch_tokens_(options.batch_tokens),
          params_(trace_params(options, trace_.logit_sample_stride)) {}
    std::string_view kind() const override { return kTraceKind; }
    nlohmann::json params() const override { return params_; }
    int64_t batch_tokens() const override { return batch_tokens_; }
    model::Observer& observer() override { return recorder_; }
    void begin_batch(const std::vector<std::vector<int32_t>>& sequences, const std::vector<int32_t>& domains) override {
        recorder_.begin_batch(sequences, domains);
    }
    void save(model::CalibrationCache& cache, const std::string& key) override {
        save_trace(trace_, cache.writable_path(kTraceKind, key));
    }

private:
    RoutingTrace trace_;
    TraceRecorder recorder_;
    int64_t batch_tokens_;
    nlohmann::json params_;
};

Recorded record(const ProfileOptions& options, int threads) {
    const io::Checkpoint ckpt = io::Checkpoint::open(options.model_dir);
    model::EngineOptions engine_options;
    engine_options.threads = threads;
    engine_options.device = options.device;
    model::Engine engine(ckpt, engine_options);
    const model::ModelConfig& mc = engine.config();
    check_profilable(mc, options);
    const model::Corpus corpus = model::load_corpus(ckpt, mc.vocab_size, options.corpus);

    Recorded out;
    RoutingTrace& t = out.trace;
    t = new_trace(mc, options, corpus);

    // A saved trace of this model over these windows replaces the forward passes (one process only).
    out.calibration.kind = kTraceKind;
    std::string key;
    if (options.calib_cache != nullptr && dist::size() == 1) {
        key = options.calib_cache->key(ckpt, corpus, kTraceKind,
                                       model::key_params(engine, trace_params(options, t.logit_sample_stride)));
        if (options.calib_cache->contains(kTraceKind, key)) {
            const fs::path saved = options.calib_cache->path(kTraceKind, key);
            const std::string name = t.model_name;
            t = load_trace(saved);
            t.model_name = name;
            out.calibration.source = "reused";
            out.calibration.file = saved.string();
        }
    }

    // Batches are cut from all windows first and ranks take contiguous shares of the batches, so
    // every batch (and so every floating-point sum in it) is the same whatever the rank count.
    const auto all_batches = model::batch_windows(corpus.windows, options.batch_tokens);
    const auto n_batch = static_cast<int64_t>(all_batches.size());
    const int64_t b0 = n_batch * dist::rank() / dist::size(), b1 = n_batch * (dist::rank() + 1) / dist::size();
    const std::vector<std::pair<size_t, size_t>> batches(all_batches.begin() + b0, all_batches.begin() + b1);
    const auto& mine = corpus.windows;
    TraceRecorder recorder(t);
    class Progress : public model::Observer {
    public:
        std::function<void(int64_t)> f;
        uint32_t sites() const override { return model::kSiteLayer; }
        void on_layer(const model::LayerEvent& e) override { f(e.layer); }
    } progress;
    std::vector<model::Observer*> observers{&recorder};
    size_t b = 0;
    if (options.progress && dist::rank() == 0) {
        progress.f = [&](int64_t il) {
            options.progress((static_cast<double>(b) + static_cast<double>(il + 1) / static_cast<double>(mc.n_layer)) /
                                 static_cast<double>(std::max<size_t>(batches.size(), 1)),
                             "batch " + std::to_string(b + 1) + "/" + std::to_string(batches.size()) + ", layer " +
                                 std::to_string(il + 1) + "/" + std::to_string(mc.n_layer));
        };
        observers.push_back(&progress);
    }
    for (b = 0; b < batches.size() && out.calibration.source != "reused"; ++b) {
        std::vector<std::vector<int32_t>> seqs;
        std::vector<int32_t> domains;
        for (size_t w = batches[b].first; w < batches[b].second; ++w) {
            const model::CorpusWindow& win = mine[w];
            const auto& ids = corpus.streams[win.domain];
            seqs.emplace_back(ids.begin() + win.begin, ids.begin() + win.begin + win.len);
            domains.push_back(static_cast<int32_t>(win.domain));
        }
        recorder.begin_batch(seqs, domains);
        (void)engine.forward_hidden(seqs, observers);
        for (const auto& q : seqs) out.calibration.forward_tokens += static_cast<int64_t>(q.size());
    }
    if (options.calib_cache != nullptr && dist::size() == 1 && out.calibration.source != "reused") {
        const fs::path saved = options.calib_cache->writable_path(kTraceKind, key);
        save_trace(t, saved);
        out.calibration.source = "computed+saved";
        out.calibration.file = saved.string();
    }

    ordered_json domains = ordered_json::array();
    for (const auto& d : corpus.domains)
        domains.push_back({{"name", d.name}, {"path", d.path.string()}, {"format", d.format}, {"documents", d.documents},
                           {"documents_used", d.documents_used}, {"tokens", d.tokens}, {"windows", d.windows}});
    out.source = {{"source", "model"},
                  {"model_dir", options.model_dir.string()},
                  {"tokenization", corpus.tokenization},
                  {"files", std::move(domains)},
                  {"mpi_ranks", dist::size()}};
    out.extra_params = {{"seq_len", corpus.seq_len}, {"max_tokens", options.corpus.max_tokens}, {"batch_tokens", options.batch_tokens}};
    out.source["routing"] = mc.routing.describe();
    return out;
}

}  // namespace

ordered_json compute_profile(const RoutingTrace& trace, const ProfileParams& params, const ordered_json& source,
                             const ordered_json& extra_params) {
    check_params(params);
    trace.validate();
    if (trace.n_moe_layer() == 0) throw Error("profile", "the trace holds no MoE layer");
    if (trace.n_tokens() == 0) throw Error("profile", "the trace holds no tokens");
    const int threads = params.threads > 0 ? params.threads : std::max(1, omp_get_max_threads());
    const BootstrapPlan plan(trace.n_seq(), params.bootstrap);
    const int64_t L = trace.n_moe_layer(), E = trace.n_expert, k = trace.n_expert_used;

    SpecializationParams sp;
    sp.vocab_min_count = params.vocab_min_count;
    ConsistencyParams cp;
    cp.segment_lengths = params.segment_lengths;
    cp.cache_ratios = params.cache_ratios;
    cp.sch_segment_length = params.default_segment_length;
    cp.threads = threads;
    const ConsistencyReport consistency = consistency_report(trace, plan, cp);
    const VocabIndex vocab_input = build_vocab_index(trace, false, params.vocab_min_count);
    const VocabIndex vocab_next = build_vocab_index(trace, true, params.vocab_min_count);

    std::vector<ordered_json> load(static_cast<size_t>(L)), congestion(static_cast<size_t>(L)), special(static_cast<size_t>(L));
#pragma omp parallel for num_threads(threads) schedule(dynamic)
    for (int64_t j = 0; j < L; ++j) {
        load[static_cast<size_t>(j)] = load_layer_json(trace, j, plan);
        congestion[static_cast<size_t>(j)] = congestion_layer_json(trace, j, plan);
        special[static_cast<size_t>(j)] = specialization_layer_json(trace, j, sp, vocab_input, vocab_next);
    }

    ordered_json doc;
    doc["schema_version"] = 1;
    doc["command"] = "profile";
    doc["moekit_version"] = MOEKIT_VERSION_STRING;
    std::vector<int64_t> moe_layers;
    for (const auto& l : trace.layers) moe_layers.push_back(l.layer);
    doc["model"] = {{"name", trace.model_name}, {"model_type", trace.model_type}, {"n_layer", trace.n_layer},
                    {"n_expert", E}, {"n_expert_used", k}, {"moe_layers", moe_layers}, {"scoring", trace.scoring}};
    if (source.contains("routing")) doc["model"]["routing"] = source["routing"];
    if (source.contains("model_dir")) doc["model"]["dir"] = source["model_dir"];

    // Data: per domain tokens and sequences from the trace; file details from the source.
    ordered_json data = ordered_json::object();
    data["source"] = source.value("source", "trace");
    if (source.contains("traces")) data["traces"] = source["traces"];
    if (source.contains("tokenization")) data["tokenization"] = source["tokenization"];
    if (source.contains("mpi_ranks")) data["mpi_ranks"] = source["mpi_ranks"];
    data["tokens"] = trace.n_tokens();
    data["sequences"] = trace.n_seq();
    ordered_json domains = ordered_json::array();
    for (size_t d = 0; d < trace.domains.size(); ++d) {
        int64_t tokens = 0, seqs = 0;
        for (int64_t s = 0; s < trace.n_seq(); ++s)
            if (trace.seq_domain[static_cast<size_t>(s)] == static_cast<int32_t>(d))
                ++seqs, tokens += trace.seq_begin[static_cast<size_t>(s + 1)] - trace.seq_begin[static_cast<size_t>(s)];
        ordered_json entry = {{"name", trace.domains[d]}, {"tokens", tokens}, {"sequences", seqs}};
        if (source.contains("files"))
            for (const auto& f : source["files"])
                if (f.value("name", "") == trace.domains[d])
                    for (const auto& [key, value] : f.items())
                        if (key != "name" && key != "tokens") entry[key] = value;
        domains.push_back(std::move(entry));
    }
    data["domains"] = std::move(domains);
    doc["data"] = std::move(data);

    ordered_json p = extra_params.is_object() ? extra_params : ordered_json::object();
    p["segment_lengths"] = params.segment_lengths;
    p["cache_ratios"] = params.cache_ratios;
    p["default_segment_length"] = params.default_segment_length;
    p["default_cache_ratio"] = params.default_cache_ratio;
    p["sch_lookahead"] = params.default_segment_length;
    p["bootstrap"] = {{"batches", params.bootstrap.batches}, {"batches_used", plan.n_batch()}, {"resamples", params.bootstrap.resamples},
                      {"seed", params.bootstrap.seed}, {"level", 0.95}, {"method", "percentile over resampled batches of sequences"}};
    p["logit_sample_stride"] = trace.logit_sample_stride;
    p["logit_samples"] = static_cast<int64_t>(trace.sample_rows.size());
    p["vocab_min_count"] = params.vocab_min_count;
    p["super_experts"] = {{"percentile", sp.super_percentile}, {"max_fraction", sp.super_max_fraction}, {"layer_fraction", sp.super_layer_fraction}};
    p["conventions"] = {
        {"selection", "the architecture's own selected set (group limits and e_score_correction_bias included); "
                      "p = softmax of raw router logits wherever a distribution is needed, also for sigmoid routers"},
        {"load", kLoadConvention},
        {"consistency", kConsistencyConvention},
        {"congestion", kCongestionConvention},
        {"specialization", kSpecializationConvention},
        {"vocabulary", kVocabConvention},
        {"divergence", kJsdConvention},
        {"super_experts", kSuperExpertConvention},
        {"bootstrap", "intervals: 2.5/97.5 percentiles over resamples of batches (contiguous groups of sequences), "
                      "std::mt19937_64(seed), rng() % B"}};
    doc["params"] = std::move(p);

    ordered_json model_level;
    model_level["load"] = load_model_json(trace, plan);
    model_level["consistency"] = consistency.model;
    model_level["congestion"] = congestion_model_json(congestion);
    doc["model_level"] = std::move(model_level);

    ordered_json layers = ordered_json::array();
    for (int64_t j = 0; j < L; ++j) {
        ordered_json lj;
        lj["layer"] = trace.layers[static_cast<size_t>(j)].layer;
        lj["moe_index"] = j;
        lj["load"] = std::move(load[static_cast<size_t>(j)]);
        lj["consistency"] = consistency.layers[static_cast<size_t>(j)];
        lj["congestion"] = std::move(congestion[static_cast<size_t>(j)]);
        lj["specialization"] = std::move(special[static_cast<size_t>(j)]);
        layers.push_back(std::move(lj));
    }
    doc["super_experts"] = super_experts_json(trace, sp);

    // Summary: the few things a person looks at first.
    std::vector<std::pair<double, int64_t>> vio;
    for (const auto& lj : layers) vio.emplace_back(lj["load"]["max_vio"]["value"].get<double>(), lj["layer"].get<int64_t>());
    std::sort(vio.begin(), vio.end());
    const size_t n_pick = std::min<size_t>(3, vio.size());
    ordered_json summary;
    summary["most_balanced"] = ordered_json::array();
    summary["least_balanced"] = ordered_json::array();
    for (size_t i = 0; i < n_pick; ++i) {
        summary["most_balanced"].push_back({{"layer", vio[i].second}, {"max_vio", vio[i].first}});
        summary["least_balanced"].push_back({{"layer", vio[vio.size() - 1 - i].second}, {"max_vio", vio[vio.size() - 1 - i].first}});
    }
    summary["dead"] = ordered_json::array();
    for (const auto& lj : layers)
        for (const auto& e : lj["load"]["dead"]) summary["dead"].push_back({{"layer", lj["layer"]}, {"expert", e}});
    summary["top_specialized"] = top_specialized_json(trace, params.top_specialized);
    doc["summary"] = std::move(summary);
    doc["layers"] = std::move(layers);
    return doc;
}

int64_t auto_logit_sample_stride(int64_t n_tokens, int64_t seq_len) {
    const int64_t wanted = (n_tokens + kMultiFitRows - 1) / kMultiFitRows;
    return std::max<int64_t>(8, std::min(wanted, seq_len / 4));
}

std::unique_ptr<model::CalibrationSink> calibration_sink(const model::ModelConfig& config, const model::Corpus& corpus,
                                                         const ProfileOptions& options) {
    check_profilable(config, options);
    return std::make_unique<TraceSink>(config, options, corpus);
}

ProfileResult profile(const ProfileOptions& options) {
    check_params(options.params);
    if (options.logit_sample_stride < 0) throw Error("profile", "--logit-sample-stride must be at least 1 (or 0: auto)");
    if (options.batch_tokens < 1) throw Error("profile", "--batch-tokens must be positive");
    const int threads = options.params.threads > 0 ? options.params.threads : std::max(1, omp_get_max_threads());
    ProfileResult result;
    const auto t0 = std::chrono::steady_clock::now();
    ordered_json source, extra;
    if (!options.traces.empty()) {
        if (dist::size() > 1) throw Error("profile", "--trace runs in one process; start it without mpirun");
        std::vector<RoutingTrace> parts;
        ordered_json paths = ordered_json::array();
        for (const auto& path : options.traces) {
            if (options.progress) options.progress(0.0, "loading " + path.filename().string());
            parts.push_back(load_trace(path));
            paths.push_back(path.string());
        }
        result.trace = merge_traces(parts);
        source = {{"source", "trace"}, {"traces", std::move(paths)}};
    } else {
        if (options.model_dir.empty()) throw Error("profile", "give MODEL_DIR with --data, or --trace FILE");
        Recorded rec = record(options, threads);
        const std::vector<std::string> parts = dist::gather(dist::size() > 1 ? trace_bytes(rec.trace) : std::string());
        if (dist::rank() != 0) {
            result.is_root = false;
            return result;
        }
        if (dist::size() > 1) {
            std::vector<RoutingTrace> traces;
            for (size_t r = 0; r < parts.size(); ++r) traces.push_back(trace_from_bytes(parts[r], static_cast<int>(r)));
            result.trace = merge_traces(traces);
            // Every rank read the same corpus: keep rank 0's domain list (its order is the data order).
            result.trace.model_name = rec.trace.model_name;
        } else {
            result.trace = std::move(rec.trace);
        }
        source = std::move(rec.source);
        extra = std::move(rec.extra_params);
        result.calibration = std::move(rec.calibration);
    }
    result.record_s = core::seconds_since(t0);
    if (options.save_trace) save_trace(result.trace, *options.save_trace);
    if (options.progress) options.progress(1.0, "computing statistics");
    const auto t1 = std::chrono::steady_clock::now();
    result.doc = compute_profile(result.trace, options.params, source, extra);
    result.stats_s = core::seconds_since(t1);
    if (!result.calibration.kind.empty()) result.doc["calibration_source"] = ordered_json::array({result.calibration.to_json()});
    result.doc["timing"] = {{"record_s", result.record_s}, {"stats_s", result.stats_s}, {"threads", threads},
                            {"device", options.device ? options.device->describe() : std::string("cpu")},
                            {"trace_bytes_per_token_layer", trace_bytes_per_token_layer(result.trace)}};
    return result;
}

std::vector<std::string> write_profile_report(const ordered_json& doc, const fs::path& out_dir, bool force) {
    const fs::path target = fs::absolute(out_dir).lexically_normal();
    if (target.filename().empty()) throw Error("profile", "bad output directory '" + out_dir.string() + "'");
    if (fs::exists(target) && !force)
        throw Error("profile", "output '" + out_dir.string() + "' exists; pass --force to replace it");
    if (fs::exists(target) && !fs::is_directory(target))
        throw Error("profile", "output '" + out_dir.string() + "' exists and is not a directory");
    const std::string pid = std::to_string(::getpid());
    const fs::path tmp = target.string() + ".moekit-tmp-" + pid;
    const fs::path old = target.string() + ".moekit-old-" + pid;
    std::vector<std::string> files;
    try {
        fs::create_directories(tmp);
        auto write = [&](const std::string& name, const std::string& contents) {
            std::ofstream out(tmp / name, std::ios::binary);
            out << contents;
            out.close();
            if (!out) throw Error("profile", "cannot write '" + (tmp / name).string() + "'");
            files.push_back(name);
        };
        write("profile.json", doc.dump(2) + "\n");
        for (const auto& [name, contents] : render_csv_tables(doc)) write(name, contents);
        write("index.html", render_html(doc));
        if (fs::exists(target)) fs::rename(target, old);
        fs::rename(tmp, target);
        std::error_code ec;
        fs::remove_all(old, ec);
    } catch (const fs::filesystem_error& e) {
        std::error_code ec;
        fs::remove_all(tmp, ec);
        if (fs::exists(old) && !fs::exists(target)) fs::rename(old, target, ec);
        throw Error("profile", "cannot write the report to '" + out_dir.string() + "': " + e.code().message());
    } catch (...) {
        std::error_code ec;
        fs::remove_all(tmp, ec);
        throw;
    }
    return files;
}

}  // namespace moekit::analysis
