// Tests for analysis/trace: the recorder against the engine's own router/expert events (with
// sums recomputed here in double), save/load round trips bit for bit, merging equals recording
// everything at once, and malformed traces are refused with a clear error.
#include "analysis/trace.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/checkpoint.h"
#include "model/engine.h"
#include "test_util.h"

using namespace moekit;
using analysis::RoutingTrace;
using analysis::TraceLayer;

namespace {

const std::string kFixtures = std::string(MOEKIT_TEST_DATA) + "/fixtures/";

// Keeps every router and expert event of the last forward pass.
class Capture : public model::Observer {
public:
    uint32_t sites() const override { return model::kSiteRouter | model::kSiteExpert; }
    void on_router(const model::RouterEvent& e) override {
        logits[e.layer] = e.logits;
        selected[e.layer] = e.selected;
        gates[e.layer] = e.gates;
    }
    void on_expert(const model::ExpertEvent& e) override {
        for (size_t i = 0; i < e.rows.size(); ++i) {
            const auto row = e.output.row(static_cast<Eigen::Index>(i));
            auto& m = max_abs[{e.layer, e.rows[i], e.expert}];
            m = row.cwiseAbs().maxCoeff();
            norm[{e.layer, e.rows[i], e.expert}] = std::sqrt(row.cast<double>().squaredNorm());
        }
    }
    std::map<int64_t, model::Matrix> logits, gates;
    std::map<int64_t, model::IndexMatrix> selected;
    std::map<std::tuple<int64_t, int64_t, int64_t>, float> max_abs;
    std::map<std::tuple<int64_t, int64_t, int64_t>, double> norm;
};

RoutingTrace empty_trace(const model::Engine& engine, int64_t stride) {
    const model::ModelConfig& mc = engine.config();
    RoutingTrace t;
    t.model_type = mc.model_type;
    t.model_name = "fixture";
    t.n_layer = mc.n_layer;
    t.n_expert = mc.n_expert;
    t.n_expert_used = mc.n_expert_used;
    t.scoring = "softmax";
    t.logit_sample_stride = stride;
    t.domains = {"a", "b"};
    for (int64_t il = 0; il < mc.n_layer; ++il)
        if (mc.is_moe_layer[static_cast<size_t>(il)]) t.layers.push_back(TraceLayer{.layer = il});
    return t;
}

std::vector<std::vector<int32_t>> random_sequences(int n, int64_t vocab, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<std::vector<int32_t>> out;
    for (int s = 0; s < n; ++s) {
        std::vector<int32_t> seq(static_cast<size_t>(3 + rng() % 9));
        for (auto& id : seq) id = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
        out.push_back(seq);
    }
    return out;
}

void expect_same(const RoutingTrace& a, const RoutingTrace& b) {
    EXPECT_EQ(a.model_type, b.model_type);
    EXPECT_EQ(a.n_layer, b.n_layer);
    EXPECT_EQ(a.n_expert, b.n_expert);
    EXPECT_EQ(a.n_expert_used, b.n_expert_used);
    EXPECT_EQ(a.scoring, b.scoring);
    EXPECT_EQ(a.domains, b.domains);
    EXPECT_EQ(a.token_ids, b.token_ids);
    EXPECT_EQ(a.seq_begin, b.seq_begin);
    EXPECT_EQ(a.seq_domain, b.seq_domain);
    EXPECT_EQ(a.sample_rows, b.sample_rows);
    ASSERT_EQ(a.layers.size(), b.layers.size());
    for (size_t j = 0; j < a.layers.size(); ++j) {
        EXPECT_EQ(a.layers[j].layer, b.layers[j].layer);
        EXPECT_EQ(a.layers[j].selected, b.layers[j].selected);
        EXPECT_EQ(a.layers[j].gates, b.layers[j].gates);
        EXPECT_EQ(a.layers[j].seq_sum_prob, b.layers[j].seq_sum_prob);
        EXPECT_EQ(a.layers[j].seq_sum_centered_logit, b.layers[j].seq_sum_centered_logit);
        EXPECT_EQ(a.layers[j].seq_sum_entropy, b.layers[j].seq_sum_entropy);
        EXPECT_EQ(a.layers[j].seq_sum_out_norm, b.layers[j].seq_sum_out_norm);
        EXPECT_EQ(a.layers[j].seq_max_abs_out, b.layers[j].seq_max_abs_out);
        EXPECT_EQ(a.layers[j].sample_logits, b.layers[j].sample_logits);
    }
}

}  // namespace

