// GGUF v3 writer (the llama.cpp file format) and a header reader for tests and tools.
// Layout (little-endian): "GGUF", u32 version 3, u64 tensor count, u64 metadata count; metadata
// entries (string key, u32 value type, value; arrays are u32 element type, u64 count, elements;
// strings are u64 length + UTF-8 bytes); tensor infos (name, u32 n_dims, u64 ne[n_dims] with
// ne[0] the contiguous row length, u32 ggml type, u64 offset into the data section); zero
// padding to `general.alignment` (32 unless set); the data section, every tensor starting at an
// aligned offset. Tensor bytes stream from callbacks, so a large model never sits in memory.
// The file is written to "<path>.moekit-tmp-<pid>" (preallocated, tensors filled through a shared
// mapping), fsynced and renamed into place.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace moekit::io {

enum class GgufType : uint32_t {
    uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, boolean = 7,
    string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12,
};

// One metadata value: a scalar, a string, or a homogeneous array of one of those.
struct GgufValue {
    GgufType type = GgufType::uint32;
    GgufType array_type = GgufType::uint32;  // element type when type == array
    std::variant<uint64_t, int64_t, double, bool, std::string> scalar;
    std::vector<std::variant<uint64_t, int64_t, double, bool, std::string>> items;  // arrays

    static GgufValue u32(uint32_t v);
    static GgufValue i32(int32_t v);
    static GgufValue u64(uint64_t v);
    static GgufValue f32(float v);
    static GgufValue boolean(bool v);
    static GgufValue str(std::string v);
    static GgufValue str_array(const std::vector<std::string>& v);
    static GgufValue i32_array(const std::vector<int32_t>& v);
    static GgufValue f32_array(const std::vector<float>& v);
};

struct GgufTensor {
    std::string name;
    std::vector<int64_t> ne;     // ggml order: ne[0] is the row length (reverse of numpy's shape)
    uint32_t ggml_type = 0;      // ggml_type id
    uint64_t nbytes = 0;
    std::function<void(std::byte* dst)> fill;  // writes exactly nbytes
    // Instead of fill (when n_parts > 0), for producers that parallelize: the bytes as n_parts
    // independent parts; fill_part(i, dst) writes part i somewhere in [dst, dst + nbytes) (dst is
    // the tensor's first byte). The parts of all such tensors run as one parallel loop on the
    // writer's OpenMP threads, in any order and concurrently (no parallel region per tensor, no
    // idle threads between tensors); `done`, if set, runs once after the tensor's last part, on
    // the thread that finished it. Plain fill callbacks run one at a time, before the parts.
    int64_t n_parts = 0;
    std::function<void(int64_t part, std::byte* dst)> fill_part;
    std::function<void()> done;
};

class GgufWriter {
public:
    // Keys keep insertion order; setting a key twice replaces its value.
    void set(const std::string& key, GgufValue value);
    void add_tensor(GgufTensor tensor);  // throws Error("gguf") on a duplicate name
    const std::vector<GgufTensor>& tensors() const { return tensors_; }
    bool has(const std::string& key) const;

    // Writes the file atomically (see the header comment). Refuses (moekit::Error("gguf")) an
    // existing path unless `force`; a throwing fill or any I/O error removes the partial file.
    // Returns the file size.
    uint64_t write(const std::filesystem::path& path, bool force) const;

private:
    std::vector<std::pair<std::string, GgufValue>> kv_;
    std::vector<GgufTensor> tensors_;
    uint64_t alignment() const;
};

// What a GGUF file declares (for tests, `moekit inspect`-style checks and round trips).
struct GgufTensorInfo {
    std::string name;
    std::vector<int64_t> ne;
    uint32_t ggml_type = 0;
    uint64_t offset = 0;         // absolute file offset of the tensor's bytes
};
struct GgufFileInfo {
    uint32_t version = 0;
    std::vector<std::pair<std::string, GgufValue>> kv;
    std::vector<GgufTensorInfo> tensors;
    uint64_t data_offset = 0;
};
// Parses the header (metadata and tensor infos) with bounds checks; throws Error("gguf").
GgufFileInfo read_gguf_info(const std::filesystem::path& path);

}  // namespace moekit::io
