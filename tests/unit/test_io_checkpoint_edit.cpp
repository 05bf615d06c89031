// write_checkpoint: byte-for-byte copies, drop/rename/put, config merge patch with key order
// preserved, file copying, sharding + index, refusals, atomicity, natural_less.
#include <gtest/gtest.h>

#include "test_util.h"

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/checkpoint_edit.h"

namespace {

using moekit::test::TempDir;
using moekit::test::write_all;
using moekit::test::read_all;
using moekit::test::safe_memcmp;

using namespace moekit;
using namespace moekit::io;
using core::DType;

TensorSource random_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape, uint32_t seed) {
    std::size_t n = core::dtype_size(dtype);
    for (auto d : shape) n *= std::size_t(d);
    return TensorSource{name, dtype, shape, n, [n, seed](std::byte* dst) {
                            std::mt19937 rng(seed);
                            for (std::size_t i = 0; i < n; ++i) dst[i] = std::byte(rng() & 0xff);
                        }};
}

std::vector<std::byte> bytes_of(const TensorSource& t) {
    std::vector<std::byte> out(t.nbytes);
    t.fill(out.data());
    return out;
}

const char* kConfig = R"({
  "architectures": ["MixtralForCausalLM"],
  "num_local_experts": 4,
  "hidden_size": 8,
  "rope_theta": 1000000.0,
  "rms_norm_eps": 1e-05,
  "initializer_range": 0.02,
  "model_type": "mixtral",
  "num_hidden_layers": 2,
  "torch_dtype": "bfloat16",
  "rope_scaling": null,
  "nested": {"z": 1, "a": 2}
})";

// A small MoE-like checkpoint: 2 layers x 4 experts, plus tokenizer and other files.
struct Fixture {
    TempDir tmp;
    fs::path in;
    std::vector<TensorSource> tensors;

    explicit Fixture(bool sharded = false) : in(tmp / "in") {
        fs::create_directories(in);
        uint32_t seed = 1;
        tensors.push_back(random_tensor("model.embed_tokens.weight", DType::BF16, {16, 8}, seed++));
        for (int il = 0; il < 2; ++il) {
            const std::string layer = "model.layers." + std::to_string(il) + ".";
            tensors.push_back(random_tensor(layer + "block_sparse_moe.gate.weight", DType::BF16, {4, 8}, seed++));
            for (int ie = 0; ie < 4; ++ie)
                tensors.push_back(random_tensor(layer + "block_sparse_moe.experts." + std::to_string(ie) + ".w1.weight",
                                                DType::BF16, {6, 8}, seed++));
            tensors.push_back(random_tensor(layer + "input_layernorm.weight", DType::F32, {8}, seed++));
        }
        tensors.push_back(random_tensor("lm_head.weight", DType::F16, {16, 8}, seed++));
        write_all(in / "config.json", kConfig);
        write_all(in / "tokenizer.json", R"({"version": "1.0", "model": {"type": "BPE"}})");
        write_all(in / "tokenizer_config.json", "{\"bos_token\": \"<s>\"}\n");
        write_all(in / "generation_config.json", "{\"do_sample\": false}");
        write_all(in / "README.md", "# model\n");
        write_all(in / "pytorch_model.bin", "stale weights");
        fs::create_directories(in / "subdir");
        write_all(in / "subdir" / "nested.txt", "not copied");
        if (!sharded) {
            write_safetensors(in / "model.safetensors", tensors);
        } else {
            const std::size_t half = tensors.size() / 2;
            std::vector<TensorSource> a(tensors.begin(), tensors.begin() + long(half)), b(tensors.begin() + long(half), tensors.end());
            write_safetensors(in / "model-00001-of-00002.safetensors", a);
            write_safetensors(in / "model-00002-of-00002.safetensors", b);
            nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
            for (const auto& t : a) index["weight_map"][t.name] = "model-00001-of-00002.safetensors";
            for (const auto& t : b) index["weight_map"][t.name] = "model-00002-of-00002.safetensors";
            write_all(in / "model.safetensors.index.json", index.dump(2));
        }
    }

