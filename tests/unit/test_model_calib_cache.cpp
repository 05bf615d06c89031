// Saved calibration statistics (model/calib_cache.h): content keys (same bytes -> same key,
// any changed model byte or token -> another key), atomic entries that round-trip exactly, and
// the accumulators of prune and merge through them.
#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "io/checkpoint.h"
#include "merge/calib.h"
#include "model/calib_cache.h"
#include "model/engine.h"
#include "prune/prune.h"
#include "prune/scores.h"
#include "merge/merge.h"
#include "test_util.h"

namespace moekit::model {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

const fs::path kFixtures = fs::path(MOEKIT_TEST_DATA) / "fixtures";

Corpus corpus_of(const io::Checkpoint& ckpt, const TempDir& dir, const std::vector<int32_t>& ids, const std::string& name) {
    std::string bytes(ids.size() * sizeof(int32_t), '\0');
    std::memcpy(bytes.data(), ids.data(), bytes.size());
    test::write_all(dir / name, bytes);
    CorpusOptions o;
    o.data = {io::DataSource{"d", dir / name}};
    o.seq_len = 8;
    return load_corpus(ckpt, Engine(ckpt, EngineOptions{1}).config().vocab_size, o);
}

TEST(CalibrationCache, KeysFollowContentNotPaths) {
    TempDir dir("calib-cache");
    fs::copy(kFixtures / "olmoe", dir / "a", fs::copy_options::recursive);
    fs::copy(kFixtures / "olmoe", dir / "b", fs::copy_options::recursive);
    const io::Checkpoint a = io::Checkpoint::open(dir / "a");
    const io::Checkpoint b = io::Checkpoint::open(dir / "b");
    const Corpus c1 = corpus_of(a, dir, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, "c1.bin");
    const Corpus c2 = corpus_of(a, dir, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12}, "c2.bin");
    CalibrationCache cache(dir / "cache");
    const nlohmann::json p = {{"batch_tokens", 16}};
    const std::string k = cache.key(a, c1, "kind", p);
    EXPECT_EQ(k.size(), 16u);
    EXPECT_EQ(cache.key(b, c1, "kind", p), k);                   // same bytes elsewhere
    EXPECT_NE(cache.key(a, c2, "kind", p), k);                   // one token differs
    EXPECT_NE(cache.key(a, c1, "other", p), k);                  // another statistic
    EXPECT_NE(cache.key(a, c1, "kind", {{"batch_tokens", 32}}), k);

    // One weight byte changed in a fresh copy: another key.
    fs::copy(kFixtures / "olmoe", dir / "c", fs::copy_options::recursive);
    {
        const fs::path st = dir / "c" / "model.safetensors";
        std::string bytes = test::read_all(st);
        bytes[bytes.size() - 1] = static_cast<char>(bytes[bytes.size() - 1] ^ 1);
        test::write_all(st, bytes);
    }
    CalibrationCache fresh(dir / "cache");
    EXPECT_NE(fresh.key(io::Checkpoint::open(dir / "c"), c1, "kind", p), k);
}

TEST(CalibrationCache, EntriesRoundTripAndAreChecked) {
    TempDir dir("calib-cache");
    CalibrationCache cache(dir / "cache");
    EXPECT_FALSE(cache.find("kind", "0123456789abcdef").has_value());
    const std::vector<double> d{1.5, -2.25, 1e300};
    const std::vector<int64_t> i{7, -1};
    const fs::path p = cache.save("kind", "0123456789abcdef", {f64_tensor("d", d), i64_tensor("i", i)});
    EXPECT_TRUE(fs::exists(p));
    const auto file = cache.find("kind", "0123456789abcdef");
    ASSERT_TRUE(file.has_value());
    EXPECT_EQ(read_f64(*file, "d", 3), d);
    EXPECT_EQ(read_i64(*file, "i"), i);
    EXPECT_THROW(read_f64(*file, "i"), Error);                  // wrong dtype
    EXPECT_THROW(read_f64(*file, "d", 4), Error);               // wrong count
    EXPECT_THROW(read_f64(*file, "nope"), Error);
    // A file at an entry's path that is not that entry is refused, not trusted.
    fs::copy_file(p, cache.path("kind", "fedcba9876543210"));
    EXPECT_THROW(cache.find("kind", "fedcba9876543210"), Error);
    for (const auto& e : fs::directory_iterator(dir / "cache"))
        EXPECT_EQ(e.path().string().find(".tmp-"), std::string::npos) << "temporary left: " << e.path();
}

