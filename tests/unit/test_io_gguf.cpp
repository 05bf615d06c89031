// GGUF writer and header reader: a round trip of every metadata type and of tensor infos, byte
// layout facts from the GGUF v3 spec (magic, version, alignment of the data section and of every
// tensor), refusal of an existing file without force, and no partial file after a throwing fill.
// gguf-py reading moekit's files is tests/interop/test_quantize_gguf.py.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/gguf.h"

using namespace moekit;
using namespace moekit::io;
namespace fs = std::filesystem;

namespace {
fs::path temp_path(const std::string& name) {
    fs::path dir = fs::temp_directory_path() / ("moekit-gguf-test-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    return dir / name;
}
}  // namespace

TEST(IoGguf, RoundTripMetadataAndTensors) {
    GgufWriter w;
    w.set("general.architecture", GgufValue::str("olmoe"));
    w.set("a.u32", GgufValue::u32(7));
    w.set("a.i32", GgufValue::i32(-3));
    w.set("a.f32", GgufValue::f32(0.5f));
    w.set("a.bool", GgufValue::boolean(true));
    w.set("a.u64", GgufValue::u64(1ull << 40));
    w.set("a.strs", GgufValue::str_array({"x", "", "\xc4\xa0y"}));
    w.set("a.ints", GgufValue::i32_array({1, -2, 3}));
    w.set("a.floats", GgufValue::f32_array({1.5f, -2.25f}));
    w.set("a.u32", GgufValue::u32(8));  // replaces, keeps position
    for (int i = 0; i < 2; ++i) {
        GgufTensor t;
        t.name = "t" + std::to_string(i);
        t.ne = {5, 3};
        t.ggml_type = 0;
        t.nbytes = 60;
        t.fill = [i](std::byte* dst) {
            for (int k = 0; k < 15; ++k) {
                const float v = static_cast<float>(i * 100 + k);
                std::memcpy(dst + 4 * k, &v, 4);
            }
        };
        w.add_tensor(std::move(t));
    }
    const fs::path p = temp_path("rt.gguf");
    fs::remove(p);
    const uint64_t size = w.write(p, false);
    EXPECT_EQ(size, fs::file_size(p));

    const GgufFileInfo info = read_gguf_info(p);
    EXPECT_EQ(info.version, 3u);
    ASSERT_EQ(info.kv.size(), 9u);
    EXPECT_EQ(info.kv[1].first, "a.u32");
    EXPECT_EQ(std::get<uint64_t>(info.kv[1].second.scalar), 8u);
    EXPECT_EQ(std::get<int64_t>(info.kv[2].second.scalar), -3);
    EXPECT_EQ(std::get<double>(info.kv[3].second.scalar), 0.5);
    EXPECT_TRUE(std::get<bool>(info.kv[4].second.scalar));
    EXPECT_EQ(std::get<uint64_t>(info.kv[5].second.scalar), 1ull << 40);
    ASSERT_EQ(info.kv[6].second.items.size(), 3u);
    EXPECT_EQ(std::get<std::string>(info.kv[6].second.items[2]), "\xc4\xa0y");
    EXPECT_EQ(std::get<int64_t>(info.kv[7].second.items[1]), -2);
    EXPECT_EQ(std::get<double>(info.kv[8].second.items[1]), -2.25);
    ASSERT_EQ(info.tensors.size(), 2u);
    EXPECT_EQ(info.data_offset % 32, 0u);
    EXPECT_EQ(info.tensors[0].offset, info.data_offset);
    EXPECT_EQ(info.tensors[1].offset, info.data_offset + 64);  // 60 bytes padded to 32
    EXPECT_EQ(info.tensors[1].ne, (std::vector<int64_t>{5, 3}));
    std::ifstream in(p, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(info.tensors[1].offset + 4 * 14));
    float last = 0;
    in.read(reinterpret_cast<char*>(&last), 4);
    EXPECT_EQ(last, 114.0f);
    char magic[4];
    in.seekg(0);
    in.read(magic, 4);
    EXPECT_EQ(std::string(magic, 4), "GGUF");

    // An existing file needs force; a throwing fill leaves the old file and no temporary.
    EXPECT_THROW(w.write(p, false), Error);
    GgufWriter bad;
    GgufTensor t;
    t.name = "x";
    t.ne = {4};
    t.nbytes = 16;
    t.fill = [](std::byte*) { throw Error("test", "fill failed"); };
    bad.add_tensor(std::move(t));
    EXPECT_THROW(bad.write(p, true), Error);
    EXPECT_EQ(fs::file_size(p), size);
    int n_files = 0;
    for (const auto& e : fs::directory_iterator(p.parent_path())) n_files += e.path().filename().string().rfind("rt.gguf", 0) == 0;
    EXPECT_EQ(n_files, 1);
    EXPECT_THROW(bad.add_tensor(GgufTensor{"x", {1}, 0, 4, nullptr}), Error);
    fs::remove_all(p.parent_path());
}

TEST(IoGguf, ReaderRefusesGarbage) {
    const fs::path p = temp_path("bad.gguf");
    std::ofstream(p, std::ios::binary) << "GGML0000";
    EXPECT_THROW(read_gguf_info(p), Error);
    std::ofstream(p, std::ios::binary) << "GGU";
    EXPECT_THROW(read_gguf_info(p), Error);
    fs::remove_all(p.parent_path());
}