    // Every file of the input with its contents, to check it was not modified.
    std::map<std::string, std::string> snapshot() const {
        std::map<std::string, std::string> files;
        for (const auto& item : fs::recursive_directory_iterator(in))
            if (item.is_regular_file()) files[item.path().string()] = read_all(item.path());
        return files;
    }
};

std::string write_error(const Checkpoint& input, const CheckpointEdit& edit, const fs::path& out,
                        const WriteOptions& options = {}) {
    try {
        write_checkpoint(input, edit, out, options);
    } catch (const Error& e) {
        return e.what();
    }
    ADD_FAILURE() << "write_checkpoint accepted";
    return "";
}

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

bool no_temp_left(const fs::path& parent) {
    for (const auto& item : fs::directory_iterator(parent))
        if (item.path().filename().string().find(".moekit-") != std::string::npos) return false;
    return true;
}

TEST(IoCheckpointEdit, EmptyEditCopiesEverythingByteForByte) {
    Fixture fx;
    const auto before = fx.snapshot();
    const Checkpoint input = Checkpoint::open(fx.in);
    const WriteResult result = write_checkpoint(input, {}, fx.tmp / "out");
    EXPECT_EQ(result.n_copied, fx.tensors.size());
    EXPECT_EQ(result.n_written, 0u);
    EXPECT_EQ(result.shard_files, std::vector<std::string>{"model.safetensors"});
    EXPECT_EQ(result.tensor_bytes, input.total_tensor_bytes());
    const Checkpoint output = Checkpoint::open(fx.tmp / "out");
    ASSERT_EQ(output.tensors().size(), input.tensors().size());
    for (const auto& [name, entry] : input.tensors()) {
        const auto a = input.bytes(name), b = output.bytes(name);
        ASSERT_EQ(a.size(), b.size()) << name;
        EXPECT_EQ(safe_memcmp(a.data(), b.data(), a.size()), 0) << name;
        EXPECT_EQ(output.at(name).info->dtype, entry.info->dtype);
        EXPECT_EQ(output.at(name).info->shape, entry.info->shape);
    }
    EXPECT_EQ(output.shards()[0]->header().metadata, (std::map<std::string, std::string>{{"format", "pt"}}));
    for (const char* file : {"tokenizer.json", "tokenizer_config.json", "generation_config.json", "README.md"})
        EXPECT_EQ(read_all(fx.tmp / "out" / file), read_all(fx.in / file)) << file;
    EXPECT_FALSE(fs::exists(fx.tmp / "out" / "pytorch_model.bin"));  // stale weights are not copied
    EXPECT_FALSE(fs::exists(fx.tmp / "out" / "subdir"));              // non-recursive
    EXPECT_EQ(fx.snapshot(), before);                                 // input untouched
    EXPECT_TRUE(no_temp_left(fx.tmp.path()));
}

TEST(IoCheckpointEdit, OutputTensorsInNaturalOrder) {
    Fixture fx;
    const Checkpoint input = Checkpoint::open(fx.in);
    CheckpointEdit edit;
    edit.put.push_back(random_tensor("model.layers.10.x", DType::U8, {1}, 3));
    write_checkpoint(input, edit, fx.tmp / "out");
    const SafetensorsFile file(fx.tmp / "out" / "model.safetensors");
    std::vector<std::string> names;
    for (const auto& t : file.tensors()) names.push_back(t.name);  // file (offset) order
    EXPECT_TRUE(std::is_sorted(names.begin(), names.end(), natural_less));
    const auto pos = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) - names.begin(); };
    EXPECT_LT(pos("model.layers.1.input_layernorm.weight"), pos("model.layers.10.x"));
}

