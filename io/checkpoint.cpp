// Checkpoint directories: config.json + model.safetensors, or an index and its shards, with
// every inconsistency between the index and the shards reported by name.
#include "io/checkpoint.h"

#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"

namespace moekit::io {
namespace {

constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

[[noreturn]] void fail(const fs::path& where, const std::string& message) {
    throw Error("checkpoint", where.string() + ": " + message);
}

// weight_map of the index: tensor name -> shard file name.
std::map<std::string, std::string> read_weight_map(const fs::path& index_path) {
    std::ifstream in(index_path, std::ios::binary);
    if (!in) fail(index_path, "cannot read");
    std::ostringstream text;
    text << in.rdbuf();
    nlohmann::json index;
    try {
        index = nlohmann::json::parse(text.str());
    } catch (const nlohmann::json::exception& e) {
        fail(index_path, std::string("invalid JSON: ") + e.what());
    }
    if (!index.is_object()) fail(index_path, "expected a JSON object");
    const auto it = index.find("weight_map");
    if (it == index.end()) fail(index_path, "missing 'weight_map'");
    if (!it->is_object()) fail(index_path, std::string("'weight_map' must be an object, got ") + it->type_name());
    std::map<std::string, std::string> weight_map;
    for (const auto& [name, shard] : it->items()) {
        if (!shard.is_string())
            fail(index_path, "weight_map entry for tensor '" + name + "' must be a shard file name (string)");
        const std::string file = shard.get<std::string>();
        // Shards live next to the index; a path would let an index point anywhere.
        if (file.empty() || file == "." || file == ".." || file.find('/') != std::string::npos)
            fail(index_path, "weight_map entry for tensor '" + name + "' names '" + file +
                                 "', which is not a file name in the checkpoint directory");
        weight_map.emplace(name, file);
    }
    return weight_map;
}

bool ends_with(const std::string& s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

Checkpoint Checkpoint::open(const fs::path& dir) {
    std::error_code ec;
    if (!fs::exists(dir, ec)) fail(dir, "checkpoint directory does not exist");
    if (!fs::is_directory(dir, ec)) fail(dir, "is not a directory (expected a checkpoint directory)");
    const fs::path config_path = dir / "config.json";
    if (!fs::exists(config_path, ec)) fail(dir, "no config.json (not a Hugging Face checkpoint directory?)");

    Checkpoint ckpt;
    ckpt.dir_ = dir;
    ckpt.config_ = HfConfig::load(config_path);

    const fs::path index_path = dir / kIndexName;
    if (fs::exists(index_path, ec)) {
        // An index wins over a stray model.safetensors next to it.
        ckpt.sharded_ = true;
        const auto weight_map = read_weight_map(index_path);
        std::map<std::string, std::size_t> shard_counts;  // shard -> tensors the index puts there
        for (const auto& [name, shard] : weight_map) ++shard_counts[shard];
        if (shard_counts.empty()) fail(index_path, "'weight_map' is empty");
        for (const auto& [shard, count] : shard_counts) {
            const fs::path shard_path = dir / shard;
            if (!fs::exists(shard_path, ec))
                fail(index_path, "shard '" + shard + "' named in the index is missing (" + std::to_string(count) +
                                     " tensors map to it)");
            ckpt.shards_.push_back(std::make_unique<SafetensorsFile>(shard_path));
        }
        for (const auto& shard : ckpt.shards_) {
            const std::string shard_name = shard->path().filename().string();
            for (const TensorInfo& info : shard->tensors()) {
                const auto [it, inserted] = ckpt.tensors_.emplace(info.name, Entry{shard.get(), &info});
                if (!inserted)
                    fail(dir, "tensor '" + info.name + "' is in two shards: '" +
                                  it->second.file->path().filename().string() + "' and '" + shard_name + "'");
            }
        }
        for (const auto& [name, shard] : weight_map) {
            const Entry* entry = ckpt.find(name);
            if (!entry || entry->file->path().filename() != shard) {
                std::string message = "the index places tensor '" + name + "' in shard '" + shard +
                                      "', which does not contain it";
                if (entry) message += " (it is in '" + entry->file->path().filename().string() + "')";
                fail(index_path, message);
            }
        }
        for (const auto& [name, entry] : ckpt.tensors_)
            if (!weight_map.count(name))
                fail(index_path, "tensor '" + name + "' is in shard '" + entry.file->path().filename().string() +
                                     "' but not in the index's weight_map");
        return ckpt;
    }

    const fs::path single = dir / kSingleName;
    if (!fs::exists(single, ec)) {
        std::size_t n_safetensors = 0;
        for (const auto& item : fs::directory_iterator(dir, ec))
            if (ends_with(item.path().filename().string(), ".safetensors")) ++n_safetensors;
        if (n_safetensors > 0)
            fail(dir, "found " + std::to_string(n_safetensors) + " .safetensors file(s) but neither " +
                          kSingleName + " nor " + kIndexName + "; a sharded checkpoint needs its index");
        fail(dir, std::string("no weights: neither ") + kSingleName + " nor " + kIndexName + " exists");
    }
    ckpt.shards_.push_back(std::make_unique<SafetensorsFile>(single));
    for (const TensorInfo& info : ckpt.shards_.front()->tensors())
        ckpt.tensors_.emplace(info.name, Entry{ckpt.shards_.front().get(), &info});
    return ckpt;
}

const Checkpoint::Entry* Checkpoint::find(std::string_view name) const {
    const auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
}

const Checkpoint::Entry& Checkpoint::at(std::string_view name) const {
    const Entry* entry = find(name);
    if (!entry) fail(dir_, "no tensor named '" + std::string(name) + "'");
    return *entry;
}

std::span<const std::byte> Checkpoint::bytes(std::string_view name) const {
    const Entry& entry = at(name);
    return entry.file->bytes(*entry.info);
}

std::vector<float> Checkpoint::read_f32(std::string_view name) const {
    const Entry& entry = at(name);
    std::vector<float> values(entry.info->n_elements());
    entry.file->read_f32(*entry.info, values.data());
    return values;
}

void Checkpoint::release(std::string_view name) const {
    const Entry& entry = at(name);
    entry.file->release(*entry.info);
}

std::vector<std::string> Checkpoint::names_with_prefix(std::string_view prefix) const {
    std::vector<std::string> out;
    for (auto it = tensors_.lower_bound(prefix); it != tensors_.end() && it->first.starts_with(prefix); ++it)
        out.push_back(it->first);
    return out;
}

uint64_t Checkpoint::total_tensor_bytes() const {
    uint64_t total = 0;
    for (const auto& [name, entry] : tensors_) total += entry.info->nbytes();
    return total;
}

}  // namespace moekit::io
