// `moekit inspect`: what a checkpoint holds and whether it is consistent with its config,
// computed from config.json and the safetensors headers only (no tensor data is read).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/arch.h"

namespace moekit::model {

struct InspectOptions {
    std::filesystem::path model_dir;
};

struct TensorGroupStats {
    int64_t n_tensors = 0;
    int64_t n_params = 0;
    uint64_t bytes = 0;
};

// Something about the checkpoint that disagrees with its config.
struct Problem {
    std::string kind;     // "missing_tensor" | "unexpected_tensor" | "shape_mismatch"
    std::string tensor;
    std::string detail;
};

struct ShardStats {
    std::string file;     // relative to the checkpoint directory
    uint64_t file_bytes = 0;
    int64_t n_tensors = 0;
};

struct InspectReport {
    std::filesystem::path model_dir;
    std::string display_name;
    ModelConfig config;
    std::vector<int64_t> moe_layers;
    std::vector<int64_t> dense_layers;
    int64_t n_params_total = 0;
    int64_t n_params_active = 0;               // per token: all non-routed + top-k routed experts
    int64_t n_params_embedding = 0;            // embedding + lm_head (for "active excluding embeddings")
    int64_t n_params_per_expert = 0;           // one routed expert (first MoE layer)
    std::map<TensorCategory, TensorGroupStats> by_category;
    std::map<std::string, TensorGroupStats> by_dtype;
    std::vector<ShardStats> shards;
    bool sharded = false;
    std::vector<Problem> problems;
    bool ok() const { return problems.empty(); }
};

// Throws moekit::Error for anything that prevents reading the checkpoint at all (unreadable
// or malformed files, config errors, unknown architecture); consistency problems between the
// tensors and the config are collected in `problems` instead, so all of them are reported.
InspectReport inspect(const InspectOptions& options);

nlohmann::ordered_json to_json(const InspectReport& report);
std::string to_text(const InspectReport& report);

}  // namespace moekit::model