TEST(IoCheckpointEdit, DropRenamePut) {
    Fixture fx;
    const auto before = fx.snapshot();
    const Checkpoint input = Checkpoint::open(fx.in);
    CheckpointEdit edit;
    edit.drop = {"model.layers.0.block_sparse_moe.experts.1.w1.weight", "model.layers.0.block_sparse_moe.experts.3.w1.weight"};
    edit.rename["model.layers.0.block_sparse_moe.experts.2.w1.weight"] = "model.layers.0.block_sparse_moe.experts.1.w1.weight";
    const auto replacement = random_tensor("model.layers.0.block_sparse_moe.gate.weight", DType::BF16, {2, 8}, 99);
    const auto added = random_tensor("extra.bias", DType::F32, {3}, 98);
    edit.put = {replacement, added};
    const WriteResult result = write_checkpoint(input, edit, fx.tmp / "out");
    EXPECT_EQ(result.n_written, 2u);
    EXPECT_EQ(result.n_copied, fx.tensors.size() - 2 - 1);
    const Checkpoint out = Checkpoint::open(fx.tmp / "out");
    EXPECT_EQ(out.tensors().size(), fx.tensors.size() - 2 + 1);
    EXPECT_EQ(out.find("model.layers.0.block_sparse_moe.experts.3.w1.weight"), nullptr);
    EXPECT_EQ(out.find("model.layers.0.block_sparse_moe.experts.2.w1.weight"), nullptr);
    // renamed: bytes of the old expert 2 under the name of expert 1
    const auto src = input.bytes("model.layers.0.block_sparse_moe.experts.2.w1.weight");
    const auto dst = out.bytes("model.layers.0.block_sparse_moe.experts.1.w1.weight");
    ASSERT_EQ(src.size(), dst.size());
    EXPECT_EQ(safe_memcmp(src.data(), dst.data(), src.size()), 0);
    // replaced in place: new shape and bytes
    const auto& gate = out.at("model.layers.0.block_sparse_moe.gate.weight");
    EXPECT_EQ(gate.info->shape, (std::vector<int64_t>{2, 8}));
    const auto want = bytes_of(replacement);
    EXPECT_EQ(safe_memcmp(out.bytes(gate.info->name).data(), want.data(), want.size()), 0);
    const auto want_added = bytes_of(added);
    ASSERT_EQ(out.bytes("extra.bias").size(), want_added.size());
    EXPECT_EQ(safe_memcmp(out.bytes("extra.bias").data(), want_added.data(), want_added.size()), 0);
    // untouched tensors identical
    for (const char* name : {"model.embed_tokens.weight", "lm_head.weight", "model.layers.1.block_sparse_moe.gate.weight"}) {
        const auto a = input.bytes(name), b = out.bytes(name);
        ASSERT_EQ(a.size(), b.size());
        EXPECT_EQ(safe_memcmp(a.data(), b.data(), a.size()), 0) << name;
    }
    EXPECT_EQ(fx.snapshot(), before);
}

TEST(IoCheckpointEdit, ConfigPatchKeepsOrderAndUntouchedFieldsVerbatim) {
    Fixture fx;
    const Checkpoint input = Checkpoint::open(fx.in);
    CheckpointEdit edit;
    edit.config_patch = nlohmann::ordered_json::parse(
        R"({"num_local_experts": 3, "torch_dtype": null, "moekit": {"method": "reap"}, "nested": {"a": 5}})");
    write_checkpoint(input, edit, fx.tmp / "out");
    const std::string text = read_all(fx.tmp / "out" / "config.json");
    ASSERT_FALSE(text.empty());
    EXPECT_EQ(text.back(), '\n');
    EXPECT_EQ(text.substr(0, 20), "{\n  \"architectures\":");  // 2-space indent
    const auto out = nlohmann::ordered_json::parse(text);
    const auto& orig = input.config().json();
    std::vector<std::string> keys;
    for (const auto& [k, v] : out.items()) keys.push_back(k);
    EXPECT_EQ(keys, (std::vector<std::string>{"architectures", "num_local_experts", "hidden_size", "rope_theta",
                                              "rms_norm_eps", "initializer_range", "model_type", "num_hidden_layers",
                                              "rope_scaling", "nested", "moekit"}));
    for (const char* key : {"architectures", "hidden_size", "rope_theta", "rms_norm_eps", "initializer_range",
                            "model_type", "num_hidden_layers", "rope_scaling"})
        EXPECT_EQ(out[key].dump(), orig[key].dump()) << key;
    EXPECT_EQ(out["num_local_experts"], 3);
    EXPECT_FALSE(out.contains("torch_dtype"));
    EXPECT_EQ(out["nested"].dump(), R"({"z":1,"a":5})");
    EXPECT_EQ(out["moekit"]["method"], "reap");
    EXPECT_NE(text.find("\"rms_norm_eps\": 1e-05"), std::string::npos) << text;
    EXPECT_NE(text.find("\"rope_theta\": 1000000.0"), std::string::npos) << text;
}

