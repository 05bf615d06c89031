// Checkpoint::open: single-file and sharded checkpoints, every index inconsistency, config.
#include <gtest/gtest.h>

#include "test_util.h"

#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/checkpoint.h"

namespace {

using moekit::test::TempDir;
using moekit::test::write_all;

using namespace moekit;
using namespace moekit::io;
using core::DType;

// A float32 tensor of n elements valued base, base+1, ...
TensorSource f32_tensor(const std::string& name, std::vector<int64_t> shape, float base) {
    std::size_t n = 1;
    for (auto d : shape) n *= std::size_t(d);
    return TensorSource{name, DType::F32, shape, n * 4, [n, base](std::byte* dst) {
                            for (std::size_t i = 0; i < n; ++i) {
                                const float v = base + float(i);
                                std::memcpy(dst + 4 * i, &v, 4);
                            }
                        }};
}

const char* kConfig = R"({"model_type": "mixtral", "num_hidden_layers": 2, "hidden_size": 8})";

// dir with config.json, shard files (name -> tensors) and optionally an index.
void make_checkpoint(const fs::path& dir, const std::map<std::string, std::vector<TensorSource>>& shards,
                     const std::string& index = "") {
    fs::create_directories(dir);
    write_all(dir / "config.json", kConfig);
    for (const auto& [file, tensors] : shards) write_safetensors(dir / file, tensors);
    if (!index.empty()) write_all(dir / "model.safetensors.index.json", index);
}

std::string open_error(const fs::path& dir) {
    try {
        Checkpoint::open(dir);
    } catch (const Error& e) {
        return e.what();
    }
    ADD_FAILURE() << "expected " << dir << " to be rejected";
    return "";
}

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

const std::string kShard1 = "model-00001-of-00002.safetensors";
const std::string kShard2 = "model-00002-of-00002.safetensors";

std::string index_json(const std::map<std::string, std::string>& weight_map) {
    std::string text = R"({"metadata": {"total_size": 0}, "weight_map": {)";
    bool first = true;
    for (const auto& [name, shard] : weight_map) {
        text += (first ? "" : ", ") + std::string("\"") + name + "\": \"" + shard + "\"";
        first = false;
    }
    return text + "}}";
}

TEST(IoCheckpoint, OpensSingleFile) {
    TempDir dir;
    make_checkpoint(dir.path(), {{"model.safetensors", {f32_tensor("b", {2}, 10), f32_tensor("a", {2, 3}, 0)}}});
    const Checkpoint ckpt = Checkpoint::open(dir.path());
    EXPECT_FALSE(ckpt.is_sharded());
    EXPECT_EQ(ckpt.shards().size(), 1u);
    ASSERT_EQ(ckpt.tensors().size(), 2u);
    EXPECT_EQ(ckpt.tensors().begin()->first, "a");  // name order
    EXPECT_EQ(ckpt.total_tensor_bytes(), 32u);
    EXPECT_EQ(ckpt.read_f32("a"), (std::vector<float>{0, 1, 2, 3, 4, 5}));
    EXPECT_EQ(ckpt.bytes("b").size(), 8u);
    EXPECT_EQ(ckpt.config().get_int("num_hidden_layers"), 2);
    EXPECT_EQ(ckpt.find("zzz"), nullptr);
    try {
        ckpt.at("zzz");
        FAIL();
    } catch (const Error& e) {
        EXPECT_CONTAINS(e.what(), "no tensor named 'zzz'");
    }
}

TEST(IoCheckpoint, OpensShardedWithIndex) {
    TempDir dir;
    make_checkpoint(dir.path(),
                    {{kShard1, {f32_tensor("layers.0.w", {4}, 0), f32_tensor("layers.1.w", {4}, 4)}},
                     {kShard2, {f32_tensor("layers.2.w", {4}, 8)}}},
                    index_json({{"layers.0.w", kShard1}, {"layers.1.w", kShard1}, {"layers.2.w", kShard2}}));
    const Checkpoint ckpt = Checkpoint::open(dir.path());
    EXPECT_TRUE(ckpt.is_sharded());
    ASSERT_EQ(ckpt.shards().size(), 2u);
    EXPECT_EQ(ckpt.shards()[0]->path().filename(), kShard1);
    EXPECT_EQ(ckpt.shards()[1]->path().filename(), kShard2);
    EXPECT_EQ(ckpt.at("layers.2.w").file, ckpt.shards()[1].get());
    EXPECT_EQ(ckpt.read_f32("layers.2.w"), (std::vector<float>{8, 9, 10, 11}));
    EXPECT_EQ(ckpt.total_tensor_bytes(), 48u);
}

TEST(IoCheckpoint, IndexPreferredOverStrayModelSafetensors) {
    TempDir dir;
    make_checkpoint(dir.path(), {{kShard1, {f32_tensor("x", {1}, 5)}}, {"model.safetensors", {f32_tensor("stale", {1}, 0)}}},
                    index_json({{"x", kShard1}}));
    const Checkpoint ckpt = Checkpoint::open(dir.path());
    EXPECT_TRUE(ckpt.is_sharded());
    EXPECT_NE(ckpt.find("x"), nullptr);
    EXPECT_EQ(ckpt.find("stale"), nullptr);
}

TEST(IoCheckpoint, MissingDirectory) {
    TempDir dir;
    const std::string m = open_error(dir / "nope");
    EXPECT_CONTAINS(m, "[checkpoint] " + (dir / "nope").string() + ": checkpoint directory does not exist");
}

TEST(IoCheckpoint, PathIsAFile) {
    TempDir dir;
    write_all(dir / "file", "x");
    EXPECT_CONTAINS(open_error(dir / "file"), "is not a directory");
}

TEST(IoCheckpoint, MissingConfig) {
    TempDir dir;
    write_safetensors(dir / "model.safetensors", {f32_tensor("a", {1}, 0)});
    EXPECT_CONTAINS(open_error(dir.path()), dir.path().string() + ": no config.json");
}

TEST(IoCheckpoint, InvalidConfigJson) {
    TempDir dir;
    make_checkpoint(dir.path(), {{"model.safetensors", {f32_tensor("a", {1}, 0)}}});
    write_all(dir / "config.json", "{\"a\": ");
    const std::string m = open_error(dir.path());
    EXPECT_CONTAINS(m, "[config] " + (dir / "config.json").string() + ": invalid JSON: ");
}

TEST(IoCheckpoint, NoWeightsAtAll) {
    TempDir dir;
    make_checkpoint(dir.path(), {});
    EXPECT_CONTAINS(open_error(dir.path()),
                    "no weights: neither model.safetensors nor model.safetensors.index.json exists");
}

TEST(IoCheckpoint, ShardsWithoutIndexNeedTheIndex) {
    TempDir dir;
    make_checkpoint(dir.path(), {{kShard1, {f32_tensor("a", {1}, 0)}}, {kShard2, {f32_tensor("b", {1}, 0)}}});
    EXPECT_CONTAINS(open_error(dir.path()),
                    "found 2 .safetensors file(s) but neither model.safetensors nor model.safetensors.index.json; "
                    "a sharded checkpoint needs its index");
}

TEST(IoCheckpoint, IndexNamesMissingShard) {
    TempDir dir;
    make_checkpoint(dir.path(), {{kShard1, {f32_tensor("a", {1}, 0)}}},
                    index_json({{"a", kShard1}, {"b", kShard2}}));
    EXPECT_CONTAINS(open_error(dir.path()), "model.safetensors.index.json: shard '" + kShard2 +
                                                "' named in the index is missing (1 tensors map to it)");
}

TEST(IoCheckpoint, IndexPlacesTensorInShardThatLacksIt) {
    TempDir dir;
    make_checkpoint(dir.path(), {{kShard1, {f32_tensor("a", {1}, 0)}}, {kShard2, {f32_tensor("b", {1}, 0)}}},
                    index_json({{"a", kShard1}, {"b", kShard2}, {"c", kShard2}}));
    EXPECT_CONTAINS(open_error(dir.path()),
                    "the index places tensor 'c' in shard '" + kShard2 + "', which does not contain it");
}

TEST(IoCheckpoint, IndexPlacesTensorInWrongShard) {
    TempDir dir;
    make_checkpoint(dir.path(), {{kShard1, {f32_tensor("a", {1}, 0), f32_tensor("b", {1}, 0)}}, {kShard2, {f32_tensor("c", {1}, 0)}}},
                    index_json({{"a", kShard1}, {"b", kShard2}, {"c", kShard2}}));
    EXPECT_CONTAINS(open_error(dir.path()), "the index places tensor 'b' in shard '" + kShard2 +
                                                "', which does not contain it (it is in '" + kShard1 + "')");
}

TEST(IoCheckpoint, TensorInShardButNotInIndex) {
    TempDir dir;
    make_checkpoint(dir.path(), {{kShard1, {f32_tensor("a", {1}, 0), f32_tensor("extra", {1}, 0)}}},
                    index_json({{"a", kShard1}}));
    EXPECT_CONTAINS(open_error(dir.path()),
                    "tensor 'extra' is in shard '" + kShard1 + "' but not in the index's weight_map");
}

TEST(IoCheckpoint, SameTensorInTwoShards) {
    TempDir dir;
    make_checkpoint(dir.path(), {{kShard1, {f32_tensor("a", {1}, 0)}}, {kShard2, {f32_tensor("a", {1}, 0), f32_tensor("b", {1}, 0)}}},
                    index_json({{"a", kShard1}, {"b", kShard2}}));
    EXPECT_CONTAINS(open_error(dir.path()), "tensor 'a' is in two shards: '" + kShard1 + "' and '" + kShard2 + "'");
}

TEST(IoCheckpoint, IndexErrors) {
    TempDir dir;
    make_checkpoint(dir.path(), {{kShard1, {f32_tensor("a", {1}, 0)}}}, "{\"weight_map\": [");
    EXPECT_CONTAINS(open_error(dir.path()), "model.safetensors.index.json: invalid JSON: ");
    write_all(dir / "model.safetensors.index.json", R"({"weight_map": {"a": 1e999}})");
    EXPECT_CONTAINS(open_error(dir.path()), "model.safetensors.index.json: invalid JSON: ");
    write_all(dir / "model.safetensors.index.json", R"({"metadata": {}})");
    EXPECT_CONTAINS(open_error(dir.path()), "model.safetensors.index.json: missing 'weight_map'");
    write_all(dir / "model.safetensors.index.json", R"({"weight_map": []})");
    EXPECT_CONTAINS(open_error(dir.path()), "'weight_map' must be an object, got array");
    write_all(dir / "model.safetensors.index.json", R"({"weight_map": {"a": 3}})");
    EXPECT_CONTAINS(open_error(dir.path()), "weight_map entry for tensor 'a' must be a shard file name (string)");
    write_all(dir / "model.safetensors.index.json", R"({"weight_map": {"a": "../x.safetensors"}})");
    EXPECT_CONTAINS(open_error(dir.path()), "names '../x.safetensors', which is not a file name in the checkpoint directory");
    write_all(dir / "model.safetensors.index.json", R"({"weight_map": {}})");
    EXPECT_CONTAINS(open_error(dir.path()), "'weight_map' is empty");
}

TEST(IoCheckpoint, CorruptShardNamesTheShard) {
    TempDir dir;
    make_checkpoint(dir.path(), {{kShard1, {f32_tensor("a", {1}, 0)}}}, index_json({{"a", kShard1}}));
    fs::resize_file(dir / kShard1, fs::file_size(dir / kShard1) - 2);
    const std::string m = open_error(dir.path());
    EXPECT_CONTAINS(m, "[safetensors] " + (dir / kShard1).string() + ": ");
}

// --- HfConfig -------------------------------------------------------------------------------

TEST(IoHfConfig, TypedGetters) {
    const auto config = HfConfig::from_json(nlohmann::ordered_json::parse(
        R"({"n": 4, "f": 2.0, "x": 0.5, "s": "silu", "b": true, "z": null, "big": 18446744073709551615})"));
    EXPECT_EQ(config.get_int("n"), 4);
    EXPECT_EQ(config.get_int("f"), 2);  // integral float accepted
    EXPECT_EQ(config.get_int_opt("missing"), std::nullopt);
    EXPECT_EQ(config.get_int_opt("z"), std::nullopt);
    EXPECT_EQ(config.get_int_or("missing", 7), 7);
    EXPECT_DOUBLE_EQ(config.get_double_or("x", 1.0), 0.5);
    EXPECT_DOUBLE_EQ(config.get_double_or("n", 1.0), 4.0);
    EXPECT_DOUBLE_EQ(config.get_double_or("missing", 1.5), 1.5);
    EXPECT_TRUE(config.get_bool_or("b", false));
    EXPECT_FALSE(config.get_bool_or("missing", false));
    EXPECT_EQ(config.get_string("s"), "silu");
    EXPECT_EQ(config.get_string_or("missing", "gelu"), "gelu");
    EXPECT_TRUE(config.has("n"));
    EXPECT_FALSE(config.has("z"));
    EXPECT_FALSE(config.has("missing"));
}

std::string config_error(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    ADD_FAILURE() << "accepted";
    return "";
}

TEST(IoHfConfig, ErrorsNameFieldAndFile) {
    const auto config = HfConfig::from_json(
        nlohmann::ordered_json::parse(R"({"hidden_size": "big", "x": 1.5, "b": 1, "s": 3, "big": 18446744073709551615})"),
        "/m/config.json");
    EXPECT_CONTAINS(config_error([&] { config.get_int("num_hidden_layers"); }),
                    "[config] /m/config.json: missing required field 'num_hidden_layers'");
    EXPECT_CONTAINS(config_error([&] { config.get_int("hidden_size"); }),
                    "/m/config.json: field 'hidden_size' must be an integer, got string \"big\"");
    EXPECT_CONTAINS(config_error([&] { config.get_int("x"); }), "field 'x' must be an integer, got number 1.5");
    EXPECT_CONTAINS(config_error([&] { config.get_int("big"); }), "field 'big' is too large");
    EXPECT_CONTAINS(config_error([&] { config.get_bool_or("b", false); }), "field 'b' must be a boolean, got number 1");
    EXPECT_CONTAINS(config_error([&] { config.get_string("s"); }), "field 's' must be a string, got number 3");
    EXPECT_CONTAINS(config_error([&] { config.get_string("missing"); }), "missing required field 'missing'");
    EXPECT_CONTAINS(config_error([&] { config.get_double_or("hidden_size", 0); }),
                    "field 'hidden_size' must be a number, got string");
    EXPECT_CONTAINS(config_error([] { HfConfig::from_json(nlohmann::ordered_json::array(), "c.json"); }),
                    "c.json: expected a JSON object, got array");
}

TEST(IoHfConfig, LoadKeepsOrderAndReportsBadFiles) {
    TempDir dir;
    write_all(dir / "config.json", R"({"z": 1, "a": 2, "m": {"y": 1, "b": 2}})");
    const auto config = HfConfig::load(dir / "config.json");
    EXPECT_EQ(config.json().dump(), R"({"z":1,"a":2,"m":{"y":1,"b":2}})");
    EXPECT_EQ(config.source(), dir / "config.json");
    EXPECT_CONTAINS(config_error([&] { HfConfig::load(dir / "missing.json"); }),
                    (dir / "missing.json").string() + ": cannot read");
    write_all(dir / "huge.json", "{\"a\": -1e999}");
    EXPECT_CONTAINS(config_error([&] { HfConfig::load(dir / "huge.json"); }),
                    (dir / "huge.json").string() + ": invalid JSON: ");
    write_all(dir / "bad.json", "{\"a\": tru}");
    EXPECT_CONTAINS(config_error([&] { HfConfig::load(dir / "bad.json"); }),
                    (dir / "bad.json").string() + ": invalid JSON: [json.exception.parse_error.101] parse error at line 1");
}

}  // namespace