TEST(Trace, RecorderMatchesTheEngineEvents) {
    for (const char* arch : {"olmoe", "qwen2_moe", "deepseek_v3"}) {
        SCOPED_TRACE(arch);
        const io::Checkpoint ckpt = io::Checkpoint::open(kFixtures + arch);
        const model::Engine engine(ckpt);
        const model::ModelConfig& mc = engine.config();
        RoutingTrace trace = empty_trace(engine, 3);
        analysis::TraceRecorder recorder(trace);
        Capture capture;
        const auto seqs = random_sequences(4, mc.vocab_size, 7);
        recorder.begin_batch(seqs, {0, 1, 0, 1});
        std::vector<model::Observer*> obs{&recorder, &capture};
        (void)engine.forward_hidden(seqs, obs);
        ASSERT_NO_THROW(trace.validate());
        const int64_t E = mc.n_expert, k = mc.n_expert_used;
        std::vector<int64_t> seq_of_row;
        for (size_t s = 0; s < seqs.size(); ++s)
            for (size_t p = 0; p < seqs[s].size(); ++p) seq_of_row.push_back(static_cast<int64_t>(s));
        // Sampled rows: positions 0, 3, 6, ... of each sequence.
        std::vector<int64_t> expect_rows;
        int64_t row0 = 0;
        for (const auto& s : seqs) {
            for (int64_t p = 0; p < static_cast<int64_t>(s.size()); p += 3) expect_rows.push_back(row0 + p);
            row0 += static_cast<int64_t>(s.size());
        }
        EXPECT_EQ(trace.sample_rows, expect_rows);
        for (const TraceLayer& l : trace.layers) {
            const auto& z = capture.logits.at(l.layer);
            std::vector<double> sum_p(seqs.size() * static_cast<size_t>(E), 0.0), sum_c = sum_p, sum_norm = sum_p;
            std::vector<float> max_abs(sum_p.size(), 0.0f);
            std::vector<double> sum_h(seqs.size(), 0.0);
            for (int64_t t = 0; t < z.rows(); ++t) {
                const int64_t s = seq_of_row[static_cast<size_t>(t)];
                for (int64_t a = 0; a < k; ++a) {
                    EXPECT_EQ(l.selected[static_cast<size_t>(t * k + a)], capture.selected.at(l.layer)(t, a));
                    EXPECT_EQ(l.gates[static_cast<size_t>(t * k + a)], capture.gates.at(l.layer)(t, a));
                    const int64_t e = capture.selected.at(l.layer)(t, a);
                    sum_norm[static_cast<size_t>(s * E + e)] += capture.norm.at({l.layer, t, e});
                    float& m = max_abs[static_cast<size_t>(s * E + e)];
                    m = std::max(m, capture.max_abs.at({l.layer, t, e}));
                }
                double mx = -1e300, mean = 0;
                for (int64_t e = 0; e < E; ++e) mx = std::max(mx, double(z(t, e))), mean += z(t, e);
                mean /= double(E);
                double zs = 0;
                for (int64_t e = 0; e < E; ++e) zs += std::exp(double(z(t, e)) - mx);
                for (int64_t e = 0; e < E; ++e) {
                    const double p = std::exp(double(z(t, e)) - mx) / zs;
                    sum_p[static_cast<size_t>(s * E + e)] += p;
                    sum_c[static_cast<size_t>(s * E + e)] += double(z(t, e)) - mean;
                    if (p > 0) sum_h[static_cast<size_t>(s)] -= p * std::log(p);
                }
            }
            for (size_t i = 0; i < sum_p.size(); ++i) {
                EXPECT_NEAR(l.seq_sum_prob[i], sum_p[i], 1e-12);
                EXPECT_NEAR(l.seq_sum_centered_logit[i], sum_c[i], 1e-9);
                EXPECT_NEAR(l.seq_sum_out_norm[i], sum_norm[i], 1e-9 * (1 + sum_norm[i]));
                EXPECT_EQ(l.seq_max_abs_out[i], max_abs[i]);
            }
            for (size_t s = 0; s < seqs.size(); ++s) EXPECT_NEAR(l.seq_sum_entropy[s], sum_h[s], 1e-12);
            for (size_t i = 0; i < trace.sample_rows.size(); ++i)
                for (int64_t e = 0; e < E; ++e)
                    EXPECT_EQ(l.sample_logits[i * static_cast<size_t>(E) + static_cast<size_t>(e)], z(trace.sample_rows[i], e));
        }
    }
}