TEST(IoCheckpointEdit, ExtraFilesWritten) {
    Fixture fx;
    const Checkpoint input = Checkpoint::open(fx.in);
    CheckpointEdit edit;
    edit.extra_files["moekit.json"] = "{\"schema_version\": 1}\n";
    edit.extra_files["README.md"] = "# pruned\n";
    write_checkpoint(input, edit, fx.tmp / "out");
    EXPECT_EQ(read_all(fx.tmp / "out" / "moekit.json"), "{\"schema_version\": 1}\n");
    EXPECT_EQ(read_all(fx.tmp / "out" / "README.md"), "# pruned\n");
    EXPECT_EQ(read_all(fx.in / "README.md"), "# model\n");
    for (const char* bad : {"../x", "a/b", "config.json", "model.safetensors"}) {
        CheckpointEdit e2;
        e2.extra_files[bad] = "x";
        EXPECT_CONTAINS(write_error(input, e2, fx.tmp / "out2"), "extra file");
    }
}

TEST(IoCheckpointEdit, ShardsWithValidIndex) {
    Fixture fx;
    const Checkpoint input = Checkpoint::open(fx.in);
    WriteOptions options;
    options.max_shard_bytes = 300;  // each expert is 96 bytes, embeddings 256
    const WriteResult result = write_checkpoint(input, {}, fx.tmp / "out", options);
    ASSERT_GT(result.shard_files.size(), 2u);
    const std::size_t n = result.shard_files.size();
    char expected_first[64];
    std::snprintf(expected_first, sizeof expected_first, "model-00001-of-%05zu.safetensors", n);
    EXPECT_EQ(result.shard_files.front(), expected_first);
    EXPECT_FALSE(fs::exists(fx.tmp / "out" / "model.safetensors"));
    for (const auto& file : result.shard_files) {
        const SafetensorsFile shard(fx.tmp / "out" / file);
        uint64_t bytes = 0;
        for (const auto& t : shard.tensors()) bytes += t.nbytes();
        EXPECT_TRUE(bytes <= options.max_shard_bytes || shard.tensors().size() == 1) << file;
    }
    const auto index = nlohmann::json::parse(read_all(fx.tmp / "out" / "model.safetensors.index.json"));
    EXPECT_EQ(index["metadata"]["total_size"], input.total_tensor_bytes());
    EXPECT_EQ(index["weight_map"].size(), input.tensors().size());
    const std::string index_text = read_all(fx.tmp / "out" / "model.safetensors.index.json");
    EXPECT_EQ(index_text.back(), '\n');
    const Checkpoint out = Checkpoint::open(fx.tmp / "out");
    EXPECT_TRUE(out.is_sharded());
    EXPECT_EQ(out.shards().size(), n);
    for (const auto& [name, entry] : input.tensors()) {
        const auto a = input.bytes(name), b = out.bytes(name);
        ASSERT_EQ(a.size(), b.size());
        EXPECT_EQ(safe_memcmp(a.data(), b.data(), a.size()), 0) << name;
    }
}

