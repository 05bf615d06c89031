// Writing pruned checkpoints (prune/edit.h, prune/prune.h): on every fixture architecture the
// untouched tensors are byte-identical to the input, kept experts carry their original bytes
// under the new index, router rows / correction biases are the kept rows, every config field
// but the expert count is preserved in order, and `inspect` finds nothing wrong. The per-layer
// expert-count extension is written for non-uniform plans and validated when read. The driver
// refuses bad input before writing anything.
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/checkpoint_edit.h"
#include "model/arch.h"
#include "model/engine.h"
#include "model/eval.h"
#include "model/inspect.h"
#include "prune/edit.h"
#include "prune/prune.h"
#include "test_util.h"

namespace {

using namespace moekit::prune;
using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;

const fs::path kFixtures = fs::path(MOEKIT_TEST_DATA) / "fixtures";
const fs::path kCorpus = fs::path(MOEKIT_TEST_DATA) / ".." / "assets" / "corpus" / "eval";

std::string bytes_of(const moekit::io::Checkpoint& c, const std::string& name) {
    const auto b = c.bytes(name);
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

Json config_of(const fs::path& dir) {
    std::ifstream in(dir / "config.json");
    return Json::parse(in);
}

Plan random_plan(const moekit::model::ModelConfig& mc, int64_t keep, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<LayerPlan> layers;
    for (int64_t il = 0; il < mc.n_layer; ++il) {
        if (!mc.is_moe_layer[il]) continue;
        LayerPlan lp;
        lp.layer = il;
        lp.n_expert = mc.n_expert_at(il);
        for (int64_t e = 0; e < lp.n_expert; ++e) lp.scores.push_back(double(rng() % 1000));
        lp.protect.assign(lp.n_expert, false);
        layers.push_back(lp);
    }
    return make_plan(mc, layers, {parse_keep(std::to_string(keep)), Budget::uniform, 0});
}

class PruneEditFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(PruneEditFixture, UntouchedBytesSlicedRouterPreservedConfig) {
    const fs::path in_dir = kFixtures / GetParam();
    const auto in = moekit::io::Checkpoint::open(in_dir);
    const auto resolved = moekit::model::resolve_config(in.config());
    const auto& arch = *resolved.arch;
    const auto& mc = resolved.config;
    const Plan plan = random_plan(mc, mc.n_expert / 2, 3);
    moekit::test::TempDir tmp("prune-edit");
    EditSummary summary;
    const auto result = moekit::io::write_checkpoint(in, make_edit(in, arch, mc, plan, &summary), tmp / "out");
    const auto out = moekit::io::Checkpoint::open(tmp / "out");

    // Map every output tensor back to its input tensor.
    std::map<std::string, std::string> origin;  // output -> input
    std::set<std::string> routers;
    for (const LayerPlan& lp : plan.layers) {
        for (size_t i = 0; i < lp.kept.size(); ++i) {
            const std::string from = moekit::model::expert_prefix(arch, lp.layer, lp.kept[i]), to = moekit::model::expert_prefix(arch, lp.layer, i);
            for (const auto& [name, entry] : in.tensors())
                if (name.rfind(from, 0) == 0) origin[to + name.substr(from.size())] = name;
        }
        const std::string r = arch.router_weight(lp.layer);
        routers.insert(r);
        routers.insert(r.substr(0, r.size() - 6) + "e_score_correction_bias");
    }
    int64_t n_experts_out = 0, n_same = 0;
    for (const auto& [name, entry] : out.tensors()) {
        if (routers.count(name)) {
            const auto& lp = *std::find_if(plan.layers.begin(), plan.layers.end(), [&](const LayerPlan& l) {
                return name.rfind("model.layers." + std::to_string(l.layer) + ".", 0) == 0;
            });
            const std::string src = bytes_of(in, name), dst = bytes_of(out, name);
            const size_t row = src.size() / lp.n_expert;
            ASSERT_EQ(dst.size(), row * lp.kept.size()) << name;
            for (size_t i = 0; i < lp.kept.size(); ++i)
                EXPECT_EQ(dst.substr(i * row, row), src.substr(lp.kept[i] * row, row)) << name << " row " << i;
            EXPECT_EQ(entry.info->dtype, in.at(name).info->dtype);
            continue;
        }
        const auto it = origin.find(name);
        if (it != origin.end()) {
            EXPECT_EQ(bytes_of(out, name), bytes_of(in, it->second)) << name << " from " << it->second;
            ++n_experts_out;
        } else {
            ASSERT_TRUE(in.find(name)) << "unexpected output tensor " << name;
            EXPECT_EQ(bytes_of(out, name), bytes_of(in, name)) << name;
            EXPECT_EQ(entry.info->shape, in.at(name).info->shape);
            ++n_same;
        }
    }
    EXPECT_EQ(n_experts_out, int64_t(plan.layers.size()) * (mc.n_expert / 2) * 3);
    EXPECT_EQ(int64_t(out.tensors().size()), int64_t(in.tensors().size()) - summary.dropped);
    EXPECT_GT(n_same, 0);

    // config.json: the same keys in the same order; only the expert count differs.
    const Json cin = config_of(in_dir), cout = config_of(tmp / "out");
    ASSERT_EQ(cin.size(), cout.size());
    auto a = cin.begin();
    auto b = cout.begin();
    int changed = 0;
    for (; a != cin.end(); ++a, ++b) {
        ASSERT_EQ(a.key(), b.key());
        if (a.value() != b.value()) {
            EXPECT_TRUE(a.key() == "num_experts" || a.key() == "num_local_experts" || a.key() == "n_routed_experts") << a.key();
            EXPECT_EQ(b.value(), mc.n_expert / 2);
            ++changed;
        }
    }
    EXPECT_EQ(changed, 1);
    EXPECT_FALSE(cout.contains(std::string(moekit::model::kExpertsPerLayerKey)));
    // Other files (tokenizer, generation config) are copied.
    EXPECT_EQ(moekit::test::read_all(tmp / "out" / "tokenizer.json"), moekit::test::read_all(in_dir / "tokenizer.json"));

    const auto report = moekit::model::inspect({tmp / "out"});
    EXPECT_TRUE(report.ok()) << (report.problems.empty() ? "" : report.problems[0].tensor + ": " + report.problems[0].detail);
    EXPECT_EQ(report.config.n_expert, mc.n_expert / 2);
    EXPECT_EQ(result.shard_files.size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, PruneEditFixture,
                         ::testing::Values("mixtral", "mixtral_hf4", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3"));

TEST(PruneEdit, NonUniformWritesTheExtensionField) {
    const auto in = moekit::io::Checkpoint::open(kFixtures / "olmoe");
    const auto resolved = moekit::model::resolve_config(in.config());
    Plan plan = random_plan(resolved.config, 4, 9);
    plan.layers[1].kept = {0, 1, 2, 3, 4, 5};
    plan.layers[1].removed = {6, 7};
    moekit::test::TempDir tmp("prune-nonuniform");
    moekit::io::write_checkpoint(in, make_edit(in, *resolved.arch, resolved.config, plan), tmp / "out");
    const Json cfg = config_of(tmp / "out");
    EXPECT_EQ(cfg["num_experts"], 6);
    const std::vector<int64_t> want = {4, 6, 4};  // one count per decoder layer
    EXPECT_EQ(cfg[std::string(moekit::model::kExpertsPerLayerKey)].get<std::vector<int64_t>>(), want);
    const auto out = moekit::io::Checkpoint::open(tmp / "out");
    const moekit::model::Engine engine(out, {1});
    EXPECT_EQ(engine.config().n_expert_at(0), 4);
    EXPECT_EQ(engine.config().n_expert_at(1), 6);
    EXPECT_EQ(engine.config().n_expert_at(2), 4);
    EXPECT_EQ(engine.forward_hidden({{1, 2, 3, 4}}).rows(), 4);
    const auto report = moekit::model::inspect({tmp / "out"});
    EXPECT_TRUE(report.ok());
    EXPECT_EQ(report.by_category.at(moekit::model::TensorCategory::routed_expert).n_tensors, (4 + 6 + 4) * 3);
    // Pruning that model uniformly again removes the field (merge patch null).
    const auto resolved2 = moekit::model::resolve_config(out.config());
    const Plan again = random_plan(resolved2.config, 2, 1);
    moekit::io::write_checkpoint(out, make_edit(out, *resolved2.arch, resolved2.config, again), tmp / "again");
    const Json cfg2 = config_of(tmp / "again");
    EXPECT_FALSE(cfg2.contains(std::string(moekit::model::kExpertsPerLayerKey)));
    EXPECT_EQ(cfg2["num_experts"], 2);
}

TEST(PruneEdit, ExtensionFieldIsValidated) {
    Json base = config_of(kFixtures / "olmoe");  // 3 layers, 8 experts, top-2
    auto parse_error = [&](const Json& value) {
        Json c = base;
        c[std::string(moekit::model::kExpertsPerLayerKey)] = value;
        try {
            moekit::model::resolve_config(moekit::io::HfConfig::from_json(c));
        } catch (const moekit::Error& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    EXPECT_EQ(parse_error(Json::array({8, 4, 6})), "");
    EXPECT_NE(parse_error(Json::array({8, 4})).find("one expert count per decoder layer (3)"), std::string::npos);
    EXPECT_NE(parse_error(Json::array({8, 1, 8})).find("must be in num_experts_per_tok"), std::string::npos);
    EXPECT_NE(parse_error(Json::array({6, 4, 6})).find("must equal the config's expert count (8)"), std::string::npos);
    EXPECT_NE(parse_error(Json::array({8, 9, 8})).find("layer 1"), std::string::npos);
    EXPECT_NE(parse_error("x").find("list of integers"), std::string::npos);
    // All layers at the full count: uniform, nothing recorded.
    Json c = base;
    c[std::string(moekit::model::kExpertsPerLayerKey)] = Json::array({8, 8, 8});
    EXPECT_TRUE(moekit::model::resolve_config(moekit::io::HfConfig::from_json(c)).config.n_expert_layer.empty());
    // Dense layers must say 0; grouped routing needs its divisibility per layer.
    Json v3 = config_of(kFixtures / "deepseek_v3");  // 3 layers, layer 0 dense, n_group 2
    v3[std::string(moekit::model::kExpertsPerLayerKey)] = Json::array({0, 8, 4});
    EXPECT_NO_THROW(moekit::model::resolve_config(moekit::io::HfConfig::from_json(v3)));
    v3[std::string(moekit::model::kExpertsPerLayerKey)] = Json::array({8, 8, 4});
    EXPECT_THROW(moekit::model::resolve_config(moekit::io::HfConfig::from_json(v3)), moekit::Error);
    v3[std::string(moekit::model::kExpertsPerLayerKey)] = Json::array({0, 8, 6});  // 3 per group: fine
    EXPECT_NO_THROW(moekit::model::resolve_config(moekit::io::HfConfig::from_json(v3)));
    v3[std::string(moekit::model::kExpertsPerLayerKey)] = Json::array({0, 8, 5});  // not a multiple of n_group
    EXPECT_THROW(moekit::model::resolve_config(moekit::io::HfConfig::from_json(v3)), moekit::Error);
    v3[std::string(moekit::model::kExpertsPerLayerKey)] = Json::array({0, 8, 2});  // 1 per group: no top-2 group score
    EXPECT_THROW(moekit::model::resolve_config(moekit::io::HfConfig::from_json(v3)), moekit::Error);
}

PruneOptions options_for(const fs::path& model, const fs::path& out) {
    PruneOptions o;
    o.model_dir = model;
    o.out_dir = out;
    o.keep = "0.5";
    o.calib.data = {{"en", kCorpus / "en.txt"}};
    o.calib.max_tokens = 256;
    o.calib.seq_len = 64;
    o.threads = 1;
    return o;
}

TEST(PruneDriver, WritesCheckpointAndRecord) {
    moekit::test::TempDir tmp("prune-driver");
    PruneOptions o = options_for(kFixtures / "olmoe", tmp / "out");
    o.method = "ean";
    const PruneResult r = prune(o);
    ASSERT_TRUE(r.written);
    EXPECT_EQ(r.calib_tokens, 256);
    const Json j = Json::parse(moekit::test::read_all(tmp / "out" / "moekit.json"));
    EXPECT_EQ(j["schema_version"], 1);
    EXPECT_EQ(j["params"]["method"], "ean");
    EXPECT_EQ(j["params"]["keep"], "0.5");
    EXPECT_EQ(j["result"]["uniform"], true);
    EXPECT_EQ(j["result"]["experts_kept"], 12);
    ASSERT_EQ(j["layers"].size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
        const Json& l = j["layers"][i];
        EXPECT_EQ(l["scores"].size(), 8u);
        EXPECT_EQ(l["kept"].size() + l["removed"].size(), 8u);
        EXPECT_EQ(j["expert_map"][std::to_string(i)], l["kept"]);
        EXPECT_EQ(l["scores"], l["all_scores"]["ean"]);
        // Kept experts outscore removed ones unless a protected super expert is involved.
        double min_kept = 1e300, max_removed = -1e300;
        for (const auto& e : l["kept"]) min_kept = std::min(min_kept, l["scores"][e.get<size_t>()].get<double>());
        for (const auto& e : l["removed"]) max_removed = std::max(max_removed, l["scores"][e.get<size_t>()].get<double>());
        if (l["protected"].empty()) EXPECT_GE(min_kept, max_removed);
    }
    EXPECT_NE(moekit::test::read_all(tmp / "out" / "README.md").find("Pruned with moekit"), std::string::npos);
    // eval --ref reads the expert map back.
    const auto map = moekit::model::read_expert_map(tmp / "out", 3, {true, true, true}, std::vector<int64_t>{4, 4, 4}, 8);
    ASSERT_TRUE(map);
    EXPECT_NE(to_text(r).find("Wrote"), std::string::npos);
    EXPECT_TRUE(to_json(r)["ok"]);
}

TEST(PruneDriver, DryRunAndRefusalsWriteNothing) {
    moekit::test::TempDir tmp("prune-refuse");
    const fs::path out = tmp / "out";
    PruneOptions o = options_for(kFixtures / "olmoe", out);
    o.dry_run = true;
    const PruneResult r = prune(o);
    EXPECT_FALSE(r.written);
    EXPECT_FALSE(fs::exists(out));
    EXPECT_NE(to_text(r).find("Dry run"), std::string::npos);

    auto refused = [&](PruneOptions bad, const std::string& needle) {
        try {
            prune(bad);
            ADD_FAILURE() << "accepted; wanted " << needle;
        } catch (const moekit::Error& e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
        EXPECT_FALSE(fs::exists(out)) << needle;
        for (const auto& entry : fs::directory_iterator(tmp.path())) ADD_FAILURE() << "left behind: " << entry.path();
    };
    PruneOptions b = options_for(kFixtures / "olmoe", out);
    b.keep = "8";
    refused(b, "nothing would be pruned");
    b.keep = "1";
    refused(b, "fewer than the 2 experts");
    b = options_for(kFixtures / "olmoe", out);
    b.method = "magic";
    refused(b, "unknown method 'magic'");
    b = options_for(kFixtures / "olmoe", out);
    b.calib.data = {{"x", tmp / "missing.txt"}};
    refused(b, "missing.txt' does not exist");
    moekit::test::write_all(tmp.path().parent_path() / "moekit-prune-empty.txt", "");
    b.calib.data = {{"x", tmp.path().parent_path() / "moekit-prune-empty.txt"}};
    refused(b, "is empty");
    fs::remove(tmp.path().parent_path() / "moekit-prune-empty.txt");
    b = options_for(kFixtures / "olmoe", out);
    b.out_dir = "";
    refused(b, "no output directory");
    b = options_for(kFixtures / "olmoe", out);
    b.budget = "global";
    b.method = "naee";
    refused(b, "NAEE");
    b = options_for(kFixtures / "deepseek_v3", out);
    b.keep = "5";  // not a multiple of n_group
    refused(b, "n_group = 2");
    b.keep = "2";  // one per group: the group score needs the top 2
    refused(b, "n_group = 2");
    b = options_for(kFixtures / "olmoe", kFixtures / "olmoe" / "sub");
    try {
        prune(b);
        ADD_FAILURE();
    } catch (const moekit::Error& e) {
        EXPECT_NE(std::string(e.what()).find("outside the input"), std::string::npos);
    }
    // An existing output needs force.
    fs::create_directories(out);
    b = options_for(kFixtures / "olmoe", out);
    try {
        prune(b);
        ADD_FAILURE();
    } catch (const moekit::Error& e) {
        EXPECT_NE(std::string(e.what()).find("--force"), std::string::npos);
    }
    b.force = true;
    EXPECT_TRUE(prune(b).written);
}

}  // namespace
