// CheckpointEdit: what a command changes in a checkpoint (tensors dropped, renamed, replaced
// or added; config fields patched; files added), and the one writer that applies it. Every
// tensor not touched is copied byte-for-byte; config.json keeps every field the edit does not
// name, in its original order; tokenizer, generation and other plain files are copied. The
// output is built in a temporary sibling directory and renamed into place only when complete.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "io/safetensors.h"

namespace moekit::io {

struct CheckpointEdit {
    std::set<std::string> drop;                       // input tensors left out
    std::map<std::string, std::string> rename;        // input name -> output name, bytes copied
    std::vector<TensorSource> put;                    // new or replacing tensors (by name)
    nlohmann::ordered_json config_patch = nlohmann::ordered_json::object();  // RFC 7386 merge patch
    std::map<std::string, std::string> extra_files;   // file name -> contents (moekit.json, README.md)
};

struct WriteOptions {
    bool force = false;                                // replace an existing output
    uint64_t max_shard_bytes = 5'000'000'000;          // tensor bytes per shard; index when > 1 shard
};

struct WriteResult {
    fs::path dir;
    std::vector<std::string> shard_files;
    std::size_t n_copied = 0;                          // tensors copied byte-for-byte
    std::size_t n_written = 0;                         // tensors from edit.put
    uint64_t tensor_bytes = 0;
};

// Applies `edit` to `input` and writes the result to `out_dir`. Refuses (moekit::Error):
// out_dir equal to, inside, or containing the input directory; an existing out_dir without
// force; an edit naming tensors the input lacks; two output tensors with one name.
// On any failure the temporary directory is removed and out_dir is left as it was.
// Details: output tensors are ordered by natural_less and sharded greedily by max_shard_bytes
// (model.safetensors, or model-0000i-of-0000N.safetensors + model.safetensors.index.json);
// `put` with the name of a surviving input tensor replaces it; config.json is the input config
// with config_patch merged (2-space indent, trailing newline, key order kept); regular files of
// the input directory are copied non-recursively, except config.json and weight files
// (*.safetensors, *.safetensors.index.json, *.bin, *.bin.index.json, *.pt, *.pth, *.ckpt, *.h5,
// *.msgpack, *.gguf), which would be stale; extra_files are written last (they may replace a
// copied file such as README.md). Files are fsynced before the final rename. The temporary
// directory is "<out_dir>.moekit-tmp-<pid>"; an existing output replaced under force is first
// renamed to "<out_dir>.moekit-old-<pid>" and removed after the new one is in place. SIGINT or
// SIGTERM during the write stops it at the next tensor, removes the temporary directory (an
// existing output stays as it was) and then re-raises the signal with the previous handler.
WriteResult write_checkpoint(const Checkpoint& input, const CheckpointEdit& edit,
                             const fs::path& out_dir, const WriteOptions& options = {});

// The location checks write_checkpoint makes, for commands to run before their heavy work:
// out_dir must not be, lie inside or contain input_dir, and may exist only with force.
// Throws Error("checkpoint").
void check_output_location(const fs::path& input_dir, const fs::path& out_dir, bool force);

// The record a compressing command leaves next to its checkpoint: moekit.json (2-space indent)
// and README.md = the input directory's README.md, if any, followed by `readme_note`.
void add_record_files(CheckpointEdit& edit, const fs::path& input_dir, const nlohmann::ordered_json& moekit_json,
                      const std::string& readme_note);

// Tensor bytes the output of `edit` applied to `input` will hold.
uint64_t planned_tensor_bytes(const Checkpoint& input, const CheckpointEdit& edit);

// Orders tensor names so that numbers compare by value ("layers.2" < "layers.10").
bool natural_less(const std::string& a, const std::string& b);

}  // namespace moekit::io