TEST(IoCheckpointEdit, ShardedInputToSingleOutput) {
    Fixture fx(/*sharded=*/true);
    const Checkpoint input = Checkpoint::open(fx.in);
    ASSERT_TRUE(input.is_sharded());
    const WriteResult result = write_checkpoint(input, {}, fx.tmp / "out");
    EXPECT_EQ(result.shard_files, std::vector<std::string>{"model.safetensors"});
    EXPECT_FALSE(fs::exists(fx.tmp / "out" / "model.safetensors.index.json"));
    EXPECT_FALSE(fs::exists(fx.tmp / "out" / "model-00001-of-00002.safetensors"));
    const Checkpoint out = Checkpoint::open(fx.tmp / "out");
    EXPECT_FALSE(out.is_sharded());
    EXPECT_EQ(out.tensors().size(), input.tensors().size());
}

TEST(IoCheckpointEdit, RefusesOutputEqualToInput) {
    Fixture fx;
    const auto before = fx.snapshot();
    const Checkpoint input = Checkpoint::open(fx.in);
    EXPECT_CONTAINS(write_error(input, {}, fx.in, {.force = true}), "is the input directory");
    EXPECT_CONTAINS(write_error(input, {}, fx.in / "." , {.force = true}), "is the input directory");
    EXPECT_CONTAINS(write_error(input, {}, fx.tmp / "x" / ".." / "in", {.force = true}), "is the input directory");
    fs::create_directory_symlink(fx.in, fx.tmp / "link");
    EXPECT_CONTAINS(write_error(input, {}, fx.tmp / "link", {.force = true}), "is the input directory");
    EXPECT_EQ(fx.snapshot(), before);
}

TEST(IoCheckpointEdit, RefusesOutputInsideInput) {
    Fixture fx;
    const Checkpoint input = Checkpoint::open(fx.in);
    EXPECT_CONTAINS(write_error(input, {}, fx.in / "sub" / "out"), "is inside the input directory");
    EXPECT_FALSE(fs::exists(fx.in / "sub"));
}

TEST(IoCheckpointEdit, RefusesOutputContainingInput) {
    Fixture fx;
    const Checkpoint input = Checkpoint::open(fx.in);
    EXPECT_CONTAINS(write_error(input, {}, fx.tmp.path(), {.force = true}), "contains the input directory");
    EXPECT_TRUE(fs::exists(fx.in / "model.safetensors"));
}

TEST(IoCheckpointEdit, SiblingWithCommonPrefixIsFine) {
    Fixture fx;
    const Checkpoint input = Checkpoint::open(fx.in);
    write_checkpoint(input, {}, fx.tmp / "in2");  // "in2" starts with "in" but is not inside it
    EXPECT_TRUE(fs::exists(fx.tmp / "in2" / "model.safetensors"));
}

TEST(IoCheckpointEdit, ExistingOutputNeedsForceAndForceReplaces) {
    Fixture fx;
    const Checkpoint input = Checkpoint::open(fx.in);
    fs::create_directories(fx.tmp / "out");
    write_all(fx.tmp / "out" / "old.txt", "old");
    EXPECT_CONTAINS(write_error(input, {}, fx.tmp / "out"), "already exists; pass --force to replace it");
    EXPECT_EQ(read_all(fx.tmp / "out" / "old.txt"), "old");
    write_checkpoint(input, {}, fx.tmp / "out", {.force = true});
    EXPECT_FALSE(fs::exists(fx.tmp / "out" / "old.txt"));
    EXPECT_TRUE(fs::exists(fx.tmp / "out" / "model.safetensors"));
    EXPECT_TRUE(no_temp_left(fx.tmp.path()));
    Checkpoint::open(fx.tmp / "out");
}

