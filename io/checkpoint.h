// A Hugging Face checkpoint directory: config.json plus model.safetensors, or
// model.safetensors.index.json and the shards it names. Opening parses every shard header and
// cross-checks the index; tensor bytes stay memory-mapped until someone reads them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/hf_config.h"
#include "io/safetensors.h"

namespace moekit::io {

class Checkpoint {
public:
    // Throws moekit::Error naming the file for: missing directory or config.json, no
    // model.safetensors nor index, a shard named in the index that is missing, a tensor the
    // index places in a shard that lacks it, a tensor in two shards or missing from the index.
    static Checkpoint open(const fs::path& dir);

    const fs::path& dir() const { return dir_; }
    const HfConfig& config() const { return config_; }
    bool is_sharded() const { return sharded_; }
    // Shards in file-name order (one entry for an unsharded checkpoint).
    const std::vector<std::unique_ptr<SafetensorsFile>>& shards() const { return shards_; }

    struct Entry {
        const SafetensorsFile* file;
        const TensorInfo* info;
    };
    const Entry* find(std::string_view name) const;  // nullptr when absent
    const Entry& at(std::string_view name) const;    // throws Error naming the tensor
    // Every tensor, in name order.
    const std::map<std::string, Entry, std::less<>>& tensors() const { return tensors_; }
    // Names of the tensors starting with `prefix`, in name order.
    std::vector<std::string> names_with_prefix(std::string_view prefix) const;

    std::span<const std::byte> bytes(std::string_view name) const;
    std::vector<float> read_f32(std::string_view name) const;
    // SafetensorsFile::release for the named tensor (throws Error if absent): drops the resident
    // mapped pages inside its byte range; later reads fault them back in unchanged.
    void release(std::string_view name) const;
    uint64_t total_tensor_bytes() const;

private:
    fs::path dir_;
    HfConfig config_;
    bool sharded_ = false;
    std::vector<std::unique_ptr<SafetensorsFile>> shards_;
    std::map<std::string, Entry, std::less<>> tensors_;
};

}  // namespace moekit::io