TEST(CalibrationCache, PruneAndMergeStatisticsRoundTripExactly) {
    TempDir dir("calib-cache");
    const io::Checkpoint ckpt = io::Checkpoint::open(kFixtures / "qwen2_moe");
    const Engine engine(ckpt, EngineOptions{1});
    const ModelConfig& mc = engine.config();
    std::vector<std::vector<int32_t>> seqs{{1, 5, 9, 13, 17, 21, 25, 29}, {2, 4, 6, 8, 10}};
    prune::ScoreObserver scores(mc);
    merge::RouterObserver router(mc, 2);
    Observer* const observers[] = {&scores, &router};
    engine.forward_hidden(seqs, observers);
    CalibrationCache cache(dir / "cache");

    const auto stats = scores.layers();
    cache.save(prune::kScoreStatsKind, "0000000000000001", prune::layer_stats_tensors(stats));
    const auto back = prune::load_layer_stats(*cache.find(prune::kScoreStatsKind, "0000000000000001"), mc);
    ASSERT_EQ(back.size(), stats.size());
    for (size_t l = 0; l < stats.size(); ++l) {
        EXPECT_EQ(back[l].layer, stats[l].layer);
        EXPECT_EQ(back[l].n_tokens, stats[l].n_tokens);
        EXPECT_EQ(back[l].load, stats[l].load);
        EXPECT_EQ(back[l].reap_sum, stats[l].reap_sum);
        EXPECT_EQ(back[l].easy_sum, stats[l].easy_sum);
        EXPECT_EQ(back[l].max_abs, stats[l].max_abs);
        for (prune::Method m : {prune::Method::reap, prune::Method::tcess, prune::Method::easy_ep})
            EXPECT_EQ(prune::method_scores(m, back[l]), prune::method_scores(m, stats[l]));
    }

    auto& calib = router.layers();
    cache.save(merge::kRouterStatsKind, "0000000000000002", merge::layer_calib_tensors(calib, false));
    const auto rb = merge::load_layer_calib(*cache.find(merge::kRouterStatsKind, "0000000000000002"), mc);
    ASSERT_EQ(rb.size(), calib.size());
    for (size_t l = 0; l < calib.size(); ++l) {
        EXPECT_EQ(rb[l].load, calib[l].load);
        EXPECT_EQ(rb[l].logit_gram, calib[l].logit_gram);
        EXPECT_EQ(rb[l].x, calib[l].x);
        EXPECT_EQ(rb[l].logits, calib[l].logits);
        EXPECT_GT(rb[l].x.rows(), 0);
    }
    // Another model's entry does not fit.
    const io::Checkpoint other = io::Checkpoint::open(kFixtures / "olmoe");
    const Engine other_engine(other, EngineOptions{1});
    EXPECT_THROW(prune::load_layer_stats(*cache.find(prune::kScoreStatsKind, "0000000000000001"), other_engine.config()), Error);
}

// An entry computed in a shared pass (two methods' observers on one pass) is byte-identical to
// the one the method saves from its own pass.
TEST(CalibrationCache, SharedPassEqualsTheMethodsOwnPass) {
    TempDir dir("calib-cache");
    const fs::path model_dir = kFixtures / "mixtral";
    const io::Checkpoint ckpt = io::Checkpoint::open(model_dir);
    const Engine engine(ckpt, EngineOptions{1});
    std::vector<int32_t> ids;
    for (int32_t i = 0; i < 100; ++i) ids.push_back((i * 37 + 11) % 600);
    std::string bytes(ids.size() * sizeof(int32_t), '\0');
    std::memcpy(bytes.data(), ids.data(), bytes.size());
    test::write_all(dir / "c.bin", bytes);

    prune::PruneOptions po;
    po.model_dir = model_dir;
    po.keep = "4";
    po.dry_run = true;
    po.threads = 1;
    po.batch_tokens = 40;
    po.calib.data = {io::DataSource{"d", dir / "c.bin"}};
    po.calib.seq_len = 16;
    CalibrationCache own(dir / "own");
    po.calib_cache = &own;
    const prune::PruneResult first = prune::prune(po);
    EXPECT_EQ(first.calibration.source, "computed+saved");
    EXPECT_EQ(first.calibration.forward_tokens, 100);
    const prune::PruneResult again = prune::prune(po);
    EXPECT_EQ(again.calibration.source, "reused");
    EXPECT_EQ(again.calibration.forward_tokens, 0);
    EXPECT_EQ(again.plan.layers.size(), first.plan.layers.size());
    for (size_t l = 0; l < first.plan.layers.size(); ++l) EXPECT_EQ(again.plan.layers[l].kept, first.plan.layers[l].kept);

    merge::MergeOptions mo;
    mo.batch_tokens = 40;
    const Corpus corpus = load_corpus(ckpt, engine.config().vocab_size, po.calib);
    auto a = prune::calibration_sink(engine.config(), po);
    auto b = merge::calibration_sink(engine.config(), corpus, mo);
    auto dup = prune::calibration_sink(engine.config(), po);
    CalibrationCache shared(dir / "shared");
    const SharedPass pass = run_shared_pass(shared, ckpt, engine, corpus, {a.get(), b.get(), dup.get()});
    EXPECT_EQ(pass.tokens, 100);
    ASSERT_EQ(pass.kinds.size(), 2u);  // the duplicate sink is computed once
    const std::string key = shared.key(ckpt, corpus, prune::kScoreStatsKind, a->params());
    EXPECT_EQ(test::read_all(shared.path(prune::kScoreStatsKind, key)), test::read_all(own.path(prune::kScoreStatsKind, key)));
    // Everything saved: a second shared pass runs nothing.
    EXPECT_EQ(run_shared_pass(shared, ckpt, engine, corpus, {a.get(), b.get()}).tokens, 0);
}

}  // namespace
}  // namespace moekit::model