TEST(IoCheckpointEdit, FailingPutLeavesNoTempAndKeepsOldOutput) {
    Fixture fx;
    const Checkpoint input = Checkpoint::open(fx.in);
    fs::create_directories(fx.tmp / "out");
    write_all(fx.tmp / "out" / "old.txt", "old");
    CheckpointEdit edit;
    edit.put.push_back(TensorSource{"boom", DType::U8, {4}, 4, [](std::byte*) { throw Error("test", "fill failed"); }});
    EXPECT_CONTAINS(write_error(input, edit, fx.tmp / "out", {.force = true}), "fill failed");
    EXPECT_EQ(read_all(fx.tmp / "out" / "old.txt"), "old");
    EXPECT_TRUE(no_temp_left(fx.tmp.path()));
    EXPECT_CONTAINS(write_error(input, edit, fx.tmp / "fresh"), "fill failed");
    EXPECT_FALSE(fs::exists(fx.tmp / "fresh"));
    EXPECT_TRUE(no_temp_left(fx.tmp.path()));
}

// Ctrl-C while writing: the temporary directory is removed, an existing output is untouched, and
// the process still dies of the signal (the writer re-raises it after cleaning up).
TEST(IoCheckpointEditDeathTest, InterruptRemovesTempAndReraises) {
    Fixture fx;
    fs::create_directories(fx.tmp / "out");
    write_all(fx.tmp / "out" / "old.txt", "old");
    auto interrupted_write = [&](const fs::path& out, int sig) {
        const Checkpoint input = Checkpoint::open(fx.in);
        CheckpointEdit edit;
        edit.put.push_back(TensorSource{"a.signal", DType::U8, {4}, 4, [sig](std::byte* dst) {
                                            std::memset(dst, 0, 4);
                                            std::raise(sig);
                                        }});
        edit.put.push_back(TensorSource{"z.after", DType::U8, {4}, 4, [](std::byte* dst) { std::memset(dst, 1, 4); }});
        write_checkpoint(input, edit, out, {.force = true});
    };
    EXPECT_EXIT(interrupted_write(fx.tmp / "out", SIGINT), ::testing::KilledBySignal(SIGINT), "");
    EXPECT_EQ(read_all(fx.tmp / "out" / "old.txt"), "old");
    EXPECT_TRUE(no_temp_left(fx.tmp.path()));
    EXPECT_EXIT(interrupted_write(fx.tmp / "fresh", SIGTERM), ::testing::KilledBySignal(SIGTERM), "");
    EXPECT_FALSE(fs::exists(fx.tmp / "fresh"));
    EXPECT_TRUE(no_temp_left(fx.tmp.path()));
    // Handlers are restored after a normal write: SIGINT is back to its default.
    const Checkpoint input = Checkpoint::open(fx.in);
    write_checkpoint(input, {}, fx.tmp / "done");
    struct sigaction now {};
    sigaction(SIGINT, nullptr, &now);
    EXPECT_EQ(now.sa_handler, SIG_DFL);
}

TEST(IoCheckpointEdit, ValidationErrors) {
    Fixture fx;
    const Checkpoint input = Checkpoint::open(fx.in);
    const fs::path out = fx.tmp / "out";
    {
        CheckpointEdit e;
        e.drop = {"nope"};
        EXPECT_CONTAINS(write_error(input, e, out), "drop: the input " + fx.in.string() + " has no tensor named 'nope'");
    }
    {
        CheckpointEdit e;
        e.rename["nope"] = "x";
        EXPECT_CONTAINS(write_error(input, e, out), "rename: the input " + fx.in.string() + " has no tensor named 'nope'");
    }
    {
        CheckpointEdit e;
        e.rename["lm_head.weight"] = "model.embed_tokens.weight";
        EXPECT_CONTAINS(write_error(input, e, out), "two output tensors would be named 'model.embed_tokens.weight'");
    }
    {
        CheckpointEdit e;
        e.drop = {"lm_head.weight"};
        e.rename["lm_head.weight"] = "x";
        EXPECT_CONTAINS(write_error(input, e, out), "tensor 'lm_head.weight' is both dropped and renamed");
    }
    {
        CheckpointEdit e;
        e.rename["lm_head.weight"] = "renamed";
        e.put.push_back(random_tensor("renamed", DType::U8, {1}, 1));
        EXPECT_CONTAINS(write_error(input, e, out),
                        "put: tensor 'renamed' collides with input tensor 'lm_head.weight' renamed to 'renamed'");
    }
    {
        CheckpointEdit e;
        e.put.push_back(random_tensor("dup", DType::U8, {1}, 1));
        e.put.push_back(random_tensor("dup", DType::U8, {1}, 2));
        EXPECT_CONTAINS(write_error(input, e, out), "put: tensor 'dup' is given twice");
    }
    {
        CheckpointEdit e;
        auto t = random_tensor("bad", DType::F32, {3}, 1);
        t.nbytes = 10;
        e.put.push_back(t);
        EXPECT_CONTAINS(write_error(input, e, out), "put: tensor 'bad': nbytes 10 does not match its shape and dtype F32 (12 bytes)");
    }
    {
        CheckpointEdit e;
        e.config_patch = nlohmann::ordered_json::array();
        EXPECT_CONTAINS(write_error(input, e, out), "config_patch must be a JSON object");
    }
    EXPECT_FALSE(fs::exists(out));
    EXPECT_TRUE(no_temp_left(fx.tmp.path()));
}

