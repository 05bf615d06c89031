// `moekit prune`: score every routed expert on calibration data (METHODS.md §5), choose which
// survive (prune/plan.h), and write a smaller checkpoint (prune/edit.h) with OUT_DIR/moekit.json
// (what was removed per layer, every expert's score, the parameters used, expert_map) and a
// README.md note.
//
// Calibration: the --calib files are tokenized and cut into windows exactly as `moekit eval`
// does (model/corpus.h); one teacher-forced pass over all windows feeds a ScoreObserver
// (routed tokens only). NAEE additionally runs every expert on a sample of the windows (evenly
// spaced windows up to naee_max_tokens tokens, fewer if n_moe_layer x E x tokens x d_model x 4
// bytes would exceed 4 GiB). Super experts come from the same pass and are protected by default.
//
// Bad input is refused before any heavy work and before anything is written: unknown method or
// budget, a --keep that keeps all experts or fewer than top-k (or a count grouped routing
// cannot use), missing/empty calibration data, a missing or existing output (without force).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cuda/device_ops.h"
#include "io/checkpoint_edit.h"
#include "io/dataset.h"
#include "model/calib_cache.h"
#include "model/corpus.h"
#include "prune/edit.h"
#include "prune/naee.h"
#include "prune/plan.h"
#include "prune/scores.h"

namespace moekit::prune {

struct PruneOptions {
    std::filesystem::path model_dir;
    std::filesystem::path out_dir;        // required unless dry_run
    std::string method = "reap";
    std::string keep;                     // ratio ("0.5") or count ("8")
    std::string budget = "uniform";
    int64_t min_keep = 0;                 // global budget: per-layer minimum (0: default)
    bool protect_super_experts = true;
    bool dry_run = false;                 // plan and report only
    bool force = false;                   // replace an existing out_dir
    uint64_t seed = 0;                    // random method
    // Calibration data (same formats and tokenization as `moekit eval --data`).
    model::CorpusOptions calib;           // its flag is named "--calib" in messages
    int64_t batch_tokens = 16384;
    // NAEE.
    int64_t naee_max_tokens = 2048;
    int64_t naee_max_subsets = 5000;
    int threads = 0;                      // 0: all cores
    // Where the calibration forward runs (model::EngineOptions::device); nullptr: the CPU.
    std::shared_ptr<backend::DeviceOps> device = nullptr;
    // Saved calibration statistics (model/calib_cache.h): the score sums are looked up there
    // before running the model and saved after (not NAEE's sample). nullptr: always compute.
    model::CalibrationCache* calib_cache = nullptr;
    uint64_t max_shard_bytes = 5'000'000'000;
    std::string tool_version;             // recorded in moekit.json
    std::function<void(double, const std::string&)> progress;
};

struct PruneResult {
    PruneOptions options;                 // as resolved (progress unset)
    Method method = Method::reap;
    PlanOptions plan_options;
    std::string model_type, display_name;
    int64_t n_layer = 0, n_expert = 0, n_expert_used = 0;
    // Calibration.
    int64_t seq_len = 0;
    int64_t calib_tokens = 0;
    int64_t calib_windows = 0;
    std::string tokenization;
    nlohmann::ordered_json calib_files = nlohmann::ordered_json::array();
    std::vector<LayerStats> stats;        // MoE layers, ascending
    model::CalibrationUse calibration;    // how `stats` were obtained
    std::vector<SuperExpert> super_experts;
    SuperExpertRule super_rule;
    std::vector<NaeeLayerResult> naee;    // NAEE only
    int64_t naee_tokens = 0;
    Plan plan;
    EditSummary edit;
    std::optional<io::WriteResult> written;
    uint64_t input_tensor_bytes = 0;
    uint64_t output_tensor_bytes = 0;     // planned bytes (= written when not a dry run)
    double calib_s = 0, naee_s = 0, plan_s = 0, write_s = 0, wall_s = 0;
    int threads = 0;
    std::string device = "cpu";          // where calibration ran (DeviceOps::describe)
    nlohmann::ordered_json moekit_json;   // the OUT_DIR/moekit.json document
};

PruneResult prune(const PruneOptions& options);

// moekit.json (the record written next to the checkpoint).
nlohmann::ordered_json make_moekit_json(const PruneResult& result);
// The README.md section describing the pruned checkpoint.
std::string readme_note(const PruneResult& result);
// --json output: moekit.json plus ok, dry_run, output and timing.
nlohmann::ordered_json to_json(const PruneResult& result);
// The terminal table.
std::string to_text(const PruneResult& result);

// The score sums `prune` calibrates as a sink for a shared pass (model/calib_cache.h): the same
// observer and key, so prune finds the entry and skips its own pass (used by `moekit run`).
std::unique_ptr<model::CalibrationSink> calibration_sink(const model::ModelConfig& config, const PruneOptions& options);

}  // namespace moekit::prune
