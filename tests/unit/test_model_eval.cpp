// model/eval: perplexity on the demo model against tests/golden/demo_ppl.json (transformers),
// window/batch/chunk conventions, the reference comparison on a model against itself, expert
// maps, and input errors. The KL / top-1 / routing oracle against transformers on perturbed and
// pruned models is tests/interop/test_eval_demo.py.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/eval.h"

namespace fs = std::filesystem;
using namespace moekit::model;

namespace {

const fs::path kTests = fs::path(MOEKIT_TEST_DATA);
const fs::path kRoot = kTests.parent_path();
const fs::path kDemo = kRoot / "assets" / "demo-moe";

nlohmann::json golden() { return nlohmann::json::parse(std::ifstream(kTests / "golden" / "demo_ppl.json")); }

class TempDir {
public:
    TempDir() {
        path_ = fs::temp_directory_path() / ("moekit_eval_" + std::to_string(getpid()) + "_" + std::to_string(counter_++));
        fs::create_directories(path_);
    }
    ~TempDir() { fs::remove_all(path_); }
    const fs::path& path() const { return path_; }
    fs::path write(const std::string& name, const std::string& bytes) const {
        std::ofstream(path_ / name, std::ios::binary) << bytes;
        return path_ / name;
    }

private:
    fs::path path_;
    static inline int counter_ = 0;
};

std::vector<int32_t> golden_ids() {
    std::ifstream in(kTests / "golden" / "demo_eval_ids.bin", std::ios::binary | std::ios::ate);
    std::vector<int32_t> ids(static_cast<size_t>(in.tellg()) / 4);
    in.seekg(0);
    in.read(reinterpret_cast<char*>(ids.data()), static_cast<std::streamsize>(ids.size() * 4));
    return ids;
}

fs::path write_ids(const TempDir& tmp, const std::string& name, const std::vector<int32_t>& ids) {
    return tmp.write(name, std::string(reinterpret_cast<const char*>(ids.data()), ids.size() * 4));
}

// Per-domain .bin slices of the golden ids.
std::vector<moekit::io::DataSource> golden_sources(const TempDir& tmp, const nlohmann::json& g, size_t n_domains = 8) {
    const auto ids = golden_ids();
    std::vector<moekit::io::DataSource> out;
    for (size_t i = 0; i < n_domains; ++i) {
        const std::string d = g["domains"][i];
        const int64_t o = g["offsets"][d]["offset"], n = g["offsets"][d]["length"];
        out.push_back({d, write_ids(tmp, d + ".bin", std::vector<int32_t>(ids.begin() + o, ids.begin() + o + n))});
    }
    return out;
}

std::string error_of(const EvalOptions& options) {
    try {
        evaluate(options);
    } catch (const moekit::Error& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST(Eval, GoldenPerplexity) {
    TempDir tmp;
    const auto g = golden();
    EvalOptions o;
    o.model_dir = kDemo;
    o.corpus.data = golden_sources(tmp, g);
    o.corpus.seq_len = 256;
    const EvalReport r = evaluate(o);
    ASSERT_EQ(r.domains.size(), 8u);
    for (const auto& d : r.domains) {
        const auto& want = g["per_domain"][d.domain];
        EXPECT_EQ(d.scored, want["scored"].get<int64_t>()) << d.domain;
        EXPECT_EQ(d.windows, want["windows"].get<int64_t>()) << d.domain;
        EXPECT_NEAR(d.ppl() / want["ppl"].get<double>(), 1.0, 1e-5) << d.domain;
    }
    EXPECT_NEAR(r.total.ppl() / g["all"]["ppl"].get<double>(), 1.0, 1e-5);
    EXPECT_EQ(r.total.scored, g["all"]["scored"].get<int64_t>());
    EXPECT_GT(r.tokens_per_s(), 0.0);
    const auto j = to_json(r);
    EXPECT_EQ(j["schema_version"], 1);
    EXPECT_EQ(j["params"]["seq_len"], 256);
    EXPECT_EQ(j["domains"]["en"]["scored"], 2040);
    EXPECT_NE(to_text(r).find("code-py"), std::string::npos);
}

TEST(Eval, DefaultSeqLenFollowsMaxPositions) {
    TempDir tmp;
    EvalOptions o;
    o.model_dir = kDemo;
    o.corpus.data = golden_sources(tmp, golden(), 1);
    EXPECT_EQ(evaluate(o).options.corpus.seq_len, 256);  // demo: max_position_embeddings 256 < 512
}

TEST(Eval, PartialWindowsBatchesAndChunksDoNotChangeResults) {
    TempDir tmp;
    auto ids = golden_ids();
    EvalOptions o;
    o.model_dir = kDemo;
    o.corpus.seq_len = 256;
    // 600 ids: windows 256 + 256 + 88 (88 scored 87); 513 ids: the trailing single id is dropped.
    o.corpus.data = {{"a", write_ids(tmp, "a.bin", std::vector<int32_t>(ids.begin(), ids.begin() + 600))},
              {"b", write_ids(tmp, "b.bin", std::vector<int32_t>(ids.begin(), ids.begin() + 513))}};
    const EvalReport base = evaluate(o);
    EXPECT_EQ(base.domains[0].windows, 3);
    EXPECT_EQ(base.domains[0].scored, 255 + 255 + 87);
    EXPECT_EQ(base.domains[1].windows, 2);
    EXPECT_EQ(base.domains[1].scored, 510);
    // the first 512 ids of both domains are the same windows
    o.corpus.max_tokens = 512;
    const EvalReport cut = evaluate(o);
    EXPECT_NEAR(cut.domains[0].nll_sum, cut.domains[1].nll_sum, 1e-7 * cut.domains[0].nll_sum);
    EXPECT_TRUE(cut.domains[0].tokens_available == 600 && cut.domains[0].tokens == 512);
    o.corpus.max_tokens = 0;
    o.batch_tokens = 100;  // one window per forward pass
    o.chunk_rows = 7;
    const EvalReport small = evaluate(o);
    for (size_t d = 0; d < 2; ++d)
        EXPECT_NEAR(small.domains[d].nll_sum, base.domains[d].nll_sum, 1e-6 * base.domains[d].nll_sum);
}

TEST(Eval, ReferenceAgainstItself) {
    TempDir tmp;
    EvalOptions o;
    o.model_dir = kDemo;
    o.ref_dir = kDemo;
    o.corpus.data = golden_sources(tmp, golden(), 2);
    o.corpus.seq_len = 256;
    const EvalReport r = evaluate(o);
    ASSERT_TRUE(r.has_ref && r.routing_available);
    for (const DomainResult* d : {&r.domains[0], &r.domains[1], &r.total}) {
        EXPECT_LE(d->kl_sum / static_cast<double>(d->scored), 1e-6);
        EXPECT_LE(d->kl_p99, 1e-6);
        EXPECT_EQ(d->top1_agree, d->scored);
        EXPECT_DOUBLE_EQ(d->ref_nll_sum, d->nll_sum);
        ASSERT_EQ(d->routing.size(), 4u);
        for (const auto& ra : d->routing) EXPECT_DOUBLE_EQ(ra.value(), 1.0);
    }
    const auto j = to_json(r);
    EXPECT_EQ(j["total"]["routing_agreement"]["per_layer"].size(), 4u);
    EXPECT_EQ(j["total"]["top1_agreement"], 1.0);
}

TEST(Eval, VocabularyMismatchWithReference) {
    TempDir tmp;
    const fs::path other = tmp.path() / "other";
    fs::create_directories(other);
    for (const auto& f : fs::directory_iterator(kDemo))
        if (f.path().filename() != "config.json") fs::create_symlink(fs::absolute(f.path()), other / f.path().filename());
    auto config = nlohmann::json::parse(std::ifstream(kDemo / "config.json"));
    config["vocab_size"] = 4000;
    std::ofstream(other / "config.json") << config.dump(2);
    EvalOptions o;
    o.model_dir = kDemo;
    o.ref_dir = other;
    o.corpus.data = golden_sources(tmp, golden(), 1);
    const std::string msg = error_of(o);
    EXPECT_NE(msg.find("vocabulary mismatch"), std::string::npos) << msg;
    EXPECT_NE(msg.find("4000"), std::string::npos) << msg;
    // an id >= 4000 is outside the smaller model's vocabulary
    o.model_dir = other;
    o.ref_dir.reset();
    o.corpus.data = {{"x", write_ids(tmp, "hi.bin", {1, 4050, 2})}};
    const std::string msg2 = error_of(o);
    EXPECT_NE(msg2.find("[data]"), std::string::npos) << msg2;
    EXPECT_NE(msg2.find("outside the model's vocabulary"), std::string::npos) << msg2;
}

TEST(Eval, InputErrors) {
    TempDir tmp;
    EvalOptions o;
    o.model_dir = kDemo;
    o.corpus.data = {{"x", tmp.path() / "missing.txt"}};
    EXPECT_NE(error_of(o).find("missing.txt' does not exist"), std::string::npos) << error_of(o);
    o.corpus.data = {{"x", write_ids(tmp, "one.bin", {5})}};
    EXPECT_NE(error_of(o).find("at least 2"), std::string::npos) << error_of(o);
    o.corpus.data = {{"x", write_ids(tmp, "big.bin", {5, 4096, 7})}};
    EXPECT_NE(error_of(o).find("token id 4096 at position 1"), std::string::npos) << error_of(o);
    o.corpus.seq_len = 1;
    EXPECT_NE(error_of(o).find("--seq-len"), std::string::npos);
    o.corpus.seq_len = 0;
    o.corpus.data.clear();
    EXPECT_NE(error_of(o).find("no data"), std::string::npos);
}

TEST(Eval, ExpertMap) {
    TempDir tmp;
    const std::vector<bool> moe = {false, true, true};
    EXPECT_FALSE(read_expert_map(tmp.path(), 3, moe, 2, 4));  // no moekit.json
    tmp.write("moekit.json", R"({"schema_version": 1})");
    EXPECT_FALSE(read_expert_map(tmp.path(), 3, moe, 2, 4));  // no expert_map
    tmp.write("moekit.json", R"({"expert_map": {"1": [0, 3], "2": [[1, 2], 3]}})");
    auto map = read_expert_map(tmp.path(), 3, moe, 2, 4);
    ASSERT_TRUE(map);
    EXPECT_EQ((*map)[1], (std::vector<std::vector<int32_t>>{{0}, {3}}));
    EXPECT_EQ((*map)[2], (std::vector<std::vector<int32_t>>{{1, 2}, {3}}));
    tmp.write("moekit.json", R"({"expert_map": [null, [0, 1], [2, 3]]})");
    map = read_expert_map(tmp.path(), 3, moe, 2, 4);
    ASSERT_TRUE(map);
    EXPECT_EQ((*map)[2], (std::vector<std::vector<int32_t>>{{2}, {3}}));
    for (const char* bad : {R"({"expert_map": {"1": [0, 4], "2": [0, 1]}})",   // index beyond the reference
                            R"({"expert_map": {"1": [0], "2": [0, 1]}})",       // wrong length
                            R"({"expert_map": {"1": [0, 1]}})",                 // MoE layer 2 missing
                            R"({"expert_map": {"x": [0, 1]}})",                 // bad key
                            R"({"expert_map": [[0, 1]]})",                      // list of the wrong length
                            R"({"expert_map": )"}) {                            // not JSON
        tmp.write("moekit.json", bad);
        try {
            read_expert_map(tmp.path(), 3, moe, 2, 4);
            ADD_FAILURE() << "no error for " << bad;
        } catch (const moekit::Error& e) {
            EXPECT_NE(std::string(e.what()).find("moekit.json"), std::string::npos) << e.what();
        }
    }
}