TEST(IoCheckpointEdit, DroppedNameCanBeReusedByPutAndRename) {
    Fixture fx;
    const Checkpoint input = Checkpoint::open(fx.in);
    CheckpointEdit edit;
    edit.drop = {"lm_head.weight"};
    edit.put.push_back(random_tensor("lm_head.weight", DType::U8, {2}, 5));
    edit.rename["model.layers.1.block_sparse_moe.experts.3.w1.weight"] = "model.layers.1.block_sparse_moe.experts.9.w1.weight";
    write_checkpoint(input, edit, fx.tmp / "out");
    const Checkpoint out = Checkpoint::open(fx.tmp / "out");
    EXPECT_EQ(out.at("lm_head.weight").info->dtype, DType::U8);
    EXPECT_NE(out.find("model.layers.1.block_sparse_moe.experts.9.w1.weight"), nullptr);
}

TEST(IoCheckpointEdit, OutputParentCreated) {
    Fixture fx;
    const Checkpoint input = Checkpoint::open(fx.in);
    write_checkpoint(input, {}, fx.tmp / "a" / "b" / "out");
    Checkpoint::open(fx.tmp / "a" / "b" / "out");
}

TEST(IoNaturalLess, NumbersCompareByValue) {
    EXPECT_TRUE(natural_less("layers.2.w", "layers.10.w"));
    EXPECT_FALSE(natural_less("layers.10.w", "layers.2.w"));
    EXPECT_TRUE(natural_less("experts.9", "experts.10"));
    EXPECT_TRUE(natural_less("a", "a.0"));
    EXPECT_TRUE(natural_less("a1", "b0"));
    EXPECT_FALSE(natural_less("x", "x"));
    EXPECT_TRUE(natural_less("x1", "x01") != natural_less("x01", "x1"));  // total order on equal values
    EXPECT_TRUE(natural_less("layers.99999999999999999999.a", "layers.100000000000000000000.a"));
    std::vector<std::string> names{"l.10.b", "l.2.a", "l.1.c", "l.2.b", "l.10.a", "m", "l"};
    std::sort(names.begin(), names.end(), natural_less);
    EXPECT_EQ(names, (std::vector<std::string>{"l", "l.1.c", "l.2.a", "l.2.b", "l.10.a", "l.10.b", "m"}));
}

TEST(IoNaturalLess, IsAStrictWeakOrder) {
    std::vector<std::string> words{"", "a", "a0", "a00", "a1", "a01", "a10", "a.2", "a.10", "b", "0", "00", "9", "10", "a9b", "a10b", "a-1", "aa"};
    for (const auto& x : words) {
        EXPECT_FALSE(natural_less(x, x)) << x;
        for (const auto& y : words) {
            if (x != y) EXPECT_NE(natural_less(x, y), natural_less(y, x)) << x << " " << y;
            for (const auto& z : words)
                if (natural_less(x, y) && natural_less(y, z)) EXPECT_TRUE(natural_less(x, z)) << x << " " << y << " " << z;
        }
    }
}

}  // namespace