TEST(Trace, SaveLoadRoundTripsAndMergeEqualsOneRecording) {
    const io::Checkpoint ckpt = io::Checkpoint::open(kFixtures + "olmoe");
    const model::Engine engine(ckpt);
    const auto seqs = random_sequences(6, engine.config().vocab_size, 11);
    const std::vector<int32_t> domains{0, 0, 1, 1, 0, 1};
    // One recording, one sequence per batch (so both ways run identical batches).
    RoutingTrace all = empty_trace(engine, 2);
    {
        analysis::TraceRecorder rec(all);
        for (size_t s = 0; s < seqs.size(); ++s) {
            rec.begin_batch({seqs[s]}, {domains[s]});
            std::vector<model::Observer*> obs{&rec};
            (void)engine.forward_hidden({seqs[s]}, obs);
        }
    }
    std::vector<RoutingTrace> parts;
    for (size_t lo : {size_t(0), size_t(2)}) {
        const size_t hi = lo == 0 ? 2 : seqs.size();
        RoutingTrace part = empty_trace(engine, 2);
        analysis::TraceRecorder rec(part);
        for (size_t s = lo; s < hi; ++s) {
            rec.begin_batch({seqs[s]}, {domains[s]});
            std::vector<model::Observer*> obs{&rec};
            (void)engine.forward_hidden({seqs[s]}, obs);
        }
        parts.push_back(std::move(part));
    }
    expect_same(analysis::merge_traces(parts), all);

    test::TempDir dir;
    const auto path = dir.path() / "t.trace";
    analysis::save_trace(all, path);
    expect_same(analysis::load_trace(path), all);
    EXPECT_GT(analysis::trace_bytes_per_token_layer(all), 0.0);
}

TEST(Trace, MergingDifferentModelsOrDomainsInAnotherOrder) {
    RoutingTrace a;
    a.model_type = "olmoe";
    a.n_layer = 1;
    a.n_expert = 4;
    a.n_expert_used = 1;
    a.scoring = "softmax";
    a.domains = {"x", "y"};
    a.token_ids = {1, 2};
    a.seq_begin = {0, 2};
    a.seq_domain = {1};
    TraceLayer l{.layer = 0};
    l.selected = {0, 3};
    l.gates = {1, 1};
    l.seq_sum_prob.assign(4, 0.5);
    l.seq_sum_centered_logit.assign(4, 0.0);
    l.seq_sum_entropy = {0.1};
    l.seq_sum_out_norm.assign(4, 0.0);
    l.seq_max_abs_out.assign(4, 0.0f);
    a.layers = {l};
    ASSERT_NO_THROW(a.validate());
    RoutingTrace b = a;
    b.domains = {"y", "z"};
    b.seq_domain = {0};
    const RoutingTrace m = analysis::merge_traces({a, b});
    EXPECT_EQ(m.domains, (std::vector<std::string>{"x", "y", "z"}));
    EXPECT_EQ(m.seq_domain, (std::vector<int32_t>{1, 1}));
    EXPECT_EQ(m.seq_begin, (std::vector<int64_t>{0, 2, 4}));
    RoutingTrace c = a;
    c.n_expert = 8;
    EXPECT_THROW(analysis::merge_traces({a, c}), Error);

    RoutingTrace bad = a;
    bad.layers[0].selected = {0, 4};
    EXPECT_THROW(bad.validate(), Error);
    bad = a;
    bad.layers[0].selected = {0};
    EXPECT_THROW(bad.validate(), Error);
    bad = a;
    bad.seq_domain = {5};
    EXPECT_THROW(bad.validate(), Error);
    bad = a;
    bad.n_expert_used = 2;  // selected no longer T*k
    EXPECT_THROW(bad.validate(), Error);
}

TEST(Trace, LoadRefusesFilesThatAreNotTraces) {
    test::TempDir dir;
    const auto junk = dir.path() / "junk.trace";
    test::write_all(junk, "definitely not safetensors");
    EXPECT_THROW(analysis::load_trace(junk), Error);
    EXPECT_THROW(analysis::load_trace(dir.path() / "missing.trace"), Error);
    try {
        analysis::load_trace(std::string(MOEKIT_TEST_DATA) + "/fixtures/olmoe/model.safetensors");
        FAIL() << "a checkpoint is not a trace";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("not a moekit trace"), std::string::npos) << e.what();
    }
}
