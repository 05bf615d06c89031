// The engine's layer-by-layer API and weight overrides (model/engine.h):
//  - prepare / embed / forward_layer per layer / final_norm is bit-identical to forward_hidden and
//    calls the observers with the same events;
//  - WeightOverrides holding a checkpoint's own values (read as fp32) change nothing; overrides
//    holding modified values give exactly what a checkpoint with those values (written as F32)
//    gives, for decoder-layer tensors, routed experts and the embedding;
//  - an override of the wrong size and a bad layer / hidden shape are errors.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>

#include <unistd.h>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/checkpoint_edit.h"
#include "model/engine.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace moekit;
using namespace moekit::model;

namespace {

const fs::path kFixtures = fs::path(MOEKIT_TEST_DATA) / "fixtures";

std::vector<std::vector<int32_t>> sequences(int64_t vocab) { return moekit::test::random_sequences(vocab, 3, {9, 13, 17}); }

bool same(const Matrix& a, const Matrix& b) {
    return a.rows() == b.rows() && a.cols() == b.cols() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Sum of every routed-expert output and layer output seen, to compare observer streams.
class Tally : public Observer {
public:
    uint32_t sites() const override { return kSiteExpert | kSiteLayer; }
    void on_expert(const ExpertEvent& ev) override { log.push_back(ev.output.sum() + 1000.0 * ev.expert + 1e6 * ev.layer); }
    void on_layer(const LayerEvent& ev) override { log.push_back(ev.output.sum() - 1e6 * ev.layer); }
    std::vector<double> log;
};

}  // namespace

TEST(EngineStepwise, EqualsForwardHidden) {
    for (const std::string arch : {"qwen2_moe", "deepseek_v2", "mixtral"}) {
        SCOPED_TRACE(arch);
        const auto ck = io::Checkpoint::open(kFixtures / arch);
        const Engine engine(ck, EngineOptions{2});
        const auto seqs = sequences(engine.config().vocab_size);
        Tally a, b;
        Observer* la[] = {&a};
        Observer* lb[] = {&b};
        const Matrix whole = engine.forward_hidden(seqs, la);
        const ForwardBatch batch = engine.prepare(seqs);
        EXPECT_EQ(batch.n_tokens(), 9 + 13 + 17);
        Matrix h = engine.embed(batch);
        for (int64_t il = 0; il < engine.config().n_layer; ++il) engine.forward_layer(batch, il, h, lb);
        engine.final_norm(h);
        EXPECT_TRUE(same(whole, h));
        EXPECT_EQ(a.log, b.log);
    }
}

TEST(EngineStepwise, OverridesEqualAWrittenCheckpoint) {
    const fs::path tmp = fs::temp_directory_path() / ("moekit-engine-override-" + std::to_string(::getpid()));
    const auto ck = io::Checkpoint::open(kFixtures / "qwen2_moe");
    // Overridden: the embedding, an attention projection, a shared-expert and a routed-expert
    // tensor, scaled so that the output really changes.
    const std::vector<std::string> names = {"model.embed_tokens.weight", "model.layers.1.self_attn.q_proj.weight",
                                            "model.layers.0.mlp.shared_expert.up_proj.weight",
                                            "model.layers.1.mlp.experts.2.down_proj.weight"};
    TensorMapOverrides same_values, changed;
    io::CheckpointEdit edit;
    for (const auto& n : names) {
        same_values.tensors[n] = ck.read_f32(n);
        std::vector<float> v = ck.read_f32(n);
        for (size_t i = 0; i < v.size(); ++i) v[i] *= (i % 3 == 0) ? 0.5f : 1.25f;
        io::TensorSource s;
        s.name = n;
        s.dtype = core::DType::F32;
        s.shape = ck.at(n).info->shape;
        s.nbytes = v.size() * 4;
        s.fill = [v](std::byte* dst) { std::memcpy(dst, v.data(), v.size() * 4); };
        edit.put.push_back(std::move(s));
        changed.tensors[n] = std::move(v);
    }
    io::write_checkpoint(ck, edit, tmp, io::WriteOptions{true});
    const auto written = io::Checkpoint::open(tmp);

    const Engine plain(ck, EngineOptions{2});
    const auto seqs = sequences(plain.config().vocab_size);
    const Matrix base = plain.forward_hidden(seqs);
    EngineOptions eo{2};
    eo.overrides = &same_values;
    EXPECT_TRUE(same(base, Engine(ck, eo).forward_hidden(seqs)));
    eo.overrides = &changed;
    const Matrix over = Engine(ck, eo).forward_hidden(seqs);
    EXPECT_FALSE(same(base, over));
    EXPECT_TRUE(same(Engine(written, EngineOptions{2}).forward_hidden(seqs), over));

    // Contents may change between calls: dropping the overrides gives the checkpoint's model again.
    changed.tensors.clear();
    const Engine live(ck, eo);
    EXPECT_TRUE(same(base, live.forward_hidden(seqs)));

    TensorMapOverrides bad;
    bad.tensors["model.layers.0.self_attn.k_proj.weight"] = std::vector<float>(3, 0.0f);
    eo.overrides = &bad;
    EXPECT_THROW(Engine(ck, eo).forward_hidden(seqs), Error);
    fs::remove_all(tmp);
}

TEST(EngineStepwise, BadLayerOrShapeIsAnError) {
    const auto ck = io::Checkpoint::open(kFixtures / "mixtral");
    const Engine engine(ck, EngineOptions{1});
    const ForwardBatch batch = engine.prepare(sequences(engine.config().vocab_size));
    Matrix h = engine.embed(batch);
    EXPECT_THROW(engine.forward_layer(batch, engine.config().n_layer, h), Error);
    EXPECT_THROW(engine.forward_layer(batch, -1, h), Error);
    Matrix wrong(h.rows() - 1, h.cols());
    EXPECT_THROW(engine.forward_layer(batch, 0, wrong), Error);
    EXPECT_THROW(engine.embed(ForwardBatch{}), std::exception);
}
